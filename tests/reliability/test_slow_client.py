"""A client that stops reading is dropped by keepalive, not buffered for forever."""

import base64
import json
import os
import socket
import subprocess
import time

import psutil
import pytest

from chat.models import Message
from chatsite import stack

pytestmark = pytest.mark.e2e


def masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    length = len(payload)
    header = bytes([0x81, 0x80 | length]) if length < 126 else bytes([0x81, 0x80 | 126]) + length.to_bytes(2, "big")
    return header + mask + body


def test_a_client_that_stops_reading_is_dropped_and_its_reply_still_stored(fault_chat, fault_stack):
    """Fault: a client sends a message and never reads again (its receive buffer tiny). Outcome: Daphne's
    keepalive (2 s + 3 s here) drops it, so Daphne's memory for it is bounded; the reply is stored."""
    port = stack.free_port()
    env = dict(fault_stack.env, WS_PING_INTERVAL_S="2", WS_PING_TIMEOUT_S="3")
    daphne = stack.start_daphne(
        port, env, stdout=open(fault_stack.logs / "daphne-ping.log", "w"), stderr=subprocess.STDOUT
    )
    _, client = fault_chat()
    try:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        raw.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        raw.sendall(
            (
                f"GET /ws/chat/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: http://127.0.0.1:{port}\r\nCookie: {client.cookie}\r\n\r\n"
            ).encode()
        )
        raw.settimeout(10)
        assert b" 101 " in raw.recv(1024)
        raw.sendall(
            masked_text_frame(
                json.dumps(
                    {
                        "type": "send",
                        "conversation": None,
                        "params": {"max_new_tokens": 300},
                        "content": "Write a long story about a slow reader.",
                    }
                )
            )
        )
        rss_at_start = psutil.Process(daphne.pid).memory_info().rss
        time.sleep(12)  # never reading: pings go unanswered
        raw.settimeout(5)
        closed = False
        try:
            while True:  # now drain what was buffered; a dropped connection ends in EOF or a reset
                if not raw.recv(65536):
                    closed = True
                    break
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            closed = False
        raw.close()
        rss_after = psutil.Process(daphne.pid).memory_info().rss
    finally:
        stack.stop(daphne)
    assert closed, "Daphne kept a client that stopped reading"
    assert rss_after - rss_at_start < 50 * 2**20
    deadline = time.monotonic() + 120
    while Message.objects.filter(role="assistant", status__in=["queued", "streaming"]).exists():
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert Message.objects.get(role="assistant").status == "complete"  # generation went on without it
