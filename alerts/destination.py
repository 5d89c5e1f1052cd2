"""Where the alerts go: the Prefect notification block that the automations send through.

The webhook URL never lives in the repository: it comes from ONCOLOGY_ALERT_WEBHOOK_URL, or from a Prefect
Secret block named by `alert_block`, and is stored encrypted in the block's `secrets`. Without either, an
existing notification block of that name (Slack, Microsoft Teams, Sendgrid e-mail, ...) is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from uuid import UUID

from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.objects import BlockDocument
from prefect.exceptions import ObjectNotFound

from oncology_pipeline.settings import PipelineSettings

WEBHOOK_SLUG = "custom-webhook"
SECRET_SLUG = "secret"
#: The request body: Slack's incoming-webhook shape, readable by any receiver that logs JSON.
PAYLOAD = {"text": "{{subject}}\n\n{{body}}"}
_PAGE = 200


class AlertDestinationMissing(RuntimeError):
    """Nothing says where alerts should go."""


@dataclass(frozen=True)
class Destination:
    """The notification block the automations use, and where its address came from."""

    block_id: UUID
    description: str


def save_webhook_block(name: str, url: str) -> UUID:
    """Create or overwrite the Custom Webhook block `name` that POSTs `{"text": subject + body}` to `url`."""
    block = CustomWebhookNotificationBlock.model_validate(
        {"name": name, "url": "{{url}}", "json_data": PAYLOAD, "secrets": {"url": url}}
    )
    return cast(UUID, block.save(name, overwrite=True))  # the synchronous save returns the block document id


def _named(client: SyncPrefectClient, name: str) -> list[BlockDocument]:
    """Every block document called `name`, whatever its type."""
    found: list[BlockDocument] = []
    offset = 0
    while page := client.read_block_documents(offset=offset, limit=_PAGE, include_secrets=False):
        found += [doc for doc in page if doc.name == name]
        offset += len(page)
    return found


def _slug(doc: BlockDocument) -> str:
    return doc.block_type.slug if doc.block_type else ""


def _notifies(doc: BlockDocument) -> bool:
    return doc.block_schema is not None and "notify" in doc.block_schema.capabilities


def _secret_url(client: SyncPrefectClient, name: str) -> str | None:
    """The URL held by the Secret block `name`, if there is one."""
    try:
        doc = client.read_block_document_by_name(name, SECRET_SLUG, include_secrets=True)
    except ObjectNotFound:
        return None
    value: Any = doc.data.get("value")
    if not isinstance(value, str) or not value.strip():
        raise AlertDestinationMissing(f"Secret block {name!r} must hold the webhook URL as a string")
    return value.strip()


def resolve_destination(client: SyncPrefectClient, settings: PipelineSettings) -> Destination:
    """The notification block for the alerts: from the URL setting, a Secret block, or an existing block."""
    slug, _, bare = settings.alert_block.rpartition("/")  # `name`, or `block-type-slug/name`
    url = settings.alert_webhook_url.get_secret_value().strip() if settings.alert_webhook_url else ""
    if url:
        origin = "URL from ONCOLOGY_ALERT_WEBHOOK_URL"
        return Destination(save_webhook_block(bare, url), f"{WEBHOOK_SLUG}/{bare} ({origin})")
    if slug in ("", WEBHOOK_SLUG) and (secret := _secret_url(client, bare)):
        origin = f"URL from the Secret block {bare!r}"
        return Destination(save_webhook_block(bare, secret), f"{WEBHOOK_SLUG}/{bare} ({origin})")
    candidates = [doc for doc in _named(client, bare) if _notifies(doc) and (not slug or _slug(doc) == slug)]
    if len(candidates) == 1:
        doc = candidates[0]
        return Destination(doc.id, f"{_slug(doc)}/{bare} (an existing notification block)")
    if candidates:
        choices = ", ".join(sorted(f"{_slug(doc)}/{bare}" for doc in candidates))
        raise AlertDestinationMissing(
            f"several notification blocks are named {bare!r} ({choices}): set ONCOLOGY_ALERT_BLOCK to one of them"
        )
    raise AlertDestinationMissing(
        f"no alert destination: set ONCOLOGY_ALERT_WEBHOOK_URL, or create a Secret block {bare!r} holding the "
        f"webhook URL, or a notification block {bare!r} (e.g. Slack Webhook, Microsoft Teams Webhook, Sendgrid Email)"
    )
