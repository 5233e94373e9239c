"""/metrics on the live stack, parsed with prometheus_client's own parser, around one real reply."""

import asyncio
import http.client
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_chat_stack import ask

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
    workers = {dict(labels)["worker"] for (name, labels) in after if name == "chat_worker_batch_size"}
    assert workers, text
    assert max(value(after, "chat_worker_decode_steps_total", worker=w) for w in workers) > 0
    assert max(value(after, "chat_worker_prefix_cache_lookups_total", worker=w) for w in workers) > 0
    assert all(0 <= value(after, "chat_worker_prefix_cache_hit_ratio", worker=w) <= 1 for w in workers)

    # Another address (the loopback alias 127.0.0.2 is not in METRICS_ALLOWED_IPS): refused, readyz terse.
    status, body = scrape(live_stack.port, source="127.0.0.2")
    assert status == 403 and json.loads(body)["error"]["code"] == "forbidden"
    status, body = scrape(live_stack.port, source="127.0.0.2", path="/readyz")
    assert status == 200 and json.loads(body) == {"ready": True}
    status, body = scrape(live_stack.port, path="/readyz")
    assert json.loads(body)["workers"] >= 1
