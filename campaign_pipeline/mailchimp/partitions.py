"""The dynamic partitions: one per sent Mailchimp campaign (regular campaigns and automation emails)."""

import dagster as dg

mailchimp_campaigns = dg.DynamicPartitionsDefinition(name="mailchimp_campaigns")
