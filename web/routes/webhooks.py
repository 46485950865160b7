"""Webhook subscriptions (admin) and deliveries (viewer): SPEC §10 "Signed webhooks".

- `POST /internal/webhooks` (admin): `{url, event_types, secret?, description?}` → 201 with
  the subscription and its `secret` (shown this once; generated unless supplied). The URL
  must pass the fetcher's rules (400 `E_INVALID_URL`).
- `GET /internal/webhooks`, `GET /internal/webhooks/{id}` (admin): never the secret.
- `DELETE /internal/webhooks/{id}` (admin): deactivates (history is kept); its pending
  deliveries become `dead`. Idempotent.
- `GET /internal/webhook-deliveries` (viewer): newest first; filters `status`,
  `subscription_id`, `event_id`.
- `POST /internal/webhook-deliveries/{id}/retry` (operator): a `dead` delivery of an active
  subscription starts again (attempts 0, due now); `retried: false` otherwise; 404 unknown.

Creation, deactivation and retries are `operator_actions` rows (`webhook.create`,
`webhook.deactivate`, `webhook.retry`).
Order everywhere: 401/403 key → 400 body/query → 404.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint
from quart_schema import validate_request, validate_response

from nexus.operators.roles import Role
from nexus.operators.service import OperatorIdentity
from nexus.webhooks import service
from web.audit import Audit, audited_retry
from web.auth import operator_required
from web.envelope import Data
from web.openapi import links, raises
from web.pagination import BY_ID, Keyset, ListQuery, Paged, after_id, list_page
from web.querystring import validate_querystring
from web.state import nexus_state
from web.uow import unit_of_work

_CREATED = {"subscription_id": "$response.body#/data/id"}

bp = Blueprint("webhooks", __name__, url_prefix="/internal")


class WebhookCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048)
    event_types: list[str] = Field(min_length=1, max_length=service.MAX_EVENT_TYPES)
    secret: str | None = Field(default=None, max_length=255)
    description: str | None = Field(default=None, max_length=255)


# The API's schema name for the service's row (nexus.db.types.Record).
class WebhookOut(service.Subscription):
    pass


class WebhookCreatedOut(WebhookOut):
    secret: str


class DeliveryQuery(ListQuery):
    status: Literal["pending", "delivered", "dead"] | None = None
    subscription_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None


# The API's schema name for the service's row (nexus.db.types.Record).
class DeliveryOut(service.Delivery):
    pass


@bp.post("/webhooks")
@raises("E_INVALID_REQUEST", "E_INVALID_URL")
@links(201, get_webhook=_CREATED, deactivate_webhook=_CREATED)
@validate_response(Data[WebhookCreatedOut], 201)
@operator_required(Role.ADMIN)
@validate_request(WebhookCreateIn)
async def create_webhook(
    data: WebhookCreateIn, operator: OperatorIdentity
) -> tuple[Data[WebhookCreatedOut], int]:
    settings = nexus_state().settings
    async with unit_of_work() as uow:
        sub, secret = await service.create_subscription(
            uow.session,
            url=data.url,
            event_types=data.event_types,
            secret=data.secret,
            description=data.description,
            created_by=operator.name,
            allow_hosts=settings.fetch_allow_hosts,
            allowed_ports=settings.fetch_allowed_ports,
        )
        audit = Audit(operator, "webhook.create", {"subscription_id": str(sub.id)})
        await audit.record(
            uow.session, "created", details={"url": sub.url, "event_types": sub.event_types}
        )
    out = WebhookCreatedOut(**sub.model_dump(), secret=secret)
    return Data(data=out), 201


@bp.get("/webhooks")
@raises()
@validate_response(Paged[WebhookOut])
@operator_required(Role.ADMIN)
@validate_querystring(ListQuery)
async def list_webhooks(query_args: ListQuery, operator: OperatorIdentity) -> Paged[WebhookOut]:
    del operator
    return await list_page(
        query_args,
        "webhooks",
        Keyset((uuid.UUID,), lambda r: (r.id,)),
        lambda session, after: service.list_subscriptions(
            session, limit=query_args.limit, after_id=after[0] if after else None
        ),
        WebhookOut.model_validate,
    )


@bp.get("/webhooks/<uuid:subscription_id>")
@raises("E_NOT_FOUND")
@validate_response(Data[WebhookOut])
@operator_required(Role.ADMIN)
async def get_webhook(subscription_id: uuid.UUID, operator: OperatorIdentity) -> Data[WebhookOut]:
    del operator
    async with unit_of_work() as uow:
        sub = await service.get_subscription(uow.session, subscription_id)
    return Data(data=WebhookOut.model_validate(sub))


@bp.delete("/webhooks/<uuid:subscription_id>")
@raises("E_NOT_FOUND")
@validate_response(Data[WebhookOut])
@operator_required(Role.ADMIN)
async def deactivate_webhook(
    subscription_id: uuid.UUID, operator: OperatorIdentity
) -> Data[WebhookOut]:
    async with unit_of_work() as uow:
        sub, stopped = await service.deactivate_subscription(uow.session, subscription_id)
        audit = Audit(operator, "webhook.deactivate", {"subscription_id": str(subscription_id)})
        await audit.record(
            uow.session, "deactivated", details={"pending_deliveries_stopped": stopped}
        )
    return Data(data=WebhookOut.model_validate(sub))


@bp.get("/webhook-deliveries")
@raises()
@validate_response(Paged[DeliveryOut])
@operator_required(Role.VIEWER)
@validate_querystring(DeliveryQuery)
async def list_webhook_deliveries(
    query_args: DeliveryQuery, operator: OperatorIdentity
) -> Paged[DeliveryOut]:
    del operator
    return await list_page(
        query_args,
        "webhook-deliveries",
        BY_ID,
        lambda session, after: service.list_deliveries(
            session,
            limit=query_args.limit,
            status=query_args.status,
            subscription_id=query_args.subscription_id,
            event_id=query_args.event_id,
            before_id=after_id(after),
        ),
        DeliveryOut.model_validate,
    )


class DeliveryRetryOut(BaseModel):
    id: int
    retried: bool


@bp.post("/webhook-deliveries/<id:delivery_id>/retry")
@raises("E_NOT_FOUND")
@validate_response(Data[DeliveryRetryOut])
@operator_required(Role.OPERATOR)
async def retry_webhook_delivery(
    delivery_id: int, operator: OperatorIdentity
) -> Data[DeliveryRetryOut]:
    retried = await audited_retry(
        Audit(operator, "webhook.retry", {"delivery_id": delivery_id}),
        lambda session: service.retry_delivery(session, delivery_id),
        not_retried="not_retried",
        missing=f"no webhook delivery {delivery_id}",
    )
    return Data(data=DeliveryRetryOut(id=delivery_id, retried=retried))
