"""Person Accounts in the sandbox org, over HTTPS with simple-salesforce: describe, person contacts, members."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from simple_salesforce.exceptions import SalesforceMalformedRequest

from campaign_pipeline.sandbox.salesforce_api import SalesforceSandbox
from campaign_pipeline.sandbox.salesforce_seed import seed_people

PERSON_SCHEMA = "sandbox_salesforce_person_accounts"
PERSON_FIELDS = {"IsPersonAccount", "PersonEmail", "PersonContactId", "FirstName", "LastName"}


@pytest.fixture(scope="module")
def _person_org_session(pg_engine: sa.Engine) -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(pg_engine, schema=PERSON_SCHEMA, person_accounts=True) as org:
        yield org


@pytest.fixture
def person_org(_person_org_session: SalesforceSandbox) -> SalesforceSandbox:
    _person_org_session.reset()
    return _person_org_session


def _fields(sf, sobject: str) -> dict[str, dict]:
    return {f["name"]: f for f in getattr(sf, sobject).describe()["fields"]}


def test_describe_shows_person_account_fields_only_where_enabled(person_org: SalesforceSandbox, sf):
    assert PERSON_FIELDS.isdisjoint(_fields(sf, "Account"))
    assert "IsPersonAccount" not in _fields(sf, "Contact")
    with pytest.raises(SalesforceMalformedRequest):
        sf.query("SELECT Id FROM Account WHERE IsPersonAccount = true")
    account = _fields(person_org.client(), "Account")
    assert PERSON_FIELDS <= set(account)
    assert account["PersonContactId"]["referenceTo"] == ["Contact"]
    assert not account["PersonContactId"]["createable"] and not account["IsPersonAccount"]["createable"]
    assert account["Name"]["nillable"]  # required on business accounts only
    assert "IsPersonAccount" in _fields(person_org.client(), "Contact")


def test_a_person_account_comes_with_its_person_contact(person_org: SalesforceSandbox):
    sf = person_org.client()
    account_id = sf.Account.create({"FirstName": "Ada", "LastName": "Byron", "PersonEmail": "Ada@Example.com"})["id"]
    business_id = sf.Account.create({"Name": "Acme"})["id"]
    account = sf.Account.get(account_id)
    assert account["IsPersonAccount"] is True and account["Name"] == "Ada Byron"
    assert sf.Account.get(business_id)["IsPersonAccount"] is False
    contact = sf.Contact.get(account["PersonContactId"])
    assert (contact["IsPersonAccount"], contact["AccountId"], contact["Email"]) == (True, account_id, "Ada@Example.com")
    # SELECT ... FROM Contact returns person contacts too.
    rows = sf.query_all("SELECT Id, Email, IsPersonAccount FROM Contact WHERE Email = 'ada@example.com'")["records"]
    assert [(r["Id"], r["IsPersonAccount"]) for r in rows] == [(account["PersonContactId"], True)]

    sf.Account.update(account_id, {"PersonEmail": "ada.lovelace@example.com", "LastName": "Lovelace"})
    contact = sf.Contact.get(account["PersonContactId"])
    assert (contact["Email"], contact["Name"]) == ("ada.lovelace@example.com", "Ada Lovelace")
    assert sf.Account.get(account_id)["Name"] == "Ada Lovelace"
    # Any change of the person account is one of its person contact too, with the same stamps.
    sf.Account.update(account_id, {"PersonHasOptedOutOfEmail": False})
    stamps = [
        (r["LastModifiedDate"], r["SystemModstamp"])
        for r in (sf.Account.get(account_id), sf.Contact.get(contact["Id"]))
    ]
    assert stamps[0] == stamps[1] and stamps[0][1] >= contact["SystemModstamp"]

    campaign_id = sf.Campaign.create({"Name": "Spring"})["id"]
    member_id = sf.CampaignMember.create({"CampaignId": campaign_id, "ContactId": account["PersonContactId"]})["id"]
    assert sf.CampaignMember.get(member_id)["AccountId"] == account_id

    sf.Account.delete(account_id)
    assert sf.query_all(f"SELECT Id FROM Contact WHERE Id = '{account['PersonContactId']}'")["totalSize"] == 0
    assert sf.query_all(f"SELECT Id FROM CampaignMember WHERE Id = '{member_id}'")["totalSize"] == 0


def test_person_fields_belong_to_person_accounts_only(person_org: SalesforceSandbox):
    sf = person_org.client()
    with pytest.raises(SalesforceMalformedRequest, match="REQUIRED_FIELD_MISSING"):
        sf.Account.create({})
    with pytest.raises(SalesforceMalformedRequest, match="only a person account"):
        sf.Account.create({"PersonEmail": "nobody@example.com"})
    business_id = sf.Account.create({"Name": "Acme"})["id"]
    with pytest.raises(SalesforceMalformedRequest, match="only a person account"):
        sf.Account.update(business_id, {"PersonEmail": "acme@example.com"})
    with pytest.raises(SalesforceMalformedRequest, match="INVALID_FIELD_FOR_INSERT_UPDATE"):
        sf.Account.create({"LastName": "Byron", "PersonContactId": "003000000000001AAA"})


def test_seed_makes_a_share_of_contacts_person_accounts(person_org: SalesforceSandbox, org: SalesforceSandbox):
    audience = [f"person{i}@example.com" for i in range(120)]
    with pytest.raises(ValueError, match="Person Accounts enabled"):
        seed_people(org, audience, person_account_share=0.5)
    summary = seed_people(person_org, audience, person_account_share=0.5)
    assert summary.person_accounts
    accounts = person_org.records("Account")
    contacts = {c["Id"]: c for c in person_org.records("Contact")}
    assert sorted(a["PersonEmail"] for a in accounts) == sorted(summary.person_accounts)
    for account in accounts:
        contact = contacts[account["PersonContactId"]]
        assert (contact["IsPersonAccount"], contact["AccountId"], contact["Email"]) == (
            True,
            account["Id"],
            account["PersonEmail"],
        )
        # Seeded people existed before the pipeline looked: the contact was created with its account.
        assert contact["SystemModstamp"] == account["SystemModstamp"] == account["CreatedDate"]
    assert summary.contacts == sum(1 for c in contacts.values() if not c["IsPersonAccount"])
    # Without the share the seed is the same as before: same emails covered, no person accounts.
    assert seed_people(person_org, audience).already_seeded
