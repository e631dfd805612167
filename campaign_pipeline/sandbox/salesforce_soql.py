"""The sandbox org's SOQL subset: a tokenizer and parser, and a compiler to SQL over the jsonb records table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Union

from campaign_pipeline.sandbox.salesforce_objects import (
    NUMBER_TYPES,
    OBJECTS,
    REFERENCE_TYPES,
    TEXT_TYPES,
    FieldSpec,
    ObjectSpec,
    format_datetime,
    normalize_id,
    object_spec,
    parse_datetime,
)


class SoqlError(Exception):
    """A query Salesforce would refuse, with its error code (MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE...)."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True)
class StringLiteral:
    value: str  # the decoded text
    like_pattern: str  # the same text as a Postgres LIKE pattern (backslash escapes)


@dataclass(frozen=True)
class Token:
    kind: str  # word, string, number, datetime, date, op, lparen, rparen, comma, end
    text: str
    position: int
    literal: StringLiteral | None = None


_SIMPLE_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)")
_DATE = re.compile(r"\d{4}-\d\d-\d\d(?![\dT])")
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_OPERATORS = ("!=", "<>", "<=", ">=", "=", "<", ">")


def _read_string(text: str, start: int) -> tuple[StringLiteral, int]:
    """Decode a quoted literal starting at text[start] == "'"; returns the literal and the index after it."""
    decoded: list[str] = []
    pattern: list[str] = []
    index = start + 1
    while index < len(text):
        char = text[index]
        if char == "'":
            return StringLiteral("".join(decoded), "".join(pattern)), index + 1
        if char == "\\":
            if index + 1 >= len(text):
                break
            escaped = text[index + 1]
            if escaped in _SIMPLE_ESCAPES:
                decoded.append(_SIMPLE_ESCAPES[escaped])
                pattern.append("\\\\" if escaped == "\\" else _SIMPLE_ESCAPES[escaped])
            elif escaped in "%_":
                # \% and \_ are literal only inside LIKE patterns; elsewhere they keep the backslash.
                decoded.append("\\" + escaped)
                pattern.append("\\" + escaped)
            elif escaped == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[index + 2 : index + 6]):
                char_value = chr(int(text[index + 2 : index + 6], 16))
                decoded.append(char_value)
                pattern.append("\\\\" if char_value == "\\" else char_value)
                index += 6
                continue
            else:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"Invalid string literal '{text[start : index + 2]}'. Illegal character sequence '\\{escaped}' in string literal.",
                )
            index += 2
            continue
        decoded.append(char)
        pattern.append(char)
        index += 1
    raise SoqlError("MALFORMED_QUERY", f"unexpected token: unterminated string literal at position {start}")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
            continue
        if char == "'":
            literal, end = _read_string(text, index)
            tokens.append(Token("string", text[index:end], index, literal))
            index = end
            continue
        if char in "(),":
            tokens.append(Token({"(": "lparen", ")": "rparen", ",": "comma"}[char], char, index))
            index += 1
            continue
        operator = next((op for op in _OPERATORS if text.startswith(op, index)), None)
        if operator:
            tokens.append(Token("op", operator, index))
            index += len(operator)
            continue
        for kind, regex in (("datetime", _DATETIME), ("date", _DATE), ("number", _NUMBER), ("word", _WORD)):
            match = regex.match(text, index)
            if match:
                tokens.append(Token(kind, match.group(0), index))
                index = match.end()
                break
        else:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{char}' at position {index}")
    tokens.append(Token("end", "", len(text)))
    return tokens


# --- syntax tree -------------------------------------------------------------------------------

Literal = Union[StringLiteral, float, int, bool, None, "DateLiteral"]


@dataclass(frozen=True)
class DateLiteral:
    text: str  # normalized: YYYY-MM-DD for dates, Salesforce wire format for datetimes
    is_datetime: bool


@dataclass(frozen=True)
class Comparison:
    field: FieldSpec
    operator: str
    value: Literal


@dataclass(frozen=True)
class InList:
    field: FieldSpec
    values: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class Like:
    field: FieldSpec
    pattern: StringLiteral


@dataclass(frozen=True)
class BoolOp:
    operator: str  # AND / OR
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Comparison | InList | Like | BoolOp | Not


@dataclass(frozen=True)
class OrderItem:
    field: FieldSpec
    descending: bool
    nulls_last: bool


@dataclass(frozen=True)
class SoqlQuery:
    sobject: ObjectSpec
    fields: tuple[FieldSpec, ...]
    count_only: bool
    where: Condition | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None


_KEYWORDS = frozenset(
    {
        "select",
        "from",
        "where",
        "and",
        "or",
        "not",
        "in",
        "like",
        "limit",
        "offset",
        "order",
        "by",
        "asc",
        "desc",
        "nulls",
        "first",
        "last",
        "null",
        "true",
        "false",
    }
)


class _Parser:
    def __init__(self, text: str, objects: dict[str, ObjectSpec]) -> None:
        self.text = text
        self.objects = objects
        self.tokens = tokenize(text)
        self.index = 0
        self.sobject: ObjectSpec | None = None

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def is_word(self, *words: str) -> bool:
        return self.current.kind == "word" and self.current.text.lower() in words

    def expect_word(self, word: str) -> None:
        if not self.is_word(word):
            self.unexpected()
        self.advance()

    def unexpected(self) -> None:
        token = self.current
        shown = token.text or "<EOF>"
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{shown}' at position {token.position}")

    def parse(self) -> SoqlQuery:
        self.expect_word("select")
        selected: list[Token] = []
        count_only = False
        if self.is_word("count") and self.tokens[self.index + 1].kind == "lparen":
            self.advance()
            self.advance()
            if self.current.kind != "rparen":
                raise SoqlError("MALFORMED_QUERY", "only COUNT() is supported by the sandbox org")
            self.advance()
            count_only = True
        else:
            while True:
                if self.current.kind != "word" or self.current.text.lower() in _KEYWORDS:
                    self.unexpected()
                selected.append(self.advance())
                if self.current.kind != "comma":
                    break
                self.advance()
        self.expect_word("from")
        if self.current.kind != "word":
            self.unexpected()
        object_token = self.advance()
        spec = object_spec(object_token.text, self.objects)
        if spec is None:
            raise SoqlError(
                "INVALID_TYPE",
                f"sObject type '{object_token.text}' is not supported. If you are attempting to use a custom "
                "object, be sure to append the '__c' after the entity name.",
            )
        self.sobject = spec
        fields = tuple(self.resolve_field(token) for token in selected)
        where = None
        if self.is_word("where"):
            self.advance()
            where = self.parse_condition()
        order_by: list[OrderItem] = []
        if self.is_word("order"):
            self.advance()
            self.expect_word("by")
            while True:
                if self.current.kind != "word":
                    self.unexpected()
                order_field = self.resolve_filter_field(self.advance(), "sorted")
                descending = False
                if self.is_word("asc", "desc"):
                    descending = self.advance().text.lower() == "desc"
                nulls_last = descending
                if self.is_word("nulls"):
                    self.advance()
                    if not self.is_word("first", "last"):
                        self.unexpected()
                    nulls_last = self.advance().text.lower() == "last"
                order_by.append(OrderItem(order_field, descending, nulls_last))
                if self.current.kind != "comma":
                    break
                self.advance()
        limit = offset = None
        if self.is_word("limit"):
            self.advance()
            limit = self.parse_count()
        if self.is_word("offset"):
            self.advance()
            offset = self.parse_count()
        if self.current.kind != "end":
            self.unexpected()
        return SoqlQuery(spec, fields, count_only, where, tuple(order_by), limit, offset)

    def parse_count(self) -> int:
        if self.current.kind != "number" or not self.current.text.isdigit():
            self.unexpected()
        return int(self.advance().text)

    def resolve_field(self, token: Token) -> FieldSpec:
        assert self.sobject is not None
        found = self.sobject.field(token.text)
        if found is None:
            raise SoqlError(
                "INVALID_FIELD",
                f"No such column '{token.text}' on entity '{self.sobject.name}'. If you are attempting to use "
                "a custom field, be sure to append the '__c' after the custom field name.",
            )
        return found

    def resolve_filter_field(self, token: Token, use: str = "filtered") -> FieldSpec:
        """A field used in WHERE or ORDER BY; long text and blobs cannot be, as in Salesforce."""
        found = self.resolve_field(token)
        if not found.filterable:
            raise SoqlError("INVALID_FIELD", f"field '{found.name}' can not be {use} in a query call")
        return found

    def parse_condition(self) -> Condition:
        first = self.parse_factor()
        if not self.is_word("and", "or"):
            return first
        operator = self.current.text.upper()
        items = [first]
        while self.is_word("and", "or"):
            if self.current.text.upper() != operator:
                # SOQL refuses AND and OR mixed at one level without parentheses.
                self.unexpected()
            self.advance()
            items.append(self.parse_factor())
        return BoolOp(operator, tuple(items))

    def parse_factor(self) -> Condition:
        if self.is_word("not"):
            self.advance()
            return Not(self.parse_factor())
        if self.current.kind == "lparen":
            self.advance()
            inner = self.parse_condition()
            if self.current.kind != "rparen":
                self.unexpected()
            self.advance()
            return inner
        if self.current.kind != "word" or self.current.text.lower() in _KEYWORDS:
            self.unexpected()
        field_spec = self.resolve_filter_field(self.advance())
        if (
            self.is_word("not")
            and self.tokens[self.index + 1].kind == "word"
            and self.tokens[self.index + 1].text.lower() == "in"
        ):
            self.advance()
            self.advance()
            return InList(field_spec, self.parse_list(field_spec), negated=True)
        if self.is_word("in"):
            self.advance()
            return InList(field_spec, self.parse_list(field_spec), negated=False)
        if self.is_word("like"):
            self.advance()
            if self.current.kind != "string":
                self.unexpected()
            if field_spec.type not in TEXT_TYPES:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"Invalid operator on field '{field_spec.name}'. LIKE works only on text fields.",
                )
            literal = self.advance().literal
            assert literal is not None
            return Like(field_spec, literal)
        if self.current.kind != "op":
            self.unexpected()
        operator = self.advance().text
        operator = "!=" if operator == "<>" else operator
        value = self.parse_value(field_spec)
        if value is None and operator not in ("=", "!="):
            self.unexpected()
        return Comparison(field_spec, operator, value)

    def parse_list(self, field_spec: FieldSpec) -> tuple[Literal, ...]:
        if self.current.kind != "lparen":
            self.unexpected()
        self.advance()
        values = [self.parse_value(field_spec)]
        while self.current.kind == "comma":
            self.advance()
            values.append(self.parse_value(field_spec))
        if self.current.kind != "rparen":
            self.unexpected()
        self.advance()
        return tuple(values)

    def parse_value(self, field_spec: FieldSpec) -> Literal:
        token = self.advance()
        if token.kind == "word" and token.text.lower() == "null":
            return None
        kind = field_spec.type
        wrong_type = SoqlError(
            "MALFORMED_QUERY",
            f"value of filter criterion for field '{field_spec.name}' must be of type {kind} "
            "and should not be enclosed in quotes"
            if kind not in TEXT_TYPES | REFERENCE_TYPES
            else f"value of filter criterion for field '{field_spec.name}' must be of type {kind} and should be enclosed in quotes",
        )
        if kind == "boolean":
            if token.kind == "word" and token.text.lower() in ("true", "false"):
                return token.text.lower() == "true"
            raise wrong_type
        if kind in NUMBER_TYPES:
            if token.kind == "number":
                return float(token.text) if "." in token.text else int(token.text)
            raise wrong_type
        if kind in ("date", "datetime"):
            if token.kind == "date":
                return DateLiteral(token.text, is_datetime=False)
            if token.kind == "datetime":
                moment = parse_datetime(token.text)
                if kind == "date":
                    return DateLiteral(moment.date().isoformat(), is_datetime=False)
                return DateLiteral(format_datetime(moment), is_datetime=True)
            raise wrong_type
        if token.kind != "string":
            if token.kind == "end":
                self.index -= 1
                self.unexpected()
            raise wrong_type
        assert token.literal is not None
        if kind in REFERENCE_TYPES:
            normalized = normalize_id(token.literal.value)
            if normalized is None:
                raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {token.literal.value}")
            return StringLiteral(normalized, normalized)
        return token.literal


def parse_soql(text: str, objects: dict[str, ObjectSpec] = OBJECTS) -> SoqlQuery:
    """Parse a SOQL statement of the supported subset (over the org's ``objects``) or raise SoqlError."""
    query = _Parser(text, objects).parse()
    if query.sobject.name == "ContentDocumentLink" and not _filters_on_an_id(query.where):
        # Salesforce answers this for any ContentDocumentLink query without such a filter (no Query All Files).
        raise SoqlError(
            "MALFORMED_QUERY",
            "Implementation restriction: ContentDocumentLink requires a filter by a single Id on ContentDocumentId "
            "or LinkedEntityId using the equals operator or multiple Id's using the IN operator.",
        )
    return query


def _filters_on_an_id(condition: Condition | None) -> bool:
    """Whether a WHERE (top-level AND terms) pins Id, ContentDocumentId or LinkedEntityId with = or IN."""
    if condition is None:
        return False
    terms = condition.items if isinstance(condition, BoolOp) and condition.operator == "AND" else (condition,)
    for term in terms:
        pinned = (isinstance(term, Comparison) and term.operator == "=") or (
            isinstance(term, InList) and not term.negated
        )
        if pinned and term.field.name in ("Id", "ContentDocumentId", "LinkedEntityId"):  # type: ignore[union-attr]
            return True
    return False


# --- compiling to SQL over the records table --------------------------------------------------


def _column(spec: ObjectSpec, field_spec: FieldSpec, *, for_order: bool = False) -> str:
    """The SQL expression for a field. Field names come from the object spec, never from the query text."""
    if field_spec.name == "Id":
        return "id"
    raw = f"(fields->>'{field_spec.name}')"
    kind = field_spec.type
    if kind == "boolean":
        return f"coalesce({raw}::boolean, false)"
    if kind in NUMBER_TYPES:
        return f"{raw}::numeric"
    if kind in TEXT_TYPES:
        external = spec.external_id_field
        if external is not None and external.name == field_spec.name and not for_order:
            return "ext_key"
        return f"lower({raw})"
    return raw


def _sql_value(field_spec: FieldSpec, value: Literal) -> Any:
    if isinstance(value, StringLiteral):
        return value.value.lower() if field_spec.type in TEXT_TYPES else value.value
    if isinstance(value, DateLiteral):
        return value.text
    return value


def compile_condition(spec: ObjectSpec, condition: Condition, params: list[Any]) -> str:
    """SQL for a WHERE condition, appending its parameters (psycopg2 %s style) to params."""
    if isinstance(condition, BoolOp):
        joined = f" {condition.operator} ".join(compile_condition(spec, item, params) for item in condition.items)
        return f"({joined})"
    if isinstance(condition, Not):
        return f"(NOT coalesce({compile_condition(spec, condition.item, params)}, false))"
    if isinstance(condition, Like):
        params.append(condition.pattern.like_pattern.lower())
        return f"(lower(fields->>'{condition.field.name}') LIKE %s)"
    column = _column(spec, condition.field)
    if isinstance(condition, InList):
        present = [_sql_value(condition.field, v) for v in condition.values if v is not None]
        has_null = any(v is None for v in condition.values)
        params.append(present)
        if condition.negated:
            # SOQL's NOT IN keeps rows whose field is null, unlike SQL.
            clause = f"({column} IS NULL OR NOT ({column} = ANY(%s)))"
            return f"({clause} AND {column} IS NOT NULL)" if has_null else clause
        clause = f"({column} = ANY(%s))"
        return f"({clause} OR {column} IS NULL)" if has_null else clause
    assert isinstance(condition, Comparison)
    if condition.value is None:
        return f"({column} IS {'NOT ' if condition.operator == '!=' else ''}NULL)"
    params.append(_sql_value(condition.field, condition.value))
    if condition.operator == "!=":
        # SOQL's != matches rows where the field is null, unlike SQL.
        return f"({column} IS DISTINCT FROM %s)"
    return f"({column} {condition.operator} %s)"


def compile_order(spec: ObjectSpec, order_by: tuple[OrderItem, ...]) -> str:
    parts = [
        f"{_column(spec, item.field, for_order=True)} {'DESC' if item.descending else 'ASC'} "
        f"NULLS {'LAST' if item.nulls_last else 'FIRST'}"
        for item in order_by
    ]
    # Record creation order breaks ties, so paging through equal keys is stable.
    return ", ".join([*parts, "seq"])
