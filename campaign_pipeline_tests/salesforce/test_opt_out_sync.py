"""Opt-out sync (matching.sync_opt_out) end to end over HTTPS: HasOptedOutOfEmail on the matched Contact/Lead."""

from __future__ import annotations

import pandas as pd
import pytest

from campaign_pipeline.modes import desired_asset_names, desired_records, record_steps
from campaign_pipeline.profile import ProfileError, SyncProfile, validate_profile
from campaign_pipeline.salesforce.engine import sync_desired_records
from campaign_pipeline.salesforce.matching import match_campaign_members
from campaign_pipeline_tests.activity.frames import events

from .conftest import AUDIENCE, PROFILE, statuses_for
from .frames import campaign_report, email_id
from .test_lost_answers import run_losing


def _with_opt_out(profile: SyncProfile, mode: str = "campaign") -> SyncProfile:
    return profile.model_copy(
        update={"mode": mode, "matching": profile.matching.model_copy(update={"sync_opt_out": True})}
    )


OPT_OUT = _with_opt_out(PROFILE)


def _unsubscribing(count: int, unsubscribed: int) -> pd.DataFrame:
    statuses = statuses_for(AUDIENCE[:count])
    statuses.loc[: unsubscribed - 1, "latest_status"] = "Unsubscribed"
    statuses.loc[: unsubscribed - 1, "was_unsubscribed"] = True
    return statuses


def _opted_out(org) -> set[str]:
    return {p["Id"] for sobject in ("Contact", "Lead") for p in org.records(sobject) if p["HasOptedOutOfEmail"]}


def _people_of(sandbox_org, statuses: pd.DataFrame) -> set[str]:
    matches, _ = match_campaign_members(sandbox_org.client(), statuses)
    return set(matches["salesforce_id"])


def test_unsubscribed_members_are_marked_opted_out_on_their_contact_or_lead(sandbox_org) -> None:
    statuses = _unsubscribing(24, 12)
    org = sandbox_org.org
    assert _opted_out(org) == set()
    report = sandbox_org.sync(statuses, OPT_OUT)
    assert report.failures.empty, report.failures.to_dict("records")
    expected = _people_of(sandbox_org, statuses[statuses["was_unsubscribed"]])
    still_subscribed = _people_of(sandbox_org, statuses[~statuses["was_unsubscribed"]]) - expected
    assert _opted_out(org) == expected and still_subscribed
    contacts, leads = report.outcomes["contact_opt_out"], report.outcomes["lead_opt_out"]
    assert contacts.updated > 0 and leads.updated > 0, "the seed matches members to Contacts and to Leads"
    assert contacts.updated + leads.updated == len(expected)
    assert contacts.created == leads.created == 0
    ledger = sandbox_org.ledger.load("contact_opt_out", ["cmp1"])
    assert set(ledger["last_result"]) == {"ok"} and ledger["salesforce_id"].str.startswith("003").all()
    # Nothing new: not one write.
    again = sandbox_org.sync(statuses, OPT_OUT)
    assert again.write_calls == 0 and again.outcomes["contact_opt_out"].unchanged == contacts.updated


def test_the_flag_is_never_cleared(sandbox_org) -> None:
    statuses = _unsubscribing(10, 3)
    sandbox_org.sync(statuses, OPT_OUT)
    org = sandbox_org.org
    marked = _opted_out(org)
    assert marked
    # Someone in Salesforce clears one opt-out (the person consented again); the member resubscribes in Mailchimp.
    sf = org.client()
    person = sorted(marked)[0]
    getattr(sf, "Contact" if person.startswith("003") else "Lead").update(person, {"HasOptedOutOfEmail": False})
    resubscribed = statuses.copy()
    resubscribed["was_unsubscribed"] = False
    resubscribed["latest_status"] = "Opened"
    for frame in (statuses, resubscribed):
        report = sandbox_org.sync(frame, OPT_OUT)
        assert report.failures.empty
        assert report.outcomes["contact_opt_out"].updated + report.outcomes["lead_opt_out"].updated == 0
    assert _opted_out(org) == marked - {person}
    # The only writes were the members' new status: never a HasOptedOutOfEmail = false.
    people = [p for sobject in ("Contact", "Lead") for p in org.records(sobject)]
    assert sum(p["HasOptedOutOfEmail"] for p in people) == len(marked) - 1


@pytest.mark.parametrize("sobject", ["Contact", "Lead"])
def test_an_opt_out_whose_answer_is_lost_is_sent_again_and_converges(sandbox_org, sobject) -> None:
    statuses = _unsubscribing(24, 12)
    sandbox_org.sync(statuses.assign(was_unsubscribed=False), OPT_OUT)  # Campaign, statuses, members first
    report = run_losing(sandbox_org, statuses, OPT_OUT, rf"^update \d+ {sobject} record\(s\) via sObject Collections")
    kind = f"{sobject.lower()}_opt_out"
    expected = _people_of(sandbox_org, statuses[statuses["was_unsubscribed"]])
    # Salesforce carried the lost call out; the transport repeats an update (idempotent) or the run records the
    # call's failure and the next run sends it again: either way every person ends up marked once.
    assert _opted_out(sandbox_org.org) == expected
    outcome = report.outcomes[kind]
    assert outcome.updated + outcome.failed == outcome.desired > 0
    again = sandbox_org.sync(statuses, OPT_OUT)
    assert again.failures.empty, again.failures.to_dict("records")
    assert again.outcomes[kind].updated == outcome.failed
    assert _opted_out(sandbox_org.org) == expected
    assert sandbox_org.sync(statuses, OPT_OUT).write_calls == 0


def test_activity_mode_marks_opt_outs_too(sandbox_org) -> None:
    statuses = _unsubscribing(8, 2)
    profile = _with_opt_out(PROFILE, "activity")
    client = sandbox_org.client()
    matches, _ = match_campaign_members(client, statuses)
    frames = {
        "raw_email_events": events(("person05@example.com", "open", "2026-03-02 15:30"), campaign_id="cmp1"),
        "member_statuses": statuses,
        "salesforce_matches": matches,
        "mailchimp_campaign_report": campaign_report("cmp1"),
    }
    report = sync_desired_records(client, sandbox_org.ledger, desired_records(profile, frames), profile.sync)
    assert report.failures.empty, report.failures.to_dict("records")
    assert _opted_out(sandbox_org.org) == _people_of(sandbox_org, statuses[statuses["was_unsubscribed"]])
    assert sandbox_org.org.records("Campaign") == []


def test_off_by_default_and_only_where_people_are_matched() -> None:
    assert PROFILE.matching.sync_opt_out is False
    assert "sf_opt_outs" not in desired_asset_names(PROFILE)
    assert [step.kind(OPT_OUT).name for step in record_steps(OPT_OUT)][-3:] == [
        "contact_opt_out",
        "lead_opt_out",
        "account_opt_out",
    ]
    assert desired_asset_names(_with_opt_out(PROFILE, "notes"))[-1] == "sf_opt_outs"
    with pytest.raises(ProfileError, match="matching.sync_opt_out .* campaign_totals"):
        validate_profile({"mode": "campaign_totals", "matching": {"sync_opt_out": True}}, "test profile")


def test_members_matched_to_one_person_make_one_opt_out() -> None:
    from campaign_pipeline.core.opt_out_records import desired_opt_outs, opt_outs_of

    statuses = statuses_for(["a@example.com", "A@Example.com ", "b@example.com"], status="Unsubscribed")
    statuses["was_unsubscribed"] = [True, True, False]
    matches = pd.DataFrame(
        {
            "campaign_id": "cmp1",
            "email_id": [email_id(a) for a in ("a@example.com", "A@Example.com ", "b@example.com")],
            "salesforce_id": ["003000000000001AAA", "003000000000001AAA", "00Q000000000002AAA"],
            "salesforce_object": ["Contact", "Contact", "Lead"],
        }
    )
    desired = desired_opt_outs(statuses, matches)
    assert desired["sync_key"].tolist() == ["cmp1|opt_out|003000000000001AAA"]
    assert desired["HasOptedOutOfEmail"].tolist() == [True]
    assert len(opt_outs_of(desired, "Contact")) == 1 and opt_outs_of(desired, "Lead").empty


def test_the_graph_and_the_cli_summary_show_opt_outs() -> None:
    from campaign_pipeline.definitions import build_definitions
    from campaign_pipeline.demo import format_summary

    graph = build_definitions(OPT_OUT).resolve_asset_graph()
    sync_key = next(key for key in graph.get_all_asset_keys() if key.to_user_string() == "salesforce_sync")
    assert {key.to_user_string() for key in graph.get(sync_key).parent_keys} >= {"sf_opt_outs", "sf_campaign"}
    plain = {key.to_user_string() for key in build_definitions(PROFILE).resolve_asset_graph().get_all_asset_keys()}
    assert "sf_opt_outs" not in plain
    report = {"mode": "campaign", "campaigns": [], "salesforce_writes": 3, "failed_runs": 0, "opted_out": 3}
    assert "marked HasOptedOutOfEmail (unsubscribed in Mailchimp): 3" in format_summary(report)
    without = {key: value for key, value in report.items() if key != "opted_out"}
    assert "HasOptedOutOfEmail" not in format_summary(without)
