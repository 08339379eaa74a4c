"""Guarding the mesh: hazard categories, verdicts, the guard policy of mesh.yaml, the guard client and enforcement.

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
import hashlib
import json
import logging
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mesh.executor import AgentFailure

log = logging.getLogger("mesh.guard")

# Llama Guard 3's hazard taxonomy (MLCommons), plus prompt injection, which
# Llama Guard does not cover and the mesh checks separately.
CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
    "INJ": "Prompt Injection",
}
INJECTION = "INJ"
HAZARDS = tuple(code for code in CATEGORIES if code != INJECTION)

Check = Literal["input", "output"]


class GuardConfigError(ValueError):
    """mesh.yaml's guard sections are invalid; the message names the key."""


class GuardError(Exception):
    """The guard could not give a verdict (unreachable, timed out, model missing, unreadable output)."""


class GuardBlocked(AgentFailure):
    """Content was blocked by the guard; ``str()`` is the reason to show, naming the categories."""

    def __init__(self, reason: str, codes: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.codes = list(codes)


# -- verdicts --------------------------------------------------------------------------------------


class Turn(BaseModel):
    """One turn of the conversation to classify."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str


class Category(BaseModel):
    code: str
    name: str

    @classmethod
    def of(cls, code: str) -> Category:
        return cls(code=code, name=CATEGORIES[code])


class Verdict(BaseModel):
    """A guard's answer about one conversation: safe or not, and which categories it violates."""

    safe: bool
    categories: list[Category] = []
    check: Check
    backend: Literal["ollama", "embedded"]
    embedded: bool
    model: str
    latency_ms: float
    cached: bool = False
    content_hash: str
    # Why this backend answered (e.g. auto chose the embedded one because no
    # Ollama server answered); present in every verdict it applies to.
    note: str | None = None
    # The embedded backend's per-category evidence (nearest-exemplar similarity).
    scores: dict[str, float] = {}

    @property
    def codes(self) -> list[str]:
        return [c.code for c in self.categories]

    def summary(self) -> str:
        """One readable line: 'unsafe: S1 Violent Crimes, S9 ... (input, embedded all-MiniLM-L6-v2 kNN, 12.1 ms)'."""
        what = "safe" if self.safe else "unsafe: " + ", ".join(f"{c.code} {c.name}" for c in self.categories)
        how = f"{self.check}, {self.backend} {self.model}, {self.latency_ms:.1f} ms{', cached' if self.cached else ''}"
        return f"{what} ({how})" + (f"; {self.note}" if self.note else "")


def categories_of(codes: Iterable[str]) -> list[Category]:
    """Categories in taxonomy order, unknown codes refused."""
    wanted = set(codes)
    unknown = wanted - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown category codes: {', '.join(sorted(unknown))}")
    return [Category.of(code) for code in CATEGORIES if code in wanted]


def check_of(turns: Sequence[Turn]) -> Check:
    """Llama Guard checks the last turn: the user's input, or the agent's output after it."""
    if not turns:
        raise ValueError("nothing to classify: no turns")
    return "output" if turns[-1].role == "assistant" else "input"


def content_hash(turns: Sequence[Turn]) -> str:
    """sha256 over the roles and contents: the verdict cache key and what logs show instead of the content."""
    canonical = json.dumps([[t.role, t.content] for t in turns], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def as_turns(user: str, assistant: str | None = None) -> list[Turn]:
    turns = [Turn(role="user", content=user)]
    if assistant is not None:
        turns.append(Turn(role="assistant", content=assistant))
    return turns


# Per-category counts of the verdicts this process has given or received ("safe" counts safe ones).
VERDICT_COUNTS: Counter[str] = Counter()


def record_verdict(verdict: Verdict, length: int, where: str = "") -> None:
    """Log a verdict without its content (hash and length only) and count it per category."""
    VERDICT_COUNTS["total"] += 1
    if verdict.safe:
        VERDICT_COUNTS["safe"] += 1
    for code in verdict.codes:
        VERDICT_COUNTS[code] += 1
    log.info(
        "verdict%s check=%s safe=%s categories=%s backend=%s hash=%s len=%d latency_ms=%.2f cached=%s",
        f" {where}" if where else "", verdict.check, str(verdict.safe).lower(), ",".join(verdict.codes) or "-",
        verdict.backend, verdict.content_hash[:16], length, verdict.latency_ms, str(verdict.cached).lower(),
    )


class Classifier(Protocol):
    """Anything that turns a conversation into a verdict (the guard agent's backends, the guard client)."""

    async def classify(self, turns: Sequence[Turn]) -> Verdict: ...


class VerdictCache:
    """An LRU of verdicts keyed by content hash."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, Verdict] = OrderedDict()

    def get(self, key: str) -> Verdict | None:
        verdict = self._entries.get(key)
        if verdict is not None:
            self._entries.move_to_end(key)
        return verdict

    def put(self, key: str, verdict: Verdict) -> None:
        if self.size <= 0:
            return
        self._entries[key] = verdict
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    async def verdict(self, turns: Sequence[Turn], classify: Callable[[Sequence[Turn]], Awaitable[Verdict]]) -> Verdict:
        """The cached verdict for ``turns`` (marked cached), or ``classify(turns)``'s, remembered."""
        started = time.perf_counter()
        key = content_hash(turns)
        hit = self.get(key)
        if hit is not None:
            return hit.model_copy(update={"cached": True, "latency_ms": (time.perf_counter() - started) * 1000})
        verdict = await classify(turns)
        self.put(key, verdict)
        return verdict


class CachedClassifier:
    """Wraps a classifier with a VerdictCache: the same content is classified once."""

    def __init__(self, inner: Classifier, size: int) -> None:
        self.inner = inner
        self.cache = VerdictCache(size)

    async def classify(self, turns: Sequence[Turn]) -> Verdict:
        return await self.cache.verdict(turns, self.inner.classify)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# -- policy ----------------------------------------------------------------------------------------


class GuardPolicy(BaseModel):
    """mesh.yaml's ``guard:`` section (the mesh's policy) and ``agents.NAME.guard:`` (one agent's override)."""

    model_config = ConfigDict(extra="forbid")

    agent: str | None = Field(None, description="which agent of the mesh is the guard (top level only)")
    enabled: bool = True
    check: list[Check] = ["input", "output"]
    block: list[str] | Literal["all"] = "all"
    tool_block: list[str] = [INJECTION]
    on_error: Literal["block", "allow"] = "block"
    timeout_s: float = Field(30.0, gt=0, le=600)
    cache_size: int = Field(10_000, ge=0)
    stream_window_chars: int = Field(2000, ge=0, le=100_000)

    @field_validator("block", "tool_block")
    @classmethod
    def _known_codes(cls, value: Any) -> Any:
        if value == "all":
            return value
        unknown = [code for code in value if code not in CATEGORIES]
        if unknown:
            raise ValueError(f"unknown category {', '.join(unknown)} (known: {', '.join(CATEGORIES)}, or 'all')")
        return value

    def blocking(self, verdict: Verdict, codes: Iterable[str] | None = None) -> list[str]:
        """The codes of ``verdict`` that this policy blocks on (empty when it may pass)."""
        if verdict.safe:
            return []
        blocked = set(CATEGORIES) if (codes is None and self.block == "all") else set(codes if codes is not None else self.block)
        return [code for code in verdict.codes if code in blocked]


def policy_for(config: Any, name: str) -> GuardPolicy | None:
    """The policy agent ``name`` enforces, or None (no ``guard:`` section, disabled, or it is the guard itself).

    Raises GuardConfigError naming the key when a section is invalid (``mesh check``
    reports the same problems with file and line through ``policy_problems``).
    """
    if not config.guard:
        return None
    try:
        mesh_policy = GuardPolicy.model_validate(config.guard)
    except ValidationError as exc:
        raise GuardConfigError(f"{config.path}: guard: {_first_error(exc)}") from None
    if name == mesh_policy.agent:
        return None  # the guard never guards itself: that would recurse
    override = config.agent(name).guard or {}
    if "agent" in override:
        raise GuardConfigError(f"{config.path}: agents.{name}.guard.agent: the guard agent is chosen in the top-level guard: section")
    try:
        policy = GuardPolicy.model_validate({**mesh_policy.model_dump(exclude_unset=True), **override})
    except ValidationError as exc:
        raise GuardConfigError(f"{config.path}: agents.{name}.guard: {_first_error(exc)}") from None
    if not policy.enabled or not (policy.check or policy.tool_block):
        return None
    return policy


def guard_agent_of(config: Any) -> str | None:
    """The name of the mesh's guard agent (``guard.agent``), or None."""
    if not config.guard:
        return None
    return (config.guard or {}).get("agent")


def policy_problems(config: Any) -> list:
    """mesh.yaml's guard sections checked, each problem with file:line (for ``mesh check``)."""
    problems = []
    sections: list[tuple[tuple, dict]] = []
    if config.guard is not None:
        sections.append((("guard",), config.guard))
    for name, agent in config.agents.items():
        if agent.guard is not None:
            sections.append((("agents", name, "guard"), agent.guard))
    for path, raw in sections:
        if not isinstance(raw, dict):
            problems.append(config.problem(path, "must be a mapping (check:, block:, on_error:, ...)"))
            continue
        if path != ("guard",) and "agent" in raw:
            problems.append(config.problem((*path, "agent"), "the guard agent is chosen in the top-level guard: section"))
        try:
            GuardPolicy.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(p for p in error["loc"] if isinstance(p, str))[:1]
                message = (f"unknown key {error['loc'][-1]!r} (allowed: {', '.join(GuardPolicy.model_fields)})"
                           if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, "))
                problems.append(config.problem((*path, *loc), message))
    if config.guard:
        guard_name = config.guard.get("agent") if isinstance(config.guard, dict) else None
        if not guard_name:
            problems.append(config.problem(("guard",), "name the guard agent: agent: NAME (an agent of this mesh)"))
        elif guard_name not in config.agents:
            known = ", ".join(sorted(config.agents)) or "none"
            problems.append(config.problem(("guard", "agent"), f"no agent named {guard_name!r} (agents: {known})"))
    return problems


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg'].removeprefix('Value error, ')}" if where else error["msg"]


# -- the client of the guard agent -----------------------------------------------------------------


BATCH_SKILL = "classify-batch"  # a guard whose card lists this skill takes data {"batch": [{"turns": ...}, ...]}
BATCH_LIMIT = 64  # conversations per batch request


class GuardClient:
    """Asks the guard agent for verdicts over A2A (``message/send`` on HTTP/2), with an LRU verdict cache.

    One A2A round trip costs both sides a few milliseconds of CPU, as much as an
    embedded verdict itself. So when the guard's card offers the batch skill,
    checks are coalesced: at most ``max_in_flight`` requests are under way, and
    the checks that arrive meanwhile go together in the next one. A lone check
    is sent at once, as before.
    """

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0, cache_size: int = 10_000,
                 max_in_flight: int = 1) -> None:
        self.url = url
        self.token = token
        self.timeout_s = timeout_s
        self.cache = VerdictCache(cache_size)
        self.max_in_flight = max_in_flight
        self._http = None
        self._client = None
        self._batches = False
        self._opening = asyncio.Lock()
        self._queued: list[tuple[list[Turn], asyncio.Future]] = []
        self._sending = 0  # senders under way; counted by hand so that one ending cannot strand a queued check
        self._senders: set[asyncio.Task] = set()

    @classmethod
    def for_mesh(cls, config: Any, policy: GuardPolicy) -> GuardClient:
        name = policy.agent or guard_agent_of(config)
        if not name:
            raise GuardConfigError(f"{config.path}: guard.agent: name the guard agent")
        return cls(config.url_of(name), config.token_of(config.agent(name)), policy.timeout_s, policy.cache_size)

    async def classify(self, turns: Sequence[Turn]) -> Verdict:
        """The verdict for ``turns``; raises GuardError when the guard cannot answer in time."""
        return await self.cache.verdict(turns, self._verdict_in_time)

    async def _verdict_in_time(self, turns: Sequence[Turn]) -> Verdict:
        try:
            return await asyncio.wait_for(self._verdict(list(turns)), self.timeout_s)
        except TimeoutError:
            raise GuardError(f"the guard at {self.url} did not answer within {self.timeout_s:g}s") from None

    async def _verdict(self, turns: list[Turn]) -> Verdict:
        await self._open()
        if not self._batches:
            return await self._ask({"turns": [t.model_dump() for t in turns]})
        future = asyncio.get_running_loop().create_future()
        self._queued.append((turns, future))
        if self._sending < self.max_in_flight:
            self._sending += 1
            sender = asyncio.ensure_future(self._send_queued())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await future

    async def _send_queued(self) -> None:
        """Send what is queued, a batch at a time, until nothing is (each check's future gets its verdict or error)."""
        batch: list[tuple[list[Turn], asyncio.Future]] = []
        try:
            while self._queued:
                batch = [(t, f) for t, f in self._queued[:BATCH_LIMIT] if not f.done()]  # done: timed out meanwhile
                del self._queued[:BATCH_LIMIT]
                if not batch:
                    continue
                try:
                    if len(batch) == 1:
                        results: list[Verdict | GuardError] = [await self._ask({"turns": [t.model_dump() for t in batch[0][0]]})]
                    else:
                        results = await self._ask_batch([turns for turns, _ in batch])
                except GuardError as exc:
                    results = [exc] * len(batch)
                except Exception as exc:  # noqa: BLE001 - no check may wait forever for a verdict
                    results = [GuardError(f"the guard at {self.url} failed: {_reason(exc)}")] * len(batch)
                for (_, future), result in zip(batch, results):
                    if future.done():
                        continue
                    if isinstance(result, Verdict):
                        future.set_result(result)
                    else:
                        future.set_exception(result)
                batch = []
        finally:
            self._sending -= 1
            for _, future in batch:  # stopped (closed) in the middle of a request
                if not future.done():
                    future.set_exception(GuardError(f"the guard client for {self.url} was closed"))

    async def _ask_batch(self, conversations: list[list[Turn]]) -> list[Verdict | GuardError]:
        reply = await self._call({"batch": [{"turns": [t.model_dump() for t in turns]} for turns in conversations]})
        answers = reply.get("verdicts")
        if not isinstance(answers, list) or len(answers) != len(conversations):
            raise GuardError(f"the guard at {self.url} answered a batch of {len(conversations)} without as many verdicts")
        results: list[Verdict | GuardError] = []
        for answer in answers:
            if isinstance(answer, dict) and "error" in answer:
                results.append(GuardError(f"the guard at {self.url} could not classify: {answer['error']}"))
                continue
            try:
                results.append(Verdict.model_validate(answer))
            except ValidationError as exc:
                results.append(GuardError(f"the guard at {self.url} answered with no verdict: {_first_error(exc)}"))
        return results

    async def status(self) -> dict[str, Any]:
        """The guard agent's backend and counts (its 'status' skill)."""
        reply = await asyncio.wait_for(self._call({"status": True}), self.timeout_s)
        return reply

    async def _ask(self, data: dict) -> Verdict:
        reply = await self._call(data)
        try:
            return Verdict.model_validate(reply)
        except ValidationError as exc:
            raise GuardError(f"the guard at {self.url} answered with no verdict: {_first_error(exc)}") from None

    async def _call(self, data: dict) -> dict[str, Any]:
        import httpx
        from a2a.utils.errors import A2AError

        from mesh.client import send_request, user_message

        client = await self._open()
        result: Any = None
        try:
            async for event in client.send_message(send_request(user_message(data=data))):
                result = event
        except (httpx.HTTPError, A2AError, OSError) as exc:
            self._client = None  # reconnect (and re-read the card) next time
            raise GuardError(f"the guard at {self.url} cannot be reached: {_reason(exc)}") from None
        return _reply_data(result, self.url)

    async def _open(self):
        import httpx

        from mesh.client import fetch_card, http_client, open_client

        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                if self._http is None:
                    self._http = http_client(self.token, timeout=self.timeout_s)
                try:
                    card = await fetch_card(self._http, self.url)
                    self._client = await open_client(self._http, card, streaming=False)
                except (httpx.HTTPError, OSError, Exception) as exc:
                    raise GuardError(f"the guard at {self.url} cannot be reached: {_reason(exc)}") from None
                self._batches = any(skill.id == BATCH_SKILL for skill in card.skills)
            return self._client

    async def aclose(self) -> None:
        for sender in list(self._senders):
            sender.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        for _, future in self._queued:
            if not future.done():
                future.set_exception(GuardError(f"the guard client for {self.url} was closed"))
        self._queued.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
            self._client = None


def _reply_data(event: Any, url: str) -> dict[str, Any]:
    """The data part of the guard's reply: a Message, or a task that failed with the reason."""
    if event is None:
        raise GuardError(f"the guard at {url} sent no answer")
    kind = event.WhichOneof("payload")
    if kind == "message":
        for part in event.message.parts:
            if part.WhichOneof("content") == "data":
                return MessageToDict(part.data)
        raise GuardError(f"the guard at {url} answered without a data part")
    if kind == "task":
        reason = " ".join(p.text for p in event.task.status.message.parts if p.text) or "no reason given"
        raise GuardError(f"the guard at {url} could not classify: {reason}")
    raise GuardError(f"the guard at {url} answered with an unexpected {kind}")


def _reason(exc: BaseException) -> str:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        if text:
            return f"{type(exc).__name__}: {text}"
        exc = exc.__cause__ or exc.__context__
    return "unknown error"


# -- enforcement -----------------------------------------------------------------------------------


class Guard:
    """One agent's guard: its policy and the classifier it asks; decides what passes."""

    def __init__(self, agent: str, policy: GuardPolicy, classifier: Classifier) -> None:
        self.agent = agent
        self.policy = policy
        self.classifier = classifier

    async def decide(self, turns: Sequence[Turn], codes: Iterable[str] | None = None, what: str = "") -> Blocked | None:
        """None if the content may pass, else why it is blocked (the categories, or the guard's error)."""
        what = what or check_of(turns)
        try:
            verdict = await self.classifier.classify(turns)
        except GuardError as exc:
            if self.policy.on_error == "allow":
                log.warning("agent %s: guard unavailable, %s allowed (on_error: allow): %s", self.agent, what, exc)
                return None
            log.warning("agent %s: guard unavailable, %s blocked (on_error: block): %s", self.agent, what, exc)
            return Blocked(f"The guard could not check the {what} ({exc}); "
                           "it is blocked because the guard policy fails closed (on_error: block).", [], unsafe=False)
        record_verdict(verdict, sum(len(t.content) for t in turns), where=f"agent={self.agent} {what}")
        blocked = self.policy.blocking(verdict, codes)
        if not blocked:
            return None
        names = ", ".join(f"{code} ({CATEGORIES[code]})" for code in blocked)
        return Blocked(f"{what[:1].upper()}{what[1:]} blocked by the guard: {names}.", blocked, unsafe=True)

    async def check_tool_result(self, text: str, tool: str = "tool") -> None:
        """Raise GuardBlocked if a tool's result carries a prompt injection (or another tool_block category)."""
        if not self.policy.tool_block or not text.strip():
            return
        blocked = await self.decide(as_turns(text), self.policy.tool_block, what=f"result of {tool}")
        if blocked is not None:
            raise GuardBlocked(blocked.reason, blocked.codes)


@dataclass
class Blocked:
    """Why content is blocked: ``unsafe`` (categories) or the guard failed and the policy fails closed."""

    reason: str
    codes: list[str]
    unsafe: bool


_current_guard: contextvars.ContextVar[Guard | None] = contextvars.ContextVar("mesh_guard", default=None)


async def check_tool_result(text: str, tool: str = "tool") -> None:
    """For tool-using agents: call on every tool (MCP) result before using it.

    Raises GuardBlocked (an AgentFailure: a TaskAgent fails the task with its
    message) when the result carries a prompt injection. A no-op when the
    agent runs without a guard policy.
    """
    guard = _current_guard.get()
    if guard is not None:
        await guard.check_tool_result(text, tool)


def parts_text(parts: Iterable[Part]) -> str:
    """The text of parts to classify: text parts, the strings inside data parts, and text/* raw parts."""
    texts: list[str] = []
    for part in parts:
        kind = part.WhichOneof("content")
        if kind == "text":
            texts.append(part.text)
        elif kind == "data":
            texts.extend(_strings(MessageToDict(part.data)))
        elif kind == "raw" and part.media_type.startswith("text/"):
            texts.append(part.raw.decode("utf-8", "replace"))
    return "\n".join(t for t in texts if t.strip())


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
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
            blocked = await self.guard.decide(as_turns(user_text), what="input")
            if blocked is not None:
                state = TaskState.TASK_STATE_REJECTED if blocked.unsafe else TaskState.TASK_STATE_FAILED
                await _end_task(context, event_queue, state, blocked.reason, task_exists=context.current_task is not None)
                return
        queue = GuardedQueue(event_queue, self.guard, user_text, task_exists=context.current_task is not None)
        token = _current_guard.set(self.guard)
        try:
            run = asyncio.ensure_future(self.inner.execute(context, queue))
        finally:
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
        self._artifact_tails: dict[str, str] = {}

    async def enqueue_event(self, event: Any) -> None:
        if self.blocked is not None:
            return  # the executor is being stopped; nothing more of it is sent
        if "output" in self.guard.policy.check:
            text, commit = self._text_to_check(event)
            if text.strip():
                blocked = await self.guard.decide(as_turns(self.user_text, text), what="output")
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


def _status_text(status: TaskStatus) -> str:
    if not status.HasField("message") or status.message.role == Role.ROLE_USER:
        return ""
    return parts_text(status.message.parts)


async def _end_task(context: RequestContext, queue: EventQueue, state: int, reason: str, task_exists: bool) -> None:
    """End the request's task in ``state`` with ``reason`` as the agent's message, creating the task if needed."""
    task_id = context.task_id or (context.message.task_id if context.message else "") or str(uuid.uuid4())
    context_id = context.context_id or (context.message.context_id if context.message else "") or str(uuid.uuid4())
    if not task_exists:
        if context.message is not None and context.message.parts:
            task = new_task_from_user_message(context.message)
        else:
            task = Task(id=task_id, context_id=context_id, status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED))
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


async def guard_status(config: Any, timeout_s: float = 3.0) -> dict[str, Any] | None:
    """The running guard agent's status (backend, model, note, counts), or None when the mesh has no guard.

    For ``mesh ls`` and ``mesh up``'s table; a guard that does not answer
    gives ``{"error": reason}``.
    """
    name = guard_agent_of(config)
    if not name or name not in config.agents:
        return None
    client = GuardClient(config.url_of(name), config.token_of(config.agent(name)), timeout_s, cache_size=0)
    try:
        return {"agent": name, **await client.status()}
    except (GuardError, TimeoutError) as exc:
        return {"agent": name, "error": str(exc) or "timed out"}
    finally:
        await client.aclose()


def backend_label(status: dict[str, Any] | None) -> str:
    """'ollama llama-guard3:1b' / 'embedded' / 'embedded (auto: Ollama not answering)' / 'no answer', for tables.

    The full model description and the reason are in ``mesh ls --json``.
    """
    if not status:
        return ""
    if "error" in status:
        return "no answer"
    if status.get("backend") == "ollama":
        return f"ollama {status.get('model')}"
    return "embedded (auto: Ollama not answering)" if (status.get("note") or "").startswith("auto") else "embedded"


def guard_column(config: Any, names: Iterable[str], status: dict[str, Any] | None) -> dict[str, str]:
    """What ``mesh up``'s table and ``mesh ls`` show per agent in a GUARD column.

    The guard agent's row shows the backend it really uses (``status`` from
    ``guard_status``; ``embedded`` is always said, with the reason when auto
    chose it); other agents show what they check, or ``off``.
    """
    guard_name = guard_agent_of(config)
    column: dict[str, str] = {}
    for name in names:
        if name == guard_name:
            column[name] = "is the guard: " + backend_label(status)
            continue
        try:
            policy = policy_for(config, name)
        except GuardConfigError:
            column[name] = "invalid policy"
            continue
        column[name] = "off" if policy is None else "+".join(policy.check) or "tools only"
    return column
