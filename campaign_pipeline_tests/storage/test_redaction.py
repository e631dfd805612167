"""Database passwords never printed: every form a URL or DSN can take, in errors, `db url`, logs and metadata."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from campaign_pipeline.cli import main
from campaign_pipeline.storage import database

SECRET = "s3cr3t-Pw"
# (form, configured value, the secret as it may appear decoded)
FORMS = [
    ("url", f"postgresql://app:{SECRET}@127.0.0.1:1/nowhere", SECRET),
    ("url with driver", f"postgresql+psycopg2://app:{SECRET}@127.0.0.1:1/nowhere", SECRET),
    ("url without user", f"postgresql://:{SECRET}@127.0.0.1:1/nowhere", SECRET),
    ("url without scheme", f"app:{SECRET}@127.0.0.1:1/nowhere", SECRET),
    ("keyword dsn", f"host=127.0.0.1 port=1 user=app password={SECRET} dbname=nowhere", SECRET),
    ("keyword dsn quoted", f"host=127.0.0.1 port=1 user=app password='{SECRET} x' dbname=nowhere", SECRET),
    ("query parameter", f"postgresql://app@127.0.0.1:1/nowhere?password={SECRET}&sslmode=disable", SECRET),
    ("percent-encoded", "postgresql://app:p%40ss%2F" + SECRET + "@127.0.0.1:1/nowhere", "p@ss/" + SECRET),
    ("unencoded @ in password", f"postgresql://app:p@{SECRET}@127.0.0.1:1/nowhere", SECRET),
]
IDS = [form for form, _, _ in FORMS]


def assert_hidden(text: str, decoded: str) -> None:
    assert SECRET not in text and decoded not in text, text
    assert "***" in text, text


@pytest.mark.parametrize(("form", "value", "decoded"), FORMS, ids=IDS)
def test_redact_url_hides_every_form(form, value, decoded):
    assert_hidden(database.redact_url(value), decoded)
    assert_hidden(database.redact_url(f"Cannot use {database.DATABASE_URL_ENV}={value}: refused"), decoded)


@pytest.mark.parametrize(("form", "value", "decoded"), FORMS, ids=IDS)
def test_connection_errors_hide_every_form(form, value, decoded, monkeypatch, caplog):
    monkeypatch.setenv(database.DATABASE_URL_ENV, value)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(database.DatabaseConfigError) as info:
        database.check_connection(database.database_url())
    assert_hidden(str(info.value), decoded)
    assert SECRET not in caplog.text and decoded not in caplog.text


@pytest.mark.parametrize(("form", "value", "decoded"), FORMS, ids=IDS)
def test_db_url_command_hides_every_form(form, value, decoded, monkeypatch):
    monkeypatch.setenv(database.DATABASE_URL_ENV, value)
    result = CliRunner().invoke(main, ["db", "url"])
    assert_hidden(result.output, decoded)


def test_a_driver_message_quoting_the_decoded_password_is_scrubbed():
    url = "postgresql://app:p%40ss%2Fw0rd@db/app"
    assert database.redact_url("FATAL: bad password p@ss/w0rd for app", url) == "FATAL: bad password *** for app"


def test_keyword_dsn_is_accepted_as_the_same_server():
    url = database.libpq_url("host=db.internal port=6432 user=app password='s3 cr@t' dbname=crm sslmode=require")
    assert url == "postgresql://app:s3%20cr%40t@db.internal:6432/crm?sslmode=require"


def test_a_malformed_dsn_is_refused_without_its_password():
    with pytest.raises(database.DatabaseConfigError) as info:
        database.libpq_url(f"host=db password='{SECRET}")
    assert_hidden(str(info.value), SECRET)
    assert "keyword DSN" in str(info.value)


def test_ordinary_text_is_left_alone():
    text = "member ann@example.com: bounced at 12:30, see postgresql://app@db/app"
    assert database.redact_url(text) == text
