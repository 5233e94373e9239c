"""Structured logs: with ``LOG_FORMAT=json`` every record is one JSON object on one line, carrying the reply and
user it concerns where known.

The ids travel in context variables, set once where the work starts (``log_context``: the worker's reply job,
the consumer's socket), so no log call has to pass them; a call may still pass ``extra={"reply_id": …}``.
Context variables follow threads (Celery's threads pool: one task per thread) and asyncio tasks (one consumer
per socket; ``database_sync_to_async`` copies the context), so ids never leak between replies.

Imports no Django: the launcher (``chatsite/stack.py``) writes its own lines with ``json_line`` before any
settings exist.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import os
import sys
import time
from contextlib import contextmanager

_ids: contextvars.ContextVar[dict] = contextvars.ContextVar("chat_log_ids", default={})
FIELDS = ("reply_id", "user_id", "conversation_id")
# What an access record adds (chat/ops/access.py), passed with extra=.
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


def json_line(
    level: str, logger: str, message: str, *, created: float | None = None, process: int | None = None, **fields
) -> str:
    """One log record as the one line every process writes under LOG_FORMAT=json (this formatter, Celery's
    shutdown lines, the launcher's own): time (UTC, ISO 8601), level, logger, message, process, then ``fields``.

    ASCII only (``ensure_ascii``): JSON may leave U+2028, U+2029 and U+0085 raw, and readers that split on
    Unicode line ends (Python's ``str.splitlines``, some shippers) would cut the record there, so a client could
    break its own access record with a path like ``/%E2%80%A8``. Escaped, no character of a record ends a line
    for any reader, and no stream encoding can refuse one (a lone surrogate included).
    """
    when = time.time() if created is None else created
    out = {
        "time": datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat(timespec="milliseconds"),
        "level": level,
        "logger": logger,
        "message": message,
        "process": os.getpid() if process is None else process,
        **fields,
    }
    # default=str: a message argument that is not JSON (a Path, a UUID) must never lose the line.
    return json.dumps(out, ensure_ascii=True, default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``json_line``), with the ids of the log context and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        fields = dict(_ids.get())
        for field in FIELDS + ACCESS_FIELDS:  # an explicit extra= wins over the context
            if getattr(record, field, None) is not None:
                fields[field] = getattr(record, field)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return json_line(
            record.levelname, record.name, record.getMessage(), created=record.created, process=record.process, **fields
        )


def celery_say_as_json() -> None:
    """Under LOG_FORMAT=json, make Celery's worker say its shutdown lines ("worker: Warm shutdown") as JSON too.

    Celery says them in signal handlers, past logging (whose locks a handler must not take), with the module
    global ``celery.apps.worker.safe_say``, which writes to the file descriptor with ``celery._original_os_write``:
    ``os.write`` as it was before eventlet or gevent could patch it. The stand-in replaces that global and writes
    one JSON line the same way, never through logging; like Celery's, a failed write never escapes into the
    signal handler. Were ``safe_say`` renamed or moved, assigning it would change nothing, silently: so its absence
    raises here, which Celery reports as an ERROR record at every worker start (it logs a ``worker_init``
    receiver's exception and goes on), and ``tests/chat/test_logs.py`` fails on the pinned Celery.
    """
    import celery.apps.worker as celery_worker

    if not callable(getattr(celery_worker, "safe_say", None)):
        raise RuntimeError(
            "celery.apps.worker.safe_say is gone (a Celery upgrade?): the worker's shutdown lines "
            "stay plain text under LOG_FORMAT=json; update chat.logs.celery_say_as_json."
        )
    write = getattr(celery_worker, "_original_os_write", os.write)

    def say(msg, f=sys.__stderr__):
        try:
            write(f.fileno(), (json_line("WARNING", "celery.apps.worker", str(msg).strip()) + "\n").encode())
        except Exception:  # best effort, as Celery's own: never abort the signal handler that says it
            pass

    celery_worker.safe_say = say


class RefusalsWithoutTraceback(logging.Filter):
    """Django logs each 403 and 404 answer with the exception's traceback (``django.request``'s warning): a
    refusal is an answer, not a fault, and fifty lines each buried the log. The line stays; its traceback goes.
    By the exception's class name, so this module stays free of Django."""

    REFUSALS = ("PermissionDenied", "Http404", "Resolver404")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and type(record.exc_info[1]).__name__ in self.REFUSALS:
            record.exc_info, record.exc_text = None, None
        return True
