"""The Llama Guard 3 backend: one ``/api/chat`` call to Ollama per verdict, its answer parsed strictly.

Ollama's llama-guard3 template checks the last turn (the user's input, or the
agent's output after it) and renders every non-user turn as "Agent", a system
message included; so no system message is sent, an input is ``[user]`` and an
output ``[user, assistant]``. The model answers ``safe``, or ``unsafe`` and a
line of codes (``S1,S10``); anything else is an error, never a pass.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

import httpx
import ollama

from mesh.errors import GuardError
from mesh.guard.verdicts import (
    HAZARDS,
    Turn,
    Verdict,
    categories_of,
    check_of,
    content_hash,
)

_CODES_LINE = re.compile(r"^S\d{1,2}(?:\s*,\s*S\d{1,2})*$")


class OllamaUnreachable(GuardError):
    """No Ollama server answered (refused, timed out) or the model is not there: ``auto`` may fall back."""


def parse_output(text: str, model: str) -> list[str] | None:
    """``safe`` -> None; ``unsafe`` + codes line -> the codes; anything else raises GuardError."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines == ["safe"]:
        return None
    if len(lines) == 2 and lines[0] == "unsafe" and _CODES_LINE.match(lines[1]):
        codes = [code.strip() for code in lines[1].split(",")]
        unknown = [code for code in codes if code not in HAZARDS]
        if not unknown:
            return list(dict.fromkeys(codes))
    shown = text if len(text) <= 80 else text[:77] + "..."
    raise GuardError(f"{model} answered something that is not a verdict: {shown!r}")


class OllamaClassifier:
    """Llama Guard 3 through Ollama's AsyncClient; every failure is a GuardError."""

    backend = "ollama"

    def __init__(self, host: str, model: str, timeout_s: float, num_predict: int = 20) -> None:
        self.host = host
        self.model = model
        self.timeout_s = timeout_s
        self.num_predict = num_predict
        self._client = ollama.AsyncClient(host=host, timeout=httpx.Timeout(timeout_s))

    async def probe(self) -> None:
        """Check the server answers and has the model; raises OllamaUnreachable saying why not."""
        try:
            await self._client.show(self.model)
        except Exception as exc:  # noqa: BLE001 - every failure is a reason not to use it
            raise self._failure(exc) from None

    async def classify(self, turns: Sequence[Turn]) -> Verdict:
        check = check_of(turns)
        started = time.perf_counter()
        try:
            response = await self._client.chat(
                model=self.model,
                messages=[{"role": t.role, "content": t.content} for t in turns],
                stream=False,
                options={"temperature": 0, "num_predict": self.num_predict},
            )
        except Exception as exc:  # noqa: BLE001
            raise self._failure(exc) from None
        codes = parse_output(response.message.content or "", self.model)
        return Verdict(
            safe=codes is None, categories=categories_of(codes or []), check=check, backend="ollama",
            embedded=False, model=self.model, latency_ms=(time.perf_counter() - started) * 1000,
            content_hash=content_hash(turns),
        )

    def _failure(self, exc: BaseException) -> GuardError:
        if isinstance(exc, ConnectionError):
            return OllamaUnreachable(f"no Ollama server answers at {self.host} (connection refused)")
        if isinstance(exc, httpx.TimeoutException):
            return OllamaUnreachable(f"Ollama at {self.host} did not answer within {self.timeout_s:g}s")
        if isinstance(exc, ollama.ResponseError) and exc.status_code == 404:
            return OllamaUnreachable(f"Ollama at {self.host} has no model {self.model} (run: ollama pull {self.model})")
        if isinstance(exc, ollama.ResponseError):
            return GuardError(f"Ollama at {self.host} refused the request: {exc.error} (HTTP {exc.status_code})")
        if isinstance(exc, httpx.HTTPError):
            return OllamaUnreachable(f"Ollama at {self.host} failed: {type(exc).__name__}: {exc}")
        return GuardError(f"Ollama at {self.host} gave an unusable answer: {type(exc).__name__}: {exc}")

    def describe(self) -> dict:
        return {"backend": "ollama", "model": self.model, "host": self.host}

    async def aclose(self) -> None:
        await self._client._client.aclose()


