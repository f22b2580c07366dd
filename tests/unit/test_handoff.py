"""Thread → asyncio hand-off: order kept, producer blocked while full, and it can give up."""
import asyncio
import threading

from simreel.transport.handoff import Handoff


async def test_items_arrive_in_order_and_the_byte_bound_blocks_the_producer():
    handoff: Handoff[int] = Handoff(asyncio.get_running_loop(), max_bytes=100)
    third_queued = threading.Event()

    def produce() -> None:
        handoff.put(1, 60)
        handoff.put(2, 40)
        handoff.put(3, 60)  # over the bound until 1 is taken
        third_queued.set()

    t = threading.Thread(target=produce)
    t.start()
    assert await handoff.get() == 1
    assert await handoff.get() == 2
    assert await handoff.get() == 3
    await asyncio.to_thread(t.join, 10)
    assert third_queued.is_set()


async def test_a_full_queue_blocks_until_taken_then_check_lets_the_producer_give_up():
    handoff: Handoff[str] = Handoff(asyncio.get_running_loop(), max_items=1)
    cancel = threading.Event()
    outcome: list[str] = []

    def check() -> None:
        if cancel.is_set():
            raise RuntimeError("cancelled")

    def produce() -> None:
        handoff.put("a", check=check)
        try:
            handoff.put("b", check=check)  # blocks: the queue holds one item
            outcome.append("queued")
        except RuntimeError:
            outcome.append("gave up")

    t = threading.Thread(target=produce)
    t.start()
    assert await handoff.get() == "a"  # frees the slot: "b" goes in
    assert await handoff.get() == "b"
    await asyncio.to_thread(t.join, 10)
    assert outcome == ["queued"]

    handoff.put("c")
    outcome.clear()

    def produce_while_full() -> None:
        try:
            handoff.put("d", check=check)  # blocks: "c" is never taken
            outcome.append("queued")
        except RuntimeError:
            outcome.append("gave up")

    t = threading.Thread(target=produce_while_full)
    t.start()
    cancel.set()
    await asyncio.to_thread(t.join, 10)
    assert outcome == ["gave up"]
    assert handoff.take() == "c" and handoff.take() is None


def test_one_item_larger_than_the_bound_still_passes_an_empty_queue():
    loop = asyncio.new_event_loop()
    try:
        handoff: Handoff[bytes] = Handoff(loop, max_bytes=10)
        handoff.put(b"x" * 100, 100)
        assert handoff.take() == b"x" * 100
    finally:
        loop.close()
