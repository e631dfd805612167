"""HTTP emulators of the Mailchimp and Salesforce APIs, with a deterministic data generator."""
