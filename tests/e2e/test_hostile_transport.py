"""Hostile traffic against Daphne itself: oversized and malformed websocket frames, odd text."""

import asyncio
import base64
import os
import socket

import pytest
import websockets

from chat.models import Message
from chatsite.stack import WS_MAX_MESSAGE_BYTES
from tests.helpers.live import recv, recv_until, send

pytestmark = pytest.mark.e2e


def test_oversized_messages_are_refused_at_the_right_layer(chat):
    _, client = chat()

    async def go():
        async with client.connect() as ws:
            await ws.send('{"type": "send", "conversation": null, "content": "' + "x" * 100_000 + '"}')
            app_refusal = await recv(ws)  # over the app's limit, under Daphne's: an error frame
            await send(ws, {"type": "noop"})
            still = await recv(ws)
        async with client.connect() as ws:
            await ws.send("x" * (WS_MAX_MESSAGE_BYTES + 1))  # over Daphne's limit: the connection is dropped
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await recv(ws)
        return app_refusal, still, closed.value.rcvd

    app_refusal, still, close = asyncio.run(go())
    assert app_refusal["code"] == "too_large" and still["code"] == "unknown_type"
    # Dropped before the app buffered it: Daphne's websocket layer (autobahn, failByDrop) fails the connection by
    # closing TCP at once, with no close frame.
    assert close is None


def test_malformed_websocket_frames_drop_only_that_connection(chat, live_stack, session_cookie):
    _, client = chat()
    host, port = "127.0.0.1", live_stack.port
    raw = socket.create_connection((host, port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall(
        (
            f"GET /ws/chat/ HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {live_stack.origin}\r\n"
            f"Cookie: {client.cookie}\r\n\r\n"
        ).encode()
    )
    assert b"101" in raw.recv(4096).split(b"\r\n")[0]
    raw.sendall(bytes([0x83, 0x85]) + os.urandom(4) + b"hello")  # reserved opcode 3, masked
    raw.settimeout(10)
    received = b""
    try:
        while chunk := raw.recv(4096):
            received += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    raw.close()
    assert received == b""  # a protocol error: autobahn drops the TCP connection without a close frame

    async def others_fine():
        async with client.connect() as ws:
            await send(
                ws,
                {
                    "type": "send",
                    "conversation": None,
                    "content": "Hi \ud800 there\x00!\u202e",
                    "params": {"max_new_tokens": 4},
                },
            )
            frames = await recv_until(ws, "done")
            return next(f for f in frames if f["type"] == "message")["message"]

    user_message = asyncio.run(others_fine())
    # lone surrogates and NUL are dropped before storing; other Unicode is kept as typed
    assert user_message["content"] == "Hi  there!\u202e"
    assert Message.objects.get(pk=user_message["id"]).content == "Hi  there!\u202e"


def test_deeply_nested_frames_are_bad_json_and_lock_nobody_out(chat):
    """~30,000 nested brackets (under the size limit) once crashed the consumer: the socket closed 1011 and its
    place in the per-user socket count stayed taken, so ten such frames locked the account out of chat."""
    _, client = chat()
    nested = "[" * 30000 + "]" * 30000

    async def go():
        codes = []
        for _ in range(12):
            async with client.connect() as ws:
                await ws.send(nested)
                codes.append((await recv(ws))["code"])
        sockets = [await client.connect() for _ in range(10)]  # the default cap: all ten still open
        await send(
            sockets[-1], {"type": "send", "conversation": None, "content": "still me", "params": {"max_new_tokens": 2}}
        )
        done = (await recv_until(sockets[-1], "done"))[-1]
        for ws in sockets:
            await ws.close()
        return codes, done

    codes, done = asyncio.run(go())
    assert codes == ["bad_json"] * 12 and done["status"] == "complete"
