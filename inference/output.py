"""What a request hands back: text pieces, then one ``Finished``."""

from __future__ import annotations

import math
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Piece:
    """Released reply text, and how many reply tokens had been generated when it was released (a progress
    figure for the caller: text and tokens do not line up one to one)."""

    text: str
    tokens: int = 0


@dataclass(frozen=True)
class Queued:
    """The request waits for a row behind ``ahead`` others (sent when it is not admitted at once, and whenever
    that number changes until it is)."""

    ahead: int


@dataclass(frozen=True)
class Finished:
    """The end of a request. ``reason``: stop, length, cancelled or error."""

    reason: str  # a request.FinishReason, named here only as the str it is: request.py imports this module
    text: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    error: str = ""
    code: str = ""  # a stable code for an error the caller can name (adapters.ADAPTER_UNAVAILABLE), else ""


class RequestHandle:
    """The caller's side of one request: read events, or cancel."""

    def __init__(self, request_id: str, engine):
        self.request_id = request_id
        self._engine = engine
        self._events: queue.Queue = queue.Queue()
        self.finished = False

    def put(self, event) -> None:
        """Engine side: deliver an event."""
        if isinstance(event, Finished):
            self.finished = True
        self._events.put(event)

    def get(self, timeout: float | None = None):
        """Next event; raises ``queue.Empty`` after ``timeout`` seconds."""
        return self._events.get(timeout=timeout)

    def cancel(self) -> None:
        """Stop generating; the text so far is kept."""
        self._engine.cancel(self.request_id)

    def __iter__(self):
        while True:
            event = self.get()
            yield event
            if isinstance(event, Finished):
                return


@dataclass
class Chunk:
    """Coalesced text for one delta frame (``finished`` is set on the last, with the ``Finished`` event);
    ``tokens``: reply tokens generated so far, from the newest piece in it."""

    text: str
    finished: Finished | None = None
    tokens: int = 0
    queued: int | None = None  # a ``Queued`` event's ``ahead``, on a chunk of its own (no text)


def coalesce(
    handle: RequestHandle,
    flush_interval: float | Callable[[], float] = 0.04,
    idle_timeout: float = 600.0,
    requeue_s: float | None = None,
):
    """Group pieces into chunks, at most one per ``flush_interval``: a piece goes at once when no chunk went out
    within the last interval (the first piece always), otherwise with whatever else arrives until the interval
    since the last chunk is over. ``flush_interval`` may be a function, asked when a piece arrives with nothing
    waiting to go (the worker widens it while it streams many replies: ``chat/worker/runtime.py``).

    A fast GPU then costs one channel-layer message per interval, not one per token; and where tokens come slower
    than that (a CPU serving many streams), each goes the moment it is made, with one wake-up of the caller's
    thread rather than two (its arrival, then a timer) — waking threads take the engine's CPU and lock on a small
    machine. While the request waits for a row, its last place is given again after each ``requeue_s`` without
    news, so a caller that held a place back (it throttles how often places go out) gets to send it even when the
    line then stops moving.
    """
    buffer: list[str] = []
    deadline: float | None = None  # when the buffered pieces go: the interval since the last chunk is over
    sent_at = -math.inf  # when the last chunk of text went
    tokens = 0
    waiting: int | None = None  # the place last given, until the text starts
    heard = time.monotonic()  # the last event: ``idle_timeout`` counts from it
    while True:
        now = time.monotonic()
        if deadline is not None:
            timeout = max(0.0, deadline - now)
        else:
            timeout = max(0.0, heard + idle_timeout - now)
            if waiting is not None and requeue_s:
                timeout = min(timeout, requeue_s)
        try:
            event = handle.get(timeout=timeout)
        except queue.Empty:
            if deadline is not None:
                yield Chunk("".join(buffer), tokens=tokens)
                buffer, deadline, sent_at = [], None, time.monotonic()
                continue
            if waiting is not None and requeue_s and time.monotonic() - heard < idle_timeout:
                yield Chunk("", tokens=tokens, queued=waiting)
                continue
            raise TimeoutError("the engine produced nothing for too long") from None
        heard = time.monotonic()
        if isinstance(event, Finished):
            yield Chunk("".join(buffer), finished=event, tokens=event.completion_tokens)
            return
        if isinstance(event, Queued):  # before any text, or after some (a preempted row): passed on at once
            if buffer:  # the text before it first: text after a place would take the place back at once
                yield Chunk("".join(buffer), tokens=tokens)
                buffer, deadline, sent_at = [], None, time.monotonic()
            waiting = event.ahead
            yield Chunk("", tokens=tokens, queued=event.ahead)
            continue
        waiting = None
        buffer.append(event.text)
        tokens = event.tokens
        if deadline is None:
            deadline = sent_at + (flush_interval() if callable(flush_interval) else flush_interval)
        if heard >= deadline:
            yield Chunk("".join(buffer), tokens=tokens)  # on time even while pieces keep coming
            buffer, deadline, sent_at = [], None, time.monotonic()
