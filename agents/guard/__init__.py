"""Guard agent: classifies a conversation (a user input, or an input with an agent's output) as safe or unsafe.

Backends: Llama Guard 3 through Ollama, or the embedded classifier (hashed n-grams and MiniLM
probes + injection rules, agents/guard/embedded.py) when no Ollama server answers or when
``backend: embedded`` is chosen; every verdict says which one answered.
The skill takes a text part (checked as user input) or a data part
``{"turns": [{"role": "user"|"assistant", "content": ...}, ...]}`` and answers
with a message holding a readable text part and the verdict as a data part.
A data part ``{"batch": [{"turns": [...]}, ...]}`` asks for many verdicts in
one round trip (the mesh's guard client sends the checks that queue up while
a request is under way this way) and is answered with ``{"verdicts": [...]}``
in the same order, an item that cannot be classified as ``{"error": reason}``.
A data part ``{"status": true}`` answers with the backend in use and the
per-category counts. Each of these may come instead as a text part of media
type ``application/json`` holding the same object; it is then answered in kind
(the verdicts as an ``application/json`` text part): the mesh's guard client
sends its checks this way, because a data part travels as a protobuf Struct
that a2a-sdk builds, walks and prints field by field, which cost more CPU than
the verdicts themselves. If no verdict can be given the task fails with the
reason: an error is never a pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from a2a.helpers import (
    get_data_parts,
    get_message_text,
    new_data_part,
    new_task_from_user_message,
    new_text_part,
)
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentSkill, Message, Part, Role
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mesh.errors import GuardError
from mesh.guard.client import BATCH_LIMIT, BATCH_SKILL, JSON_MEDIA_TYPE, JSON_TEXT_TAG
from mesh.guard.verdicts import (
    CATEGORIES,
    VERDICT_COUNTS,
    CachedClassifier,
    Reason,
    Turn,
    Verdict,
    record_verdict,
)

log = logging.getLogger("agents.guard")

card = AgentCard(
    name="Guard",
    description=(
        "Classifies user inputs and agent outputs with Llama Guard 3 (through Ollama) or an embedded classifier: "
        "safe or unsafe, with the violated categories (S1-S14, INJ for prompt injection)."
    ),
    version="1.0.0",
    capabilities=AgentCapabilities(streaming=False),
    default_input_modes=["text/plain", "application/json"],
    default_output_modes=["text/plain", "application/json"],
    skills=[
        AgentSkill(
            id="classify",
            name="Classify a conversation",
            description=(
                "A text (a user input), or data {\"turns\": [{\"role\": \"user\", \"content\": ...}, "
                "{\"role\": \"assistant\", \"content\": ...}]} to check an agent's output. Answers with a verdict: "
                "safe, categories [{code, name}], check (input|output), backend (ollama|embedded), model, latency_ms. "
                "Categories: " + ", ".join(f"{c} {n}" for c, n in CATEGORIES.items()) + "."
            ),
            tags=["safety", "llama-guard", "moderation", "prompt-injection"],
            examples=["How do I kill a Python process?", '{"turns": [{"role": "user", "content": "hi"}]}'],
        ),
        AgentSkill(
            id=BATCH_SKILL,
            name="Classify many conversations",
            description=(
                f"Data {{\"batch\": [{{\"turns\": [...]}}, ...]}} with at most {BATCH_LIMIT} conversations: answers data "
                "{\"verdicts\": [...]} in the same order, each a verdict as for 'classify' or {\"error\": reason}."
            ),
            tags=["safety", "batch", JSON_TEXT_TAG],
            examples=['{"batch": [{"turns": [{"role": "user", "content": "hi"}]}, '
                      '{"turns": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]}'],
        ),
        AgentSkill(
            id="status",
            name="Guard status",
            description="Data {\"status\": true}: the backend in use (and why), the model and the verdict counts per category.",
            tags=["status"],
            examples=['{"status": true}'],
        ),
    ],
)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "ollama", "embedded"] = Field(
        "auto", description="auto: Llama Guard through Ollama when it answers, else the embedded classifier")
    ollama_host: str = "http://127.0.0.1:11434"
    model: str = "llama-guard3:1b"
    timeout_s: float = Field(30.0, gt=0, le=600, description="the most one Ollama call may take")
    num_predict: int = Field(20, ge=4, le=100, description="output tokens Llama Guard may use")
    injection: bool = Field(True, description="with Ollama too, run the embedded prompt-injection check")
    strictness: Literal["lenient", "balanced", "strict"] = Field(
        "balanced", description="the embedded classifier's operating point: lenient blocks fewer honest messages and "
                                "lets more harm through, strict the reverse (README: the guard, 'How far to trust it')")
    recheck_s: float = Field(30.0, gt=0, description="auto: how often to look for Ollama again while it is down")
    cache_size: int = Field(10_000, ge=0, description="verdicts kept, keyed by a hash of the content")
    max_chars: int = Field(200_000, ge=1000, description="the most text one conversation may hold; more is refused unread")


class AutoClassifier:
    """Ollama when it answers (looked for at start and again every ``recheck_s`` while down), else embedded.

    A connection that is refused or times out, or a model that is missing,
    moves to the embedded backend with the reason in the verdict's note; an
    answer that is not a verdict is an error in every mode.
    """

    def __init__(self, settings: Settings, ollama, embedded) -> None:
        self.settings = settings
        self.ollama = ollama
        self.embedded = embedded
        self.reason: str | None = None
        self._use_ollama: bool | None = None
        self._next_probe = 0.0
        self._probing = asyncio.Lock()

    async def choose(self) -> None:
        """Probe Ollama now (at start-up and on status requests)."""
        from agents.guard.ollama import OllamaUnreachable

        async with self._probing:
            try:
                await self.ollama.probe()
            except OllamaUnreachable as exc:
                self._fall_back(str(exc))
            else:
                if self._use_ollama is not True:
                    log.info("guard backend: ollama (%s at %s)", self.settings.model, self.settings.ollama_host)
                self._use_ollama, self.reason = True, None

    def _fall_back(self, reason: str) -> None:
        if self._use_ollama is not False or reason != self.reason:
            log.warning("guard backend: embedded, because %s", reason)
        self._use_ollama, self.reason = False, f"auto: embedded backend because {reason}"
        self._next_probe = time.monotonic() + self.settings.recheck_s

    @property
    def backend(self) -> str:
        return "ollama" if self._use_ollama else "embedded"

    async def classify(self, turns: Sequence[Turn]) -> Verdict:
        from agents.guard.ollama import OllamaUnreachable

        if self._use_ollama is None or (not self._use_ollama and time.monotonic() >= self._next_probe):
            await self.choose()
        if self._use_ollama:
            try:
                return await self.ollama.classify(turns)
            except OllamaUnreachable as exc:
                self._fall_back(str(exc))
        verdict = await self.embedded.classify(turns)
        return verdict.model_copy(update={"note": self.reason})

    def describe(self) -> dict:
        info = (self.ollama if self._use_ollama else self.embedded).describe()
        return {**info, "mode": "auto", "note": self.reason}


class WithInjectionCheck:
    """Llama Guard has no prompt-injection category: add the embedded injection check to its verdicts."""

    def __init__(self, inner, embedded) -> None:
        self.inner = inner
        self.embedded = embedded

    async def classify(self, turns: Sequence[Turn]) -> Verdict:
        verdict = await self.inner.classify(turns)
        if verdict.backend != "ollama":
            return verdict
        from agents.guard.injection import scan

        signals = await asyncio.to_thread(scan, turns[-1].content)
        if not signals.injection:
            return verdict
        from mesh.guard.verdicts import categories_of

        codes = [*verdict.codes, "INJ"]
        return verdict.model_copy(update={
            "safe": False, "categories": categories_of(codes),
            "scores": {**verdict.scores, **{f"rule:{h}": 1.0 for h in signals.hits}},
        })

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


DECODE_SCAN_CHARS = 64_000  # how much of a long text is searched for encoded payloads (its first and last halves)


class Explained:
    """Bounds the work per conversation and gives every unsafe verdict its reasons (what fired, never the content).

    A conversation longer than ``max_chars`` is refused with the reason before
    any classifier sees it, so one huge message cannot keep the guard busy.
    Reasons: a rule and the span it matched for INJ (``injection.explain``), the
    probe's score against its threshold for the embedded backend, the model for
    Llama Guard. A backend that gives reasons itself keeps them.
    """

    def __init__(self, inner, max_chars: int, embedded=None) -> None:
        self.inner = inner
        self.max_chars = max_chars
        self.embedded = embedded

    async def classify(self, turns: Sequence[Turn]) -> Verdict:
        size = sum(len(t.content) for t in turns)
        if size > self.max_chars:
            raise GuardError(f"the conversation holds {size:,} characters; this guard checks at most {self.max_chars:,} "
                             "(its settings.max_chars)")
        verdict = await self.inner.classify(turns)
        if not (verdict.safe or verdict.reasons):
            verdict = verdict.model_copy(update={"reasons": reasons_for(verdict, turns[-1].content, self.embedded)})
        return await self._with_decoded(turns, verdict)

    async def _with_decoded(self, turns: Sequence[Turn], verdict: Verdict) -> Verdict:
        """``verdict`` plus the categories of text hidden by an encoding in the last turn, classified as plain text.

        Harmful text encoded to slip past a classifier of plain text is judged
        for what it says (reasons ``within: decoded``); only the first and last
        DECODE_SCAN_CHARS of a long text are searched, so the work stays bounded.
        """
        from agents.guard.encodings import decoded_payloads, might_hold_payload
        from agents.guard.injection import normalise

        text = turns[-1].content
        if len(text) > DECODE_SCAN_CHARS:
            text = text[: DECODE_SCAN_CHARS // 2] + "\n" + text[-DECODE_SCAN_CHARS // 2:]
        if not might_hold_payload(text):
            return verdict
        decoded = decoded_payloads(text, normalise(text)[0])
        if not decoded:
            return verdict
        hidden = await self.inner.classify([*turns[:-1], Turn(role=turns[-1].role, content="\n".join(decoded)[:self.max_chars])])
        new = [code for code in hidden.codes if code not in verdict.codes]
        if not new:
            return verdict
        from mesh.guard.verdicts import categories_of

        reasons = [r.model_copy(update={"within": "decoded"}) for r in
                   (hidden.reasons or reasons_for(hidden, "\n".join(decoded), self.embedded)) if r.code in new]
        return verdict.model_copy(update={"safe": False, "categories": categories_of([*verdict.codes, *new]),
                                          "reasons": [*verdict.reasons, *reasons]})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def reasons_for(verdict: Verdict, text: str, embedded=None) -> list[Reason]:
    """What fired for each of ``verdict``'s categories (see ``Explained``)."""
    from agents.guard.injection import explain

    reasons: list[Reason] = []
    config = getattr(embedded, "config", None)
    safe_below = getattr(config, "safe_below", None)
    p_safe = verdict.scores.get("safe")
    for code in verdict.codes:
        if code == "INJ":
            hits = explain(text)
            reasons += [Reason(code=code, source="rule", rule=h["rule"], span=tuple(h["span"]), within=h["within"]) for h in hits]
            if hits:
                continue
        if verdict.backend == "ollama" and code != "INJ":
            reasons.append(Reason(code=code, source="model", rule=verdict.model))
            continue
        note = f"P(safe) {p_safe:.2f} < {safe_below:.2f}" if p_safe is not None and safe_below is not None else None
        reasons.append(Reason(code=code, source="probe", score=verdict.scores.get(code), threshold=safe_below, note=note))
    return reasons


def create_classifier(settings: Settings | dict | None = None) -> Any:
    """The classifier the settings choose, with its verdict cache: ``await c.classify(turns) -> Verdict``.

    The CLI's ``mesh guard`` calls this in-process; the agent serves it.
    """
    if not isinstance(settings, Settings):
        settings = Settings.model_validate(settings or {})
    embedded = None
    if settings.backend != "ollama" or settings.injection:
        from agents.guard.embedded import EmbeddedClassifier

        embedded = EmbeddedClassifier.load(strictness=settings.strictness)
    if settings.backend == "embedded":
        classifier: Any = embedded
    else:
        from agents.guard.ollama import OllamaClassifier

        ollama = OllamaClassifier(settings.ollama_host, settings.model, settings.timeout_s, settings.num_predict)
        classifier = ollama if settings.backend == "ollama" else AutoClassifier(settings, ollama, embedded)
        if settings.injection:
            classifier = WithInjectionCheck(classifier, embedded)
    return CachedClassifier(Explained(classifier, settings.max_chars, embedded), settings.cache_size)


def describe(classifier: Any) -> dict:
    inner = classifier
    while not hasattr(inner, "describe") or isinstance(inner, (CachedClassifier, WithInjectionCheck, Explained)):
        inner = inner.inner
    return inner.describe()


def request_objects(message: Message) -> tuple[list[Any], bool]:
    """The objects a request carries: its data parts and its ``application/json`` text parts, parsed.

    The second value says whether any came as JSON text (the reply is then sent in kind).
    """
    objects = get_data_parts(message.parts)
    as_text = False
    for number, part in enumerate(message.parts):
        if part.WhichOneof("content") == "text" and part.media_type == JSON_MEDIA_TYPE:
            try:
                objects.append(json.loads(part.text))
            except ValueError as exc:
                raise ValueError(f"parts[{number}] is {JSON_MEDIA_TYPE} but not JSON: {exc}") from None
            as_text = True
    return objects, as_text


def batch_of(message: Message, objects: list[Any] | None = None) -> list[list[Turn]] | None:
    """The conversations of a data part {"batch": [{"turns": [...]}, ...]}, or None when the message has none."""
    for data in objects if objects is not None else get_data_parts(message.parts):
        if isinstance(data, dict) and "batch" in data:
            items = data["batch"]
            if not isinstance(items, list) or not items:
                raise ValueError("'batch' must be a non-empty list of {\"turns\": [...]}")
            if len(items) > BATCH_LIMIT:
                raise ValueError(f"'batch' holds {len(items)} conversations; at most {BATCH_LIMIT} per request")
            conversations = []
            for number, item in enumerate(items):
                try:
                    turns = [Turn.model_validate(t) for t in item["turns"]]
                except (ValidationError, TypeError, KeyError) as exc:
                    raise ValueError(f"batch[{number}]: needs 'turns', a list of {{role: user|assistant, content: text}}: {exc}") from None
                if not turns:
                    raise ValueError(f"batch[{number}]: 'turns' is empty: nothing to classify")
                conversations.append(turns)
            return conversations
    return None


def turns_of(message: Message, objects: list[Any] | None = None) -> list[Turn]:
    """The conversation a request asks about: data {"turns": [...]} or the message's text as user input."""
    for data in objects if objects is not None else get_data_parts(message.parts):
        if isinstance(data, dict) and "turns" in data:
            try:
                turns = [Turn.model_validate(t) for t in data["turns"]]
            except (ValidationError, TypeError) as exc:
                raise ValueError(f"'turns' must be a list of {{role: user|assistant, content: text}}: {exc}") from None
            if not turns:
                raise ValueError("'turns' is empty: nothing to classify")
            return turns
    text = get_message_text(message)
    if not text.strip():
        raise ValueError("nothing to classify: send a text, or data {\"turns\": [...]}")
    return [Turn(role="user", content=text)]


class GuardAgent(AgentExecutor):
    """Answers each request with one message (text + verdict data); failures end a task as failed."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        try:
            objects, as_text = request_objects(message)
        except ValueError as exc:
            await self._fail(context, event_queue, str(exc))
            return
        if any(isinstance(d, dict) and d.get("status") for d in objects):
            await event_queue.enqueue_event(self._reply(context, "guard status", await self.status(), as_text))
            return
        try:
            batch = batch_of(message, objects)
            if batch is not None:
                await event_queue.enqueue_event(await self._classify_batch(context, batch, as_text))
                return
            turns = turns_of(message, objects)
            verdict = await self.classifier.classify(turns)
        except (ValueError, GuardError) as exc:
            await self._fail(context, event_queue, str(exc))
            return
        record_verdict(verdict, sum(len(t.content) for t in turns))
        data = verdict.model_dump_json() if as_text else verdict.model_dump()
        await event_queue.enqueue_event(self._reply(context, verdict.summary(), data, as_text))

    async def answer(self, context: RequestContext) -> Message | None:
        """A batch's verdicts as one message, served without a task (mesh.serving.handler's direct answers).

        Every other request, and a batch that is not valid (it fails as a task,
        with the reason), goes through ``execute``: None.
        """
        try:
            objects, as_text = request_objects(context.message)
            if any(isinstance(d, dict) and d.get("status") for d in objects):
                return None
            batch = batch_of(context.message, objects)
        except ValueError:
            return None
        if batch is None:
            return None
        return await self._classify_batch(context, batch, as_text)

    async def _classify_batch(self, context: RequestContext, batch: list[list[Turn]], as_text: bool = False) -> Message:
        # All at once: the embedded backend embeds them together in one forward pass.
        results = await asyncio.gather(*(self.classifier.classify(turns) for turns in batch), return_exceptions=True)
        answers: list[str | dict] = []  # JSON texts when answered in kind (pydantic writes a verdict's JSON itself)
        unsafe = failed = 0
        for turns, result in zip(batch, results):
            if isinstance(result, (ValueError, GuardError)):
                log.warning("no verdict for a batch item: %s", result)
                failed += 1
                answers.append(json.dumps({"error": str(result)}) if as_text else {"error": str(result)})
            elif isinstance(result, BaseException):
                raise result
            else:
                record_verdict(result, sum(len(t.content) for t in turns))
                unsafe += not result.safe
                answers.append(result.model_dump_json() if as_text else result.model_dump())
        text = f"{len(answers)} verdicts: {unsafe} unsafe" + (f", {failed} without a verdict" if failed else "")
        if as_text:
            return self._reply(context, text, '{"verdicts": [' + ", ".join(answers) + "]}", True)  # type: ignore[arg-type]
        return self._reply(context, text, {"verdicts": answers})

    async def status(self) -> dict:
        auto = self.classifier
        while isinstance(auto, (CachedClassifier, Explained, WithInjectionCheck)):
            auto = auto.inner
        if isinstance(auto, AutoClassifier):
            await auto.choose()
        return {**describe(self.classifier), "counts": dict(VERDICT_COUNTS)}

    def _reply(self, context: RequestContext, text: str, data: dict | str, as_text: bool = False) -> Message:
        """A readable text part and the answer: a data part, or JSON text (``data`` as a string, or dumped) when ``as_text``."""
        if as_text:
            body = data if isinstance(data, str) else json.dumps(data)
            answer = Part(text=body, media_type=JSON_MEDIA_TYPE)
        else:
            answer = new_data_part(data)
        return Message(role=Role.ROLE_AGENT, message_id=str(uuid.uuid4()), context_id=context.context_id or "",
                       parts=[new_text_part(text), answer])

    async def _fail(self, context: RequestContext, event_queue: EventQueue, reason: str) -> None:
        log.warning("no verdict: %s", reason)
        task = context.current_task or new_task_from_user_message(context.message)
        if context.current_task is None:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.failed(updater.new_agent_message([new_text_part(f"no verdict: {reason}")]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel()


def create_executor(settings: Settings) -> GuardAgent:
    return GuardAgent(create_classifier(settings))
