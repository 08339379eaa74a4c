"""Logging for mesh processes: one compact line per record, and no tracebacks for clients' mistakes."""

from __future__ import annotations

import logging
import os
import sys

# a2a-sdk logs these with logger.exception although the cause is a bad
# request from the client; the JSON-RPC error already tells the client, and a
# traceback per malformed request would drown the log.
_CLIENT_ERROR_MESSAGES = (
    "Failed to validate base JSON-RPC request",
    "Failed to parse request params",
    "Request Error (ID:",
    "Request error:",
    "Version mismatch:",
)


class _ClientErrorsWithoutTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("a2a.") and str(record.msg).startswith(_CLIENT_ERROR_MESSAGES):
            record.exc_info = None
            record.exc_text = None
            if record.levelno > logging.INFO:
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def setup_logging(level: str | None = None) -> None:
    """Log to stderr at ``level`` (default $MESH_LOG_LEVEL or info)."""
    level = (level or os.environ.get("MESH_LOG_LEVEL") or "info").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_ClientErrorsWithoutTraceback())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-request lines come from mesh.access; hypercorn's own access log would repeat them.
    logging.getLogger("hypercorn.access").disabled = True
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "aiosqlite", "sqlalchemy.engine", "asyncio", "a2a.client.card_resolver"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
