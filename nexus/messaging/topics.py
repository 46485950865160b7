"""Topic names derive from the configured prefix; partition counts are final at creation."""

from __future__ import annotations

from dataclasses import dataclass

from nexus.config import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1


@dataclass(frozen=True)
class Topics:
    ingest: str
    backfill: str
    backfill_requeue: str
    operations: str
    events: str
    dead_letter: str
    partitions: int
    replication_factor: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        p = settings.topic_prefix
        return cls(
            ingest=f"{p}ingest",
            backfill=f"{p}backfill",
            backfill_requeue=f"{p}backfill-requeue",
            operations=f"{p}operations",
            events=f"{p}events",
            dead_letter=f"{p}dead-letter",
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
        )

    def full_name(self, name: str) -> str:
        """`name` as a full topic name: the short name of one of our topics (`backfill`)
        gets the prefix; anything else is returned as given."""
        known = {spec.name for spec in self.specs()}
        prefixed = f"{self.events.removesuffix('events')}{name}"
        return prefixed if name not in known and prefixed in known else name

    def work(self) -> tuple[str, ...]:
        """The topics the agents consume work from (the only targets of a replay)."""
        return (self.ingest, self.backfill, self.backfill_requeue, self.operations)

    def specs(self) -> list[TopicSpec]:
        """Every topic Nexus uses, with the partition count it must be created with."""
        work = list(self.work())
        rf = self.replication_factor
        return [TopicSpec(name, self.partitions, rf) for name in work] + [
            TopicSpec(self.events, self.partitions, rf),
            TopicSpec(self.dead_letter, 1, rf),
        ]
