"""What a gateway does before it serves: finish what its earlier life left behind.

A gateway killed mid-invocation leaves its invocations ``running`` and its workers leased (the
supervisor keeps them for a caller that will never come back). The next life of the same
instance marks those invocations ``interrupted`` and asks every supervisor to take the workers
back. Only its own: other gateway processes have other instance ids, and their work goes on.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from platform_core.gateway import runtime_client
from platform_core.invocations.services import invocations_interrupt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovery:
    interrupted: list[str]
    # Per supervisor address: the workers it took back, or why it could not be asked.
    reclaimed: dict[str, list[str] | str]


def gateway_recover(*, instance_id: str, started_before_ns: int) -> Recovery:
    """Mark the earlier lives' running invocations interrupted and reclaim their workers.

    Synchronous: run before the server starts (``manage.py rungateway``), not on its loop.
    """
    started_before = datetime.fromtimestamp(started_before_ns / 1e9, tz=UTC)
    interrupted = invocations_interrupt(gateway_instance=instance_id, started_before=started_before)
    reclaimed = asyncio.run(
        runtime_client.leases_reclaim(
            instance_id=instance_id, started_before_ns=started_before_ns, reason=f"gateway {instance_id} restarted"
        )
    )
    if interrupted:
        log.warning("marked %d invocation(s) of gateway %s as interrupted", len(interrupted), instance_id)
    for address, outcome in reclaimed.items():
        if isinstance(outcome, str):
            # Down: on the process backend its workers died with it; docker ones go when it restarts.
            log.warning("could not reclaim the workers of gateway %s at %s: %s", instance_id, address, outcome)
    return Recovery(interrupted, reclaimed)
