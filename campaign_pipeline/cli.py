"""The `campaign-pipeline` command: the demo, the sandbox APIs and the embedded database."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import click

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
# Dagster flags beta/preview parameters (backfill_policy, pools) at every load; they say nothing to a user.
warnings.filterwarnings("ignore", message=r".*(is currently in (beta|preview)|superseded|get_sensor_def will return).*")


DEBUG_HINT = "(run with --debug for the traceback)"


def one_line_error(exc: BaseException) -> str:
    """What went wrong in one line: the innermost user-facing cause, without Dagster's wrapping."""
    inner = getattr(exc, "user_exception", None)
    while isinstance(inner, BaseException):
        exc, inner = inner, getattr(inner, "user_exception", None)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    message = lines[0] if lines else "(no message)"
    # A user's own error classes already read as sentences; anything else says what kind of failure it was.
    known = type(exc).__module__.startswith("campaign_pipeline")
    return message if known else f"{type(exc).__name__}: {message}"


class FriendlyGroup(click.Group):
    """A failing command prints one clear line and the --debug hint instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if ctx.meta.get(DEBUG_KEY):
                raise
            click.echo(f"Error: {one_line_error(exc)} {DEBUG_HINT}", err=True)
            ctx.exit(1)


DEBUG_KEY = "campaign_pipeline.debug"


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Bring Mailchimp campaign response (sends, opens, clicks, bounces, unsubscribes) into Salesforce.

    With no credentials set everything runs against the built-in sandbox APIs and an embedded Postgres.
    """
    ctx.meta[DEBUG_KEY] = debug


@main.group()
def db() -> None:
    """The Postgres everything is stored in (embedded unless CAMPAIGN_PIPELINE_DATABASE_URL is set)."""


@db.command("url")
def db_url() -> None:
    """Print the database URL in use (password hidden), starting the embedded server if needed."""
    from campaign_pipeline.storage.database import DatabaseConfigError, database_url, is_embedded, redact_url

    try:
        url = database_url()
    except DatabaseConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{redact_url(url)}  ({'embedded' if is_embedded() else 'from CAMPAIGN_PIPELINE_DATABASE_URL'})")


@db.command("stop")
def db_stop() -> None:
    """Stop the embedded Postgres (it otherwise keeps running so processes can share it)."""
    from campaign_pipeline.storage.database import data_dir, stop_embedded_postgres

    pgdata = data_dir() / "postgres"
    if stop_embedded_postgres(pgdata):
        click.echo(f"stopped the embedded Postgres in {pgdata}")
    else:
        click.echo(f"no embedded Postgres running in {pgdata}")


@main.group()
def sandbox() -> None:
    """The sandbox Mailchimp account and Salesforce org the pipeline uses when no credentials are set."""


def _sandbox_account():
    from campaign_pipeline.sandbox.resources import (
        SandboxMailchimpResource,
        local_sandbox_account,
        sandbox_state_path_default,
    )

    # The same account the pipeline's resource reads when it runs without a key.
    defaults = SandboxMailchimpResource()
    return local_sandbox_account(sandbox_state_path_default(), defaults.sandbox_members, defaults.sandbox_seed)


@sandbox.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Serve a fresh account of this seed whose clock follows the wall clock, instead of the pipeline's account.",
)
@click.option("--members", type=int, default=2_000, show_default=True, help="Audience size of a --seed account.")
@click.option(
    "--state-path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Share a --seed account's clock and sends with other processes through this JSON file.",
)
def sandbox_serve(host: str, port: int, seed: int | None, members: int, state_path: str | None) -> None:
    """Serve the sandbox Mailchimp Marketing API v3 over HTTP (point a client's host at the printed URL).

    By default it serves the very account the pipeline reads without MAILCHIMP_API_KEY.
    """
    from campaign_pipeline.sandbox.mailchimp_api import serve

    if seed is None:
        if state_path is not None:
            raise click.UsageError("--state-path goes with --seed (the pipeline's account has its own state file)")
        serve(host, port, account=_sandbox_account())
        return
    from campaign_pipeline.sandbox.mailchimp_data import SandboxAccount

    serve(host, port, SandboxAccount(seed=seed, n_members=members, state_path=state_path, follow_wall_clock=True))


@sandbox.command("serve-salesforce")
@click.option("--schema", default="sandbox_salesforce", show_default=True, help="Postgres schema of the org.")
@click.option("--port", default=0, show_default=True, type=int, help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--daily-api-limit", default=15_000, show_default=True, type=int)
def sandbox_serve_salesforce(schema: str, port: int, daily_api_limit: int) -> None:
    """Serve the sandbox Salesforce org over HTTPS until interrupted; prints how to connect as JSON.

    The org's records live in the pipeline's Postgres (schema --schema), so it is the org the pipeline
    writes to when no Salesforce credentials are set.
    """
    import json
    import threading

    from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox

    with SalesforceSandbox(schema=schema, port=port, daily_api_limit=daily_api_limit) as org:
        # The session id is a throwaway credential of a local emulator; printing it is how a user connects.
        click.echo(
            json.dumps(
                {
                    "instance_url": org.instance_url,
                    "session_id": org.session_id,
                    "ca_path": org.ca_path,
                    "api_version": org.api_version,
                }
            )
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


@sandbox.command("bench-salesforce")
@click.option("--members", default=20_000, show_default=True, type=int)
@click.option("--tasks-per-member", default=3, show_default=True, type=int)
def sandbox_bench_salesforce(members: int, tasks_per_member: int) -> None:
    """Measure the sandbox org itself (seed, Bulk upserts, queries) and print the figures as JSON."""
    import json

    from campaign_pipeline.sandbox.salesforce_bench import run

    click.echo(json.dumps(run(members, tasks_per_member)))


@sandbox.command("new-send")
def sandbox_new_send() -> None:
    """Make the sandbox account send one more campaign (the sensor picks it up on its next tick)."""
    click.echo(f"sent campaign {_sandbox_account().simulate_new_send()}")


@sandbox.command("late-activity")
@click.option("--hours", default=48.0, show_default=True, type=float, help="How far to move the sandbox clock.")
def sandbox_late_activity(hours: float) -> None:
    """Move the sandbox clock forward so late opens and clicks appear (re-syncs then find new events)."""
    click.echo(f"{_sandbox_account().simulate_late_activity(hours=hours)} new events are now visible")


@sandbox.command("reset")
@click.confirmation_option(prompt="Delete every state the sandboxes left (live accounts' and orgs' state is kept)?")
def sandbox_reset() -> None:
    """Delete the sandboxes' state: the sandbox account's campaign partitions and their landed data and frames,
    sync ledger rows of the sandbox account or org, sandbox sensor cursors, the sandbox org and the sandbox clock.

    Run it before pointing a deployment that ran on the sandboxes at a live account and org, or to start the
    sandboxes afresh. State of live accounts and orgs is never touched.
    """
    from campaign_pipeline.demo import demo_instance
    from campaign_pipeline.sandbox_reset import reset_sandbox_state

    with demo_instance() as instance:
        report = reset_sandbox_state(instance)
    for line in report.lines():
        click.echo(line)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON: {ok, checks: [{name, ok, detail}]}.")
def check(as_json: bool) -> None:
    """Check the setup before any work: profile, database, Mailchimp key and audience, Salesforce login and
    permissions, every mapped field in the org's describe, and the CampaignMemberStatus labels.

    Exits 1 when a check fails; each FAIL line says what to fix.
    """
    import json

    from campaign_pipeline.preflight import as_json as checks_as_json
    from campaign_pipeline.preflight import run_checks, verdict

    results = run_checks()
    click.echo(json.dumps(checks_as_json(results), indent=2) if as_json else verdict(results))
    if not all(result.ok for result in results):
        raise SystemExit(1)


@main.command()
@click.option(
    "--since",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Campaigns sent on or after this UTC date (YYYY-MM-DD).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Queue at most this many campaigns (oldest first)."
)
@click.option("--list", "list_only", is_flag=True, help="Print what would be queued; add no partition, launch nothing.")
@click.option(
    "--preview",
    is_flag=True,
    help="Launch the backfill as a dry run: its runs carry the run tag campaign_pipeline/preview=true and show what "
    "they would create and update; nothing is written to Salesforce or the ledger.",
)
@click.option(
    "--resync", is_flag=True, help="Queue campaigns already synced too (the ledger still writes only changes)."
)
@click.option(
    "--instance",
    "instance_name",
    default=None,
    metavar="NAME",
    help="The named sync profile (a CampaignSync instance under campaign_pipeline/defs/) to backfill; the default "
    "profile when left out.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def backfill(
    since: Any,
    limit: int | None,
    list_only: bool,
    preview: bool,
    resync: bool,
    instance_name: str | None,
    as_json: bool,
) -> None:
    """Bring in campaigns of the profile's audience sent since a date: add their partitions and launch one Dagster
    backfill that runs them in batches of 20 campaigns (the backfill policy), as the UI would.

    Campaigns already synced, already queued or of another Mailchimp account are left out. The Dagster daemon
    (`dagster dev`) launches the backfill's runs; they show under Overview -> Backfills. `--list` only prints what
    would be queued; `--preview` queues the same as dry runs, which write nothing.
    """
    import json
    from dataclasses import asdict

    from campaign_pipeline.definitions import deployment_profiles
    from campaign_pipeline.demo import demo_instance
    from campaign_pipeline.deployment import choose_deployment
    from campaign_pipeline.history import UnknownInstance, backfill_history, choose_target, format_plan
    from campaign_pipeline.preflight import stop_on_setup_error

    if list_only and preview:
        raise click.UsageError("--list prints what would be queued and --preview queues dry runs: pick one")
    loaded, profiles = deployment_profiles()
    try:
        target, profile = choose_target(profiles, instance_name)
    except UnknownInstance as exc:
        raise click.BadParameter(str(exc), param_hint="--instance") from exc
    deployment = choose_deployment(filter_bots=profile.mailchimp.filter_bots)
    if not list_only:
        # A setup error would fail every queued run the same way: say it now, before anything is queued.
        stop_on_setup_error(profile, deployment)
    with demo_instance() as instance:
        plan = backfill_history(
            since.date(),
            limit=limit,
            preview=preview,
            list_only=list_only,
            resync=resync,
            instance=instance,
            profile=profile,
            mailchimp=deployment.mailchimp,
            defs=loaded,
            target=target,
        )
    click.echo(json.dumps(asdict(plan), indent=2) if as_json else format_plan(plan))


@main.command()
@click.option(
    "--mode",
    type=click.Choice(["campaign", "activity", "campaign_and_activity", "notes", "campaign_totals"]),
    default=None,
    help="Sync mode for this run; overrides the profile's mode.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (keys documented in the README).")
@click.option(
    "--preview",
    is_flag=True,
    help="A dry run: show what each campaign's sync would create, update, skip and fail; write nothing.",
)
def demo(mode: str | None, as_json: bool, preview: bool) -> None:
    """Sync every sandbox campaign end to end and print what landed in Salesforce.

    Uses the embedded Postgres, the sandbox Mailchimp account and the sandbox Salesforce org unless
    credentials are set. Running it again writes nothing new unless new activity arrived.
    """
    import json

    from campaign_pipeline.demo import DatabaseUnavailable, DemoInterrupted, format_summary, run_demo, stderr_progress
    from campaign_pipeline.mailchimp.ownership import PartitionOwnerMismatch
    from campaign_pipeline.mailchimp.sensors import SourceStateMismatch

    try:
        report = run_demo(mode, progress=stderr_progress, preview=preview)
    except DatabaseUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    except (SourceStateMismatch, PartitionOwnerMismatch) as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:
        from campaign_pipeline.run_health import database_outage_message, is_database_outage

        if is_database_outage(exc):  # between runs: reading partitions, frames or the ledger
            raise click.ClickException(database_outage_message(exc, "campaign-pipeline demo")) from exc
        raise
    except DemoInterrupted as exc:
        click.echo(f"campaign-pipeline demo {exc}", err=True)
        # The run's worker thread may be mid-request: leave at once, as the signal asked (128 + signal number).
        sys.stderr.flush()
        os._exit(128 + exc.signum)
    click.echo(json.dumps(report, indent=2, default=str) if as_json else format_summary(report))
    if report["failed_runs"]:
        raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(main())
