"""Deterministic Contacts and Leads for the sandbox org, covering part of a Mailchimp audience with the awkward cases."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from campaign_pipeline.sandbox.salesforce_objects import format_datetime
from campaign_pipeline.sandbox.salesforce_store import SalesforceStore

SEED_NAME = "people"
MAX_EMAIL_LENGTH = 80  # Contact.Email / Lead.Email length in Salesforce
QUOTED_FALLBACK_EMAIL = "o'brien@example.com"
CONTACT_SHARE = 0.65
_SEED_EPOCH = dt.datetime(2024, 1, 2, 9, 0, tzinfo=dt.UTC)


@dataclass
class SeedSummary:
    """What seeding put in the org; the lists hold the audience emails of each awkward case."""

    contacts: int = 0
    leads: int = 0
    converted_leads: int = 0
    covered_emails: list[str] = field(default_factory=list)
    mixed_case_duplicates: list[str] = field(default_factory=list)  # two Contacts each, one in other case
    contact_and_lead: list[str] = field(default_factory=list)  # a Contact and a Lead each
    converted: list[str] = field(default_factory=list)  # a converted Lead each (first also has a Contact)
    quoted: list[str] = field(default_factory=list)  # addresses with a quote, seeded as Contacts
    person_accounts: list[str] = field(default_factory=list)  # seeded as person accounts (with their person contact)
    extra_emails: list[str] = field(default_factory=list)  # seeded though not in the audience
    skipped_too_long: list[str] = field(default_factory=list)
    already_seeded: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _other_case(email: str) -> str:
    """The same address with its local part's case flipped (Salesforce keeps both; matching must not)."""
    local, _, domain = email.partition("@")
    if local.swapcase() != local:
        return f"{local.swapcase()}@{domain}"
    # No cased letters in the local part: change the domain's case instead.
    return f"{local}@{domain.upper()}"


def _names(email: str) -> tuple[str, str]:
    local = email.split("@", 1)[0]
    parts = [p for p in re.split(r"[._+\-']+", local) if p]
    if not parts:
        return "", "Unknown"
    first = parts[0].capitalize()[:40] if len(parts) > 1 else ""
    last = parts[-1].capitalize()[:80]
    return first, last


def _company(email: str) -> str:
    domain = email.split("@", 1)[-1].split(".")[0]
    return f"{domain.capitalize() or 'Unknown'} Inc."[:255]


def seed_people(
    target: Any,
    emails: list[str],
    seed: int = 7,
    coverage: float = 0.6,
    schema: str = "sandbox_salesforce",
    person_account_share: float = 0.0,
) -> SeedSummary:
    """Create Contacts and Leads for a share (`coverage`) of `emails`, once per org.

    Deterministic in (emails, seed, coverage) whatever the order of `emails`. Besides plain
    Contacts and Leads it always includes, when the audience is big enough: mixed-case
    duplicate Contacts, converted Leads, addresses matching both a Contact and a Lead, and
    every audience address containing a quote (plus o'brien@example.com if none does).
    `target` is a SalesforceSandbox or a SQLAlchemy engine (then `schema` names the org).
    A second call on a seeded org changes nothing and returns the first summary.
    With ``person_account_share`` (an org with Person Accounts enabled only), that share of the plain Contacts
    are person accounts instead: an Account with PersonEmail, whose person contact the org creates.
    """
    if not 0.0 <= coverage <= 1.0:
        raise ValueError(f"coverage must be between 0 and 1, got {coverage}")
    if not 0.0 <= person_account_share <= 1.0:
        raise ValueError(f"person_account_share must be between 0 and 1, got {person_account_share}")
    if isinstance(target, sa.Engine):
        store = SalesforceStore(target, schema)
        store.ensure_schema()
    else:
        store = target.store
    if person_account_share and not store.person_accounts:
        raise ValueError(f"person_account_share needs an org with Person Accounts enabled; {schema!r} has none")
    with store.seeding(SEED_NAME) as cursor:
        existing = store.seed_summary_in(cursor, SEED_NAME)
        if existing is not None:
            return SeedSummary(**{**existing, "already_seeded": True})
        summary, contacts, leads = _plan(emails, seed, coverage, person_account_share)
        person_emails = {e.lower() for e in summary.person_accounts}
        people = [c for c, email in contacts if email.lower() in person_emails]
        contacts = [(c, email) for c, email in contacts if email.lower() not in person_emails]
        store.insert_in(cursor, "Account", [_person_account(c) for c in people])
        contact_ids = store.insert_in(cursor, "Contact", [c for c, _ in contacts])
        by_email: dict[str, str] = {}
        for contact_id, (_, audience_email) in zip(contact_ids, contacts, strict=True):
            by_email.setdefault(audience_email.lower(), contact_id)
        lead_rows = []
        for lead, converted_contact_of in leads:
            if converted_contact_of is not None:
                lead["ConvertedContactId"] = by_email.get(converted_contact_of.lower())
            lead_rows.append(lead)
        store.insert_in(cursor, "Lead", lead_rows)
        store.save_seed_summary(cursor, SEED_NAME, summary.to_dict())
    return summary


def _person_account(contact: dict[str, Any]) -> dict[str, Any]:
    """The person account of a planned Contact: the person's fields on the Account, with the Person prefix."""
    return {
        "FirstName": contact["FirstName"],
        "LastName": contact["LastName"],
        "PersonEmail": contact["Email"],
        "PersonHasOptedOutOfEmail": contact["HasOptedOutOfEmail"],
        "IsPersonAccount": True,
        "CreatedDate": contact["CreatedDate"],
        "LastModifiedDate": contact["LastModifiedDate"],
    }


def _share_pick(seed: int, email: str, share: float) -> bool:
    """A stable pick of ``share`` of the addresses that leaves the seed's other random choices untouched."""
    return int(hashlib.sha1(f"{seed}:person:{email.lower()}".encode()).hexdigest()[:8], 16) < share * 16**8


def _plan(
    emails: list[str], seed: int, coverage: float, person_account_share: float = 0.0
) -> tuple[SeedSummary, list[tuple[dict[str, Any], str]], list[tuple[dict[str, Any], str | None]]]:
    summary = SeedSummary()
    unique: dict[str, str] = {}
    for email in emails:
        cleaned = email.strip()
        if cleaned and cleaned.lower() not in unique:
            unique[cleaned.lower()] = cleaned
    usable = []
    for email in unique.values():
        if len(email) > MAX_EMAIL_LENGTH:
            summary.skipped_too_long.append(email)
        else:
            usable.append(email)
    # Order by a seeded hash so the chosen share does not depend on the input order.
    ordered = sorted(usable, key=lambda e: hashlib.sha1(f"{seed}:{e.lower()}".encode()).hexdigest())
    wanted = round(len(ordered) * coverage)
    quoted = [e for e in ordered if "'" in e] if wanted else []
    plain = [e for e in ordered if "'" not in e][: max(0, wanted - len(quoted))]
    summary.covered_emails = quoted + plain
    rng = random.Random(seed)
    moment = iter(range(10**9))

    def stamp() -> str:
        return format_datetime(_SEED_EPOCH + dt.timedelta(minutes=next(moment)))

    def contact(email: str) -> dict[str, Any]:
        first, last = _names(email)
        created = stamp()
        return {
            "FirstName": first or None,
            "LastName": last,
            "Email": email,
            "HasOptedOutOfEmail": False,
            "CreatedDate": created,
            # The org's people existed before the pipeline first looked: last changed when created.
            "LastModifiedDate": created,
        }

    def lead(email: str, converted: bool = False) -> dict[str, Any]:
        first, last = _names(email)
        created = stamp()
        return {
            "FirstName": first or None,
            "LastName": last,
            "Email": email,
            "Company": _company(email),
            "Status": "Closed - Converted" if converted else "Open - Not Contacted",
            "LeadSource": "Mailchimp",
            "IsConverted": converted,
            "ConvertedDate": "2024-03-01" if converted else None,
            "HasOptedOutOfEmail": False,
            "CreatedDate": created,
            "LastModifiedDate": created,
        }

    contacts: list[tuple[dict[str, Any], str]] = []
    leads: list[tuple[dict[str, Any], str | None]] = []
    special = max(0, min(2, len(plain) // 8))
    mixed, both, converted = plain[:special], plain[special : 2 * special], plain[2 * special : 3 * special]
    for email in mixed:
        contacts.append((contact(email), email))
        contacts.append((contact(_other_case(email)), email))
    for email in both:
        contacts.append((contact(email), email))
        leads.append((lead(email), None))
    for position, email in enumerate(converted):
        if position == 0:
            contacts.append((contact(email), email))
            leads.append((lead(email, converted=True), email))
        else:
            leads.append((lead(email, converted=True), None))
    for email in quoted:
        contacts.append((contact(email), email))
    for email in plain[3 * special :]:
        if rng.random() < CONTACT_SHARE:
            contacts.append((contact(email), email))
            if person_account_share and _share_pick(seed, email, person_account_share):
                summary.person_accounts.append(email)
        else:
            leads.append((lead(email), None))
    if wanted and not quoted:
        contacts.append((contact(QUOTED_FALLBACK_EMAIL), QUOTED_FALLBACK_EMAIL))
        summary.extra_emails.append(QUOTED_FALLBACK_EMAIL)
    summary.mixed_case_duplicates = list(mixed)
    summary.contact_and_lead = list(both)
    summary.converted = list(converted)
    summary.quoted = list(quoted) or list(summary.extra_emails)
    summary.contacts = len(contacts) - len(summary.person_accounts)
    summary.leads = len(leads)
    summary.converted_leads = len(converted)
    return summary, contacts, leads
