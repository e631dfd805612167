"""Mailchimp: the client resource, the campaign partitions, landing assets and the new-send sensor."""
