"""`nexus ops webhooks create|list|deactivate|deliveries|retry` (SPEC §10 "Signed webhooks").

The CLI twin of `/internal/webhooks` and `/internal/webhook-deliveries`: `create` prints
the secret once; `create`, `deactivate` and `retry` are `operator_actions` rows (actor
`cli:<user>`).
"""

from __future__ import annotations

import argparse
import json
import uuid

from cli.common import EXIT_OK, SubParsers, err, guarded, out, run_service, usage
from cli.ops.db import session_scope
from cli.ops.output import (
    add_list_options,
    cli_actor,
    plain_row,
    print_rows,
    run_audited_retry,
    run_listing,
)
from nexus.config import Settings
from nexus.operators.service import record_action
from nexus.webhooks import service

SUB_COLUMNS = ("id", "url", "event_types", "active", "created_at")
DELIVERY_COLUMNS = (
    "id", "subscription_id", "event_id", "event_type", "status", "attempts",
    "last_status_code", "last_error",
)  # fmt: skip


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("webhooks", help="signed webhook subscriptions, deliveries")
    parser.set_defaults(handler=usage(parser))
    sub = parser.add_subparsers(title="webhooks commands", metavar="COMMAND")
    create = sub.add_parser("create", help="subscribe a URL to events (prints the secret once)")
    create.add_argument("--url", required=True)
    create.add_argument(
        "--event", dest="events", action="append", required=True, help="event name or '*'"
    )
    create.add_argument("--description")
    create.set_defaults(handler=guarded(run_create))
    listing = sub.add_parser("list", help="subscriptions (never their secrets)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=guarded(run_list))
    deactivate = sub.add_parser("deactivate", help="stop a subscription (pending → dead)")
    deactivate.add_argument("subscription_id", type=uuid.UUID, metavar="ID")
    deactivate.set_defaults(handler=guarded(run_deactivate))
    deliveries = sub.add_parser("deliveries", help="deliveries, newest first")
    deliveries.add_argument("--status", choices=("pending", "delivered", "dead"))
    deliveries.add_argument("--subscription", type=uuid.UUID)
    add_list_options(deliveries)
    deliveries.set_defaults(handler=guarded(run_deliveries))
    retry = sub.add_parser("retry", help="send a dead delivery again (audited)")
    retry.add_argument("delivery_id", type=int, metavar="ID")
    retry.set_defaults(handler=guarded(run_retry))


def run_create(args: argparse.Namespace, settings: Settings) -> int:
    actor = cli_actor()

    async def create() -> tuple[service.Subscription, str]:
        async with session_scope(settings) as session:
            sub, secret = await service.create_subscription(
                session,
                url=args.url,
                event_types=args.events,
                description=args.description,
                created_by=actor,
                allow_hosts=settings.fetch_allow_hosts,
                allowed_ports=settings.fetch_allowed_ports,
            )
            await record_action(
                session,
                actor=actor,
                action="webhook.create",
                target={"subscription_id": str(sub.id)},
                outcome="created",
                details={"url": sub.url, "event_types": sub.event_types},
            )
            return sub, secret

    sub, secret = run_service(create)
    out(json.dumps({**plain_row(sub), "secret": secret}))
    err("the secret is shown only now: store it with the receiver")
    return EXIT_OK


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    async def listing() -> list[service.Subscription]:
        async with session_scope(settings) as session:
            return await service.list_subscriptions(session, limit=10_000)

    print_rows([plain_row(s) for s in run_service(listing)], SUB_COLUMNS, as_json=args.json)
    return EXIT_OK


def run_deactivate(args: argparse.Namespace, settings: Settings) -> int:
    actor = cli_actor()

    async def deactivate() -> int:
        async with session_scope(settings) as session:
            _sub, stopped = await service.deactivate_subscription(session, args.subscription_id)
            await record_action(
                session,
                actor=actor,
                action="webhook.deactivate",
                target={"subscription_id": str(args.subscription_id)},
                outcome="deactivated",
                details={"pending_deliveries_stopped": stopped},
            )
            return stopped

    stopped = run_service(deactivate)
    out(f"subscription {args.subscription_id} inactive; {stopped} pending deliveries stopped")
    return EXIT_OK


def run_deliveries(args: argparse.Namespace, settings: Settings) -> int:
    return run_listing(
        args,
        settings,
        lambda session: service.list_deliveries(
            session, limit=args.limit, status=args.status, subscription_id=args.subscription
        ),
        DELIVERY_COLUMNS,
    )


def run_retry(args: argparse.Namespace, settings: Settings) -> int:
    return run_audited_retry(
        settings,
        lambda session: service.retry_delivery(session, args.delivery_id),
        action="webhook.retry",
        target={"delivery_id": args.delivery_id},
        not_retried="not_retried",
        what=f"webhook delivery {args.delivery_id}",
        not_retried_note="not dead, or its subscription is inactive",
    )
