"""LOG_FORMAT=json lines: one shape for every writer (``chat.logs.json_line``: the logging formatter, Celery's
shutdown lines, the launcher's own), ASCII only, so a path with U+2028 cannot cut its own access record; and
the stand-in for Celery's ``safe_say``."""

import io
import logging
import os

import celery.apps.worker as celery_worker
import pytest

from chat import logs
from chatsite import stack
from tests.helpers.support import json_records

BREAKS = "\u2028\u2029\u0085"  # JSON may leave these raw; str.splitlines (and some shippers) end a line there


def test_an_access_record_of_a_path_with_a_line_separator_stays_one_ascii_line(client, db, settings):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("chat.access")
    logger.addHandler(handler)
    settings.LOG_FORMAT = "json"
    try:
        client.get("/%E2%80%A8forged%C2%85record%E2%80%A9")  # what Daphne also decodes into the path
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert text.isascii() and len(text.splitlines()) == text.count("\n") == 1  # the strictest splitter agrees
    (record,) = json_records(text)
    assert record["path"] == "/\u2028forged\u0085record\u2029" and record["status"] == 404
    assert record["message"] == "GET /\u2028forged\u0085record\u2029 404"


def test_every_writer_makes_the_same_record_shape(capsys, monkeypatch):
    formatted = logs.JsonFormatter().format(
        logging.LogRecord("chat.worker", logging.INFO, __file__, 1, f"a{BREAKS}b é", None, None)
    )
    monkeypatch.setattr(stack, "_json_lines", True)
    stack.say(f"  launcher{BREAKS}line  ")
    said = capsys.readouterr().out
    records = [*json_records(formatted + "\n"), *json_records(said)]
    assert formatted.isascii() and said.isascii() and said.count("\n") == 1
    assert [list(r) for r in records] == [["time", "level", "logger", "message", "process"]] * 2
    assert records[0]["message"] == f"a{BREAKS}b é" and records[1]["message"] == f"launcher{BREAKS}line"
    assert records[1]["logger"] == "chatsite.stack" and records[1]["process"] == os.getpid()


def test_celerys_shutdown_lines_become_json_written_past_a_patched_os_write(tmp_path, monkeypatch):
    monkeypatch.setattr(celery_worker, "safe_say", celery_worker.safe_say)  # restored afterwards
    logs.celery_say_as_json()
    assert celery_worker.safe_say.__module__ == "chat.logs"

    def patched(fd, data):  # eventlet's os.write raises this when called inside its hub (a signal handler)
        raise RuntimeError("trampoline from the hub")

    monkeypatch.setattr(os, "write", patched)
    target = tmp_path / "stdout"
    with open(target, "w") as f:
        celery_worker.safe_say(f"\nworker: Warm{BREAKS}shutdown (MainProcess)\n", f)
    monkeypatch.undo()  # os.write back, and Celery's own safe_say
    (record,) = json_records(target.read_text())
    assert record["message"] == f"worker: Warm{BREAKS}shutdown (MainProcess)"
    assert record["logger"] == "celery.apps.worker" and record["level"] == "WARNING"


def test_the_stand_in_never_raises_into_the_signal_handler(monkeypatch):
    monkeypatch.setattr(celery_worker, "safe_say", celery_worker.safe_say)
    logs.celery_say_as_json()

    class Broken:
        def fileno(self):
            raise RuntimeError("no descriptor")  # not an OSError: anything a write can raise is swallowed

    celery_worker.safe_say("worker: Cold shutdown", Broken())


def test_a_celery_without_safe_say_is_an_error_at_worker_start(monkeypatch):
    monkeypatch.delattr(celery_worker, "safe_say")
    with pytest.raises(RuntimeError, match="celery.apps.worker.safe_say is gone"):
        logs.celery_say_as_json()
    assert not hasattr(celery_worker, "safe_say")  # nothing assigned that Celery would never call
