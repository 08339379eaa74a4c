"""The agents' JSON-RPC endpoint: a2a-sdk's dispatcher (1.0 and 0.3 names), with 0.3 params errors as -32602.

a2a-sdk validates a 0.3 request as one pydantic model and reports any failure
as -32600 Invalid Request with pydantic's text. JSON-RPC says a well-formed
request with bad params is -32602 Invalid params, and a caller needs to know
which field: this adapter validates once and answers -32602 naming each field,
in the same shape the SDK's 1.0 path uses (``data.errors[].field``).
"""

from __future__ import annotations

from typing import Any

from a2a.compat.v0_3.jsonrpc_adapter import JSONRPC03Adapter
from a2a.server.jsonrpc_models import InvalidParamsError, InvalidRequestError
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.server.routes.common import ServerCallContextBuilder
from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
from a2a.utils.errors import A2AError
from pydantic import ValidationError
from starlette.routing import Route


class V03Adapter(JSONRPC03Adapter):
    async def handle_request(self, request_id, method: str, body: dict, request) -> Any:
        try:
            specific_request = self.METHOD_TO_MODEL[method].model_validate(body)
        except ValidationError as exc:
            return self._generate_error_response(request_id, params_error(exc))
        try:
            call_context = self._context_builder.build(request)
            params = getattr(specific_request, "params", None)
            call_context.tenant = getattr(params, "tenant", "") or ""
            call_context.state["method"] = method
            call_context.state["request_id"] = request_id
            if method in ("message/stream", "tasks/resubscribe"):
                return await self._process_streaming_request(request_id, specific_request, call_context)
            return await self._process_non_streaming_request(request_id, specific_request, call_context)
        except A2AError as exc:
            return self._generate_error_response(request_id, exc)


def params_error(exc: ValidationError) -> InvalidParamsError | InvalidRequestError:
    """-32602 naming each bad field under params (-32600 if the envelope itself is wrong)."""
    errors = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        if not loc or loc[0] != "params":
            return InvalidRequestError(message=f"Invalid request: {'.'.join(loc)}: {error['msg']}")
        # pydantic names the union branch it tried (e.g. "TextPart"); a caller
        # wants the JSON path, so drop capitalised model names from the path.
        field = ".".join(part for part in loc[1:] if not part[:1].isupper()) or "params"
        errors.append({"field": field, "message": error["msg"]})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return InvalidParamsError(message=f"Invalid params: {summary}", data={"errors": errors})


def create_jsonrpc_route(
    request_handler: RequestHandler,
    context_builder: ServerCallContextBuilder | None = None,
    shutdown_grace_period: float = 0,
) -> Route:
    """POST / answering both A2A 1.0 and 0.3 method names."""
    dispatcher = JsonRpcDispatcher(
        request_handler=request_handler,
        context_builder=context_builder,
        enable_v0_3_compat=True,
        shutdown_grace_period=shutdown_grace_period,
    )
    dispatcher._v03_adapter = V03Adapter(
        http_handler=request_handler,
        context_builder=context_builder,
        shutdown_grace_period=shutdown_grace_period,
    )
    return Route("/", endpoint=dispatcher.handle_requests, methods=["POST"])
