"""The dynamic partitions: one per sent Mailchimp campaign (regular campaigns and automation emails)."""

import dagster as dg

MAILCHIMP_CAMPAIGNS_PARTITIONS = "mailchimp_campaigns"
# Keys are Mailchimp campaign ids (letters and digits, checked by core.events.is_valid_campaign_id).
mailchimp_campaigns = dg.DynamicPartitionsDefinition(name=MAILCHIMP_CAMPAIGNS_PARTITIONS)
