"""Push notifications of an agent: a2a-sdk's push support with the configs stored beside the tasks, delivery retried.

- configs (0.3 ``tasks/pushNotificationConfig/*``, 1.0 ``*TaskPushNotificationConfig``,
  or one given with ``SendMessage``) are kept per task in the agent's task
  database (SQLite file or PostgreSQL), table ``<tasks table>_push``; on the
  agent's own SQLite file the ids of the tasks that have any are also kept in
  memory, so the events of the others cost no lookup (``SQLitePushConfigStore``);
- every task event is POSTed to each webhook of the task (the config's
  ``token`` as ``X-A2A-Notification-Token``, its ``authentication`` as
  ``Authorization: SCHEME CREDENTIALS``), in order per task, in the background;
  a failed delivery (connection error or non-2xx) is retried ``retries`` times
  after ``backoff_seconds * 2**n``;
- a webhook URL must be http(s) and resolve to public addresses only, unless
  its network is in ``server.push.allowed_networks`` (mesh.yaml): checked when
  a config is set (a name that does not resolve yet passes) and again before
  each delivery, which a name that does not resolve fails (mesh/client/addresses.py).
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy import select
from sqlalchemy.exc import SAWarning
from a2a.server.tasks import BasePushNotificationSender
from a2a.server.tasks.database_push_notification_config_store import DatabasePushNotificationConfigStore

from mesh.client.addresses import AddressRefused, resolve_allowed

log = logging.getLogger(__name__)


def url_validator(allowed_networks: list, unresolvable_ok: bool = False) -> Callable[[str], Awaitable[bool]]:
    """Checks a webhook URL; ``unresolvable_ok``: a host name that does not resolve now passes (checked at delivery)."""

    async def valid(url_text: str) -> bool:
        try:
            url = httpx.URL(url_text)
        except Exception:
            return False
        if url.scheme not in ("http", "https") or not url.host:
            return False
        try:
            await resolve_allowed(url.host, url.port or (443 if url.scheme == "https" else 80), allowed_networks,
                                  hint="server.push.allowed_networks")
        except AddressRefused as exc:
            if unresolvable_ok and str(exc).startswith("cannot resolve"):
                return True
            log.warning("push notification URL %s refused: %s", url_text, exc)
            return False
        return True

    return valid


class RetryingPushSender(BasePushNotificationSender):
    """a2a-sdk's sender, with each delivery retried with backoff, in order per task, off the task's own path."""

    def __init__(self, http: httpx.AsyncClient, store, validator, retries: int, backoff_seconds: float) -> None:
        super().__init__(http, store)  # the URL is checked here, once per delivery, not once per attempt
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self._validator = validator
        self._last: dict[str, asyncio.Task] = {}

    async def send_notification(self, task_id: str, event) -> None:
        previous = self._last.get(task_id)

        async def deliver() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await BasePushNotificationSender.send_notification(self, task_id, event)

        task = asyncio.ensure_future(deliver())
        self._last[task_id] = task
        task.add_done_callback(lambda done: self._last.get(task_id) is done and self._last.pop(task_id, None))

    async def _dispatch_notification(self, event, push_info, task_id: str) -> bool:
        if not await self._validator(push_info.url):
            return False
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            if await super()._dispatch_notification(event, push_info, task_id):
                return True
        log.warning("push notification for task %s to %s failed after %d attempts", task_id, push_info.url, self.retries + 1)
        return False

    async def drain(self) -> None:
        """Wait for deliveries under way (at shutdown)."""
        pending = list(self._last.values())
        if pending:
            await asyncio.wait(pending, timeout=5)


class SQLitePushConfigStore(DatabasePushNotificationConfigStore):
    """a2a-sdk's config store on an agent's own SQLite file, knowing which tasks have configs.

    The SDK's sender asks the store for a task's webhooks at every event of
    every task (``get_info_for_dispatch``): on SQLite a session, a SELECT
    through aiosqlite's thread and a rollback, four times per message/send and
    half of its CPU (scripts/bench/bench_a2a.py), although most tasks have
    none. The agent's process is the only one that writes its SQLite file
    (as ``SQLiteTaskStore`` assumes), so it keeps the ids of the tasks that have
    configs: read once, added before a config is written, dropped when a delete
    leaves none. Events of other tasks are answered from memory; those of tasks
    with configs are read from the table as before.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._configured: set[str] | None = None  # ids of the tasks that may have configs
        self._writing = asyncio.Lock()  # a set and a delete of one task's configs must not interleave

    async def initialize(self) -> None:
        await super().initialize()
        if self._configured is None:
            async with self.async_session_maker() as session:
                ids = (await session.execute(select(self.config_model.task_id).distinct())).scalars().all()
            # a union: a config set while this was read is kept
            self._configured = set(ids) | (self._configured or set())

    async def get_info_for_dispatch(self, task_id: str) -> list:
        if self._configured is None:
            await self.initialize()
        if task_id not in self._configured:
            return []
        return await super().get_info_for_dispatch(task_id)

    async def set_info(self, task_id: str, notification_config, context):
        await self.initialize()
        async with self._writing:
            self._configured.add(task_id)  # before the write: a dispatch meanwhile reads the table
            return await super().set_info(task_id, notification_config, context)

    async def delete_info(self, task_id: str, context, config_id: str | None = None) -> None:
        await self.initialize()
        async with self._writing:
            await super().delete_info(task_id, context, config_id)
            if not await super().get_info_for_dispatch(task_id):  # another owner's may remain
                self._configured.discard(task_id)


def open_push(engine, table: str, allowed_networks: list, retries: int, backoff_seconds: float, timeout: float):
    """(config store, sender, URL validator, close) for an agent whose tasks are in ``engine``."""
    # Only where this process is the database's one writer (the agent's own SQLite file; replicas share PostgreSQL).
    store_class = SQLitePushConfigStore if engine.dialect.name == "sqlite" else DatabasePushNotificationConfigStore
    with warnings.catch_warnings():
        # a2a-sdk declares a model class named PushNotificationConfigModel on its one declarative
        # base per table name; SQLAlchemy warns that the name is taken (harmless: lookups go by table)
        warnings.filterwarnings("ignore", message=".*PushNotificationConfigModel", category=SAWarning)
        store = store_class(engine, table_name=f"{table}_push")
    http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
    sender = RetryingPushSender(http, store, url_validator(allowed_networks), retries, backoff_seconds)

    async def close() -> None:
        await sender.drain()
        await http.aclose()

    # when a config is set, a name that does not resolve yet is accepted; every delivery checks again
    return store, sender, url_validator(allowed_networks, unresolvable_ok=True), close
