"""A live Mailchimp account: its key and API root bound from the environment, and the resource that reads it."""

from __future__ import annotations

import dagster as dg
import pandas as pd
from pydantic import Field

from campaign_pipeline.mailchimp.resource import API_KEY_ENV, BASE_URL_ENV, LIVE_SOURCE_MESSAGE, MailchimpResource


class MailchimpConnection(dg.ConfigurableResource):
    """The key and API root of a live account: bound from the environment (``dg.EnvVar``) when Definitions are built.

    A nested resource of its own, so run config for the reading settings (page_size, filter_bots...) never
    replaces it: Dagster keeps a nested resource's bound values whatever run config says about its parent.
    """

    api_key: str = Field(repr=False, description=f"Mailchimp API key ending in -<dc>; bind dg.EnvVar('{API_KEY_ENV}').")
    base_url: str | None = Field(
        default=None,
        description=f"API root to use instead of https://<dc>.api.mailchimp.com/3.0 (a proxy or a test server); "
        f"bind dg.EnvVar('{BASE_URL_ENV}').",
    )


class LiveMailchimpResource(MailchimpResource):
    """A real Mailchimp account, through its key (and, when set, another API root such as a proxy)."""

    connection: MailchimpConnection

    def _connection(self) -> tuple[str, str | None]:
        return self.connection.api_key.strip(), (self.connection.base_url or "").strip() or None

    @property
    def uses_sandbox(self) -> bool:
        return False

    @property
    def source_description(self) -> str:
        host = (self.connection.base_url or "").strip()
        return LIVE_SOURCE_MESSAGE + (f" at {host} ({BASE_URL_ENV})" if host else "")

    def now(self) -> pd.Timestamp:
        return pd.Timestamp.now(tz="UTC")
