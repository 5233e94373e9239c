"""Operator endpoints: who may read /metrics and /readyz's details, and the JSON log lines."""

import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chat import metrics
from chat.conversations import services as conversation_services
from chat.replies import liveness
from chat.replies import services as reply_services
from chatsite import stack
from tests.helpers.support import json_records

OUTSIDER = "203.0.113.7"


@pytest.fixture
def redis_metrics():
    """The shared figures start empty for the test and are left empty."""
    from chat.store import client

    keys = [metrics.COUNTERS_KEY, *(metrics.HIST_KEY.format(n) for n in metrics.HISTOGRAMS)]
    client().delete(*keys)
    yield
    client().delete(*keys)


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_only_for_allowed_addresses_or_the_token(client, settings, db, redis_metrics):
    settings.METRICS_ALLOWED_IPS = ["10.1.0.0/16", "::1"]
    settings.METRICS_TOKEN = "s3cret-token-for-tests"
    refused = client.get("/metrics", REMOTE_ADDR=OUTSIDER)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403  # loopback not listed now
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDER, HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.200.3").status_code == 200  # inside the network
    ok = client.get("/metrics", REMOTE_ADDR=OUTSIDER, HTTP_AUTHORIZATION="Bearer s3cret-token-for-tests")
    assert ok.status_code == 200 and ok["Content-Type"].startswith("text/plain")
    assert "chat_replies" in families(ok.content.decode())
    settings.METRICS_TOKEN = ""  # no token configured: "Bearer " alone opens nothing
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDER, HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_readyz_tells_the_public_only_ready_or_not(client, db):
    public = client.get("/readyz", REMOTE_ADDR=OUTSIDER)
    assert public.status_code == 200 and public.json() == {"ready": True}
    operator = client.get("/readyz", REMOTE_ADDR="127.0.0.1").json()
    assert operator["ready"] and operator["database"] == "ok" and operator["workers"] >= 1


def test_a_reply_end_is_counted_once_into_counters_and_histograms(client, db, redis_metrics):
    for ttft_ms, speed in ((40, 12.0), (700, 80.0)):
        metrics.observe_reply(
            status="complete", ttft_ms=ttft_ms, tokens_per_s=speed, prompt_tokens=30, completion_tokens=8
        )
    metrics.observe_reply(status="failed", ttft_ms=None, tokens_per_s=None, prompt_tokens=None, completion_tokens=None)
    metrics.count_request("BREW", 418)  # an unknown method stays one label value
    got = families(client.get("/metrics").content.decode())
    replies = {s.labels["status"]: s.value for s in got["chat_replies"].samples}
    assert replies == {"complete": 2.0, "failed": 1.0}
    ttft = {
        s.labels.get("le"): s.value
        for s in got["chat_time_to_first_token_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert ttft["0.05"] == 1 and ttft["0.5"] == 1 and ttft["1.0"] == 2 and ttft["+Inf"] == 2
    count = [s.value for s in got["chat_time_to_first_token_seconds"].samples if s.name.endswith("_count")]
    assert count == [2.0]
    assert {s.labels["kind"]: s.value for s in got["chat_reply_tokens"].samples} == {"prompt": 60, "completion": 16}
    assert any(s.labels == {"method": "other", "status": "418"} for s in got["chat_http_requests"].samples)


def test_worker_figures_come_from_its_heartbeat_and_leave_with_it(client, db):
    name = "metrics-test-worker"
    liveness.heartbeat(
        name,
        [],
        stats={
            "batch_size": 3,
            "in_flight": 5,
            "decode_steps": 10,
            "decode_rows": 25,
            "prefix_lookups": 4,
            "prefix_hits": 3,
            "prefix_tokens_looked_up": 100,
            "prefix_tokens_reused": 75,
            "decode_steps_at_batch_size": [0, 4, 0, 6],
            "preemptions": 2,
            "direct_decode_steps": 7,
        },
    )
    try:
        got = families(client.get("/metrics").content.decode())
        mine = {
            f: [s.value for s in got[f].samples if s.labels.get("worker") == name]
            for f in (
                "chat_worker_batch_size",
                "chat_worker_replies_in_flight",
                "chat_worker_prefix_cache_hit_ratio",
                "chat_worker_preemptions",
                "chat_worker_direct_decode_steps",
            )
        }
        assert mine == {
            "chat_worker_preemptions": [2.0],
            "chat_worker_direct_decode_steps": [7.0],
            "chat_worker_batch_size": [3.0],
            "chat_worker_replies_in_flight": [5.0],
            "chat_worker_prefix_cache_hit_ratio": [0.75],
        }
        by_size = {
            s.labels["batch_size"]: s.value
            for s in got["chat_worker_decode_steps_by_batch_size"].samples
            if s.labels.get("worker") == name and s.name.endswith("_total")
        }
        assert by_size == {"1": 4.0, "3": 6.0}  # sizes no step ran at are left out
    finally:
        liveness.worker_gone(name)
    got = families(client.get("/metrics").content.decode())
    assert not [s for s in got["chat_worker_batch_size"].samples if s.labels.get("worker") == name]


def test_json_logs_are_one_object_per_line_with_the_reply_and_user(tmp_path):
    """LOG_FORMAT=json through the settings' own LOGGING, in a fresh process."""
    code = (
        "import django, logging; django.setup(); from chat.logs import log_context; "
        "log = logging.getLogger('chat.worker'); log.info('outside'); "
        'exec(\'with log_context(reply_id=41, user_id=7):\\n log.info("reply %s ended", 41)\\n '
        'log.error("multi\\\\nline", exc_info=ValueError("boom"))\'); '
        "log.warning('explicit', extra={'reply_id': 5})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=stack.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            "LOG_FORMAT": "json",
            "DEBUG": "true",
            "SECRET_KEY": "k" * 60,
        },
    )
    records = json_records(out.stderr)  # every line is one JSON object (axes says hello too)
    records = [r for r in records if r["logger"] == "chat.worker"]
    assert [r["message"] for r in records] == ["outside", "reply 41 ended", "multi\nline", "explicit"]
    assert "reply_id" not in records[0] and "user_id" not in records[0]
    assert records[1]["reply_id"] == 41 and records[1]["user_id"] == 7 and records[1]["level"] == "INFO"
    assert records[2]["reply_id"] == 41 and "ValueError: boom" in records[2]["exception"]
    assert records[3]["reply_id"] == 5 and "user_id" not in records[3] and records[3]["logger"] == "chat.worker"


def test_queued_and_streaming_replies_show_in_the_queue_depth_and_the_active_gauge(
    client, db, make_user, django_capture_on_commit_callbacks
):
    """No worker takes tasks here (the heartbeat is a stand-in): what message_send queues stays in the Celery
    queue, read from Redis under its real key, and the replies stay queued in the database."""

    def gauges():
        got = families(client.get("/metrics").content.decode())
        return (
            got["chat_queue_depth"].samples[0].value,
            {s.labels["status"]: s.value for s in got["chat_replies_active"].samples},
        )

    depth_before, active_before = gauges()
    assert active_before == {"queued": 0, "streaming": 0}
    alice = make_user()
    with django_capture_on_commit_callbacks(execute=True):  # on commit: the task goes to the queue
        sent = [
            conversation_services.message_send(user=alice, conversation_id=None, content=f"wait {n}") for n in range(2)
        ]
    depth, active = gauges()
    assert depth == depth_before + 2 and active == {"queued": 2, "streaming": 0}
    reply_services.reply_claim(message_id=sent[0].assistant_message.id)  # a worker took one
    assert gauges()[1] == {"queued": 1, "streaming": 1}


def test_a_task_handed_to_a_live_workers_own_queue_is_in_the_queue_depth(client, db):
    """Balancing (chat/replies/balance.py) hands a task to a live worker's own queue: it is waiting as much as one in
    the shared queue. A gone worker's queue is not counted (the next worker to start deletes it)."""
    import os

    from celery import current_app

    from chat.names import GENERATE_REPLY_TASK
    from chat.names import worker_queue as own_queue
    from chat.store import client as redis_client

    def depth():
        return families(client.get("/metrics").content.decode())["chat_queue_depth"].samples[0].value

    alive, gone = own_queue(f"unit-tests-{os.getpid()}"), own_queue("a-worker-that-stopped")  # tests/chat/conftest.py
    redis_client().delete(alive, gone)
    before = depth()
    try:
        for queue in (alive, alive, gone):
            current_app.send_task(GENERATE_REPLY_TASK, args=[0], kwargs={"handed": True}, queue=queue)
        assert redis_client().llen(alive) == 2 and redis_client().llen(gone) == 1  # the real keys, as kombu wrote
        assert depth() == before + 2
    finally:
        redis_client().delete(alive, gone)
    assert depth() == before


def test_json_access_records_name_the_request_the_client_and_a_known_person(
    client, db, make_user, settings, django_assert_num_queries
):
    """LOG_FORMAT=json: the middleware writes the access log Daphne no longer does (chatsite/web.py, -v 0),
    through the JSON formatter; the person only when the request looked them up anyway (no extra query)."""
    import io
    import logging

    from chat.logs import JsonFormatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("chat.access")
    logger.addHandler(handler)
    try:
        settings.LOG_FORMAT = "text"
        client.get("/healthz")
        assert out.getvalue() == ""  # text logs: Daphne's own access log is the one
        settings.LOG_FORMAT = "json"
        alice = make_user()
        client.force_login(alice)
        with django_assert_num_queries(0):  # signed in, but the probe never reads the session: neither does its record
            client.get("/healthz?probe=1", REMOTE_ADDR="192.0.2.4")
        client.get("/")
        client.post("/accounts/logout/")
    finally:
        logger.removeHandler(handler)
    records = json_records(out.getvalue())
    assert [(r["method"], r["path"], r["status"]) for r in records] == [
        ("GET", "/healthz", 200),
        ("GET", "/", 200),
        ("POST", "/accounts/logout/", 302),
    ]
    assert records[0]["client"] == "192.0.2.4" and "user_id" not in records[0]
    assert records[0]["message"] == "GET /healthz 200" and records[0]["logger"] == "chat.access"
    assert records[1]["user_id"] == alice.pk and records[1]["client"] == "127.0.0.1"
    assert "user_id" not in records[2]  # signed out by this very request
    assert all(isinstance(r["duration_ms"], float) and r["duration_ms"] >= 0 for r in records)


def test_a_refusal_is_logged_as_a_line_without_its_traceback(client, django_user_model):
    """Django logs each 403 with the exception's traceback; through the site's console handler it is one line."""
    import io
    import logging

    from chat.logs import RefusalsWithoutTraceback

    staff = django_user_model.objects.create_user(username="no-perms", password=None, is_staff=True)
    client.force_login(staff)
    handler = next(
        h for h in logging.getLogger().handlers if any(isinstance(f, RefusalsWithoutTraceback) for f in h.filters)
    )
    stream = io.StringIO()
    old = handler.setStream(stream)
    try:
        assert client.get("/admin/chat/conversation/").status_code == 403
    finally:
        handler.setStream(old)
    said = stream.getvalue()
    assert "Forbidden (Permission denied): /admin/chat/conversation/" in said
    assert "Traceback" not in said and "PermissionDenied" not in said
