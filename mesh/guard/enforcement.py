"""Enforcement: every agent's input, output and tool results checked against the guard policy.

Every local agent except the guard itself runs behind ``guard_executor``:

- its input is classified before its executor runs; blocked input ends the
  task REJECTED (unsafe) or FAILED (the guard could not answer and the
  policy fails closed), and the executor is never called;
- every event it enqueues (messages, status messages, artifacts) is
  classified before it reaches the real event queue; a blocked event is
  dropped, the executor is stopped, and the task FAILS with the reason;
- appended artifact chunks are checked as a window: the tail of what the
  artifact already sent plus the new chunk, so a sentence split across
  chunks is still seen whole;
- tool results coming back into an agent go through ``check_tool_result``
  (the injection check).

Verdicts come from the guard agent over A2A (``GuardClient``) and are cached
by a hash of the content. Nothing here imports ``agents/``.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from a2a.helpers import new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.types import (
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from google.protobuf.json_format import MessageToDict
from opentelemetry import trace

from mesh.errors import GuardError
from mesh.guard.client import GuardClient
from mesh.guard.policy import GuardPolicy, guard_agent_of, policy_for
from mesh.guard.verdicts import (
    CATEGORIES,
    Classifier,
    GuardBlocked,
    Turn,
    as_turns,
    check_of,
    record_verdict,
)
from mesh.telemetry import metrics, tracing

log = logging.getLogger(__name__)




# -- enforcement -----------------------------------------------------------------------------------


class Guard:
    """One agent's guard: its policy and the classifier it asks; decides what passes."""

    def __init__(self, agent: str, policy: GuardPolicy, classifier: Classifier) -> None:
        self.agent = agent
        self.policy = policy
        self.classifier = classifier

    async def decide(self, turns: Sequence[Turn], codes: Iterable[str] | None = None, what: str = "",
                     kind: str | None = None) -> Blocked | None:
        """None if the content may pass, else why it is blocked (the categories and what fired, or the guard's error).

        ``kind`` ('input', 'output' or 'tool') chooses the categories that block
        (``block``, ``output_block``, ``tool_block``) unless ``codes`` are given.
        """
        kind = kind or check_of(turns)
        what = what or kind
        with tracing.tracer().start_as_current_span("guard check", attributes={"mesh.agent": self.agent,
                                                                              "mesh.guard.what": what}) as span:
            blocked = await self._decide(turns, codes, what, kind)
            span.set_attribute("mesh.guard.blocked", blocked is not None)
            if blocked is not None:
                span.set_attribute("mesh.guard.categories", list(blocked.codes))
            return blocked

    async def _decide(self, turns: Sequence[Turn], codes: Iterable[str] | None, what: str, kind: str) -> Blocked | None:
        span = trace.get_current_span()
        size = len(turns[-1].content)
        if size > self.policy.max_chars:
            # Bounded work per message: the guard never reads more than max_chars of one check.
            metrics.record_block(self.agent, ["oversize"])
            span.set_attribute("mesh.guard.oversize", size)
            return Blocked(f"{_upper(what)} blocked unread: it holds {size:,} characters and the guard checks at most "
                           f"{self.policy.max_chars:,} (guard.max_chars in mesh.yaml).", [], unsafe=True)
        turns = [t if len(t.content) <= self.policy.max_chars else Turn(role=t.role, content=t.content[-self.policy.max_chars:])
                 for t in turns]  # the context of an output check: its last max_chars
        try:
            verdict = await self.classifier.classify(turns)
        except GuardError as exc:
            span.set_attribute("mesh.guard.error", str(exc)[:200])
            if self.policy.on_error == "allow":
                log.warning("agent %s: guard unavailable, %s allowed (on_error: allow): %s", self.agent, what, exc)
                return None
            log.warning("agent %s: guard unavailable, %s blocked (on_error: block): %s", self.agent, what, exc)
            metrics.record_block(self.agent, ["guard_error"])
            return Blocked(f"The guard could not check the {what} ({exc}); "
                           "it is blocked because the guard policy fails closed (on_error: block).", [], unsafe=False)
        record_verdict(verdict, sum(len(t.content) for t in turns), where=f"agent={self.agent} {what}")
        span.set_attributes({"mesh.guard.safe": verdict.safe, "mesh.guard.verdict_categories": list(verdict.codes),
                             "mesh.guard.backend": verdict.backend, "mesh.guard.cached": verdict.cached})
        blocked = self.policy.blocking(verdict, codes, check=kind)
        if not blocked:
            return None
        metrics.record_block(self.agent, blocked)
        names = ", ".join(f"{code} ({CATEGORIES[code]})" for code in blocked)
        fired = verdict.explain(blocked)
        key = self.policy.key_for(kind)
        return Blocked(f"{_upper(what)} blocked by the guard: {names}" + (f" [{fired}]" if fired else "") +
                       f". To let such {kind} content through, leave {', '.join(blocked)} out of guard.{key} in mesh.yaml "
                       f"(agents.{self.agent}.guard.{key} for this agent alone).", blocked, unsafe=True)

    async def check_tool_result(self, text: str, tool: str = "tool", trusted: list[str] | None = None) -> None:
        """Raise GuardBlocked if a tool's result carries a prompt injection (or another tool_block category).

        A trusted tool's result (``guard.trusted_tools``: the operator's own content, the mesh's
        calculator, its documents) is not screened, and is added to ``trusted``: what an agent
        relays of it verbatim is not screened again as its output.
        """
        if tool.split(".", 1)[0] in self.policy.trusted_tools:
            if trusted is not None and text.strip():
                trusted.append(text)
                trusted.extend(_json_strings(text))  # as the agent relays them in a data part
            return
        if not self.policy.tool_block or not text.strip():
            return
        blocked = await self.decide(as_turns(text), what=f"result of {tool}", kind="tool")
        if blocked is not None:
            raise GuardBlocked(blocked.reason, blocked.codes)


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


@dataclass
class Blocked:
    """Why content is blocked: ``unsafe`` (categories) or the guard failed and the policy fails closed."""

    reason: str
    codes: list[str]
    unsafe: bool


_current_guard: contextvars.ContextVar[Guard | None] = contextvars.ContextVar("mesh_guard", default=None)
# The texts of trusted tool results of the execution under way (see Guard.check_tool_result).
_trusted_texts: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("mesh_trusted_texts", default=None)


async def check_tool_result(text: str, tool: str = "tool") -> None:
    """For tool-using agents: call on every tool (MCP) result before using it.

    Raises GuardBlocked (an AgentFailure: a TaskAgent fails the task with its
    message) when the result carries a prompt injection. A no-op when the
    agent runs without a guard policy.
    """
    guard = _current_guard.get()
    if guard is not None:
        await guard.check_tool_result(text, tool, _trusted_texts.get())


def parts_text(parts: Iterable[Part]) -> str:
    """All the text of parts the guard must read, whatever the part.

    Text parts joined as they are (a sentence split across parts is whole
    again); data parts' keys and string values; file parts of any media type:
    their name, their URI (percent-decoded) and their bytes as text when they
    decode as UTF-8, else the runs of printable characters in them.
    """
    texts: list[str] = []
    run = ""
    for part in parts:
        kind = part.WhichOneof("content")
        if kind == "text":
            run += part.text
            continue
        if run:
            texts.append(run)
            run = ""
        if part.filename:
            texts.append(part.filename)
        if kind == "data":
            texts.extend(_strings(MessageToDict(part.data)))
        elif kind == "raw":
            texts.append(bytes_text(part.raw))
        elif kind == "url":
            texts.append(unquote(part.url))
    if run:
        texts.append(run)
    return "\n".join(t for t in texts if t.strip())


_PRINTABLE_RUN = re.compile(rb"[\x20-\x7e\t\n\r]{4,}")


def bytes_text(raw: bytes) -> str:
    """The text in a file part's bytes: all of it when it is UTF-8 (or UTF-16 with a BOM), else its printable runs."""
    for encoding in (("utf-16",) if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ()) + ("utf-8",):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            pass
    return "\n".join(m.group(0).decode("ascii") for m in _PRINTABLE_RUN.finditer(raw))


def _json_strings(text: str) -> list[str]:
    """The strings inside ``text`` when it is a JSON document (else none)."""
    try:
        return list(_strings(json.loads(text)))
    except (ValueError, RecursionError):
        return []


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


class GuardedExecutor(AgentExecutor):
    """An agent's executor behind the guard (see the module docstring for what is checked and when)."""

    def __init__(self, inner: AgentExecutor, guard: Guard) -> None:
        self.inner = inner
        self.guard = guard

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        user_text = parts_text(context.message.parts) if context.message else ""
        policy = self.guard.policy
        if "input" in policy.check and user_text.strip():
            blocked = await self.guard.decide(as_turns(user_text), what="input", kind="input")
            if blocked is not None:
                state = TaskState.TASK_STATE_REJECTED if blocked.unsafe else TaskState.TASK_STATE_FAILED
                await _end_task(context, event_queue, state, blocked.reason, task_exists=context.current_task is not None)
                return
        queue = GuardedQueue(event_queue, self.guard, user_text, task_exists=context.current_task is not None)
        token = _current_guard.set(self.guard)
        trusted_token = _trusted_texts.set(queue.trusted)
        try:
            run = asyncio.ensure_future(self.inner.execute(context, queue))  # the task copies both variables
        finally:
            _trusted_texts.reset(trusted_token)
            _current_guard.reset(token)
        queue.run = run
        try:
            await run
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if queue.blocked is None or (current is not None and current.cancelling()):
                run.cancel()
                raise
        if queue.blocked is not None:
            await _end_task(context, event_queue, TaskState.TASK_STATE_FAILED, queue.blocked, queue.task_exists)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        # A cancel publishes only the canceled state and the executor's own words about it.
        await self.inner.cancel(context, GuardedQueue(event_queue, self.guard, "", task_exists=True))


class GuardedQueue(EventQueue):
    """The event queue handed to a guarded executor: every event is checked before it goes on."""

    def __init__(self, inner: EventQueue, guard: Guard, user_text: str, task_exists: bool) -> None:
        self.inner = inner
        self.guard = guard
        self.user_text = user_text
        self.task_exists = task_exists
        self.blocked: str | None = None
        self.run: asyncio.Future | None = None
        self.trusted: list[str] = []  # results of trusted tools in this execution
        self._artifact_tails: dict[str, str] = {}

    async def enqueue_event(self, event: Any) -> None:
        if self.blocked is not None:
            return  # the executor is being stopped; nothing more of it is sent
        if "output" in self.guard.policy.check:
            text, commit = self._text_to_check(event)
            text = without_relayed(text, self.trusted)
            if text.strip():
                blocked = await self.guard.decide(as_turns(self.user_text, text), what="output", kind="output")
                if blocked is not None:
                    self.blocked = blocked.reason
                    if self.run is not None and not self.run.done():
                        self.run.cancel()
                    return
            commit()
        if isinstance(event, Task):
            self.task_exists = True
        await self.inner.enqueue_event(event)

    def _text_to_check(self, event: Any) -> tuple[str, Any]:
        """The text of ``event`` the guard must see, and what to remember once it passed."""
        nothing = lambda: None  # noqa: E731
        if isinstance(event, Message):
            return (parts_text(event.parts) if event.role != Role.ROLE_USER else ""), nothing
        if isinstance(event, TaskStatusUpdateEvent):
            return _status_text(event.status), nothing
        if isinstance(event, Task):
            texts = [_status_text(event.status), *(parts_text(a.parts) for a in event.artifacts)]
            return "\n".join(t for t in texts if t), nothing
        if isinstance(event, TaskArtifactUpdateEvent):
            return self._artifact_window(event)
        return "", nothing

    def _artifact_window(self, event: TaskArtifactUpdateEvent) -> tuple[str, Any]:
        artifact_id = event.artifact.artifact_id
        chunk = parts_text(event.artifact.parts)
        window = self.guard.policy.stream_window_chars
        previous = self._artifact_tails.get(artifact_id, "") if event.append else ""
        # Chunks are pieces of one continuous text: joined as they are, a sentence split across them is whole again.
        text = previous + chunk

        def commit() -> None:
            self._artifact_tails[artifact_id] = text[-window:] if window else ""

        if not chunk.strip():
            return "", commit
        return text, commit


def without_relayed(text: str, trusted: Sequence[str]) -> str:
    """``text`` less what it relays verbatim of a trusted tool's result: whole lines, or the rest of a line
    after a short label ("concepts.md:19-23 (0.51): <the passage>" keeps "concepts.md:19-23 (0.51):")."""
    if not trusted or not text.strip():
        return text
    return "\n".join(_unrelayed(line, trusted) for line in text.splitlines())


def _unrelayed(line: str, trusted: Sequence[str]) -> str:
    stripped = line.strip()
    if not stripped or any(stripped in source for source in trusted):
        return ""
    for space in re.finditer(r"\s", stripped[:120]):
        rest = stripped[space.end():]
        if len(rest) >= 20 and any(rest in source for source in trusted):
            return stripped[: space.start()]
    return line


def _status_text(status: TaskStatus) -> str:
    if not status.HasField("message") or status.message.role == Role.ROLE_USER:
        return ""
    return parts_text(status.message.parts)


async def _end_task(context: RequestContext, queue: EventQueue, state: int, reason: str, task_exists: bool) -> None:
    """End the request's task in ``state`` with ``reason`` as the agent's message, creating the task if needed."""
    task_id = context.task_id or (context.message.task_id if context.message else "") or str(uuid.uuid4())
    context_id = context.context_id or (context.message.context_id if context.message else "") or str(uuid.uuid4())
    if not task_exists:
        if context.message is not None and context.message.parts and context.message.role == Role.ROLE_USER:
            task = new_task_from_user_message(context.message)
        else:  # no message, or one with no/another role (a2a-sdk's helper refuses those): a task of our own
            task = Task(id=task_id, context_id=context_id, status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED))
            if context.message is not None:
                task.history.append(context.message)
        await queue.enqueue_event(task)
        task_id, context_id = task.id, task.context_id
    message = Message(role=Role.ROLE_AGENT, message_id=str(uuid.uuid4()), task_id=task_id, context_id=context_id,
                      parts=[Part(text=reason)])
    status = TaskStatus(state=state, message=message)
    status.timestamp.GetCurrentTime()
    await queue.enqueue_event(TaskStatusUpdateEvent(task_id=task_id, context_id=context_id, status=status))


def guard_executor(inner: AgentExecutor, policy: GuardPolicy, client: Classifier, agent: str = "agent") -> AgentExecutor:
    """``inner`` behind the guard: inputs checked before it runs, every event checked before it is sent."""
    return GuardedExecutor(inner, Guard(agent, policy, client))


def guard_for_agent(config: Any, name: str, executor: AgentExecutor) -> tuple[AgentExecutor, GuardClient | None]:
    """The executor agent ``name`` should serve under mesh.yaml's guard policy, and the client to close at shutdown.

    Unchanged (and no client) when the mesh has no guard policy for it,
    including the guard agent itself.
    """
    policy = policy_for(config, name)
    if policy is None:
        return executor, None
    client = GuardClient.for_mesh(config, policy)
    log.info("agent %s: guarded by %s (check: %s; block: %s; on error: %s)", name, policy.agent or guard_agent_of(config),
             ", ".join(policy.check) or "none", policy.block if isinstance(policy.block, str) else ",".join(policy.block),
             policy.on_error)
    return guard_executor(executor, policy, client, name), client
