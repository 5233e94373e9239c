"""Helpers shared by the consumer tests: a communicator that checks every frame it receives against the
protocol's schema (chat/frames.py), and small async utilities; and the reader of JSON log streams."""

import asyncio
import json

from channels.testing import WebsocketCommunicator

from chat.frames import check_frame

ORIGIN = (b"origin", b"http://localhost")
HOST = (b"host", b"localhost")  # a browser's handshake always names the host: the origin check needs it


class CheckedCommunicator(WebsocketCommunicator):
    """A ``WebsocketCommunicator`` whose every received text frame must match its schema exactly."""

    async def receive_output(self, timeout=1):
        out = await super().receive_output(timeout)
        if out.get("type") == "websocket.send" and out.get("text") is not None:
            check_frame(json.loads(out["text"]))
        return out


def json_records(text: str) -> list[dict]:
    """The records of a LOG_FORMAT=json stream, one JSON object per line: split on "\\n" alone (the one character
    the writers end a record with; ``str.splitlines`` would also cut at U+2028 and the like), complete lines
    only, so a last line still being written is left for the next read."""
    records = []
    for number, line in enumerate(text.split("\n")[:-1], 1):
        try:
            records.append(json.loads(line))
        except ValueError as exc:  # say which line: a plain-text line in a JSON log is the bug to find
            raise AssertionError(f"line {number} is not one JSON object: {line[:1000]!r}") from exc
    return records


def communicator(cookie: str | None = None, origin=ORIGIN, host=HOST) -> CheckedCommunicator:
    from chatsite.asgi import application

    headers = [h for h in (origin, host) if h is not None] + ([(b"cookie", cookie.encode())] if cookie else [])
    return CheckedCommunicator(application, "/ws/chat/", headers=headers)


async def connect(cookie=None, origin=ORIGIN, host=HOST, timeout: float = 1):
    comm = communicator(cookie, origin, host)
    connected, code = await comm.connect(timeout=timeout)
    return comm, connected, code


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def frames_until(comm, kind, limit=10):
    got = []
    for _ in range(limit):
        frame = await comm.receive_json_from(timeout=10)
        got.append(frame)
        if frame["type"] == kind:
            return got
    raise AssertionError(f"no {kind} frame in {got}")
