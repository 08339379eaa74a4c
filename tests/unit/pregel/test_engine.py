"""The engine's semantics: supersteps, halting, direct messages, joins, combiners, mutations, failures, cancel, events.

Vertices here are local closures handed to the engine by a vertex factory (the
engine's own extension point), so a test can order them with asyncio events
it controls instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from mesh.pregel import (
    AddEdge,
    AddVertex,
    Engine,
    GraphSpec,
    Message,
    PythonVertex,
    RemoveEdge,
    RemoveVertex,
    VertexResult,
    open_store,
)

Functions = dict[str, Callable[[Any], Any]]


def engine_for(functions: Functions, store: Any = None) -> Engine:
    """An engine whose vertices are ``functions[name]``, ``name`` being the function part of their import path."""

    def factory(spec: Any) -> Any:
        name = spec.function.partition(":")[2]
        if name not in functions:
            raise LookupError(f"no test function {name!r}")
        return functions[name]

    return Engine(store, vertex_factory=factory)


def vertex(vertex_id: str, function: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"id": vertex_id, "kind": "python", "function": f"tests.local:{function or vertex_id}", **fields}


def graph(vertices: list[dict[str, Any]], edges: list[str], entry: list[str], **fields: Any) -> GraphSpec:
    return GraphSpec.model_validate({"vertices": vertices, "edges": edges, "entry": entry, **fields})


def forever() -> asyncio.Event:
    """An event nobody sets: awaiting it blocks until cancelled."""
    return asyncio.Event()


class Calls:
    """Records which vertex ran in which superstep with which messages."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, list[Message]]] = []

    def note(self, call: Any) -> None:
        self.seen.append((call.superstep, call.vertex_id, list(call.messages)))

    def of(self, vertex_id: str) -> list[tuple[int, list[Message]]]:
        return [(superstep, messages) for superstep, name, messages in self.seen if name == vertex_id]


# --- supersteps, halting, messages ------------------------------------------------------------


async def test_plain_values_go_along_every_out_edge_and_halt():
    calls = Calls()

    async def upper(call: Any) -> str:
        calls.note(call)
        return " + ".join(sorted(str(value) for value in call.inbox)).upper()

    spec = graph([vertex("a", "upper"), vertex("b", "upper"), vertex("c", "upper")], ["a -> b", "a -> c", "b -> c"], ["a"])
    result = await engine_for({"upper": upper}).run(spec, "go")

    assert result.status == "done" and result.stop_reason == "halted" and result.supersteps == 3
    assert result.outputs == {"a": "GO", "b": "GO", "c": "GO"}
    assert calls.of("a") == [(0, [Message(None, "go")])]
    assert calls.of("c") == [(1, [Message("a", "GO")]), (2, [Message("b", "GO")])]
    assert [event["active"] for event in result.events] == [["a"], ["b", "c"], ["c"]]
    assert [event["messages_sent"] for event in result.events] == [2, 1, 0]


async def test_a_vertex_can_stay_active_without_messages_and_a_message_wakes_a_halted_one():
    calls = Calls()

    async def ticker(call: Any) -> VertexResult:
        calls.note(call)
        count = (call.state or 0) + 1
        if count < 3:
            return VertexResult(state=count, halt=False)  # no message, still active
        return VertexResult(output=count, state=count, send={"sleeper": "wake up"})

    async def sleeper(call: Any) -> Any:
        calls.note(call)
        return call.inbox[-1]

    spec = graph([vertex("ticker"), vertex("sleeper")], [], ["ticker", "sleeper"])
    result = await engine_for({"ticker": ticker, "sleeper": sleeper}).run(spec, "start")

    assert [(superstep, name) for superstep, name, _ in calls.seen] == [
        (0, "ticker"), (0, "sleeper"), (1, "ticker"), (2, "ticker"), (3, "sleeper"),
    ]
    assert calls.of("sleeper")[1] == (3, [Message("ticker", "wake up")])
    assert result.outputs == {"sleeper": "wake up", "ticker": 3}


async def test_direct_messages_reach_any_vertex_and_messages_to_unknown_vertices_are_reported():
    calls = Calls()

    async def sender(call: Any) -> VertexResult:
        return VertexResult(output="sent", send=[("far", "hello"), ("far", "again"), ("ghost", 1)])

    async def far(call: Any) -> None:
        calls.note(call)

    spec = graph([vertex("a", "sender"), vertex("b", "far"), vertex("far")], ["a -> b"], ["a"])
    result = await engine_for({"sender": sender, "far": far}).run(spec)

    assert calls.of("far") == [(1, [Message("a", "hello"), Message("a", "again")])]
    assert calls.of("b") == []  # explicit sends replace the default along the out-edges
    assert result.events[0]["dropped_messages"] == [{"from": "a", "to": "ghost", "reason": "no such vertex"}]
    assert result.events[0]["messages_sent"] == 3 and result.events[0]["messages_delivered"] == 2


async def test_the_superstep_limit_stops_a_run_that_would_go_on():
    async def loop(call: Any) -> VertexResult:
        return VertexResult(output=call.superstep, halt=False)

    spec = graph([vertex("a", "loop")], [], ["a"], limits={"max_supersteps": 4})
    result = await engine_for({"loop": loop}).run(spec)
    assert (result.status, result.stop_reason, result.supersteps, result.outputs) == ("done", "max_supersteps", 4, {"a": 3})


async def test_outputs_name_the_vertices_whose_outputs_are_the_result():
    async def plain(call: Any) -> str:
        return call.vertex_id

    spec = graph([vertex("a", "plain"), vertex("b", "plain")], ["a -> b"], ["a"], outputs=["b"])
    assert (await engine_for({"plain": plain}).run(spec)).outputs == {"b": "b"}


# --- combiners and aggregators ----------------------------------------------------------------


def combine_reversed(values: list[Any]) -> Any:
    return list(reversed(values))


@pytest.mark.parametrize(
    ("combiner", "expected"),
    [
        ("sum", 6), ("min", 1), ("max", 3), ("list", [1, 2, 3]), ("last", 3), ("concat", [1, 2, 3]),
        ("tests.unit.pregel.test_engine:combine_reversed", [3, 2, 1]),
    ],
)
async def test_a_combiner_folds_the_inbox_into_one_message(combiner, expected):
    seen: list[list[Message]] = []

    async def source(call: Any) -> VertexResult:
        return VertexResult(send=[("sink", 1), ("sink", 2), ("sink", 3)])

    async def sink(call: Any) -> None:
        seen.append(call.messages)

    spec = graph([vertex("source"), vertex("sink", combiner=combiner)], [], ["source"])
    await engine_for({"source": source, "sink": sink}).run(spec)
    assert seen == [[Message(None, expected)]]


async def test_concat_joins_text_with_newlines():
    seen: list[Any] = []

    async def source(call: Any) -> VertexResult:
        return VertexResult(send=[("sink", "one"), ("sink", "two")])

    async def sink(call: Any) -> None:
        seen.extend(call.inbox)

    spec = graph([vertex("source"), vertex("sink", combiner="concat")], [], ["source"])
    await engine_for({"source": source, "sink": sink}).run(spec)
    assert seen == ["one\ntwo"]


async def test_aggregators_fold_at_the_barrier_and_are_seen_in_the_next_superstep():
    seen: dict[int, dict[str, Any]] = {}

    async def voter(call: Any) -> VertexResult:
        seen[call.superstep] = dict(call.aggregates)
        if call.superstep == 1:
            return VertexResult(aggregate={"nobody": 1})
        return VertexResult(halt=False, aggregate={"total": 2, "votes": call.vertex_id, "low": 5, "seen": 1})

    spec = graph(
        [vertex("a", "voter"), vertex("b", "voter")], [], ["a", "b"],
        aggregators={"total": "sum", "votes": "list", "low": "min", "seen": "count"},
    )
    result = await engine_for({"voter": voter}).run(spec)

    assert seen[0] == {}
    assert seen[1] == {"total": 4, "votes": ["a", "b"], "low": 5, "seen": 2}
    assert result.aggregates == {"total": 0, "votes": [], "low": None, "seen": 0}
    assert {error["error"] for error in result.errors} == {"no aggregator 'nobody' in the graph"}


# --- joins ------------------------------------------------------------------------------------


def fan_in(join: Any, senders: tuple[str, ...] = ("a", "b", "c"), **fields: Any) -> GraphSpec:
    return graph(
        [vertex("src", "src"), *[vertex(name) for name in senders], vertex("d", "d", join=join)],
        [f"src -> {name}" for name in senders] + [f"{name} -> d" for name in senders],
        ["src"],
        **fields,
    )


def sender_functions(behaviours: dict[str, Callable[[Any], Any]], inbox_of_d: list[list[Message]]) -> Functions:
    async def src(call: Any) -> str:
        return "go"

    async def d(call: Any) -> None:
        inbox_of_d.append(call.messages)

    return {"src": src, "d": d, **behaviours}


def waits_for(event: asyncio.Event, *, then: Callable[[], None] = lambda: None, cancelled: list[str] | None = None,
              started: list[str] | None = None):
    async def behaviour(call: Any) -> str:
        if started is not None:
            started.append(call.vertex_id)
        try:
            await event.wait()
        except asyncio.CancelledError:
            if cancelled is not None:
                cancelled.append(call.vertex_id)
            raise
        then()
        return call.vertex_id

    return behaviour


def immediate(then: Callable[[], None] = lambda: None):
    async def behaviour(call: Any) -> str:
        then()
        return call.vertex_id

    return behaviour


async def test_join_all_waits_for_every_sender_in_arrival_order():
    inbox: list[list[Message]] = []
    c_done, a_done = asyncio.Event(), asyncio.Event()
    functions = sender_functions(
        {"a": waits_for(c_done, then=a_done.set), "b": waits_for(a_done), "c": immediate(then=c_done.set)}, inbox
    )
    result = await engine_for(functions).run(fan_in("all"))
    assert inbox == [[Message("c", "c"), Message("a", "a"), Message("b", "b")]]
    assert result.events[1]["dropped_calls"] == {}


async def test_join_any_takes_the_first_sender_and_cancels_the_others():
    inbox: list[list[Message]] = []
    started: list[str] = []
    cancelled: list[str] = []
    functions = sender_functions(
        {
            "a": waits_for(forever(), cancelled=cancelled, started=started),
            "b": immediate(),
            "c": waits_for(forever(), cancelled=cancelled, started=started),
        },
        inbox,
    )
    result = await engine_for(functions).run(fan_in("any"))

    assert inbox == [[Message("b", "b")]]
    assert "a" in started and sorted(cancelled) == sorted(started)  # c may be dropped before it even starts
    assert result.events[1]["dropped_calls"] == {"a": ["d"], "c": ["d"]}
    assert result.outputs.keys() == {"src", "b"}
    figures = result.figures
    assert figures["vertices"]["a"]["drops"] == 1 and figures["edges"]["a -> d"]["drops"] == 1
    assert figures["edges"]["b -> d"]["messages"] == 1 and figures["edges"]["b -> d"]["drops"] == 0


async def test_join_quorum_takes_the_first_k_senders():
    inbox: list[list[Message]] = []
    functions = sender_functions({"a": immediate(), "b": waits_for(forever()), "c": immediate()}, inbox)
    result = await engine_for(functions).run(fan_in({"quorum": 2}))
    assert inbox == [[Message("a", "a"), Message("c", "c")]]
    assert result.events[1]["dropped_calls"] == {"b": ["d"]}


async def test_join_deadline_takes_what_arrived_in_time():
    inbox: list[list[Message]] = []
    functions = sender_functions({"a": immediate(), "b": waits_for(forever())}, inbox)
    result = await engine_for(functions).run(fan_in({"deadline": 0.05}, senders=("a", "b")))
    assert inbox == [[Message("a", "a")]]
    assert result.events[1]["dropped_calls"] == {"b": ["d"]}


async def test_a_deadline_join_closes_early_when_every_sender_is_done():
    inbox: list[list[Message]] = []
    functions = sender_functions({"a": immediate(), "b": immediate()}, inbox)
    # A deadline this long would make the test time out if the barrier waited for it.
    await asyncio.wait_for(engine_for(functions).run(fan_in({"deadline": 3600}, senders=("a", "b"))), 30)
    assert inbox == [[Message("a", "a"), Message("b", "b")]]


async def test_a_quorum_larger_than_the_active_senders_waits_for_all_of_them():
    inbox: list[list[Message]] = []
    functions = sender_functions({"a": immediate(), "b": immediate()}, inbox)
    spec = graph(
        [vertex("src"), vertex("a"), vertex("b"), vertex("d", join={"quorum": 2})], ["src -> a", "a -> d", "b -> d"], ["src"]
    )
    await engine_for(functions).run(spec)  # b is never active: d waits for a alone
    assert inbox == [[Message("a", "a")]]


async def test_an_output_vertex_is_not_dropped_and_its_late_message_is_reported():
    inbox: list[list[Message]] = []
    a_done = asyncio.Event()
    functions = sender_functions({"a": immediate(then=a_done.set), "b": waits_for(a_done)}, inbox)
    result = await engine_for(functions).run(fan_in("any", senders=("a", "b"), outputs=["b", "d"]))

    assert inbox == [[Message("a", "a")]]
    assert result.outputs == {"b": "b"}  # d produced no output
    assert result.events[1]["dropped_calls"] == {}
    assert result.events[1]["dropped_messages"] == [{"from": "b", "to": "d", "reason": "late"}]
    assert result.figures["edges"]["b -> d"]["late"] == 1


async def test_a_sender_still_awaited_elsewhere_keeps_running_and_only_its_late_message_is_dropped():
    firsts: list[list[Message]] = []
    seconds: list[list[Message]] = []
    v_done = asyncio.Event()

    async def first(call: Any) -> None:
        firsts.append(call.messages)

    async def second(call: Any) -> None:
        seconds.append(call.messages)

    spec = graph(
        [vertex("src"), vertex("u"), vertex("v"), vertex("any_join", "first", join="any"), vertex("all_join", "second")],
        ["src -> u", "src -> v", "u -> any_join", "v -> any_join", "u -> all_join"],
        ["src"],
    )
    functions = {"src": immediate(), "u": waits_for(v_done), "v": immediate(then=v_done.set), "first": first, "second": second}
    result = await engine_for(functions).run(spec)

    assert firsts == [[Message("v", "v")]] and seconds == [[Message("u", "u")]]
    assert result.events[1]["dropped_calls"] == {}
    assert result.events[1]["dropped_messages"] == [{"from": "u", "to": "any_join", "reason": "late"}]


# --- mutations --------------------------------------------------------------------------------


async def test_mutations_apply_in_the_documented_order_and_conflicts_resolve_deterministically():
    ran: list[tuple[int, str, list[Message]]] = []

    def spec_of(vertex_id: str, function: str, **fields: Any) -> PythonVertex:
        return PythonVertex(id=vertex_id, function=f"tests.local:{function}", **fields)

    async def m1(call: Any) -> VertexResult:
        return VertexResult(
            send={"new": "hello new"},
            mutations=[
                AddEdge(source="new", target="z"),
                AddVertex(vertex=spec_of("new", "note")),
                RemoveVertex(id="y"),
                AddVertex(vertex=spec_of("y", "note")),  # replaces y: removals come before additions
                AddVertex(vertex=spec_of("twin", "note")),
                {"op": "add_edge", "from": "x", "to": "twin"},
            ],
        )

    async def m2(call: Any) -> VertexResult:
        return VertexResult(
            mutations=[
                RemoveEdge(source="x", target="y"),
                AddVertex(vertex=spec_of("new", "note", combiner="sum")),  # conflicts with m1's: m1 comes first
                AddVertex(vertex=spec_of("twin", "note")),  # identical to m1's: merged
                {"op": "add_edge", "from": "x", "to": "twin"},
                RemoveVertex(id="m1"),  # an entry vertex
                RemoveVertex(id="nobody"),
                AddVertex(vertex=spec_of("broken", "no_such_function")),
                AddEdge(source="x", target="nowhere"),
                AddEdge(source="x", target="z"),  # exists
                {"op": "add_edge", "from": "x"},
            ],
        )

    async def note(call: Any) -> None:
        ran.append((call.superstep, call.vertex_id, call.messages))

    spec = graph(
        [vertex("m1"), vertex("m2"), vertex("x", "note"), vertex("y", "note"), vertex("z", "note")],
        ["x -> y", "y -> z", "x -> z"],
        ["m1", "m2"],
    )
    run = await engine_for({"m1": m1, "m2": m2, "note": note}).start(spec)
    result = await run.result()
    event = result.events[0]

    assert [(m["op"], m.get("id") or m.get("vertex", {}).get("id") or f"{m['from']}->{m['to']}", m["requested_by"])
            for m in event["mutations_applied"]] == [
        ("remove_edge", "x->y", ["m2"]),
        ("remove_vertex", "y", ["m1"]),
        ("add_vertex", "new", ["m1"]),
        ("add_vertex", "y", ["m1"]),
        ("add_vertex", "twin", ["m1", "m2"]),
        ("add_edge", "new->z", ["m1"]),
        ("add_edge", "x->twin", ["m1", "m2"]),
    ]
    assert event["mutations_applied"][1]["edges_removed"] == [["y", "z"]]
    refused = {(entry["requested_by"], entry["reason"]) for entry in event["mutations_refused"]}
    assert refused == {
        ("m2", "vertex 'new' is added with another spec by 'm1', which comes first"),
        ("m2", "vertex 'm1' is an entry or output of the graph"),
        ("m2", "there is no vertex 'nobody'"),
        ("m2", "vertex 'broken' cannot be made: no test function 'no_such_function'"),
        ("m2", "there is no vertex 'nowhere'"),
        ("m2", "edge x -> z exists"),
        ("m2", "add_edge.to: Field required"),
    }
    assert event["topology_version"] == 1 and result.topology_version == 1
    assert ran == [(1, "new", [Message("m1", "hello new")])]  # a message may go to a vertex added at the same barrier
    edges = set(run.topology.edges())
    assert edges == {("new", "z"), ("x", "z"), ("x", "twin")}
    assert run.topology.vertices["new"].combiner is None  # m1's spec won


async def test_a_batch_that_applies_nothing_keeps_the_topology_version():
    async def asks(call: Any) -> VertexResult:
        return VertexResult(mutations=[RemoveEdge(source="asks", target="asks")])

    result = await engine_for({"asks": asks}).run(graph([vertex("asks")], [], ["asks"]))
    assert result.topology_version == 0 and result.events[0]["mutations_applied"] == []
    assert result.events[0]["mutations_refused"][0]["reason"] == "there is no edge asks -> asks"


async def test_messages_to_a_vertex_removed_at_the_barrier_are_reported():
    async def remover(call: Any) -> VertexResult:
        return VertexResult(mutations=[RemoveVertex(id="b")])

    async def plain(call: Any) -> str:
        return "for b"

    spec = graph([vertex("a", "plain"), vertex("r", "remover"), vertex("b", "plain")], ["a -> b"], ["a", "r"])
    result = await engine_for({"plain": plain, "remover": remover}).run(spec)
    assert result.events[0]["dropped_messages"] == [{"from": "a", "to": "b", "reason": "vertex removed"}]
    assert result.supersteps == 1


async def test_runs_of_one_compiled_graph_do_not_see_each_others_mutations():
    async def grow(call: Any) -> VertexResult:
        return VertexResult(mutations=[AddVertex(vertex=PythonVertex(id="grown", function="tests.local:grow"))])

    engine = engine_for({"grow": grow})
    compiled = engine.compile(graph([vertex("seed", "grow")], [], ["seed"]))
    for _ in range(2):
        result = await engine.run(compiled)
        assert [m["vertex"]["id"] for m in result.events[0]["mutations_applied"]] == ["grown"]
    assert list(compiled.topology.vertices) == ["seed"]


# --- failures ---------------------------------------------------------------------------------


async def test_a_failing_call_is_retried_with_backoff_until_it_succeeds():
    attempts: list[int] = []

    async def flaky(call: Any) -> str:
        attempts.append(call.attempt)
        if call.attempt < 3:
            raise ConnectionError("try again")
        return "finally"

    spec = graph([vertex("flaky")], [], ["flaky"], limits={"retries": 2, "backoff_seconds": 0.001})
    result = await engine_for({"flaky": flaky}).run(spec)
    assert attempts == [1, 2, 3]
    assert result.outputs == {"flaky": "finally"} and result.errors == []
    assert result.events[0]["retries"] == 2
    assert result.figures["vertices"]["flaky"] | {"latency_p50_ms": 0, "latency_p99_ms": 0} == {
        "calls": 1, "errors": 0, "drops": 0, "retries": 2, "timeouts": 0, "latency_p50_ms": 0, "latency_p99_ms": 0,
        "bytes": None, "tokens": None, "cost": None,
    }


async def test_a_call_that_fails_every_attempt_halts_its_vertex_and_the_run_goes_on():
    calls = Calls()

    async def broken(call: Any) -> str:
        raise RuntimeError("boom")

    async def fine(call: Any) -> str:
        calls.note(call)
        return "fine"

    spec = graph(
        [vertex("src", "fine"), vertex("bad", "broken", retries=1), vertex("good", "fine"), vertex("after", "fine")],
        ["src -> bad", "src -> good", "bad -> after"],
        ["src"],
        limits={"backoff_seconds": 0},
    )
    result = await engine_for({"broken": broken, "fine": fine}).run(spec)

    assert result.status == "done"
    assert result.errors == [{"vertex": "bad", "superstep": 1, "attempts": 2, "error": "RuntimeError: boom"}]
    assert result.events[1]["errors"] == result.errors
    assert calls.of("after") == []  # the failed vertex sent nothing
    assert result.outputs == {"src": "fine", "good": "fine"}
    assert result.figures["edges"]["bad -> after"]["errors"] == 1


async def test_on_vertex_error_fail_ends_the_run_after_the_barrier():
    async def broken(call: Any) -> str:
        raise ValueError("no")

    async def fine(call: Any) -> str:
        return "fine"

    spec = graph(
        [vertex("bad", "broken"), vertex("ok", "fine"), vertex("next", "fine")], ["ok -> next"], ["bad", "ok"],
        limits={"on_vertex_error": "fail"},
    )
    result = await engine_for({"broken": broken, "fine": fine}).run(spec)
    assert (result.status, result.stop_reason, result.supersteps) == ("failed", "vertex_failed", 1)
    assert result.outputs == {"ok": "fine"}


async def test_a_call_that_exceeds_its_timeout_is_cancelled_and_retried():
    cancelled: list[int] = []

    async def hangs(call: Any) -> str:
        try:
            await forever().wait()
        except asyncio.CancelledError:
            cancelled.append(call.attempt)
            raise
        return "never"

    spec = graph([vertex("slow", "hangs", timeout_seconds=0.02, retries=1)], [], ["slow"], limits={"backoff_seconds": 0})
    result = await engine_for({"hangs": hangs}).run(spec)
    assert cancelled == [1, 2]
    assert result.errors == [{"vertex": "slow", "superstep": 0, "attempts": 2, "error": "no answer within 0.02 s"}]
    assert result.figures["vertices"]["slow"]["timeouts"] == 2


async def test_a_result_that_is_not_json_is_an_error_when_the_run_is_durable(tmp_path):
    async def odd(call: Any) -> Any:
        return {1, 2}

    spec = graph([vertex("odd")], [], ["odd"])
    assert (await engine_for({"odd": odd}).run(spec)).outputs == {"odd": {1, 2}}
    async with open_store(tmp_path / "runs.db") as store:
        result = await engine_for({"odd": odd}, store).run(spec)
    assert result.errors[0]["error"] == "the result is not JSON-serialisable: set is not JSON-serialisable"


# --- cancel, events, figures ------------------------------------------------------------------


@pytest.mark.parametrize("resumable", [False, True])
async def test_cancel_stops_the_run_and_its_calls(tmp_path, resumable):
    started, cancelled = asyncio.Event(), []

    async def blocks(call: Any) -> str:
        started.set()
        try:
            await forever().wait()
        except asyncio.CancelledError:
            cancelled.append(call.vertex_id)
            raise
        return "never"

    async def quick(call: Any) -> str:
        return "quick"

    spec = graph([vertex("quick"), vertex("b1", "blocks"), vertex("b2", "blocks")], ["quick -> b1", "quick -> b2"], ["quick"])
    async with open_store(tmp_path / "runs.db") as store:
        run = await engine_for({"blocks": blocks, "quick": quick}, store).start(spec)
        await started.wait()
        run.cancel(resumable=resumable)
        result = await run.result()
        stored = await store.get_run(run.run_id)

    assert sorted(cancelled) == ["b1", "b2"]
    assert result.outputs == {"quick": "quick"} and result.supersteps == 1
    if resumable:
        assert (result.status, result.stop_reason, stored.status) == ("running", "interrupted", "running")
    else:
        assert (result.status, result.stop_reason, stored.status) == ("cancelled", "cancelled", "cancelled")
        assert json.loads(stored.result)["outputs"] == {"quick": "quick"}


async def test_events_stream_to_iterators_and_callbacks_as_supersteps_finish():
    release = asyncio.Event()
    streamed, called_back = [], []

    async def step(call: Any) -> Any:
        if call.superstep == 1:
            await release.wait()
        return call.superstep if call.superstep < 2 else None

    async def on_event(event: Any) -> None:
        called_back.append(event.superstep)

    spec = graph([vertex("a", "step"), vertex("b", "step"), vertex("c", "step")], ["a -> b", "b -> c"], ["a"])
    run = await engine_for({"step": step}).start(spec, on_event=on_event)
    async for event in run.events():
        streamed.append((event.superstep, event.active, event.outputs))
        if event.superstep == 0:
            assert not release.is_set()  # superstep 0's event came while superstep 1 was still running
            release.set()
    result = await run.result()

    assert streamed == [(0, ["a"], {"a": 0}), (1, ["b"], {"b": 1}), (2, ["c"], {})]
    assert called_back == [0, 1, 2]
    assert [event.superstep async for event in run.events()] == [0, 1, 2]  # a late subscriber gets the history
    assert result.events[2]["outputs"] == [] and result.events[1]["outputs"] == ["b"]


async def test_figures_add_up_reported_usage_per_vertex_and_per_edge():
    async def agent(call: Any) -> VertexResult:
        return VertexResult(output=call.vertex_id, tokens=100, cost=0.01, bytes=2048)

    async def sink(call: Any) -> None:
        return None

    spec = graph([vertex("a", "agent"), vertex("b", "sink"), vertex("c", "sink")], ["a -> b", "a -> c"], ["a"])
    figures = (await engine_for({"agent": agent, "sink": sink}).run(spec)).figures

    assert figures["vertices"]["a"]["tokens"] == 100 and figures["vertices"]["a"]["cost"] == 0.01
    assert figures["vertices"]["a"]["bytes"] == 2048 and figures["vertices"]["b"]["tokens"] is None
    for edge in ("a -> b", "a -> c"):
        assert figures["edges"][edge]["messages"] == 1 and figures["edges"][edge]["tokens"] == 100
    assert figures["vertices"]["b"]["latency_p50_ms"] >= 0
    assert set(figures["vertices"]) == {"a", "b", "c"}


def plain_function(call: Any) -> str:
    """A plain (not async) function is a vertex too."""
    return f"plain {call.inbox[0]}"


async def test_the_python_kind_runs_functions_named_by_import_path_and_a_failing_callback_is_only_logged(caplog):
    def broken_callback(event: Any) -> None:
        raise RuntimeError("display broke")

    spec = graph([{"id": "p", "kind": "python", "function": "tests.unit.pregel.test_engine:plain_function"}], [], ["p"])
    result = await Engine().run(spec, "input", on_event=broken_callback)
    assert result.outputs == {"p": "plain input"}
    assert "the on_event callback failed on superstep 0" in caplog.text
