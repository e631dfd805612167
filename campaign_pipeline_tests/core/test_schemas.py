"""The pandera models refuse malformed frames loudly and accept what core/ produces."""

from __future__ import annotations

import pandas as pd
import pandera.errors
import pytest

from campaign_pipeline.core import schemas
from campaign_pipeline.core.metrics import campaign_totals, member_statuses
from campaign_pipeline_tests.core.frames import events, recipients, report

MODELS = [
    schemas.RawEmailEvents,
    schemas.CampaignRecipients,
    schemas.MailchimpCampaignReport,
    schemas.MemberStatuses,
    schemas.CampaignTotals,
]


def good_events() -> pd.DataFrame:
    return events(
        ("ann@example.com", "open", "2024-03-01 10:00"),
        ("ann@example.com", "click", "2024-03-01 10:01", "https://x.example"),
        ("bob@example.com", "bounce", "2024-03-01 09:01", "hard"),
    )


def refused(model, frame: pd.DataFrame) -> str:
    with pytest.raises(pandera.errors.SchemaErrors) as failure:
        model.validate(frame, lazy=True)
    return str(failure.value)


@pytest.mark.parametrize("model", MODELS)
def test_empty_frames_of_every_model_validate(model):
    model.validate(schemas.empty_frame(model))


def test_literal_inputs_and_core_outputs_validate():
    schemas.RawEmailEvents.validate(good_events())
    schemas.CampaignRecipients.validate(recipients(("ann@example.com",), ("bob@example.com", "hard")))
    schemas.MailchimpCampaignReport.validate(report())
    statuses = member_statuses(recipients(("ann@example.com",)), good_events())
    schemas.MemberStatuses.validate(statuses)
    schemas.CampaignTotals.validate(campaign_totals(statuses, report()))


def test_unknown_action_is_refused():
    frame = good_events()
    frame.loc[0, "action"] = "forward"
    assert "forward" in refused(schemas.RawEmailEvents, frame)


def test_duplicate_event_id_is_refused():
    frame = good_events()
    frame.loc[1, "event_id"] = frame.loc[0, "event_id"]
    assert "event_id" in refused(schemas.RawEmailEvents, frame)


def test_naive_timestamps_are_refused():
    frame = good_events()
    frame["timestamp"] = frame["timestamp"].dt.tz_localize(None)
    assert "timestamp" in refused(schemas.RawEmailEvents, frame)


def test_url_on_an_open_and_bounce_type_on_a_click_are_refused():
    frame = good_events()
    frame.loc[0, "url"] = "https://x.example"
    frame.loc[1, "bounce_type"] = "hard"
    message = refused(schemas.RawEmailEvents, frame)
    assert "url is only set on click events" in message
    assert "bounce_type is only set on bounce events" in message


def test_email_id_must_be_an_md5_hash():
    frame = good_events()
    frame.loc[0, "email_id"] = "Ann@Example.com"
    assert "email_id" in refused(schemas.RawEmailEvents, frame)


def test_recipient_twice_and_unknown_send_status_are_refused():
    frame = recipients(("ann@example.com",), ("bob@example.com",))
    frame.loc[1, "email_id"] = frame.loc[0, "email_id"]
    frame.loc[0, "send_status"] = "delivered"
    message = refused(schemas.CampaignRecipients, frame)
    assert "delivered" in message and "email_id" in message


def test_member_status_outside_the_five_is_refused():
    frame = member_statuses(recipients(("ann@example.com",)), good_events())
    frame.loc[0, "latest_status"] = "Responded"
    assert "Responded" in refused(schemas.MemberStatuses, frame)


def test_member_statuses_refuse_extra_columns():
    frame = member_statuses(recipients(("ann@example.com",)), good_events()).assign(extra=1)
    assert "extra" in refused(schemas.MemberStatuses, frame)


def test_member_metric_flags_must_agree_with_counts():
    frame = member_statuses(recipients(("ann@example.com",)), good_events())
    frame.loc[0, "was_opened"] = False
    assert "was_opened / unique_opens / total_opens disagree" in refused(schemas.MemberStatuses, frame)


def test_totals_with_delivered_off_or_uniques_above_totals_are_refused():
    statuses = member_statuses(recipients(("ann@example.com",), ("bob@example.com",)), good_events())
    totals = campaign_totals(statuses, report())
    totals.loc[0, "delivered"] = 7
    totals.loc[0, "unique_opens"] = 5
    message = refused(schemas.CampaignTotals, totals)
    assert "delivered must equal" in message and "unique counts cannot exceed" in message
