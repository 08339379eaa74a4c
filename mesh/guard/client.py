"""The client of the guard agent: verdicts over A2A, coalesced into batches, cached."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict
from pydantic import ValidationError

from mesh.errors import GuardConfigError, GuardError
from mesh.guard.policy import GuardPolicy, guard_agent_of
from mesh.guard.verdicts import Turn, Verdict, VerdictCache

# -- the client of the guard agent -----------------------------------------------------------------


BATCH_SKILL = "classify-batch"  # a guard whose card lists this skill takes data {"batch": [{"turns": ...}, ...]}
BATCH_LIMIT = 64  # conversations per batch request
JSON_MEDIA_TYPE = "application/json"
# A guard whose batch skill carries this tag also reads its requests from an application/json text part and
# answers in kind: a data part is a protobuf Struct, which a2a-sdk parses, walks (required-field checks) and
# prints value by value on both sides; one JSON string costs a fraction of that.
JSON_TEXT_TAG = "json-text"


class GuardClient:
    """Asks the guard agent for verdicts over A2A (``message/send``), with an LRU verdict cache.

    One A2A round trip costs both sides a few milliseconds of CPU, as much as an
    embedded verdict itself. So when the guard's card offers the batch skill,
    checks are coalesced: at most ``max_in_flight`` requests are under way, and
    the checks that arrive meanwhile go together in the next one. A lone check
    is sent at once (as a batch of one, which the guard answers without a task).
    """

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0, cache_size: int = 10_000,
                 max_in_flight: int = 1, h2c: bool = True) -> None:
        self.url = url
        self.token = token
        self.h2c = h2c  # h2c with prior knowledge; else HTTP/1.1 (or ALPN over TLS)
        self.timeout_s = timeout_s
        self.cache = VerdictCache(cache_size)
        self.max_in_flight = max_in_flight
        self._http = None
        self._client = None
        self._batches = False
        self._json_text = False  # the guard reads and answers JSON text parts (JSON_TEXT_TAG)
        self._jsonrpc_url: str | None = None  # the card's A2A 1.0 JSON-RPC endpoint: requests go there as plain JSON
        self._opening = asyncio.Lock()
        self._queued: list[tuple[list[Turn], asyncio.Future]] = []
        self._sending = 0  # senders under way; counted by hand so that one ending cannot strand a queued check
        self._senders: set[asyncio.Task] = set()

    @classmethod
    def for_mesh(cls, config: Any, policy: GuardPolicy) -> GuardClient:
        name = policy.agent or guard_agent_of(config)
        if not name:
            raise GuardConfigError(f"{config.path}: guard.agent: name the guard agent")
        # HTTP/1.1 on one kept-alive connection unless the guard agent is configured as h2c-only (h2c: true):
        # the checks go one request at a time (batched meanwhile), so HTTP/2's streams buy nothing, and
        # httpcore's HTTP/2 costs the agent ~20% more CPU per check (headers, data and end of stream are
        # three socket writes, plus flow control; scripts/bench/guard_throughput.py).
        return cls(config.url_of(name), config.token_of(config.agent(name)), policy.timeout_s, policy.cache_size,
                   h2c=config.agent(name).h2c is True)

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
                    # A lone check too goes as a batch (of one): the guard answers batches without a task.
                    results: list[Verdict | GuardError] = await self._ask_batch([turns for turns, _ in batch])
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
        except (ValidationError, TypeError) as exc:
            if isinstance(exc, TypeError):
                raise GuardError(f"the guard at {self.url} answered with no verdict: {exc}") from None
            raise GuardError(f"the guard at {self.url} answered with no verdict: {_first_error(exc)}") from None

    async def _call(self, data: dict) -> dict[str, Any]:
        import httpx
        from a2a.utils.errors import A2AError

        from mesh.client import send_request, user_message

        client = await self._open()
        if self._jsonrpc_url is not None:
            return await self._post(self._jsonrpc_url, data)
        result: Any = None
        try:
            async for event in client.send_message(send_request(user_message(data=data))):
                result = event
        except (httpx.HTTPError, A2AError, OSError) as exc:
            self._client = None  # reconnect (and re-read the card) next time
            raise GuardError(f"the guard at {self.url} cannot be reached: {_reason(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - an answer that is no A2A reply (garbage) is an error, never a pass
            self._client = None
            raise GuardError(f"the guard at {self.url} answered with something that is not an A2A reply: {_reason(exc)}") from None
        try:
            return _reply_data(result, self.url)
        except GuardError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise GuardError(f"the guard at {self.url} answered with no verdict: {_reason(exc)}") from None

    async def _post(self, url: str, data: dict) -> dict[str, Any]:
        """``SendMessage`` (A2A 1.0 JSON-RPC) with ``data`` as a data part, the reply's data read as JSON.

        The same request the SDK's client sends, without its round trip through
        protobuf: a verdict's data is a nested Struct, and building and reading
        it twice cost the calling agent ~1.5 ms of CPU per check, as much as the
        verdict itself.
        """
        import httpx

        part = {"text": json.dumps(data, ensure_ascii=False), "mediaType": JSON_MEDIA_TYPE} if self._json_text else {"data": data}
        payload = {"jsonrpc": "2.0", "id": str(uuid.uuid4()), "method": "SendMessage", "params": {"message": {
            "role": "ROLE_USER", "messageId": str(uuid.uuid4()), "parts": [part]}}}
        try:
            response = await self._http.post(url, content=json.dumps(payload, ensure_ascii=False).encode(),
                                             headers={"content-type": "application/json"})
        except (httpx.HTTPError, OSError) as exc:
            self._client = None  # reconnect (and re-read the card) next time
            raise GuardError(f"the guard at {self.url} cannot be reached: {_reason(exc)}") from None
        try:
            body = response.json()
        except ValueError:
            self._client = None
            raise GuardError(f"the guard at {self.url} answered with something that is not an A2A reply "
                             f"(HTTP {response.status_code}, {response.headers.get('content-type', 'no content type')})") from None
        return _reply_json(body, self.url)

    async def _open(self):
        import httpx

        from mesh.client import fetch_card, http_client, open_client

        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                if self._http is None:
                    self._http = http_client(self.token, timeout=self.timeout_s, h2c=self.h2c)
                try:
                    card = await fetch_card(self._http, self.url)
                    self._client = await open_client(self._http, card, streaming=False)
                except (httpx.HTTPError, OSError, Exception) as exc:
                    raise GuardError(f"the guard at {self.url} cannot be reached: {_reason(exc)}") from None
                self._batches = any(skill.id == BATCH_SKILL for skill in card.skills)
                self._json_text = any(skill.id == BATCH_SKILL and JSON_TEXT_TAG in skill.tags for skill in card.skills)
                self._jsonrpc_url = next((i.url for i in card.supported_interfaces if i.protocol_binding == "JSONRPC"
                                          and i.protocol_version.startswith("1.")), None)
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


def _reply_json(body: Any, url: str) -> dict[str, Any]:
    """The data of a JSON-RPC ``SendMessage`` reply: its data part or its JSON text part (see ``_reply_data``); else a GuardError."""
    if not isinstance(body, dict) or not isinstance(body.get("result"), dict):
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            raise GuardError(f"the guard at {url} refused the request: {error.get('code')} {error.get('message')}")
        raise GuardError(f"the guard at {url} answered with something that is not an A2A reply")
    result = body["result"]
    if isinstance(result.get("message"), dict):
        for part in result["message"].get("parts") or []:
            if isinstance(part, dict) and "data" in part:
                if not isinstance(part["data"], dict):
                    raise GuardError(f"the guard at {url} answered with no verdict: its data is not an object")
                return part["data"]
            if isinstance(part, dict) and part.get("mediaType") == JSON_MEDIA_TYPE and isinstance(part.get("text"), str):
                try:
                    data = json.loads(part["text"])
                except ValueError:
                    raise GuardError(f"the guard at {url} answered with no verdict: its {JSON_MEDIA_TYPE} part is not JSON") from None
                if not isinstance(data, dict):
                    raise GuardError(f"the guard at {url} answered with no verdict: its data is not an object")
                return data
        raise GuardError(f"the guard at {url} answered without a data part")
    if isinstance(result.get("task"), dict):
        message = (result["task"].get("status") or {}).get("message") or {}
        reason = " ".join(p.get("text", "") for p in message.get("parts") or [] if isinstance(p, dict) and p.get("text"))
        raise GuardError(f"the guard at {url} could not classify: {reason or 'no reason given'}")
    raise GuardError(f"the guard at {url} answered with neither a message nor a task")


def _reason(exc: BaseException) -> str:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        if text:
            return f"{type(exc).__name__}: {text}"
        exc = exc.__cause__ or exc.__context__
    return "unknown error"


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg'].removeprefix('Value error, ')}" if where else error["msg"]
