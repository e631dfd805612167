"""Pure tests of the desired Enhanced Notes, their links and the email Files (core.content_records)."""

from __future__ import annotations

import base64

import pandas as pd

from campaign_pipeline.core import content_records as content_records
from campaign_pipeline.core.activity_records import note_texts
from campaign_pipeline.sandbox.salesforce_content_rules import note_content_refusal

from .frames import content, events, matches, recipients, report, statuses

PEOPLE = {"ann@x.com": ("00Q5g0000000001AAA", "Lead"), "bob@x.com": ("0035g0000000002AAA", "Contact")}


def _inputs():
    activity = events(
        ("ann@x.com", "click", "2026-03-02 15:06", 'https://example.com/?a=1&b=<2>\'"x"'),
        ("bob@x.com", "open", "2026-03-03 08:00"),
    )
    return statuses(recipients("ann@x.com", "bob@x.com"), activity), activity


def test_note_html_escapes_what_the_note_editor_refuses_and_keeps_unicode() -> None:
    text = pd.Series(['Tom & Jerry\'s <b>"Grüße"</b>\nline two\n\nnext\x07 paragraph'])
    [html] = content_records.note_html(text)
    assert html == (
        "<p>Tom &amp; Jerry&#39;s &lt;b&gt;&quot;Grüße&quot;&lt;/b&gt;<br>line two</p><p>next paragraph</p>"
    )
    # What Salesforce (and the sandbox org) accept as ContentNote.Content.
    assert note_content_refusal(base64.b64encode(html.encode()).decode()) is None
    assert note_content_refusal(base64.b64encode(b"Tom & Jerry").decode()) is not None


def test_content_notes_carry_the_classic_text_as_html_and_links_name_each_person() -> None:
    members, activity = _inputs()
    notes = content_records.desired_content_notes(members, activity, matches(PEOPLE), report())
    classic = note_texts(members, activity, matches(PEOPLE), report())
    assert list(notes["sync_key"]) == list(classic["sync_key"])
    assert "ParentId" not in notes.columns and "Body" not in notes.columns
    for (_, note), (_, text) in zip(notes.iterrows(), classic.iterrows(), strict=True):
        decoded = base64.b64decode(note["Content"]).decode("utf-8")
        assert decoded == content_records.note_html(pd.Series([text["Body"]])).iloc[0]
        assert note["Title"] == text["Title"]
    links = content_records.desired_note_links(notes)
    assert list(links["parent_key"]) == list(notes["sync_key"])
    assert sorted(links["LinkedEntityId"]) == sorted(p[0] for p in PEOPLE.values())
    assert set(links["ShareType"]) == {"V"} and set(links["Visibility"]) == {"AllUsers"}
    assert content_records.file_bytes(notes) == sum(len(base64.b64decode(c)) for c in notes["Content"])


def test_email_files_are_published_to_each_person_and_too_large_ones_are_refused() -> None:
    members, _ = _inputs()
    html = "<html>Grüße</html>"
    files = content_records.desired_email_files(content(html), members, matches(PEOPLE), report())
    assert sorted(files["FirstPublishLocationId"]) == sorted(p[0] for p in PEOPLE.values())
    assert set(files["PathOnClient"]) == {"mailchimp-c1.html"} and set(files["Title"]) == {"mailchimp-c1"}
    assert {base64.b64decode(v).decode() for v in files["VersionData"]} == {html}
    assert content_records.file_bytes(files) == 2 * len(html.encode("utf-8"))
    large = "x" * (content_records.FILE_MAX_BYTES + 1)
    refused = content_records.desired_email_files(content(large), members, matches(PEOPLE), report())
    assert refused["VersionData"].isna().all()
    assert refused["reject_reason"].str.contains("a Salesforce File sent through the REST API holds at most").all()
