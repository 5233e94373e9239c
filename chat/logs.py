"""Structured logs: with ``LOG_FORMAT=json`` every record is one JSON object on one line, carrying the reply and
user it concerns where known.

The ids travel in context variables, set once where the work starts (``log_context``: the worker's reply job,
the consumer's socket), so no log call has to pass them; a call may still pass ``extra={"reply_id": …}``.
Context variables follow threads (Celery's threads pool: one task per thread) and asyncio tasks (one consumer
per socket; ``database_sync_to_async`` copies the context), so ids never leak between replies.
"""
from __future__ import annotations

import contextvars
import datetime
import json
import logging
import os
import sys
from contextlib import contextmanager

_ids: contextvars.ContextVar[dict] = contextvars.ContextVar("chat_log_ids", default={})
FIELDS = ("reply_id", "user_id", "conversation_id")
# What an access record adds (chat/access.py), passed with extra=.
ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "client")


@contextmanager
def log_context(**ids: int | None):
    """Records logged inside carry these ids (``reply_id``, ``user_id``, ``conversation_id``)."""
    token = _ids.set({**_ids.get(), **{k: v for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _ids.reset(token)


def bind_log_context(**ids: int | None) -> None:
    """Add ids for the rest of the current context (a consumer's task: connect has no matching exit)."""
    _ids.set({**_ids.get(), **{k: v for k, v in ids.items() if v is not None}})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
               .isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "message": record.getMessage(),
               "process": record.process}
        out.update(_ids.get())
        for field in FIELDS + ACCESS_FIELDS:  # an explicit extra= wins over the context
            if getattr(record, field, None) is not None:
                out[field] = getattr(record, field)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # default=str: a message argument that is not JSON (a Path, a UUID) must never lose the line.
        return json.dumps(out, ensure_ascii=False, default=str)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def celery_say_as_json() -> None:
    """Under LOG_FORMAT=json, make Celery's worker say its shutdown lines ("worker: Warm shutdown") as JSON too:
    it writes them straight to the file descriptor with ``celery.apps.worker.safe_say``, past logging, since
    they are said in signal handlers. The stand-in writes the same way, without logging's locks."""
    import celery.apps.worker

    def say(msg, f=sys.__stderr__):
        line = json.dumps({"time": _now(), "level": "WARNING", "logger": "celery.apps.worker",
                           "message": str(msg).strip(), "process": os.getpid()}, ensure_ascii=False)
        try:
            os.write(f.fileno(), (line + "\n").encode())
        except (OSError, ValueError, AttributeError):  # best effort, as Celery's own: never abort the caller
            pass

    celery.apps.worker.safe_say = say
