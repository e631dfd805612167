"""Mailchimp campaign types: the spellings Mailchimp uses, one canonical name each, and what they mean here."""

from __future__ import annotations

# Mailchimp spells some types differently in /campaigns ("plaintext", "absplit") and in /reports
# ("plain-text", "ab_split", "auto"); every spelling maps to one canonical name.
CAMPAIGN_TYPE_SPELLINGS: dict[str, str] = {
    "regular": "regular",
    "plaintext": "plaintext",
    "plain-text": "plaintext",
    "absplit": "absplit",
    "ab_split": "absplit",
    "variate": "variate",
    "rss": "rss",
    "automation": "automation",
    "auto": "automation",
}
KNOWN_CAMPAIGN_TYPES: tuple[str, ...] = ("regular", "plaintext", "absplit", "variate", "rss", "automation")
# Words a marketer reads in Salesforce and the UI.
CAMPAIGN_TYPE_LABELS: dict[str, str] = {
    "regular": "regular campaign",
    "plaintext": "plain-text campaign",
    "absplit": "A/B split campaign",
    "variate": "multivariate (A/B test) campaign",
    "rss": "RSS campaign send",
    "automation": "automation email",
}


def canonical_campaign_type(raw: object) -> str:
    """The canonical name of a Mailchimp type; an unknown type is kept as written (trimmed, lower case).

    Missing or blank is `regular`, Mailchimp's default. Unknown types are not refused: Mailchimp adds
    types over time, and a campaign of a new type is still a campaign with sends, opens and clicks.
    """
    text = raw.strip().lower() if isinstance(raw, str) else ""
    if not text:
        return "regular"
    return CAMPAIGN_TYPE_SPELLINGS.get(text, text)


def is_known_campaign_type(raw: object) -> bool:
    return canonical_campaign_type(raw) in KNOWN_CAMPAIGN_TYPES


def is_automation_type(raw: object) -> bool:
    """True for automation emails, whichever spelling (`automation`, `auto`): their sends are per member."""
    return canonical_campaign_type(raw) == "automation"


def campaign_type_label(raw: object) -> str:
    canonical = canonical_campaign_type(raw)
    return CAMPAIGN_TYPE_LABELS.get(canonical, f"'{canonical}' campaign (a type this pipeline does not know yet)")
