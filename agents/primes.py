"""Primes agent: counts the primes below a limit with a segmented sieve, reporting progress as it goes.

Real, deterministic CPU work that takes from milliseconds to minutes with the
limit, so it shows the whole task lifecycle: working status updates with
progress, an artifact streamed in chunks (one per segment), summary
artifacts at the end, and ``tasks/cancel`` stopping it between segments.
"""

from __future__ import annotations

import asyncio
import math
import re
import time

import numpy as np
from a2a.helpers import get_data_parts, get_message_text, new_data_part, new_text_part
from a2a.server.agent_execution import RequestContext
from a2a.server.tasks import TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentSkill, TaskState
from pydantic import BaseModel, ConfigDict, Field

from mesh.serving.executor import AgentFailure, TaskAgent

card = AgentCard(
    name="Primes",
    description="Counts the primes below a limit (segmented sieve of Eratosthenes), with live progress.",
    version="1.0.0",
    capabilities=AgentCapabilities(streaming=True),
    default_input_modes=["text/plain", "application/json"],
    default_output_modes=["text/plain", "application/json"],
    skills=[
        AgentSkill(
            id="count-primes",
            name="Count primes",
            description=(
                "Counts primes and twin-prime pairs below a limit given as text ('primes below 10^8', "
                "'1e9', '50,000,000') or as data {\"limit\": N} (with \"from\": M for the range [M, N)). "
                "Streams progress and a 'segments' artifact, then 'summary' and 'extremes' artifacts. Cancelable."
            ),
            tags=["math", "primes", "long-running"],
            examples=["count primes below 10^8", "{\"limit\": 1000000}"],
        )
    ],
)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_limit: int = Field(10**11, ge=10, description="largest limit the agent accepts")
    default_limit: int = Field(10**7, ge=10)
    segment_numbers: int = Field(1 << 21, ge=1 << 10, description="integers sieved per segment")
    progress_every_s: float = Field(0.25, ge=0, description="least time between two progress updates")


_NUMBER = re.compile(
    r"(?P<a>\d[\d,_]*)"
    r"(?:\s*[*x\u00d7]\s*(?P<base>\d+)\s*(?:\^|\*\*)\s*(?P<base_exp>\d+)"  # 3*10^9, 3 x 10**9
    r"|\s*(?:\^|\*\*)\s*(?P<exp>\d+)"  # 10^9, 2**30
    r"|[eE](?P<e>\d+)"  # 3e9
    r"|\s*(?P<word>thousand|million|billion)\b)?",
    re.IGNORECASE,
)
_WORDS = {"thousand": 10**3, "million": 10**6, "billion": 10**9}


def parse_range(request: RequestContext, settings: Settings) -> tuple[int, int]:
    """The range [low, limit) to count in: a data part {"limit": N, "from": M}, else the text's first number from 2."""
    for data in get_data_parts(request.message.parts):
        if isinstance(data, dict) and "limit" in data:
            limit = _checked(_whole(data, "limit"), settings)
            low = _whole(data, "from") if "from" in data else 2
            if not 0 <= low <= limit:
                raise AgentFailure(f"'from' must be between 0 and the limit {limit:,}, got {low:,}")
            return max(low, 2), limit
    return 2, parse_limit(request, settings)


def _whole(data: dict, key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise AgentFailure(f"'{key}' must be a whole number, got {value!r}")
    return int(value)


def parse_limit(request: RequestContext, settings: Settings) -> int:
    """The first number in the text (10^9, 3*10^9, 1e9, 50,000,000, 5 million), else the default."""
    match = _NUMBER.search(get_message_text(request.message) or "")
    if not match:
        return settings.default_limit
    value = int(match["a"].replace(",", "").replace("_", ""))
    exponent = match["base_exp"] or match["exp"] or match["e"]
    if exponent is not None and int(exponent) > 30:
        raise AgentFailure(f"the limit {match.group(0)} is far above the maximum {settings.max_limit:,}")
    if match["base_exp"]:
        value *= int(match["base"]) ** int(match["base_exp"])
    elif match["exp"]:
        value **= int(match["exp"])
    elif match["e"]:
        value *= 10 ** int(match["e"])
    elif match["word"]:
        value *= _WORDS[match["word"].lower()]
    return _checked(value, settings)


def _checked(limit: int, settings: Settings) -> int:
    if limit < 2:
        raise AgentFailure(f"the limit must be at least 2, got {limit}")
    if limit > settings.max_limit:
        raise AgentFailure(f"the limit {limit:,} is above this agent's maximum {settings.max_limit:,}")
    return limit


def base_primes(limit: int) -> np.ndarray:
    """All primes <= limit, by a plain sieve (limit is at most about 316,000 here)."""
    sieve = np.ones(limit + 1, dtype=bool)
    sieve[:2] = False
    for p in range(2, math.isqrt(limit) + 1):
        if sieve[p]:
            sieve[p * p :: p] = False
    return np.flatnonzero(sieve)


def sieve_segment(low: int, high: int, primes: np.ndarray) -> np.ndarray:
    """Boolean array: is_prime[n - low] for low <= n < high (low >= 2)."""
    is_prime = np.ones(high - low, dtype=bool)
    for p in primes:
        p = int(p)
        if p * p >= high:
            break
        start = max(p * p, (low + p - 1) // p * p)
        is_prime[start - low :: p] = False
    return is_prime


class Primes(TaskAgent):
    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    async def work(self, request: RequestContext, task: TaskUpdater) -> None:
        low, limit = parse_range(request, self.settings)
        started = time.perf_counter()
        primes = base_primes(math.isqrt(limit) + 1)
        count = twins = 0
        first: list[int] = []
        last: list[int] = []
        previous_prime = -10
        start, step = low, self.settings.segment_numbers
        segments = math.ceil((limit - low) / step)
        last_report = 0.0
        chunk_from, chunk_primes, chunks = low, 0, 0
        for index in range(segments):
            high = min(low + step, limit)
            # numpy releases the GIL, so a segment in a thread keeps the server answering.
            is_prime = await asyncio.to_thread(sieve_segment, low, high, primes)
            found = np.flatnonzero(is_prime) + low
            if found.size:
                count += int(found.size)
                twins += int(np.count_nonzero(np.diff(found) == 2)) + int(int(found[0]) - previous_prime == 2)
                previous_prime = int(found[-1])
                if len(first) < 20:
                    first.extend(int(x) for x in found[: 20 - len(first)])
                last = (last + [int(x) for x in found[-20:]])[-20:]
            chunk_primes += int(found.size)
            low = high
            done = index + 1 == segments
            now = time.perf_counter()
            if not done and now - last_report < self.settings.progress_every_s:
                continue
            # One chunk of the 'segments' artifact and one status per report,
            # not per segment: the store rewrites the task on every event.
            last_report = now
            await task.add_artifact(
                [new_data_part({"from": chunk_from, "to": high, "primes": chunk_primes})],
                artifact_id=f"{task.task_id}-segments", name="segments",
                append=chunks > 0, last_chunk=done,
            )
            chunks += 1
            chunk_from, chunk_primes = high, 0
            await task.update_status(
                TaskState.TASK_STATE_WORKING,
                message=task.new_agent_message([
                    new_text_part(f"sieved {high:,} of {limit:,} ({100 * high / limit:.0f}%), {count:,} primes so far"),
                    new_data_part({"done": high, "limit": limit, "primes": count}),
                ]),
            )
        elapsed = time.perf_counter() - started
        summary = {"from": start, "limit": limit, "primes": count, "twin_pairs": twins,
                   "largest": last[-1] if last else None, "seconds": round(elapsed, 3)}
        span = f"below {limit:,}" if start <= 2 else f"from {start:,} to {limit:,}"
        await task.add_artifact(
            [new_text_part(f"There are {count:,} primes {span} ({twins:,} twin pairs); "
                           f"the largest is {summary['largest']:,}." if last else f"There are no primes {span}."),
             new_data_part(summary)],
            name="summary",
        )
        await task.add_artifact([new_data_part({"first": first, "last": last})], name="extremes")


def create_executor(settings: Settings) -> Primes:
    return Primes(settings)
