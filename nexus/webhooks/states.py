"""The webhook delivery state machine: `TRANSITIONS` is data every status write obeys.

pending → delivered (a 2xx) | dead (refused, attempts exhausted, subscription deactivated);
pending → pending (an attempt to retry later: a new `next_attempt_at`); dead → pending (an
operator's retry). Every write of `webhook_deliveries.status` is one of the transitions
below (`nexus.db.transitions`), refused when built if the table does not allow it.
"""

from __future__ import annotations

from enum import StrEnum

from nexus.db.transitions import StateTable, Transition


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


# to-state -> states it may be entered from
TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.DELIVERED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.DEAD: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.PENDING, DeliveryStatus.DEAD}),
}
DELIVERY_STATES: StateTable[DeliveryStatus] = StateTable(
    "webhook_deliveries", "status", ("id",), TRANSITIONS
)

_PENDING = frozenset({DeliveryStatus.PENDING})
DELIVER = Transition(DELIVERY_STATES, _PENDING, DeliveryStatus.DELIVERED)
GIVE_UP = Transition(DELIVERY_STATES, _PENDING, DeliveryStatus.DEAD)
RETRY_LATER = Transition(DELIVERY_STATES, _PENDING, DeliveryStatus.PENDING)
RETRY = Transition(DELIVERY_STATES, frozenset({DeliveryStatus.DEAD}), DeliveryStatus.PENDING)
