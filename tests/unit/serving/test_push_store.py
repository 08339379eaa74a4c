"""SQLitePushConfigStore on a real SQLite file: the tasks with configs known in memory, the table still the truth."""

import asyncio

import pytest
from a2a.server.context import ServerCallContext
from a2a.server.tasks.database_push_notification_config_store import DatabasePushNotificationConfigStore
from a2a.types import TaskPushNotificationConfig
from sqlalchemy.ext.asyncio import create_async_engine

from mesh.serving.push import SQLitePushConfigStore, open_push
from tests.support.users import Named


ALICE, BOB = ServerCallContext(user=Named("alice")), ServerCallContext(user=Named("bob"))


def config(config_id: str, url: str = "http://hooks.example/a") -> TaskPushNotificationConfig:
    return TaskPushNotificationConfig(id=config_id, url=url)


@pytest.fixture
async def open_store(tmp_path):
    """Opens the store on one file as an agent (or a restarted one) would; every engine is disposed after the test."""
    engines = []

    async def opened(kind=SQLitePushConfigStore):
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'tasks.sqlite'}")
        engines.append(engine)
        store = kind(engine)  # the SDK's default table: its model class is declared once, so it can be opened again
        await store.initialize()
        return store

    yield opened
    for engine in engines:
        await engine.dispose()


async def ids(store, task_id: str) -> list[str]:
    return sorted(c.id for c in await store.get_info_for_dispatch(task_id))


async def test_configs_are_dispatched_until_deleted(open_store):
    store = await open_store()
    assert await ids(store, "t1") == []
    await store.set_info("t1", config("c1"), ALICE)
    await store.set_info("t1", config("c2"), ALICE)
    assert await ids(store, "t1") == ["c1", "c2"]
    assert await ids(store, "t2") == []
    await store.delete_info("t1", ALICE, "c1")
    assert await ids(store, "t1") == ["c2"]
    await store.delete_info("t1", ALICE)
    assert await ids(store, "t1") == []
    await store.set_info("t1", config("c3"), ALICE)  # configured again after all were deleted
    assert await ids(store, "t1") == ["c3"]


async def test_another_owners_config_survives_a_delete(open_store):
    store = await open_store()
    await store.set_info("t1", config("mine"), ALICE)
    await store.set_info("t1", config("theirs"), BOB)
    await store.delete_info("t1", ALICE)
    assert await ids(store, "t1") == ["theirs"]  # dispatch fans out across owners; bob's stays
    assert [c.id for c in await store.get_info("t1", ALICE)] == []


async def test_a_restarted_agent_knows_the_configs_on_file(open_store):
    first = await open_store()
    await first.set_info("t1", config("kept"), ALICE)
    await first.set_info("t2", config("gone"), ALICE)
    await first.delete_info("t2", ALICE)
    again = await open_store()
    assert await ids(again, "t1") == ["kept"]
    assert await ids(again, "t2") == []


async def test_the_answers_are_the_sdk_stores_answers(open_store):
    """Whatever was set and deleted, dispatch answers what a2a-sdk's own store reads from the same table."""
    store = await open_store()
    for i in range(12):
        await store.set_info(f"t{i % 4}", config(f"c{i}", f"http://hooks.example/{i}"), (ALICE, BOB)[i % 2])
    await store.delete_info("t1", ALICE)
    await store.delete_info("t2", BOB, "c6")
    await store.delete_info("t3", ALICE, "no-such-config")
    plain = await open_store(DatabasePushNotificationConfigStore)
    for task_id in ("t0", "t1", "t2", "t3", "t4"):
        assert await ids(store, task_id) == await ids(plain, task_id), task_id


async def test_sets_and_deletes_under_way_together(open_store):
    """Many sets, deletes and dispatches at once on one task: the memory never hides a config the table holds."""
    store = await open_store()

    async def churn(i: int) -> None:
        await store.set_info("t", config(f"c{i}"), ALICE)
        await store.get_info_for_dispatch("t")
        if i % 2:
            await store.delete_info("t", ALICE, f"c{i}")

    await asyncio.gather(*(churn(i) for i in range(20)))
    assert await ids(store, "t") == sorted(f"c{i}" for i in range(0, 20, 2))
    await asyncio.gather(*(store.delete_info("t", ALICE, f"c{i}") for i in range(0, 20, 2)))
    assert await ids(store, "t") == []
    assert "t" not in store._configured  # the last delete forgot the task


@pytest.mark.parametrize("url, kind", [("sqlite+aiosqlite:///{dir}/x.sqlite", SQLitePushConfigStore),
                                       ("postgresql+asyncpg://mesh@127.0.0.1:9/mesh", DatabasePushNotificationConfigStore)])
async def test_only_sqlite_gets_the_memory(tmp_path, url, kind):
    """On PostgreSQL other replicas set configs too, so open_push keeps the SDK's store there (no connection is made)."""
    engine = create_async_engine(url.format(dir=tmp_path))
    store, _, _, close = open_push(engine, f"a2a_tasks_{kind.__name__}", [], 0, 0.1, 1.0)
    try:
        assert type(store) is kind
    finally:
        await close()
        await engine.dispose()
