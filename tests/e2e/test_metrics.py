"""/metrics on the live stack, parsed with prometheus_client's own parser, around one real reply."""

import asyncio
import http.client
import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chat.replies import liveness
from tests.e2e.test_chat_stack import ask
from tests.e2e.test_models_live import ask as ask_model
from tests.helpers.live import DEFAULT_MODEL, LIVE_BATCH, RESTRICTED, TINY

pytestmark = pytest.mark.e2e


def scrape(port: int, source: str = "127.0.0.1", path: str = "/metrics", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read().decode()


def samples(text: str) -> dict:
    """(sample name, sorted labels) → value, for every sample of every family."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(figures: dict, name: str, **labels) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_after_a_real_reply_and_are_refused_to_other_addresses(chat, live_stack):
    status, before_text = scrape(live_stack.port)
    assert status == 200
    before = samples(before_text)
    _, client = chat("metered")

    async def go():
        async with client.connect() as ws:
            return await ask(ws, "Name a colour.", max_new_tokens=16)

    _, reply_id, frames = asyncio.run(go())
    done = frames[-1]
    assert done["status"] == "complete"

    status, text = scrape(live_stack.port)
    after = samples(text)
    assert (
        value(after, "chat_replies_total", status="complete")
        == value(before, "chat_replies_total", status="complete") + 1
    )
    assert (
        value(after, "chat_websocket_connections_total", outcome="accepted")
        >= value(before, "chat_websocket_connections_total", outcome="accepted") + 1
    )
    assert (
        value(after, "chat_http_requests_total", method="GET", status="200")
        >= value(before, "chat_http_requests_total", method="GET", status="200") + 1
    )  # the first scrape
    for hist in ("chat_time_to_first_token_seconds", "chat_reply_tokens_per_second"):
        assert value(after, f"{hist}_count") == value(before, f"{hist}_count") + 1
        assert value(after, f"{hist}_sum") > value(before, f"{hist}_sum")
    ttft_s = done["timing"]["ttft_ms"] / 1000  # the observation landed in the buckets at and above it
    moved = [
        float(dict(labels)["le"])
        for (name, labels), v in after.items()
        if name == "chat_time_to_first_token_seconds_bucket" and v > value(before, name, **dict(labels))
    ]
    assert moved and min(moved) >= ttft_s
    assert (
        value(after, "chat_reply_tokens_total", kind="completion")
        == value(before, "chat_reply_tokens_total", kind="completion") + done["usage"]["completion_tokens"]
    )
    # Gauges: nothing waits or streams now; one live worker whose engine ran batches and looked up prompts.
    assert value(after, "chat_queue_depth") == 0 and value(after, "chat_workers") >= 1
    assert value(after, "chat_replies_active", status="streaming") == 0
    workers = {
        dict(labels)["worker"]: dict(labels)["model"] for (name, labels) in after if name == "chat_worker_batch_size"
    }
    assert workers, text
    assert max(value(after, "chat_worker_decode_steps_total", worker=w, model=m) for w, m in workers.items()) > 0
    assert (
        max(value(after, "chat_worker_prefix_cache_lookups_total", worker=w, model=m) for w, m in workers.items()) > 0
    )
    assert all(0 <= value(after, "chat_worker_prefix_cache_hit_ratio", worker=w) <= 1 for w in workers)
    # The running batch's keys and values within the worker's budget (CHAT_KV_BUDGET_MB), the budget exported.
    assert all(value(after, "chat_worker_kv_budget_bytes", worker=w, model=m) > 0 for w, m in workers.items())
    assert all(
        0
        <= value(after, "chat_worker_kv_bytes", worker=w, model=m)
        <= value(after, "chat_worker_kv_budget_bytes", worker=w, model=m)
        for w, m in workers.items()
    )

    # Another address (the loopback alias 127.0.0.2 is not in METRICS_ALLOWED_IPS): refused, readyz terse.
    status, body = scrape(live_stack.port, source="127.0.0.2")
    assert status == 403 and json.loads(body)["error"]["code"] == "forbidden"
    status, body = scrape(live_stack.port, source="127.0.0.2", path="/readyz")
    assert status == 200 and json.loads(body) == {"ready": True}
    status, body = scrape(live_stack.port, path="/readyz")
    assert json.loads(body)["workers"] >= 1


def test_readyz_and_metrics_report_each_model(chat, live_stack, tiny_worker):
    """Per model: live workers, queue depth, batch fill and capacity (each worker's own CHAT_MAX_BATCH: TINY's
    `max_batch` option is 4, the site's 9), and each worker's figures labelled with its model; /readyz gives
    operators each model's live workers and names the one without any (RESTRICTED's worker runs only inside
    its own test)."""
    _, client = chat("metered-models")

    async def go():
        async with client.connect() as ws:
            return await ask_model(ws, "Hi", model=TINY, params={"max_new_tokens": 4})

    reply, frames = asyncio.run(go())
    assert reply["model"] == TINY and frames[-1]["status"] == "complete"
    live = {m: len(liveness.workers_alive(m)) for m in (DEFAULT_MODEL, TINY, RESTRICTED)}
    assert live[DEFAULT_MODEL] >= 1 and live[TINY] >= 1 and live[RESTRICTED] == 0

    tiny_name = f"-{tiny_worker.pid}"

    def tiny_label(figures) -> str:
        (label,) = [
            dict(labels)["worker"]
            for (name, labels) in figures
            if name == "chat_worker_batch_size" and dict(labels)["worker"].endswith(tiny_name)
        ]
        return label

    deadline = time.monotonic() + 15
    while True:  # a worker's figures travel with its heartbeat (CHAT_HEARTBEAT_S): the reply's steps may lag
        status, text = scrape(live_stack.port)
        figures = samples(text)
        steps = value(figures, "chat_worker_decode_steps_total", worker=tiny_label(figures), model=TINY)
        busy = sum(value(figures, "chat_model_batch_size", model=m) for m in live)
        if (steps > 0 and not busy) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert steps > 0
    assert value(figures, "chat_worker_decode_steps_total", worker=tiny_label(figures), model=DEFAULT_MODEL) == 0
    assert {m: value(figures, "chat_model_workers", model=m) for m in live} == live
    assert {m: value(figures, "chat_model_batch_capacity", model=m) for m in live} == {
        DEFAULT_MODEL: LIVE_BATCH * live[DEFAULT_MODEL],
        TINY: 4 * live[TINY],
        RESTRICTED: 0,
    }
    for m in live:  # idle now: nothing waits, nothing is batched
        assert (
            value(figures, "chat_model_queue_depth", model=m) == 0
            and value(figures, "chat_model_batch_size", model=m) == 0
        )
        assert (("chat_model_workers", (("model", m),))) in figures  # every served model reported, a dead one as 0
    status, body = scrape(live_stack.port, path="/readyz")
    ready = json.loads(body)
    assert status == 200 and ready["ready"] is True and ready["models"] == live
    assert ready["detail"] == f"no worker is running {RESTRICTED}"
    status, body = scrape(live_stack.port, source="127.0.0.2", path="/readyz")
    assert status == 200 and json.loads(body) == {"ready": True}  # anyone else: ready or not, no more
