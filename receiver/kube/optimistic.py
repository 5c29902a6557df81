"""Optimistic concurrency: read, change, write carrying what was read; on 409 read again.

The API server refuses a write whose resourceVersion is no longer current (409
Conflict), and a create of a name that exists (409 AlreadyExists). Either way another
writer was first, and the right answer is to read its result and apply our change on
top, so of two racing writers both changes survive. This loop is generic: the caller
says how to read and how to write; nothing here knows the kind of object.

    result = await modify(read, write)

``read()`` returns the current object (or None when absent); ``write(current)``
computes the new object from it and writes it (update carrying current's
resourceVersion, or create when current is None), returning its result. ``write``
may run several times, so it must compute only from its argument.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from receiver.kube.errors import KubeError

log = structlog.get_logger(__name__)

S = TypeVar("S")
R = TypeVar("R")

ATTEMPTS = 8


class ConflictPersisted(KubeError):
    """Every attempt lost the race: the last 409, with how many attempts were made."""


def lost_race(err: BaseException) -> bool:
    """409: Conflict (stale resourceVersion) or AlreadyExists (a create came second)."""
    return isinstance(err, KubeError) and err.conflict


async def modify(
    read: Callable[[], Awaitable[S]],
    write: Callable[[S], Awaitable[R]],
    *,
    attempts: int = ATTEMPTS,
    what: str = "",
    conflict: Callable[[BaseException], bool] = lost_race,
    backoff: float = 0.01,
) -> R:
    """Read-modify-write until a write wins (ConflictPersisted after ``attempts`` losses).

    Between attempts a short jittered pause (``backoff`` x attempt) keeps two busy
    writers from colliding in lockstep; errors other than ``conflict`` propagate at once.
    """
    for attempt in range(1, attempts + 1):
        current = await read()
        try:
            return await write(current)
        except Exception as err:
            if not conflict(err):
                raise
            log.info("write_conflict", what=what or getattr(err, "what", ""), attempt=attempt,
                     reason=getattr(err, "reason", type(err).__name__))
            if attempt == attempts:
                status = err.status if isinstance(err, KubeError) else 409
                raise ConflictPersisted(status, "Conflict", f"still conflicting after {attempts} attempts: {err}",
                                        what=what) from err
            await asyncio.sleep(random.uniform(0, backoff * attempt))
    raise AssertionError("unreachable")
