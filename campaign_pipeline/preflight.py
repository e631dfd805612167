"""Checks before any work: profile, database, Mailchimp key and audience, Salesforce login, objects and mapped fields.

`campaign-pipeline check` prints them; the `preflight` asset runs them first in every run of the sync job (the
Mailchimp assets depend on it), so a bad mapping fails in seconds, before Mailchimp is paged; and
`campaign-pipeline demo` stops at the first failure with its reason in one line.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import dagster as dg

from campaign_pipeline.core.salesforce_records import MEMBER_STATUS_LABELS
from campaign_pipeline.mailchimp.partitions import PREFLIGHT_ASSET, campaign_asset
from campaign_pipeline.profile import SyncProfile

logger = logging.getLogger(__name__)

# The sObjects each mode writes (the sync creates and updates them) and what matching reads.
WRITTEN_OBJECTS: dict[str, tuple[str, ...]] = {
    "campaign": ("Campaign", "CampaignMemberStatus", "CampaignMember"),
    "campaign_and_activity": ("Campaign", "CampaignMemberStatus", "CampaignMember", "Task"),
    "activity": ("Task",),
    "notes": ("Note", "Attachment"),
    "campaign_totals": ("Campaign",),
}
# Mode notes with notes_format enhanced (the default): Enhanced Notes, their links and Files.
ENHANCED_NOTES_OBJECTS = ("ContentNote", "ContentDocumentLink", "ContentVersion")
MATCHED_OBJECTS = ("Contact", "Lead")
MODES_WITH_MEMBER_STATUSES = frozenset({"campaign", "campaign_and_activity"})
MODES_WITH_TASKS = frozenset({"activity", "campaign_and_activity"})


@dataclass(frozen=True)
class CheckResult:
    """One line of the verdict: what was checked, whether it passed, and what it found or what to do."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.name:<24} {self.detail}"


class PreflightFailed(RuntimeError):
    """A configuration problem found before any work; the message is the first failing check's reason."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(f"{result.name}: {result.detail}")
        self.result = result


@dataclass(frozen=True)
class MappedField:
    """A Salesforce field the profile makes the sync write, and which setting names it."""

    sobject: str
    field: str
    setting: str


def written_objects(profile: SyncProfile) -> tuple[str, ...]:
    """The sObjects the profile's mode writes (mode notes: Enhanced Notes and Files unless classic is chosen)."""
    if profile.mode == "notes" and profile.activity.notes_format == "enhanced":
        return ENHANCED_NOTES_OBJECTS
    return WRITTEN_OBJECTS[profile.mode]


def mapped_fields(profile: SyncProfile) -> list[MappedField]:
    """Every field the profile maps, for the objects its mode writes."""
    mapping = profile.field_mapping
    written = set(written_objects(profile))
    fields: list[MappedField] = []
    if "Campaign" in written:
        fields += [MappedField("Campaign", f, f"field_mapping.campaign.{m}") for m, f in mapping.campaign.items()]
        if mapping.campaign_key_field:
            fields.append(MappedField("Campaign", mapping.campaign_key_field, "field_mapping.campaign_key_field"))
    if "CampaignMember" in written:
        fields += [
            MappedField("CampaignMember", f, f"field_mapping.campaign_member.{m}")
            for m, f in mapping.campaign_member.items()
        ]
        if mapping.campaign_member_key_field:
            fields.append(
                MappedField(
                    "CampaignMember", mapping.campaign_member_key_field, "field_mapping.campaign_member_key_field"
                )
            )
    if profile.mode in MODES_WITH_TASKS:
        for setting in ("task_status_field", "task_url_field", "task_key_field"):
            name = getattr(mapping, setting)
            if name:
                fields.append(MappedField("Task", name, f"field_mapping.{setting}"))
    return fields


def _profile_check(load: Callable[[], SyncProfile]) -> tuple[CheckResult, SyncProfile | None]:
    from campaign_pipeline.profile import active_profile_path

    try:
        profile = load()
    except Exception as exc:  # ProfileError names the file and the field
        return CheckResult("profile", False, str(exc)), None
    where = active_profile_path() or "built-in defaults"
    return CheckResult("profile", True, f"{where}: mode {profile.mode}"), profile


def _database_check() -> CheckResult:
    import sqlalchemy as sa

    from campaign_pipeline.storage.database import get_engine, is_embedded, redact_url

    try:
        engine = get_engine()
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        return CheckResult("database", False, _first_line(exc))
    kind = "embedded" if is_embedded() else "CAMPAIGN_PIPELINE_DATABASE_URL"
    return CheckResult("database", True, f"{redact_url(str(engine.url.render_as_string()))} ({kind})")


def _mailchimp_checks(profile: SyncProfile, mailchimp: Any) -> Iterator[CheckResult]:
    try:
        mailchimp.ping()
        audiences = mailchimp.audiences()
    except Exception as exc:
        yield CheckResult("mailchimp key", False, f"{mailchimp.source_description}: {_first_line(exc)}")
        return
    yield CheckResult("mailchimp key", True, mailchimp.source_description)
    by_id = {str(a.get("id")): str(a.get("name") or "") for a in audiences}
    wanted = profile.mailchimp.list_id
    if wanted is None:
        if len(by_id) == 1:
            (only_id, only_name), *_ = by_id.items()
            yield CheckResult("mailchimp audience", True, f"{only_id} ({only_name}), the account's only audience")
        else:
            choices = ", ".join(f"{i} ({n})" for i, n in sorted(by_id.items())) or "none"
            yield CheckResult(
                "mailchimp audience",
                False,
                f"mailchimp.list_id is not set and the account has {len(by_id)} audiences ({choices}); set one",
            )
    elif wanted in by_id:
        yield CheckResult("mailchimp audience", True, f"{wanted} ({by_id[wanted]})")
    else:
        choices = ", ".join(f"{i} ({n})" for i, n in sorted(by_id.items())) or "none"
        yield CheckResult(
            "mailchimp audience", False, f"mailchimp.list_id {wanted!r} is not an audience of this account: {choices}"
        )


def _salesforce_checks(profile: SyncProfile, salesforce: Any) -> Iterator[CheckResult]:
    try:
        target = salesforce.describe_target()
        opened = salesforce.open_client(
            api_call_budget=profile.sync.api_call_budget,
            limit_usage_stop_fraction=profile.sync.limit_usage_stop_fraction,
        )
        client = opened.__enter__()
    except Exception as exc:
        yield CheckResult("salesforce login", False, _first_line(exc))
        return
    try:
        yield CheckResult("salesforce login", True, target)
        yield from _object_checks(profile, client)
    finally:
        opened.__exit__(None, None, None)


def _object_checks(profile: SyncProfile, client: Any) -> Iterator[CheckResult]:
    describes: dict[str, dict] = {}
    problems: list[str] = []
    needed = [(name, "write") for name in written_objects(profile)]
    if profile.mode != "campaign_totals":
        needed += [(name, "read") for name in MATCHED_OBJECTS]
    if profile.matching.create_leads_for_unmatched:
        needed.append(("Lead", "write"))
    for sobject, use in needed:
        try:
            describe = describes.get(sobject) or client.describe(sobject)
        except Exception as exc:
            problems.append(f"{sobject}: cannot describe it ({_first_line(exc)})")
            continue
        describes[sobject] = describe
        if use == "write" and not (describe.get("createable") and describe.get("updateable")):
            problems.append(f"{sobject}: this user may not create and update it")
        if use == "read" and describe.get("queryable") is False:
            problems.append(f"{sobject}: this user may not query it")
    names = ", ".join(dict.fromkeys(name for name, _ in needed))
    yield CheckResult("salesforce objects", not problems, "; ".join(problems) or f"{names}: accessible")

    missing: list[str] = []
    for wanted in mapped_fields(profile):
        describe = describes.get(wanted.sobject)
        if describe is None:
            continue  # already reported above
        by_name = {f["name"].lower(): f for f in describe.get("fields", [])}
        entry = by_name.get(wanted.field.lower())
        if entry is None:
            close = difflib.get_close_matches(wanted.field, [f["name"] for f in by_name.values()], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            missing.append(f"{wanted.sobject}.{wanted.field} ({wanted.setting}) does not exist in the org{hint}")
        elif not (entry.get("createable") or entry.get("updateable")):
            missing.append(f"{wanted.sobject}.{wanted.field} ({wanted.setting}) is read-only for this user")
    count = len(mapped_fields(profile))
    yield CheckResult(
        "salesforce fields",
        not missing,
        "; ".join(missing) + "; create the field or change field_mapping in the sync profile"
        if missing
        else f"{count} mapped field{'s' if count != 1 else ''} present and writable",
    )

    if profile.mode in MODES_WITH_MEMBER_STATUSES and "CampaignMemberStatus" in describes:
        yield _member_status_check(describes)


def _member_status_check(describes: dict[str, dict]) -> CheckResult:
    """The labels the sync creates on every Campaign must fit CampaignMemberStatus.Label and CampaignMember.Status."""
    labels = [label for label, _ in MEMBER_STATUS_LABELS]
    problems = []
    for sobject, name in (("CampaignMemberStatus", "Label"), ("CampaignMemberStatus", "HasResponded")):
        entry = {f["name"]: f for f in describes[sobject].get("fields", [])}.get(name)
        if entry is None or not entry.get("createable"):
            problems.append(f"{sobject}.{name} is missing or not createable")
        elif name == "Label" and entry.get("length") and max(map(len, labels)) > int(entry["length"]):
            problems.append(f"a label is longer than {sobject}.Label ({entry['length']} characters)")
    detail = "; ".join(problems) or f"{', '.join(labels)} can be created on each Campaign"
    return CheckResult("member status labels", not problems, detail)


def _partition_owner_check(mailchimp: Any, partition_keys: list[str]) -> CheckResult:
    """The run's campaign partitions belong to the configured Mailchimp account (unowned ones are claimed)."""
    from campaign_pipeline.core.campaign_keys import campaign_id_from_key
    from campaign_pipeline.mailchimp.ownership import PartitionOwners
    from campaign_pipeline.storage.database import get_engine

    try:
        source = mailchimp.source_identity()
        # Owners are recorded per campaign id, whatever shape the partition key has.
        PartitionOwners(get_engine()).check([campaign_id_from_key(key) for key in partition_keys], source)
    except Exception as exc:
        return CheckResult("campaign partitions", False, _first_line(exc))
    shown = ", ".join(partition_keys[:3]) + (f" and {len(partition_keys) - 3} more" if len(partition_keys) > 3 else "")
    return CheckResult("campaign partitions", True, f"{shown}: campaigns of {source}")


def run_checks(
    load_profile: Callable[[], SyncProfile] | None = None,
    *,
    mailchimp: Any | None = None,
    salesforce: Any | None = None,
    stop_at_first_failure: bool = False,
    partition_keys: list[str] | None = None,
) -> list[CheckResult]:
    """All checks in setup order; resources default to the ones Definitions would bind for the profile.

    With ``partition_keys`` (a run's campaigns) the last check is that they belong to the configured Mailchimp
    account (``mailchimp.ownership``).
    """
    from campaign_pipeline.profile import load_active_profile

    results: list[CheckResult] = []

    def emit(result: CheckResult) -> bool:
        results.append(result)
        return result.ok or not stop_at_first_failure

    profile_result, profile = _profile_check(load_profile or load_active_profile)
    if not emit(profile_result) or profile is None:
        return results
    if not emit(_database_check()):
        return results
    if mailchimp is None or salesforce is None:
        # The same live-or-sandbox rule the Definitions use (campaign_pipeline.deployment).
        from campaign_pipeline.deployment import choose_deployment

        chosen = choose_deployment(filter_bots=profile.mailchimp.filter_bots)
        mailchimp = mailchimp or chosen.mailchimp
        salesforce = salesforce or chosen.salesforce
    for result in _mailchimp_checks(profile, mailchimp):
        if not emit(result):
            return results
    for result in _salesforce_checks(profile, salesforce):
        if not emit(result):
            return results
    if partition_keys:
        emit(_partition_owner_check(mailchimp, partition_keys))
    return results


def raise_on_failure(results: list[CheckResult]) -> None:
    for result in results:
        if not result.ok:
            raise PreflightFailed(result)


def stop_on_setup_error(profile: SyncProfile, deployment: Any) -> None:
    """Run the checks against the chosen deployment and raise the first failure: a command that starts many runs
    (demo, backfill) says a setup error once, in one line, before any run would fail on it."""
    raise_on_failure(
        run_checks(
            lambda: profile,
            mailchimp=deployment.mailchimp,
            salesforce=deployment.salesforce,
            stop_at_first_failure=True,
        )
    )


def verdict(results: list[CheckResult]) -> str:
    failed = [r for r in results if not r.ok]
    lines = [r.line() for r in results]
    lines.append(
        f"{len(failed)} of {len(results)} checks failed: fix the FAIL lines above, then run the check again"
        if failed
        else "ready: every check passed"
    )
    return "\n".join(lines)


def as_json(results: list[CheckResult]) -> dict[str, Any]:
    return {"ok": all(r.ok for r in results), "checks": [asdict(r) for r in results]}


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def build_preflight_asset(profile: SyncProfile) -> dg.AssetsDefinition:
    """The first step of every run: the checks above against the run's own resources; a failure stops the run."""

    @campaign_asset(
        name=PREFLIGHT_ASSET,
        group_name="preflight",
        required_resource_keys={"mailchimp", "salesforce"},
        description=(
            "Checks before any work: database, Mailchimp key and audience, Salesforce login, the objects the mode "
            "writes, every mapped field in the org's describe, the CampaignMemberStatus labels, and that the run's "
            "campaign partitions belong to the configured Mailchimp account. A failure stops the run here, before "
            "Mailchimp or Salesforce see any other call. Metadata: the checks, and the source and target (sandbox, "
            "or the live account / org id) whose state the run uses."
        ),
    )
    def preflight(context) -> dg.MaterializeResult:
        results = run_checks(
            lambda: profile,
            mailchimp=context.resources.mailchimp,
            salesforce=context.resources.salesforce,
            stop_at_first_failure=True,
            partition_keys=list(context.partition_keys),
        )
        table = dg.MetadataValue.md(
            "| check | result | detail |\n| --- | --- | --- |\n"
            + "\n".join(f"| {r.name} | {'ok' if r.ok else 'FAIL'} | {_md_cell(r.detail)} |" for r in results)
        )
        failed = next((r for r in results if not r.ok), None)
        if failed is not None:
            raise dg.Failure(
                description=f"preflight failed: {failed.name}: {failed.detail}",
                metadata={"checks": table},
                allow_retries=False,
            )
        return dg.MaterializeResult(
            metadata={
                "checks": table,
                # Whose state this run reads and writes (ledger rows, partitions): sandbox or a live account / org.
                "source": context.resources.mailchimp.source_identity(),
                "target": context.resources.salesforce.state_identity(),
            }
        )

    return preflight


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
