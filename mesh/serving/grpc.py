"""The A2A gRPC binding of an agent: a2a-sdk's GrpcHandler on a grpc.aio server of its own port (``grpc_port``).

Both versions are served on that port: 1.0 (service ``lf.a2a.v1.A2AService``,
a2a-sdk's GrpcHandler) and 0.3 (``a2a.v1.A2AService``, a2a-sdk's
CompatGrpcHandler); the two services have different names, so one server
holds both and a client's stub picks its version.

hypercorn cannot hand gRPC (HTTP/2 trailers, its own framing) to the
Starlette app, so the binding listens on ``agents.NAME.grpc_port``, on the
agent's host, in the agent's process and event loop, sharing its request
handler (same tasks, store, push configs). With ``auth`` the bearer token is
required in the ``authorization`` metadata (UNAUTHENTICATED otherwise); with
``tls`` the port speaks TLS with the agent's certificate.
"""

from __future__ import annotations

import hmac
import logging

import grpc
import grpc.aio
from a2a.compat.v0_3 import a2a_v0_3_pb2_grpc
from a2a.compat.v0_3.grpc_handler import CompatGrpcHandler
from a2a.server.request_handlers.grpc_handler import GrpcHandler
from a2a.types import a2a_pb2_grpc

log = logging.getLogger(__name__)


class VersionInterceptor(grpc.aio.ServerInterceptor):
    """Refuses an ``a2a-version`` other than 0.3 or 1.0 with UNIMPLEMENTED (VersionNotSupportedError)."""

    async def intercept_service(self, continuation, details):
        from mesh.serving.versions import SUPPORTED, major_minor

        version = dict(details.invocation_metadata or ()).get("a2a-version")
        version = version.decode() if isinstance(version, bytes) else version
        handler = await continuation(details)
        if not version or major_minor(version) in SUPPORTED or handler is None:
            return handler
        message = f"A2A version {version!r} is not supported; this agent speaks {' and '.join(SUPPORTED)}"
        return _refusing(handler, grpc.StatusCode.UNIMPLEMENTED, message)


def _refusing(handler, code, message):
    async def refuse(request, context):
        await context.abort(code, message)

    async def refuse_stream(request, context):
        await context.abort(code, message)
        yield  # pragma: no cover - abort raises

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse, handler.request_deserializer, handler.response_serializer)
    return grpc.unary_stream_rpc_method_handler(refuse_stream, handler.request_deserializer, handler.response_serializer)


class BearerInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer TOKEN`` metadata."""

    def __init__(self, token: str) -> None:
        self.expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation, details):
        given = dict(details.invocation_metadata or ()).get("authorization", "")
        given = given.encode() if isinstance(given, str) else given
        if hmac.compare_digest(given, self.expected):
            return await continuation(details)

        async def refuse(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a bearer token is required (authorization metadata)")

        handler = await continuation(details)
        if handler is None:
            return None
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(refuse, handler.request_deserializer, handler.response_serializer)

        async def refuse_stream(request, context):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a bearer token is required (authorization metadata)")
            yield  # pragma: no cover - abort raises

        return grpc.unary_stream_rpc_method_handler(refuse_stream, handler.request_deserializer, handler.response_serializer)


async def start_grpc(request_handler, host: str, port: int, token: str | None = None,
                     tls: tuple[bytes, bytes] | None = None) -> grpc.aio.Server:
    """A started gRPC server for ``request_handler`` on host:port; stop it with ``await server.stop(grace)``."""
    interceptors = ([BearerInterceptor(token)] if token else []) + [VersionInterceptor()]
    server = grpc.aio.server(interceptors=interceptors)
    a2a_pb2_grpc.add_A2AServiceServicer_to_server(GrpcHandler(request_handler), server)
    a2a_v0_3_pb2_grpc.add_A2AServiceServicer_to_server(CompatGrpcHandler(request_handler), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if tls is not None:
        bound = server.add_secure_port(address, grpc.ssl_server_credentials([(tls[1], tls[0])]))
    else:
        bound = server.add_insecure_port(address)
    if not bound:
        raise OSError(f"gRPC: cannot listen on {address}")
    await server.start()
    return server
