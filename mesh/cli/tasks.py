"""`mesh send`, `mesh get` and `mesh cancel`: talking to one agent."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from mesh.cli.common import call_agent, target_of
from mesh.errors import CliError

# -- send / get / cancel ------------------------------------------------------------------------


def cmd_send(args: argparse.Namespace) -> int:
    text = " ".join(args.text)
    if text == "-":
        text = sys.stdin.read()
    data = None
    if args.data is not None:
        try:
            data = json.loads(args.data)
        except json.JSONDecodeError as exc:
            raise CliError(f"--data is not JSON: {exc}") from None
    if not text and data is None:
        raise CliError("nothing to send: give a text or --data")
    return asyncio.run(_send(args, text, data))


async def _send(args: argparse.Namespace, text: str, data: Any) -> int:
    from mesh.cli.output import state_name, to_json
    from mesh.cli.progress import TaskView
    from mesh.client import (
        fetch_card,
        http_client,
        open_client,
        send_request,
        user_message,
    )
    from mesh.client.exchange import exchange

    target = target_of(args)
    message = user_message(text or None, data, task_id=args.task, context_id=args.context)
    async with http_client(target.token, timeout=args.timeout, h2c=target.h2c) as http:
        card = await call_agent(target, fetch_card(http, target.url))
        client = await open_client(http, card, streaming=args.stream)
        seen_state = None
        view = None if args.json else TaskView()

        def show(event, picture) -> None:
            nonlocal seen_state
            if view is None:
                print(json.dumps(to_json(event)), flush=True)
            else:
                view.show(event)
            seen_state = picture.state

        try:
            result = await call_agent(target, exchange(client, send_request(message), show))
        finally:
            if view is not None:
                view.close()
        if not args.json and result.task_id and result.state != seen_state:
            # The stream ended before its last state reached it (e.g. a cancel from
            # elsewhere); the task, read back, has the final word.
            print(f"task {result.task_id} is {state_name(result.state)}")
    return 1 if result.failed else 0


def cmd_get(args: argparse.Namespace) -> int:
    from a2a.types import GetTaskRequest

    return asyncio.run(_task_call(args, lambda client: client.get_task(GetTaskRequest(id=args.task_id))))


def cmd_cancel(args: argparse.Namespace) -> int:
    from a2a.types import CancelTaskRequest

    return asyncio.run(_task_call(args, lambda client: client.cancel_task(CancelTaskRequest(id=args.task_id))))


async def _task_call(args: argparse.Namespace, call: Callable) -> int:
    from mesh.cli.output import describe_task, to_json
    from mesh.client import fetch_card, http_client, open_client

    target = target_of(args)
    async with http_client(target.token, h2c=target.h2c) as http:
        card = await call_agent(target, fetch_card(http, target.url))
        client = await open_client(http, card, streaming=False)
        task = await call_agent(target, call(client))
    print(json.dumps(to_json(task), indent=2) if args.json else describe_task(task))
    return 0
