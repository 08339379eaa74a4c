"""Why a call to an agent failed, in one line a user can act on (the one copy: CLI, bridge, graphs and guard use it)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx

TOKEN_HINT_NAMED = "its token comes from the variable named in mesh.yaml (auth.bearer_token)"
TOKEN_HINT_URL = "set MESH_TOKEN to its bearer token"


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions behind it (``__cause__``/``__context__``), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def transport_error(exc: BaseException) -> httpx.TransportError | None:
    """The connection-level failure behind ``exc``, if that is what it is."""
    return next((e for e in causes(exc) if isinstance(e, httpx.TransportError)), None)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the response behind ``exc`` (a2a-sdk wraps ``httpx.HTTPStatusError``), if any."""
    for cause in causes(exc):
        if isinstance(cause, httpx.HTTPStatusError):
            return cause.response.status_code
        status = getattr(cause, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def transport_reason(exc: BaseException) -> str:
    """A connection failure in a few words."""
    if isinstance(exc, httpx.ConnectError):
        return "connection refused (is `mesh up` running?)"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = str(exc)
    if not text:
        cause = exc.__cause__ or exc.__context__
        return transport_reason(cause) if cause is not None and cause is not exc else type(exc).__name__
    return text


def failure_reason(exc: BaseException, name: str, url: str, *, token_hint: str = TOKEN_HINT_NAMED) -> str:
    """One line: what went wrong calling agent ``name`` at ``url``, and what to do about it."""
    where = url if name == url else f"{name} at {url}"
    transport = transport_error(exc)
    if transport is not None:
        return f"cannot reach {where}: {transport_reason(transport)}"
    status = http_status(exc)
    if status == 401:
        return f"{name} refused the call: it needs a valid bearer token ({token_hint})"
    if status == 403:
        return f"{name} refused the call: the token is not allowed to do this"
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{name}: {type(exc).__name__}: {text.splitlines()[0]}"
