"""`nexus ops requeue|jobs|replay-dead-letter|operations` argument handling (no I/O)."""

from __future__ import annotations

import uuid

import pytest

from cli.main import build_parser
from cli.ops.dead_letter import resolve_topic
from cli.ops.jobs import filters_from
from cli.ops.requeue import build_message, default_requester
from nexus.messaging.messages import BackfillRequeueRequested
from nexus.messaging.topics import Topics
from tests.conftest import make_settings

IDS = [str(uuid.uuid4()) for _ in range(3)]
KEY_ARGS = ["--default-library", IDS[0], "--source-library", IDS[1], "--user", IDS[2]]


def test_requeue_message_fields() -> None:
    args = build_parser().parse_args(["ops", "requeue", *KEY_ARGS, "--reason", "r"])
    msg = build_message(args)
    assert isinstance(msg, BackfillRequeueRequested)
    assert [str(msg.default_library_id), str(msg.source_library_id), str(msg.user_id)] == IDS
    assert msg.reason == "r" and msg.requested_by == default_requester()
    assert "@" in msg.requested_by and msg.key == IDS[0]
    assert msg.correlation_id == str(msg.message_id)
    assert args.wait is False and args.timeout == 30.0


def test_requeue_requested_by_and_wait() -> None:
    args = build_parser().parse_args(
        ["ops", "requeue", *KEY_ARGS, "--requested-by", "ann", "--wait", "--timeout", "5"]
    )
    assert build_message(args).requested_by == "ann" and args.wait and args.timeout == 5.0


@pytest.mark.parametrize(
    "argv",
    [
        [
            "ops",
            "requeue",
            "--default-library",
            "nope",
            "--source-library",
            IDS[1],
            "--user",
            IDS[2],
        ],
        ["ops", "requeue", "--default-library", IDS[0]],
        ["ops", "jobs", "--status", "bogus"],
        ["ops", "jobs", "--limit", "0"],
        ["ops", "operations", "show", "not-a-uuid"],
        ["ops", "operations", "show"],
    ],
)
def test_bad_usage_exits_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_jobs_filters() -> None:
    args = build_parser().parse_args(
        ["ops", "jobs", "--status", "failed", "--user", IDS[2], "--error-code", "E_INTERNAL"]
    )
    filters = filters_from(args)
    assert filters.keys == {"user_id": uuid.UUID(IDS[2])}
    assert (filters.status, filters.error_code) == ("failed", "E_INTERNAL")


def test_replay_topic_names() -> None:
    topics = Topics.from_settings(make_settings(topic_prefix="p."))
    assert resolve_topic(None, topics) is None
    assert resolve_topic("backfill-requeue", topics) == "p.backfill-requeue"
    assert resolve_topic("p.backfill", topics) == "p.backfill"
    assert resolve_topic("other.topic", topics) == "other.topic"
