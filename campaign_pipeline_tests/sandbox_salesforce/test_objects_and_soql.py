"""Unit tests of the org's metadata helpers and its SOQL parser (no server, no database)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simple_salesforce import format_soql

from campaign_pipeline.sandbox.salesforce_objects import (
    OBJECTS,
    coerce_value,
    make_record_id,
    normalize_id,
    object_of_id,
)
from campaign_pipeline.sandbox.salesforce_soql import (
    BoolOp,
    Comparison,
    InList,
    Like,
    SoqlError,
    StringLiteral,
    compile_condition,
    parse_soql,
)


def test_record_ids_have_real_prefixes_and_a_valid_case_checksum():
    prefixes = {name: spec.key_prefix for name, spec in OBJECTS.items()}
    assert prefixes["Contact"] == "003" and prefixes["Lead"] == "00Q" and prefixes["Campaign"] == "701"
    assert prefixes["CampaignMember"] == "00v" and prefixes["CampaignMemberStatus"] == "01Y"
    assert prefixes["Task"] == "00T" and prefixes["Note"] == "002" and prefixes["Attachment"] == "00P"
    record_id = make_record_id("00Q", 123456)
    assert len(record_id) == 18 and object_of_id(record_id) == "Lead"
    # The 15-character form normalizes to the same 18-character Id; a wrong checksum is refused.
    assert normalize_id(record_id[:15]) == record_id
    assert normalize_id(record_id[:15] + "ZZZ") is None
    assert normalize_id("not-an-id") is None


def test_known_salesforce_id_checksum():
    # Salesforce's documented example: 001A0000006Vm9r -> 001A0000006Vm9rIAC
    assert normalize_id("001A0000006Vm9r") == "001A0000006Vm9rIAC"


def test_ids_sort_in_creation_order():
    ids = [make_record_id("003", n) for n in (1, 61, 62, 3843, 10**6)]
    assert ids == sorted(ids)


def test_quoted_email_round_trips_through_format_soql():
    email = "o'brien\\x@example.com"
    query = parse_soql(format_soql("SELECT Id FROM Contact WHERE Email = {}", email))
    assert isinstance(query.where, Comparison)
    assert isinstance(query.where.value, StringLiteral) and query.where.value.value == email


def test_injection_through_a_value_stays_a_value():
    hostile = "x' OR Email != 'y"
    query = parse_soql(format_soql("SELECT Id FROM Contact WHERE Email = {}", hostile))
    assert isinstance(query.where, Comparison)
    assert query.where.value.value == hostile  # one comparison, no OR


def test_unescaped_quote_is_malformed():
    with pytest.raises(SoqlError) as error:
        parse_soql("SELECT Id FROM Contact WHERE Email = 'o'brien@example.com'")
    assert error.value.error_code == "MALFORMED_QUERY"


@pytest.mark.parametrize(
    "soql, code",
    [
        ("SELECT Id FROM Contact WHERE Emial = 'a'", "INVALID_FIELD"),
        ("SELECT Nope FROM Contact", "INVALID_FIELD"),
        ("SELECT Id FROM Contactz", "INVALID_TYPE"),
        ("SELECT Id Contact", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE Email = 'a' AND LastName = 'b' OR FirstName = 'c'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE Email = 'unterminated", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE Email = 'bad \\q escape'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE IsConverted = 'false'", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact LIMIT", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE Id = 'abc'", "INVALID_QUERY_FILTER_OPERATOR"),
        # Long text areas cannot be filtered or sorted (Task.Description, Note.Body).
        ("SELECT Id FROM Task WHERE Description = 'https://x'", "INVALID_FIELD"),
        ("SELECT Id FROM Note ORDER BY Body", "INVALID_FIELD"),
    ],
)
def test_refused_queries_carry_salesforce_error_codes(soql, code):
    with pytest.raises(SoqlError) as error:
        parse_soql(soql)
    assert error.value.error_code == code


def test_parses_where_in_like_boolean_limit_and_order():
    query = parse_soql(
        "select id, email from lead where (Email in ('A@x.com', 'b@x.com') or Email like 'c\\_%') "
        "and IsConverted = false order by CreatedDate desc limit 10"
    )
    assert [f.name for f in query.fields] == ["Id", "Email"]  # canonical names whatever the case
    assert query.limit == 10 and query.order_by[0].descending
    assert isinstance(query.where, BoolOp) and query.where.operator == "AND"
    inner = query.where.items[0]
    assert isinstance(inner, BoolOp) and inner.operator == "OR"
    assert isinstance(inner.items[0], InList) and isinstance(inner.items[1], Like)
    assert inner.items[1].pattern.like_pattern == "c\\_%"


def test_email_comparison_compiles_case_insensitive_and_id_exact():
    query = parse_soql("SELECT Id FROM Contact WHERE Email = 'MiXeD@Example.COM' AND AccountId = '001A0000006Vm9r'")
    params: list = []
    sql = compile_condition(query.sobject, query.where, params)
    assert "lower(" in sql and "mixed@example.com" in params
    assert "001A0000006Vm9rIAC" in params  # Ids compare exactly, in their 18-character form


def test_coerce_value_types():
    contact = OBJECTS["Contact"]
    campaign = OBJECTS["Campaign"]
    assert coerce_value(contact.field("HasOptedOutOfEmail"), "true", from_csv=True) is True
    assert coerce_value(campaign.field("NumberSent"), "12", from_csv=True) == 12.0
    assert coerce_value(campaign.field("StartDate"), "2024-05-01", from_csv=False) == "2024-05-01"
    with pytest.raises(ValueError):
        coerce_value(campaign.field("NumberSent"), "twelve", from_csv=True)
    with pytest.raises(ValueError):
        coerce_value(contact.field("HasOptedOutOfEmail"), "maybe", from_csv=False)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_any_value_quoted_by_format_soql_parses_back_to_itself(value):
    query = parse_soql(format_soql("SELECT Id FROM Contact WHERE Email = {} AND LastName != {}", value, value))
    assert isinstance(query.where, BoolOp) and len(query.where.items) == 2
    assert all(item.value.value == value for item in query.where.items)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab%_\\'", max_size=12))
def test_like_escapes_make_wildcards_literal(value):
    query = parse_soql(format_soql("SELECT Id FROM Contact WHERE Email LIKE '{:like}%'", value))
    assert isinstance(query.where, Like)
    pattern = query.where.pattern.like_pattern
    # Unescaping the Postgres LIKE pattern gives back the value, followed by the one real wildcard.
    literal, index = [], 0
    while index < len(pattern):
        if pattern[index] == "\\":
            literal.append(pattern[index + 1])
            index += 2
        else:
            assert pattern[index] not in "%_" or index == len(pattern) - 1
            literal.append(pattern[index])
            index += 1
    assert "".join(literal) == value + "%"
