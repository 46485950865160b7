"""`nexus ops cancel`: the CLI twin of the operator cancel routes (SPEC §10 "Cancel and
retention"), straight to the database and audited the same way (an `operator_actions` row,
actor `cli:<user>`, refusals included).

`--default-library --source-library --user` cancels a backfill job, `--media ID` a
media's ingest job. Exit status: 0 cancelled, 1 not found / not cancellable (finished) /
database failure, 2 bad usage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import uuid
from typing import Any

from cli.common import EXIT_OK, EXIT_USAGE, SubParsers, err, guarded, out, run_service
from cli.ops.db import session_scope
from cli.ops.output import cli_actor
from nexus.config import Settings
from nexus.errors import NexusError
from nexus.ingest import cancel as ingest_cancel
from nexus.jobs.cancel import CancelRequest
from nexus.messaging.topics import Topics
from nexus.operators.service import record_action
from nexus.sharing import backfill

_TUPLE = ("default_library", "source_library", "user")


def register(subparsers: SubParsers) -> None:
    p = subparsers.add_parser(
        "cancel", help="cancel a pending or running backfill or ingest job (audited)"
    )
    p.add_argument("--default-library", type=uuid.UUID, metavar="ID")
    p.add_argument("--source-library", type=uuid.UUID, metavar="ID")
    p.add_argument("--user", type=uuid.UUID, metavar="ID")
    p.add_argument("--media", type=uuid.UUID, metavar="ID", help="cancel this media's ingest")
    p.add_argument("--reason", default=None, help="free text kept on the job and in the audit")
    p.set_defaults(handler=guarded(run_cancel))


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def run_cancel(args: argparse.Namespace, settings: Settings) -> int:
    given = [name for name in _TUPLE if getattr(args, name) is not None]
    if (args.media is None) == (len(given) == 0) or 0 < len(given) < len(_TUPLE):
        err("error: give either --media ID or all of --default-library, --source-library, --user")
        return EXIT_USAGE
    if args.reason is not None and len(args.reason) > 1000:
        err("error: --reason is at most 1000 characters")
        return EXIT_USAGE
    actor = cli_actor()
    topics = Topics.from_settings(settings)
    if args.media is not None:
        action, target = "ingest.cancel", {"media_id": args.media}
    else:
        key = backfill.BackfillKey(args.default_library, args.source_library, args.user)
        action, target = "backfill.cancel", dict(key.as_dict())
    audit: dict[str, Any] = {"actor": actor, "action": action, "target": target}
    reason = {"reason": args.reason} if args.reason else {}

    async def cancel() -> dict[str, Any]:
        try:
            async with session_scope(settings) as session:
                common = CancelRequest(
                    requested_by=actor,
                    reason=args.reason,
                    request_id=None,
                    correlation_id=None,
                )
                if args.media is not None:
                    result = await ingest_cancel.cancel_ingest(
                        session, args.media, topics, **common
                    )
                    shown = dataclasses.asdict(result)
                    shown["previous_status"] = shown.pop("from_status")
                else:
                    done = await backfill.cancel(session, key, topics, **common)
                    shown = {
                        **done.job.model_dump(),
                        "previous_status": done.from_status,
                        "lease_owner": done.lease_owner,
                    }
                details = {
                    **reason,
                    "from_status": shown.get("previous_status", shown.get("from_status")),
                }
                await record_action(session, outcome="cancelled", details=details, **audit)
                return shown
        except NexusError as exc:
            async with session_scope(settings) as session:
                await record_action(session, outcome=exc.code, details=reason or None, **audit)
            raise

    shown = run_service(cancel)
    out(json.dumps({k: _plain(v) for k, v in shown.items()}, sort_keys=True, default=str))
    return EXIT_OK
