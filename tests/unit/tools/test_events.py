"""The bridge's in-memory SSE event store: replay after an id, within its stream only, oldest events dropped first."""

import mcp_types

from mesh.tools.events import MemoryEventStore


def note(n: int) -> mcp_types.JSONRPCNotification:
    return mcp_types.JSONRPCNotification(jsonrpc="2.0", method="notifications/progress", params={"n": n})


async def replayed(store: MemoryEventStore, last_id: str) -> tuple[str | None, list[int]]:
    got = []

    async def send(event):
        got.append(event.message.params["n"])

    return await store.replay_events_after(last_id, send), got


async def test_replays_what_came_after_the_id_in_its_own_stream():
    store = MemoryEventStore()
    priming = await store.store_event("a", None)
    ids = [await store.store_event(stream, note(n)) for n, stream in enumerate(["a", "b", "a", "a", "b"])]
    assert await replayed(store, priming) == ("a", [0, 2, 3])
    assert await replayed(store, ids[2]) == ("a", [3])
    assert await replayed(store, ids[1]) == ("b", [4])
    assert await replayed(store, "not-an-id") == (None, [])
    assert len(set(ids)) == len(ids) and all(len(i) >= 16 for i in ids)  # random: not guessable across sessions


async def test_the_oldest_events_go_first_once_it_is_full():
    store = MemoryEventStore(max_events=3)
    first = await store.store_event("a", note(0))
    second = await store.store_event("b", note(1))
    await store.store_event("a", note(2))
    await store.store_event("a", note(3))
    assert store.size == 3
    assert await replayed(store, first) == (None, [])  # dropped: the client starts over
    assert await replayed(store, second) == ("b", [])
    await store.store_event("a", note(4))
    await store.store_event("a", note(5))
    assert await replayed(store, second) == (None, [])
    assert store._streams.keys() == {"a"}  # a stream whose events are all gone is forgotten
