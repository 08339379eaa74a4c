"""The one A2A client path of the mesh: resolve an agent by name or URL, open a client, send, read the answer."""

from mesh.client.connect import (
    Target,
    fetch_card,
    http_client,
    open_client,
    resolve_target,
    send_request,
    user_message,
)

__all__ = ["Target", "fetch_card", "http_client", "open_client", "resolve_target", "send_request", "user_message"]
