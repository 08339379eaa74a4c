"""SQLiteTaskStore: the SDK's table and list(), with writes at once on create/settle and coalesced progress."""

import pytest
from a2a.server.context import ServerCallContext
from a2a.types import Artifact, ListTasksRequest, Part, Task, TaskState, TaskStatus

from mesh.serving.store import SQLiteTaskStore
from tests.support.users import Named


def task(task_id: str, state: int, text: str | None = None) -> Task:
    t = Task(id=task_id, context_id="ctx", status=TaskStatus(state=state))
    t.status.timestamp.GetCurrentTime()
    if text:
        t.artifacts.append(Artifact(artifact_id="a", name="out", parts=[Part(text=text)]))
    return t


ANYONE = ServerCallContext()


@pytest.fixture
async def fresh():
    """Opens a store on a file, as a restarted agent would read it; every store it opened is closed after the test
    (an engine left open hands aiosqlite's thread a closed event loop when it is collected later)."""
    opened = []

    async def open_store(path):
        store = SQLiteTaskStore(path, "a2a_tasks_t")
        await store.initialize()
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        await store.close()


async def test_create_and_settle_are_written_at_once_progress_is_coalesced(tmp_path, fresh):
    path = tmp_path / "t.sqlite"
    store = await fresh(path)
    await store.save(task("t1", TaskState.TASK_STATE_SUBMITTED), ANYONE)
    assert (await (await fresh(path)).get("t1", ANYONE)).status.state == TaskState.TASK_STATE_SUBMITTED

    await store.save(task("t1", TaskState.TASK_STATE_WORKING, "half"), ANYONE)
    assert (await store.get("t1", ANYONE)).artifacts[0].parts[0].text == "half"  # this process sees it at once
    reader = await fresh(path)
    assert (await reader.get("t1", ANYONE)).status.state == TaskState.TASK_STATE_SUBMITTED  # not on disk yet
    store.flush()
    reader = await fresh(path)
    assert (await reader.get("t1", ANYONE)).artifacts[0].parts[0].text == "half"

    await store.save(task("t1", TaskState.TASK_STATE_COMPLETED, "all"), ANYONE)
    done = await (await fresh(path)).get("t1", ANYONE)
    assert done.status.state == TaskState.TASK_STATE_COMPLETED and done.artifacts[0].parts[0].text == "all"
    await store.close()


async def test_sdk_list_reads_what_the_fast_path_wrote(tmp_path, fresh):
    store = await fresh(tmp_path / "t.sqlite")
    for i in range(7):
        await store.save(task(f"t{i}", TaskState.TASK_STATE_SUBMITTED), ANYONE)
        if i % 2:
            await store.save(task(f"t{i}", TaskState.TASK_STATE_WORKING), ANYONE)  # coalesced
    page = await store.list(ListTasksRequest(page_size=5), ANYONE)  # list() flushes first
    assert page.total_size == 7 and len(page.tasks) == 5
    rest = await store.list(ListTasksRequest(page_size=5, page_token=page.next_page_token), ANYONE)
    assert {t.id for t in page.tasks} | {t.id for t in rest.tasks} == {f"t{i}" for i in range(7)}
    working = await store.list(ListTasksRequest(status=TaskState.TASK_STATE_WORKING), ANYONE)
    assert sorted(t.id for t in working.tasks) == ["t1", "t3", "t5"]
    await store.close()


async def test_owners_are_kept_apart(tmp_path, fresh):
    path = tmp_path / "t.sqlite"
    store = await fresh(path)
    alice, bob = ServerCallContext(user=Named("alice")), ServerCallContext(user=Named("bob"))
    await store.save(task("secret", TaskState.TASK_STATE_COMPLETED, "alice's"), alice)
    assert (await store.get("secret", alice)).artifacts[0].parts[0].text == "alice's"
    assert await store.get("secret", bob) is None
    assert await (await fresh(path)).get("secret", bob) is None
    assert (await (await fresh(path)).get("secret", alice)) is not None
    await store.close()


async def test_close_writes_pending_progress(tmp_path, fresh):
    path = tmp_path / "t.sqlite"
    store = await fresh(path)
    await store.save(task("t", TaskState.TASK_STATE_SUBMITTED), ANYONE)
    await store.save(task("t", TaskState.TASK_STATE_WORKING, "progress"), ANYONE)
    await store.close()
    assert (await (await fresh(path)).get("t", ANYONE)).artifacts[0].parts[0].text == "progress"


async def test_cache_is_bounded(tmp_path, fresh):
    path = tmp_path / "t.sqlite"
    store = SQLiteTaskStore(path, "a2a_tasks_t", cache_size=3)
    await store.initialize()
    for i in range(10):
        await store.save(task(f"t{i}", TaskState.TASK_STATE_SUBMITTED), ANYONE)
        await store.save(task(f"t{i}", TaskState.TASK_STATE_WORKING, f"p{i}"), ANYONE)  # dirty until evicted
    assert len(store._cache) == 3
    reader = await fresh(path)
    for i in range(7):  # evicted ones were written on the way out
        assert (await reader.get(f"t{i}", ANYONE)).artifacts[0].parts[0].text == f"p{i}"
    assert (await store.get("t0", ANYONE)).artifacts[0].parts[0].text == "p0"  # read back from the file
    await store.close()


async def test_in_context_gives_a_contexts_latest_tasks_with_unwritten_progress_and_only_the_owners(tmp_path, fresh):
    path = tmp_path / "t.sqlite"
    store = await fresh(path)
    alice = ServerCallContext(user=Named("alice"))
    for n in range(4):
        await store.save(task(f"c{n}", TaskState.TASK_STATE_COMPLETED, f"answer {n}"), alice)
    other = task("x", TaskState.TASK_STATE_COMPLETED, "elsewhere")
    other.context_id = "other"
    await store.save(other, alice)
    await store.save(task("bob", TaskState.TASK_STATE_COMPLETED, "bob's"), ServerCallContext(user=Named("bob")))
    await store.save(task("c4", TaskState.TASK_STATE_SUBMITTED), alice)
    await store.save(task("c4", TaskState.TASK_STATE_WORKING, "half"), alice)  # coalesced: not on disk yet

    latest = await store.in_context("ctx", alice, 3)
    assert [t.id for t in latest] == ["c4", "c3", "c2"]
    assert latest[0].artifacts[0].parts[0].text == "half"  # the cached progress, not the row
    everything = await (await fresh(path)).in_context("ctx", alice, 10)  # another process reads the rows
    assert sorted(t.id for t in everything) == ["c0", "c1", "c2", "c3", "c4"]
    assert {t.id: t.artifacts[0].parts[0].text for t in everything if t.artifacts}["c1"] == "answer 1"
    assert await store.in_context("ctx", ServerCallContext(user=Named("carol")), 10) == []
    await store.close()
