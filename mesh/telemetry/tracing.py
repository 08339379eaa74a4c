"""OpenTelemetry tracing of one mesh process: the tracer provider, W3C traceparent in and out, server and client spans.

A process of ``mesh up`` (agent or HTTP tool server) calls ``setup_tracing``
once. Spans go over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, else as JSON lines to
``<state dir>/traces/<service>.jsonl`` so they can be read with no collector.
``OTEL_SDK_DISABLED=true`` switches tracing off. Spans carry names, ids,
timings and attributes (methods, states, verdicts, categories), never the
content of messages.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TRACER_NAME = "mesh"
_configured = False
# One tracer object for the process: trace.get_tracer costs ~10 µs a call (it resets the warnings filters
# and compares scope attributes under a lock), and a guarded request asked for it twice or more. Until
# setup_tracing installs a provider it is the API's proxy, which follows the provider once there is one.
_tracer: trace.Tracer = trace.get_tracer(TRACER_NAME)


def tracer() -> trace.Tracer:
    return _tracer


def tracing_enabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"


def setup_tracing(service: str, state_dir: Path | None = None, settings: Any = None) -> str:
    """Install this process's tracer provider; returns where spans go (for the log).

    ``settings`` is mesh.yaml's ``telemetry:`` (``otlp_endpoint``, ``sampling``,
    ``keep_local``); the OTEL_EXPORTER_OTLP_* variables win over its endpoint,
    and OTEL_TRACES_SAMPLER over its sampling.
    """
    global _configured, _tracer
    if _configured or not tracing_enabled():
        return "off" if not tracing_enabled() else "already set up"
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    sampler = None
    ratio = getattr(settings, "sampling", 1.0)
    if ratio < 1.0 and not os.environ.get("OTEL_TRACES_SAMPLER"):
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        sampler = ParentBased(TraceIdRatioBased(ratio))  # a sampled caller's trace is continued whatever the ratio
    provider = TracerProvider(resource=Resource.create({"service.name": service}), sampler=sampler)
    configured = getattr(settings, "otlp_endpoint", None)
    where = []
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or configured:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            exporter: Any = OTLPSpanExporter()  # reads the OTEL_EXPORTER_OTLP_* variables itself
        else:
            exporter = OTLPSpanExporter(endpoint=configured.rstrip("/") + "/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter))
        where.append(f"OTLP/HTTP {exporter._endpoint}")
    keep_local = getattr(settings, "keep_local", None)
    if not where or keep_local:
        path = (state_dir or Path(".mesh")) / "traces" / f"{service.replace('/', '_').replace(' ', '_')}.jsonl"
        provider.add_span_processor(BatchSpanProcessor(JsonLinesExporter(path)))
        where.append(str(path))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer(TRACER_NAME)  # the installed provider's own, without the proxy's indirection
    _configured = True
    return " and ".join(where) + (f" (sampling {ratio:g})" if sampler is not None else "")


class JsonLinesExporter:
    """A span exporter that appends one JSON object per span to a file (the local store read by the console)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = [json.dumps(span_dict(span), separators=(",", ":")) for span in spans]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock, self.path.open("a", encoding="utf-8") as out:
                out.write("\n".join(lines) + "\n")
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def span_dict(span: Any) -> dict[str, Any]:
    """A finished SDK span as JSON: ids in hex, times in ns since the epoch, attributes, status."""
    parent = span.parent
    return {
        "trace_id": f"{span.context.trace_id:032x}",
        "span_id": f"{span.context.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
    }


# -- HTTP: server spans (traceparent in), client spans (traceparent out) ----------------------------


class TraceRequests:
    """ASGI middleware: a SERVER span per HTTP request, child of the caller's ``traceparent`` when it sent one."""

    def __init__(self, app: ASGIApp, server: str, parented_only: str | None = None) -> None:
        self.app = app
        self.server = server
        # Requests under this path get a span only when the caller sent a traceparent: MCP clients carry
        # theirs in each message's _meta instead (the MCP SDK's server span continues it), and an HTTP span
        # with no parent would only start a stray trace of its own.
        self.parented_only = parented_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ("/metrics", "/health"):
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k in (b"traceparent", b"tracestate")}
        parent = propagate.extract(carrier) if carrier else None
        if parent is None and self.parented_only and scope["path"].startswith(self.parented_only):
            await self.app(scope, receive, send)
            return
        status = 0

        async def traced_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracer().start_as_current_span(
            f"{self.server} {scope['method']} {scope['path']}", context=parent, kind=SpanKind.SERVER,
            attributes={"mesh.server": self.server, "http.request.method": scope["method"], "url.path": scope["path"]},
        ) as span:
            try:
                await self.app(scope, receive, traced_send)
            finally:
                rpc = scope.get("mesh.rpc_method")
                if rpc:
                    span.update_name(f"{self.server} {rpc}")
                    span.set_attribute("rpc.method", rpc)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))


async def _start_client_span(request: Any) -> None:
    if not tracing_enabled():
        return
    span = tracer().start_span(f"{request.method} {request.url.host}:{request.url.port}{request.url.path}",
                               kind=SpanKind.CLIENT,
                               attributes={"http.request.method": request.method, "url.full": str(request.url)})
    request.extensions["mesh.span"] = span
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    for key, value in carrier.items():
        request.headers[key] = value


async def _end_client_span(response: Any) -> None:
    span = response.request.extensions.pop("mesh.span", None)
    if span is not None:
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()


# httpx event hooks for the mesh's clients: a CLIENT span per request, its traceparent sent along.
HTTPX_HOOKS = {"request": [_start_client_span], "response": [_end_client_span]}
