"""The Dramatiq side: a RedisBroker on the bench database and an actor that does nothing.

The workers load it as `dramatiq bench.dramatiq_app:setup` (the URL comes from BENCH_REDIS_URL);
the bench itself enqueues through `make_actor(url)`, the same actor on its own broker.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.noop import noop

QUEUE = "default"


def make_actor(url: str) -> dramatiq.Actor[Any, Any]:
    """The no-op actor on a RedisBroker at url."""
    declare = dramatiq.actor(broker=RedisBroker(url=url), actor_name="noop", queue_name=QUEUE)
    return declare(noop)


def setup() -> None:
    """For the dramatiq CLI: make the broker at BENCH_REDIS_URL the global one, with the actor declared."""
    actor = make_actor(os.environ["BENCH_REDIS_URL"])
    dramatiq.set_broker(actor.broker)
