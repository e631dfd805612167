"""Campaign partition keys: send date, title slug and campaign id; sortable, recoverable, safe for Dagster."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from dagster._core.definitions.partitions.utils.base import INVALID_PARTITION_SUBSTRINGS

from campaign_pipeline.core.campaign_keys import (
    SLUG_MAX_CHARS,
    CampaignKeyError,
    campaign_id_from_key,
    campaign_partition_key,
    is_bare_campaign_id,
    keys_by_campaign_id,
    title_slug,
)


def test_key_reads_send_date_title_and_id():
    sent = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    key = campaign_partition_key(sent, "Newsletter #3: Last chance!", "7174cc3265")
    assert key == "2026-11-03_newsletter-3-last-chance_7174cc3265"
    assert campaign_id_from_key(key) == "7174cc3265"


def test_send_date_is_the_utc_date():
    late_evening_in_new_york = datetime(2026, 11, 3, 22, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert campaign_partition_key(late_evening_in_new_york, "x", "abc").startswith("2026-11-04_")


def test_keys_sort_by_send_date_whatever_the_titles():
    sends = [
        (datetime(2026, 12, 1, tzinfo=UTC), "Aardvark sale", "zz1"),
        (datetime(2025, 12, 31, 23, 59, tzinfo=UTC), "Zebra news", "aa9"),
        (datetime(2026, 2, 10, tzinfo=UTC), "Mid winter", "mm5"),
    ]
    keys = [campaign_partition_key(*send) for send in sends]
    by_send = [campaign_partition_key(*send) for send in sorted(sends)]
    assert sorted(keys) == by_send


def test_slug_is_ascii_words_cut_at_a_word_boundary():
    assert title_slug("Welcome series — email 2") == "welcome-series-email-2"
    assert title_slug("Zoë's Café: Ümlauts") == "zoe-s-cafe-umlauts"
    assert title_slug("  ") == title_slug(None) == title_slug("日本語") == "untitled"
    long = title_slug("The quarterly product update for customers in every region of the world")
    assert len(long) <= SLUG_MAX_CHARS and not long.endswith("-")
    assert long == "the-quarterly-product-update-for"
    assert title_slug("x" * 100) == "x" * SLUG_MAX_CHARS


@pytest.mark.parametrize(
    "title", ["a, b | c", "dots... and more", "tab\there\nnewline", "under_score_title", "[brackets]", "a/b\\c"]
)
def test_keys_hold_only_characters_dagster_accepts_and_parse_back(title):
    key = campaign_partition_key(datetime(2026, 1, 2, tzinfo=UTC), title, "c0ffee42")
    assert not any(bad in key for bad in [*INVALID_PARTITION_SUBSTRINGS, ",", "|", "[", "]", "/", " "])
    assert key.count("_") == 2
    assert campaign_id_from_key(key) == "c0ffee42"


def test_bare_campaign_ids_of_before_resolve_to_themselves():
    assert campaign_id_from_key("d3452a1881") == "d3452a1881"
    assert is_bare_campaign_id("d3452a1881")
    assert not is_bare_campaign_id("2026-11-03_newsletter_d3452a1881")


@pytest.mark.parametrize("key", ["", "2026-11-03_newsletter_", "2026-11-03__abc", "not a key", "2026-11-03_x_a-b"])
def test_other_keys_are_refused_naming_the_key(key):
    with pytest.raises(CampaignKeyError, match="is not a campaign key"):
        campaign_id_from_key(key)


def test_building_a_key_refuses_a_bad_id_or_a_naive_time():
    with pytest.raises(CampaignKeyError, match="not a Mailchimp campaign id"):
        campaign_partition_key(datetime(2026, 1, 1, tzinfo=UTC), "t", "bad_id")
    with pytest.raises(CampaignKeyError, match="no time zone"):
        campaign_partition_key(datetime(2026, 1, 1), "t", "abc")


def test_campaign_id_decides_identity_and_a_dated_key_wins_over_a_bare_one():
    keys = ["abc", "2026-01-01_old-title_abc", "2026-01-02_other_def", "ghi", "an unrelated key"]
    assert keys_by_campaign_id(keys) == {"abc": "2026-01-01_old-title_abc", "def": "2026-01-02_other_def", "ghi": "ghi"}
