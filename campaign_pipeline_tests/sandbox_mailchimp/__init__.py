"""Tests of the Mailchimp sandbox: emulator shapes, faults and the synthetic generator."""
