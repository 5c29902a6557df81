"""Quiet answers are confirmed by reads sent after the delivery arrived; deliveries that
arrive together share those reads (the burst on a real cluster: test_webhook_on_cluster)."""

from __future__ import annotations

import asyncio

from receiver.kube.targets import ConfirmingReads


async def test_an_answer_asked_for_while_a_read_is_in_flight_comes_from_a_later_read() -> None:
    cluster_version = 1
    sent: list[int] = []
    answer = asyncio.Event()
    first_sent = asyncio.Event()

    async def read() -> int:
        seen = cluster_version  # what the API holds when the request is sent
        sent.append(seen)
        first_sent.set()
        await answer.wait()
        return seen

    reads = ConfirmingReads(read)
    early = asyncio.create_task(reads.fresh())
    await first_sent.wait()
    cluster_version = 2  # the cluster changes while that read is in flight
    late = [asyncio.create_task(reads.fresh()) for _ in range(5)]
    await asyncio.wait(late, timeout=0)  # they ask while it is in flight
    answer.set()

    assert await early == 1
    assert [await t for t in late] == [2] * 5  # never the read sent before they asked
    assert sent == [1, 2]  # the five shared one read

