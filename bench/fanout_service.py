"""
The service the fan-out benchmark serves (``twistd -n jsonservice --service
bench.fanout_service:service``): ``blast`` publishes events as fast as the
backend takes them, yielding to the reactor between batches so subscribers'
output is written while it runs.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from jsonservice import JSONService

service = JSONService("fanout-bench")


@service.method
async def blast(topic: str, count: int, size: int, per_turn: int) -> dict[str, Any]:
    """Publish ``count`` events of about ``size`` bytes to ``topic``; report what was dropped or refused."""
    import time

    from twisted.internet import reactor

    hub = service.pubsub
    dropped_before = hub.dropped
    started = time.perf_counter()
    data = "x" * size
    refused = [0]

    def count_refused(failure: Any) -> None:
        refused[0] += 1

    last: Deferred[None] | None = None
    for n in range(count):
        last = service.publish(topic, [n, data]).addErrback(count_refused)
        if n % per_turn == per_turn - 1:
            # Let the reactor write: a TCP transport sends at most 128 KiB per turn.
            await deferLater(reactor, 0, lambda: None)
    if last is not None:
        await last  # the backend took them all (replies come in order)
    return {
        "refused": refused[0],
        "dropped": hub.dropped - dropped_before,
        "server_seconds": round(time.perf_counter() - started, 3),
    }
