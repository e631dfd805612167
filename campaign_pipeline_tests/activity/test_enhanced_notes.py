"""End to end over HTTPS: mode notes with Enhanced Notes and Files (the default), against the sandbox org.

A ContentNote per campaign x person linked by a ContentDocumentLink, the sent email as a ContentVersion published
to the person; updates in place (a changed email is the same document's next version), and every write path
converging to one record per key when Salesforce commits and the answer is lost.
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from typing import Any

import pandas as pd
import pytest

from campaign_pipeline.profile import SyncProfile
from campaign_pipeline.salesforce.engine import sobject_collections
from campaign_pipeline.salesforce.resource import SalesforceClient
from campaign_pipeline.sandbox.resources import sandbox_session

from .frames import content, events, recipients, report

AUDIENCE = ("ann@example.com", "bob@example.com", "cat.mixed@example.com", "dan@example.com", "eve@nowhere.test")
HTML = "<html><body><h1>Spring offer</h1><p>Grüße</p></body></html>"
PROFILE = SyncProfile.model_validate({"mode": "notes"})


def _events() -> pd.DataFrame:
    return events(
        ("ann@example.com", "open", "2026-03-02 15:05"),
        ("ann@example.com", "click", "2026-03-02 15:06", "https://example.com/offer?a=1&b='x'"),
        ("bob@example.com", "open", "2026-03-03 09:30"),
        ("dan@example.com", "bounce", "2026-03-02 15:01", "hard"),
    )


def _decoded(org, record: dict, field: str) -> str:
    """A stored blob field as text (the org's own store holds the base64; REST reads go through blob URLs)."""
    return base64.b64decode(record[field]).decode("utf-8")


def _person_links(org) -> list[dict]:
    people = set(org.person_ids.values())
    return [link for link in org.records("ContentDocumentLink") if link["LinkedEntityId"] in people]


def _notes_by_person(org) -> dict[str, dict]:
    notes = {note["Id"]: note for note in org.records("ContentNote")}
    return {
        link["LinkedEntityId"]: notes[link["ContentDocumentId"]]
        for link in _person_links(org)
        if link["ContentDocumentId"] in notes
    }


def _files_by_person(org) -> dict[str, dict]:
    """The latest version of each File, by the person it was first published to."""
    versions = org.records("ContentVersion")
    first = {v["ContentDocumentId"]: v.get("FirstPublishLocationId") for v in versions if v["VersionNumber"] == "1"}
    return {
        first[v["ContentDocumentId"]]: v
        for v in versions
        if v["IsLatest"] and v["FileType"] == "HTML" and first.get(v["ContentDocumentId"])
    }


def assert_one_of_each_per_person(org) -> None:
    people = set(org.person_ids.values())
    links = Counter((link["LinkedEntityId"], link["ContentDocumentId"]) for link in _person_links(org))
    assert set(links.values()) == {1}
    per_person = Counter(person for person, _ in links)
    # Each person: one note link and one file link, nothing else.
    assert per_person == {person: 2 for person in people}, per_person
    assert len(org.records("ContentNote")) == len(people)
    assert len(org.records("ContentDocument")) == len(people)
    assert set(_notes_by_person(org)) == set(_files_by_person(org)) == people


def test_enhanced_notes_and_files_land_on_each_person_and_update_in_place(activity_org) -> None:
    run = activity_org.sync(PROFILE, recipients(*AUDIENCE), _events(), report(), content(HTML))
    assert run.failures.empty, run.failures
    assert not activity_org.records("Note") and not activity_org.records("Attachment")
    assert_one_of_each_per_person(activity_org)
    ann = _notes_by_person(activity_org)[activity_org.person_ids["ann@example.com"]]
    assert ann["Title"] == "Email response: Test campaign 1 (c1)" and ann["FileType"] == "SNOTE"
    body = _decoded(activity_org, ann, "Content")
    assert body.startswith("<p>Mailchimp campaign Test campaign 1 (c1)</p><p>Sent to ann@example.com on ")
    assert "https://example.com/offer?a=1&amp;b=&#39;x&#39;" in body and "\n" not in body
    links = {
        link["LinkedEntityId"]: link for link in _person_links(activity_org) if link["ContentDocumentId"] == ann["Id"]
    }
    assert links[activity_org.person_ids["ann@example.com"]]["ShareType"] == "V"
    file = _files_by_person(activity_org)[activity_org.person_ids["bob@example.com"]]
    assert file["PathOnClient"] == "mailchimp-c1.html" and file["Title"] == "mailchimp-c1"
    assert _decoded(activity_org, file, "VersionData") == HTML
    expected_bytes = sum(
        len(_decoded(activity_org, n, "Content").encode()) for n in activity_org.records("ContentNote")
    )
    assert run.total("file_bytes") == expected_bytes + 4 * len(HTML.encode())

    again = activity_org.sync(PROFILE, recipients(*AUDIENCE), _events(), report(), content(HTML))
    assert again.write_calls == 0 and again.total("file_bytes") == 0

    # New activity updates the person's note in place; the file is untouched.
    more = pd.concat([_events(), events(("bob@example.com", "open", "2026-03-09 10:00"))], ignore_index=True)
    updated = activity_org.sync(PROFILE, recipients(*AUDIENCE), more, report(), content(HTML))
    assert (updated.outcomes["content_note"].created, updated.outcomes["content_note"].updated) == (0, 1)
    assert updated.outcomes["content_note_link"].unchanged == 4 and updated.outcomes["email_file"].unchanged == 4
    bob = _notes_by_person(activity_org)[activity_org.person_ids["bob@example.com"]]
    assert "Opens: 2" in _decoded(activity_org, bob, "Content")
    assert_one_of_each_per_person(activity_org)

    # A changed email becomes the next version of each person's File, never a new document.
    documents = {d["Id"] for d in activity_org.records("ContentDocument")}
    changed = HTML.replace("Spring", "Summer")
    revised = activity_org.sync(PROFILE, recipients(*AUDIENCE), more, report(), content(changed))
    assert revised.failures.empty, revised.failures
    assert (revised.outcomes["email_file"].created, revised.outcomes["email_file"].updated) == (0, 4)
    assert {d["Id"] for d in activity_org.records("ContentDocument")} == documents
    latest = _files_by_person(activity_org)[activity_org.person_ids["ann@example.com"]]
    assert latest["VersionNumber"] == "2" and _decoded(activity_org, latest, "VersionData") == changed
    document = next(d for d in activity_org.records("ContentDocument") if d["Id"] == latest["ContentDocumentId"])
    assert document["LatestPublishedVersionId"] == latest["Id"]
    assert_one_of_each_per_person(activity_org)


def test_classic_notes_remain_the_other_choice(activity_org) -> None:
    classic = SyncProfile.model_validate({"mode": "notes", "activity": {"notes_format": "classic"}})
    run = activity_org.sync(classic, recipients(*AUDIENCE), _events(), report(), content(HTML))
    assert run.failures.empty, run.failures
    assert len(activity_org.records("Note")) == len(activity_org.records("Attachment")) == 4
    assert not activity_org.records("ContentNote") and not activity_org.records("ContentVersion")


class LosingClient(SalesforceClient):
    """The real client; the org loses its answer (504 after committing) to the first call matching ``lose``."""

    def __init__(self, org: Any, lose: str) -> None:
        super().__init__(
            org.client(),
            target="Salesforce target: SANDBOX org (lost answers)",
            is_sandbox=True,
            reauthenticate=lambda: sandbox_session(org),
            backoff_seconds=0.0,
            max_retries=2,
        )
        self.org, self.lose, self.lost_in = org, lose, ""

    def call(self, kind: str, what: str, send: Any, *, idempotent: bool = True) -> Any:
        if not self.lost_in and re.search(self.lose, what):
            self.lost_in = what
            self.org.faults.lose_next_answers = 1
        return super().call(kind, what, send, idempotent=idempotent)


@pytest.mark.parametrize(
    ("lose", "kind"),
    [
        (r"^create \d+ ContentNote record\(s\)", "content_note"),
        (r"^create \d+ ContentDocumentLink record\(s\)", "content_note_link"),
        (r"^create \d+ ContentVersion record\(s\)", "email_file"),
    ],
)
def test_a_create_whose_answer_is_lost_converges_to_one_note_link_and_file_per_person(activity_org, lose, kind) -> None:
    losing = LosingClient(activity_org.org, lose)
    activity_org.sync(PROFILE, recipients(*AUDIENCE), _events(), report(), content(HTML), client=losing)
    assert losing.lost_in, f"no call matched {lose!r}"
    rerun = activity_org.sync(PROFILE, recipients(*AUDIENCE), _events(), report(), content(HTML))
    assert rerun.failures.empty and not rerun.kind_errors, (rerun.failures, rerun.kind_errors)
    assert_one_of_each_per_person(activity_org)
    # The committed records were adopted by the lookup, not made again.
    assert rerun.outcomes[kind].created == 0 and rerun.outcomes[kind].desired == 4
    assert activity_org.sync(PROFILE, recipients(*AUDIENCE), _events(), report(), content(HTML)).write_calls == 0


@pytest.mark.parametrize("lose", [r"^create \d+ ContentVersion record\(s\)", r"^update \d+ ContentNote record\(s\)"])
def test_an_update_whose_answer_is_lost_lands_once(activity_org, lose) -> None:
    activity_org.sync(PROFILE, recipients(*AUDIENCE), _events(), report(), content(HTML))
    more = pd.concat([_events(), events(("bob@example.com", "open", "2026-03-09 10:00"))], ignore_index=True)
    changed = HTML.replace("Spring", "Summer")
    losing = LosingClient(activity_org.org, lose)
    activity_org.sync(PROFILE, recipients(*AUDIENCE), more, report(), content(changed), client=losing)
    assert losing.lost_in, f"no call matched {lose!r}"
    rerun = activity_org.sync(PROFILE, recipients(*AUDIENCE), more, report(), content(changed))
    assert rerun.failures.empty and not rerun.kind_errors, (rerun.failures, rerun.kind_errors)
    assert_one_of_each_per_person(activity_org)
    # Each File has exactly two versions: the committed next version was recognised, not sent again.
    versions = Counter(
        v["ContentDocumentId"] for v in activity_org.records("ContentVersion") if v["FileType"] == "HTML"
    )
    assert set(versions.values()) == {2}, versions
    assert rerun.outcomes["email_file"].updated == 0
    for file in _files_by_person(activity_org).values():
        assert _decoded(activity_org, file, "VersionData") == changed
    bob = _notes_by_person(activity_org)[activity_org.person_ids["bob@example.com"]]
    assert "Opens: 2" in _decoded(activity_org, bob, "Content")
    assert activity_org.sync(PROFILE, recipients(*AUDIENCE), more, report(), content(changed)).write_calls == 0


def test_a_lost_note_create_next_to_synced_notes_adopts_the_orphan_never_anothers_note(activity_org) -> None:
    # Every note of a campaign has the same title, so the lookup finds the other people's notes too: the
    # orphan left by the lost answer must be the one adopted, and no person's note is linked to someone else.
    activity_org.sync(PROFILE, recipients(*AUDIENCE), _events(), report(), content(HTML))
    eve = activity_org.org.client().Contact.create({"LastName": "eve", "Email": "eve@nowhere.test"})["id"]
    activity_org.person_ids["eve@nowhere.test"] = eve
    losing = LosingClient(activity_org.org, r"^create \d+ ContentNote record\(s\)")
    activity_org.sync(PROFILE, recipients(*AUDIENCE), _events(), report(), content(HTML), client=losing)
    assert losing.lost_in
    orphan = {n["Id"] for n in activity_org.records("ContentNote")} - {
        link["ContentDocumentId"] for link in _person_links(activity_org)
    }
    assert len(orphan) == 1
    rerun = activity_org.sync(PROFILE, recipients(*AUDIENCE), _events(), report(), content(HTML))
    assert rerun.failures.empty and not rerun.kind_errors, (rerun.failures, rerun.kind_errors)
    assert rerun.outcomes["content_note"].created == 0
    assert_one_of_each_per_person(activity_org)
    assert _notes_by_person(activity_org)[eve]["Id"] in orphan
    assert "eve@nowhere.test" in _decoded(activity_org, _notes_by_person(activity_org)[eve], "Content")


def test_files_are_cut_by_payload_size_and_a_big_one_and_its_next_version_go_alone(activity_org, monkeypatch) -> None:
    # Files never go by Bulk (VersionData is a blob): Collections calls are cut by body size, and a File bigger
    # than a whole call goes alone through the sObject resource, its first version and its next one alike.
    monkeypatch.setattr(sobject_collections, "COLLECTION_MAX_BODY_BYTES", 30_000)
    profile = SyncProfile.model_validate({"mode": "notes", "sync": {"bulk_threshold": 2}})
    big = "<p>" + "b" * 40_000 + "</p>"  # ~53 KB in base64: more than a whole call
    run = activity_org.sync(profile, recipients(*AUDIENCE), _events(), report(), content(big))
    assert run.failures.empty and not run.kind_errors, (run.failures, run.kind_errors)
    assert run.outcomes["email_file"].api == "collections" and run.outcomes["content_note_link"].api == "bulk"
    writes = [(method, path.split("/v", 1)[1].split("/", 1)[1]) for method, path, _ in activity_org.org.call_log]
    assert writes.count(("POST", "sobjects/ContentVersion")) == 4
    bigger = big.replace("</p>", "!</p>")
    activity_org.org.call_log.clear()
    revised = activity_org.sync(profile, recipients(*AUDIENCE), _events(), report(), content(bigger))
    assert revised.outcomes["email_file"].updated == 4
    writes = [(method, path.split("/v", 1)[1].split("/", 1)[1]) for method, path, _ in activity_org.org.call_log]
    assert writes.count(("POST", "sobjects/ContentVersion")) == 4
    assert {_decoded(activity_org, f, "VersionData") for f in _files_by_person(activity_org).values()} == {bigger}
    assert_one_of_each_per_person(activity_org)


@pytest.mark.slow
@pytest.mark.parametrize("notes_format", ["enhanced", "classic"])
def test_files_whose_sum_exceeds_one_requests_limit_sync_in_requests_under_it(activity_org, notes_format) -> None:
    # Four people's copies of a 10.5 MB email: 56 MB of base64 in all, more than one JSON request may carry (the org
    # refuses a body over 50 MB: sandbox_salesforce/test_request_size.py). The engine's cut keeps every call under.
    from campaign_pipeline.sandbox.salesforce_routes import MAX_JSON_REQUEST_BYTES

    profile = SyncProfile.model_validate({"mode": "notes", "activity": {"notes_format": notes_format}})
    big = "<html><body><p>" + "w" * 10_500_000 + "</p></body></html>"
    people = len(activity_org.person_ids)
    kind, sobject, blob = (
        ("email_file", "ContentVersion", "VersionData")
        if notes_format == "enhanced"
        else ("attachment", "Attachment", "Body")
    )
    run = activity_org.sync(profile, recipients(*AUDIENCE), _events(), report(), content(big))
    assert run.failures.empty and not run.kind_errors, (run.failures, run.kind_errors)
    written = [r for r in activity_org.records(sobject) if len(r.get(blob) or "") > 10_000_000]
    assert len(written) == people == 4
    assert sum(len(r[blob]) for r in written) > MAX_JSON_REQUEST_BYTES
    assert {_decoded(activity_org, r, blob) for r in written} == {big}
    outcome = run.outcomes[kind]
    assert outcome.created == people and outcome.api == "collections"
    assert outcome.file_bytes >= people * len(big)
    # Nothing new: not one write (the ledger holds every File's hash).
    assert activity_org.sync(profile, recipients(*AUDIENCE), _events(), report(), content(big)).write_calls == 0


def test_the_documents_of_new_files_are_read_once_for_all_their_calls(activity_org, monkeypatch) -> None:
    # Each File in a call of its own (four calls), their ContentDocumentIds in one query after the last call.
    monkeypatch.setattr(sobject_collections, "COLLECTION_MAX_BODY_BYTES", 30_000)
    queries: list[str] = []
    real_query_all = SalesforceClient.query_all

    def spying_query_all(self: SalesforceClient, soql: str, *args: Any, **kwargs: Any) -> Any:
        queries.append(soql)
        return real_query_all(self, soql, *args, **kwargs)

    monkeypatch.setattr(SalesforceClient, "query_all", spying_query_all)
    big = "<p>" + "d" * 40_000 + "</p>"
    run = activity_org.sync(PROFILE, recipients(*AUDIENCE), _events(), report(), content(big))
    assert run.failures.empty and not run.kind_errors, (run.failures, run.kind_errors)
    writes = [(method, path.split("/v", 1)[1].split("/", 1)[1]) for method, path, _ in activity_org.org.call_log]
    assert writes.count(("POST", "sobjects/ContentVersion")) == 4
    document_reads = [soql for soql in queries if "FROM ContentVersion WHERE Id IN" in soql]
    assert len(document_reads) == 1 and document_reads[0].count("'") == 8  # the four new versions' Ids
    assert run.outcomes["email_file"].created == 4 and run.total("file_bytes") > 4 * len(big)
    assert_one_of_each_per_person(activity_org)
    assert activity_org.sync(PROFILE, recipients(*AUDIENCE), _events(), report(), content(big)).write_calls == 0
