"""The funnel picture in campaign_totals' metadata is a real PNG of the numbers it is given."""

import base64

import pandas as pd

from campaign_pipeline.metrics.charts import funnel_metadata, funnel_png

TOTALS = pd.Series({"emails_sent": 5000, "delivered": 4931, "unique_opens": 1471, "unique_subscriber_clicks": 145})
STATUSES = pd.Series({"Clicked": 145, "Opened": 1300, "Bounced": 69, "Unsubscribed": 10, "Sent": 3476})


def test_funnel_is_a_png_that_changes_with_the_numbers():
    png = funnel_png(TOTALS, STATUSES, "Newsletter")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert funnel_png(TOTALS.replace(145, 900), STATUSES, "Newsletter") != png


def test_empty_campaign_still_draws():
    zeros = pd.Series(0, index=TOTALS.index)
    assert funnel_png(zeros, pd.Series(dtype="int64"), "Empty").startswith(b"\x89PNG")


def test_metadata_embeds_the_png_as_markdown_image():
    markdown = funnel_metadata(TOTALS, STATUSES, "Newsletter").value
    prefix = "![campaign funnel](data:image/png;base64,"
    assert markdown.startswith(prefix) and markdown.endswith(")")
    assert base64.b64decode(markdown[len(prefix) : -1]).startswith(b"\x89PNG")
