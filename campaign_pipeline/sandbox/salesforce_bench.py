"""Throughput of the sandbox org itself: `campaign-pipeline sandbox bench-salesforce --members N` prints JSON."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from simple_salesforce import format_soql

from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox, seed_people

BENCH_SCHEMA = "sandbox_salesforce_bench"


def _timed(action: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, round(time.perf_counter() - started, 3)


def run(members: int, tasks_per_member: int) -> dict[str, Any]:
    """Seed people, then push members (insert, then update) and Tasks through Bulk 2.0 and read them back."""
    from campaign_pipeline.storage.database import get_engine

    engine = get_engine()
    figures: dict[str, Any] = {"members": members, "tasks": members * tasks_per_member}
    with (
        SalesforceSandbox(engine, schema=BENCH_SCHEMA, daily_api_limit=1_000_000) as org,
        tempfile.TemporaryDirectory() as folder,
    ):
        org.reset()
        sf = org.client()
        emails = [f"bench{i}@example.com" for i in range(members)]
        _, figures["seed_seconds"] = _timed(lambda: seed_people(org, emails, coverage=1.0))
        people = [r["Id"] for r in org.records("Contact")] + [r["Id"] for r in org.records("Lead")]
        people = people[:members]
        campaign_id = sf.Campaign.create({"Name": "Bench"})["id"]
        member_csv = Path(folder) / "members.csv"
        lines = ["CampaignId,ContactId,LeadId,Status,Mailchimp_Key__c,Total_Opens__c"]
        for index, person in enumerate(people):
            contact, lead = (person, "") if person.startswith("003") else ("", person)
            lines.append(f"{campaign_id},{contact},{lead},Sent,m{index},1")
        member_csv.write_text("\n".join(lines) + "\n")
        inserted, figures["member_insert_seconds"] = _timed(
            lambda: sf.bulk2.CampaignMember.upsert(
                csv_file=str(member_csv), external_id_field="Mailchimp_Key__c", wait=0.05
            )
        )
        updated, figures["member_update_seconds"] = _timed(
            lambda: sf.bulk2.CampaignMember.upsert(
                csv_file=str(member_csv), external_id_field="Mailchimp_Key__c", wait=0.05
            )
        )
        figures["member_failures"] = sum(int(r["numberRecordsFailed"]) for r in inserted + updated)
        read_back, figures["member_query_seconds"] = _timed(
            lambda: sf.query_all(
                format_soql("SELECT Id, Mailchimp_Key__c FROM CampaignMember WHERE CampaignId = {}", campaign_id)
            )
        )
        figures["members_read"] = len(read_back["records"])
        task_csv = Path(folder) / "tasks.csv"
        task_lines = ["WhoId,WhatId,Subject,Status,Mailchimp_Event_Id__c,Description"]
        for index in range(figures["tasks"]):
            task_lines.append(f"{people[index % len(people)]},{campaign_id},Opened email,Completed,e{index},opened")
        task_csv.write_text("\n".join(task_lines) + "\n")
        task_jobs, figures["task_insert_seconds"] = _timed(
            lambda: sf.bulk2.Task.upsert(
                csv_file=str(task_csv), external_id_field="Mailchimp_Event_Id__c", wait=0.05, batch_size=150_000
            )
        )
        figures["task_failures"] = sum(int(r["numberRecordsFailed"]) for r in task_jobs)
        sample = emails[:150]
        _, figures["email_in_query_seconds"] = _timed(
            lambda: sf.query_all(format_soql("SELECT Id, Email FROM Contact WHERE Email IN {}", sample))
        )
        figures["api_calls"] = org.api_calls_used()
        org.reset()
    return figures
