"""Figures for Prometheus, shared by every process through Redis.

Daphne processes and workers are separate processes, often on separate machines, so each event is added to
Redis where it happens (one pipelined ``HINCRBY`` per request, socket or reply: counters and histogram buckets
are atomic there) and any Daphne's ``/metrics`` reads the whole deployment's figures at once. prometheus_client's
own multiprocess mode was the alternative: it needs one directory shared by every process, which workers on
other machines do not have, and Prometheus would have to scrape each process and add them up itself.

Counters live as long as Redis (Prometheus reads a restart as a counter reset). Gauges are read when scraped:
the Celery queues' lengths (the shared one and each live worker's own), replies active in the database, and each
live worker's last heartbeat figures (``chat:wstats:<worker>``, which expire with its heartbeat). Recording never
raises: a figure lost while Redis is away must not fail a request or a reply.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections.abc import Iterable, Mapping, Sequence

from chat.names import SHARED_QUEUE, model_queue, worker_queue, worker_stats_key
from chat.store import client, live_workers

log = logging.getLogger(__name__)

COUNTERS_KEY = "chat:metrics:counters"  # hash: "<name>|<label value>|…" → count
HIST_KEY = "chat:metrics:hist:{}"  # hash per histogram: bucket index → count, plus "sum"


def queue_keys(queue: str) -> list[str]:
    """Celery's Redis transport keeps one list per priority step: "inference", "inference\x06\x163", …"""
    return [queue] + [f"{queue}\x06\x16{p}" for p in range(1, 10)]


# name → (help, label names) for counters; name → (help, bucket upper bounds) for histograms.
COUNTERS = {
    "chat_http_requests": ("HTTP requests answered, by method and status code", ("method", "status")),
    "chat_websocket_connections": ("Websocket connections, by outcome (accepted or refused)", ("outcome",)),
    "chat_replies": ("Replies ended, by final status", ("status",)),
    "chat_reply_tokens": ("Tokens of ended replies, by kind (prompt or completion)", ("kind",)),
}
HISTOGRAMS = {
    "chat_time_to_first_token_seconds": (
        "From the user's message to the reply's first token",
        (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    ),
    "chat_reply_tokens_per_second": (
        "Generation speed of each ended reply",
        (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300),
    ),
}
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _safe(pipe_work) -> None:
    try:
        pipe = client().pipeline(transaction=False)
        pipe_work(pipe)
        pipe.execute()
    except Exception:  # Redis away: the figure is lost, the request or reply is not
        log.debug("could not record a metric", exc_info=True)


def _field(name: str, labels: Iterable[str]) -> str:
    return "|".join([name, *labels])


def count_request(method: str, status: int) -> None:
    """One HTTP request answered."""
    method = method if method in METHODS else "other"  # label values stay a small fixed set
    _safe(lambda p: p.hincrby(COUNTERS_KEY, _field("chat_http_requests", (method, str(status))), 1))


def count_socket(outcome: str) -> None:
    """A websocket connection accepted or refused."""
    _safe(lambda p: p.hincrby(COUNTERS_KEY, _field("chat_websocket_connections", (outcome,)), 1))


def observe_reply(
    *,
    status: str,
    ttft_ms: int | None,
    tokens_per_s: float | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
) -> None:
    """A reply ended (once: chat.replies.services.reply_finish calls this on commit)."""

    def work(p):
        p.hincrby(COUNTERS_KEY, _field("chat_replies", (status,)), 1)
        for kind, n in (("prompt", prompt_tokens), ("completion", completion_tokens)):
            if n:
                p.hincrby(COUNTERS_KEY, _field("chat_reply_tokens", (kind,)), int(n))
        if ttft_ms is not None:
            _observe(p, "chat_time_to_first_token_seconds", ttft_ms / 1000)
        if tokens_per_s:
            _observe(p, "chat_reply_tokens_per_second", tokens_per_s)

    _safe(work)


def _observe(pipe, name: str, value: float) -> None:
    bounds = HISTOGRAMS[name][1]
    pipe.hincrby(HIST_KEY.format(name), str(bisect.bisect_left(bounds, value)), 1)  # len(bounds): +Inf only
    pipe.hincrbyfloat(HIST_KEY.format(name), "sum", float(value))


def publish_worker_stats(pipe, worker: str, stats: Mapping[str, int], ttl: int) -> None:
    """Worker side, in its heartbeat's pipeline: its engine's figures, expiring with the heartbeat."""
    pipe.set(worker_stats_key(worker), json.dumps(dict(stats)), ex=ttl)


def read_all(active_replies: Mapping[str, int], models: Sequence[str] = ()) -> dict:
    """Everything Redis holds for a scrape, in two round trips; ``active_replies``: status → count, from the
    database (the caller reads it); ``models``: the served models, each reported on its own."""
    r = client()
    workers = live_workers(r)
    pipe = r.pipeline(transaction=False)
    pipe.hgetall(COUNTERS_KEY)
    for name in HISTOGRAMS:
        pipe.hgetall(HIST_KEY.format(name))
    # Waiting replies: each model's queue, the shared queue (an earlier release's tasks) and those handed to a
    # live worker's own queue (chat/replies/balance.py).
    queues = [*map(model_queue, models), SHARED_QUEUE, *map(worker_queue, workers)]
    waiting = [k for queue in queues for k in queue_keys(queue)]
    for key in waiting:
        pipe.llen(key)
    for worker in workers:
        pipe.get(worker_stats_key(worker))
    out = pipe.execute()
    counters, out = out[0], out[1:]
    hists, out = dict(zip(HISTOGRAMS, out[: len(HISTOGRAMS)])), out[len(HISTOGRAMS) :]
    depths, out = out[: len(waiting)], out[len(waiting) :]
    stats = {w: json.loads(raw) for w, raw in zip(workers, out) if raw}
    step = len(queue_keys(SHARED_QUEUE))
    depth = {queue: sum(depths[i * step : (i + 1) * step]) for i, queue in enumerate(queues)}
    by_model = {}
    for model in models:
        mine = {w: s for w, s in stats.items() if s.get("model") == model}
        by_model[model] = {
            "workers": len(mine),
            "queue": depth[model_queue(model)] + sum(depth[worker_queue(w)] for w in mine),
            "batch_size": sum(int(s.get("batch_size", 0)) for s in mine.values()),
            "waiting": sum(int(s.get("waiting", 0)) for s in mine.values()),
            "max_batch": sum(int(s.get("max_batch", 0)) for s in mine.values()),
        }
    return {
        "counters": counters,
        "histograms": hists,
        "queue": sum(depths),
        "workers": stats,
        "models": by_model,
        "active_replies": dict(active_replies),
    }


class Collector:
    """A prometheus_client collector over ``read_all``'s figures (built per scrape, registered nowhere else)."""

    def __init__(self, figures: dict):
        self.figures = figures

    def collect(self):
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        f = self.figures
        for name, (help_text, labels) in COUNTERS.items():
            family = CounterMetricFamily(name, help_text, labels=labels)
            for field, value in sorted(f["counters"].items()):
                parts = field.split("|")
                if parts[0] == name and len(parts) == len(labels) + 1:
                    family.add_metric(parts[1:], float(value))
            yield family
        for name, (help_text, bounds) in HISTOGRAMS.items():
            raw = f["histograms"].get(name) or {}
            cumulative, buckets = 0, []
            for i, bound in enumerate([*bounds, float("inf")]):
                cumulative += int(raw.get(str(i), 0))
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
            yield HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=float(raw.get("sum", 0)))
        yield GaugeMetricFamily(
            "chat_queue_depth",
            "Replies waiting for a worker in the Celery queues (the shared one and each live worker's own)",
            value=f["queue"],
        )
        active = GaugeMetricFamily("chat_replies_active", "Replies queued or streaming now", labels=["status"])
        for status, n in sorted(f["active_replies"].items()):
            active.add_metric([status], n)
        yield active
        yield GaugeMetricFamily("chat_workers", "Model workers with a live heartbeat", value=len(f["workers"]))
        per_model = {
            "chat_model_workers": ("Workers of the model with a live heartbeat", "workers"),
            "chat_model_queue_depth": ("Replies of the model waiting for one of its workers", "queue"),
            "chat_model_batch_size": ("Rows in the running batches of the model's workers, together", "batch_size"),
            "chat_model_batch_capacity": ("Rows the model's workers can batch, together (CHAT_MAX_BATCH)", "max_batch"),
            "chat_model_batch_waiting": (
                "Replies the model's workers hold waiting for a row of their batch, together (taken fairly by person)",
                "waiting",
            ),
        }
        for name, (help_text, key) in per_model.items():
            family = GaugeMetricFamily(name, help_text, labels=["model"])
            for model, figures in f.get("models", {}).items():
                family.add_metric([model], float(figures[key]))
            yield family
        per_worker = {
            "chat_worker_batch_size": ("Requests in the worker's running batch", "batch_size", GaugeMetricFamily),
            "chat_worker_batch_waiting": (
                "Requests waiting in the worker's engine for a row of its batch",
                "waiting",
                GaugeMetricFamily,
            ),
            "chat_worker_replies_in_flight": (
                "Replies the worker holds (batched or waiting for a row)",
                "in_flight",
                GaugeMetricFamily,
            ),
            "chat_worker_decode_steps": ("Decode steps the worker's engine ran", "decode_steps", CounterMetricFamily),
            "chat_worker_prefill_chunks": (
                "Chunks of a long prompt computed (CHAT_PREFILL_CHUNK), in a forward of their own or fused",
                "prefill_chunks",
                CounterMetricFamily,
            ),
            "chat_worker_fused_chunks": (
                "Of them, those computed in the running replies' decode step (CHAT_PREFILL_FUSED)",
                "fused_chunks",
                CounterMetricFamily,
            ),
            "chat_worker_direct_decode_steps": (
                "Decode steps without a chunk computed by the engine's own forward (CHAT_DECODE_DIRECT)",
                "direct_decode_steps",
                CounterMetricFamily,
            ),
            "chat_worker_preemptions": (
                "Rows taken back from a person running several for one with none running (CHAT_PREEMPT)",
                "preemptions",
                CounterMetricFamily,
            ),
            "chat_worker_kv_bytes": (
                "Bytes the worker's running batch holds in keys and values now",
                "kv_bytes",
                GaugeMetricFamily,
            ),
            "chat_worker_kv_budget_bytes": (
                "The worker's budget for them (CHAT_KV_BUDGET_MB; 0: none)",
                "kv_budget_bytes",
                GaugeMetricFamily,
            ),
            "chat_worker_decode_rows": (
                "Rows over all decode steps (rows / steps = mean batch size)",
                "decode_rows",
                CounterMetricFamily,
            ),
            "chat_worker_prefix_cache_lookups": (
                "Prompt lookups in the prefix cache",
                "prefix_lookups",
                CounterMetricFamily,
            ),
            "chat_worker_prefix_cache_hits": (
                "Prompt lookups that reused cached states",
                "prefix_hits",
                CounterMetricFamily,
            ),
            "chat_worker_mixed_adapter_steps": (
                "Decode steps whose rows took different adapters (the base model counts as one)",
                "mixed_adapter_steps",
                CounterMetricFamily,
            ),
            "chat_worker_adapter_loads": (
                "Adapters the worker loaded (first use)",
                "adapter_loads",
                CounterMetricFamily,
            ),
        }
        for name, (help_text, key, kind) in per_worker.items():
            family = kind(name, help_text, labels=["worker", "model"])
            for worker, stats in sorted(f["workers"].items()):
                family.add_metric([worker, str(stats.get("model", ""))], float(stats.get(key, 0)))
            yield family
        by_size = CounterMetricFamily(
            "chat_worker_decode_steps_by_batch_size",
            "Decode steps the worker's engine ran, by the rows in its batch",
            labels=["worker", "batch_size"],
        )
        for worker, stats in sorted(f["workers"].items()):
            for size, steps in enumerate(stats.get("decode_steps_at_batch_size") or ()):
                if size and steps:
                    by_size.add_metric([worker, str(size)], float(steps))
        yield by_size
        # Adapters of the worker's model it holds now, and the rows each took over all decode steps.
        loaded = GaugeMetricFamily(
            "chat_worker_adapters_loaded", "Adapters loaded in the worker now", labels=["worker", "model"]
        )
        adapter_rows = CounterMetricFamily(
            "chat_worker_adapter_decode_rows",
            "Rows over all decode steps that took the adapter",
            labels=["worker", "adapter"],
        )
        for worker, stats in sorted(f["workers"].items()):
            loaded.add_metric([worker, str(stats.get("model", ""))], float(len(stats.get("adapters_loaded") or ())))
            for adapter, rows in sorted((stats.get("decode_rows_by_adapter") or {}).items()):
                adapter_rows.add_metric([worker, adapter], float(rows))
        yield loaded
        yield adapter_rows
        rate = GaugeMetricFamily(
            "chat_worker_prefix_cache_hit_ratio",
            "Share of prompt tokens the prefix cache supplied, since the worker started",
            labels=["worker"],
        )
        for worker, stats in sorted(f["workers"].items()):
            looked = stats.get("prefix_tokens_looked_up", 0)
            rate.add_metric([worker], stats.get("prefix_tokens_reused", 0) / looked if looked else 0.0)
        yield rate


def exposition(figures: dict) -> tuple[bytes, str]:
    """The Prometheus text format of ``figures`` and its content type."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        generate_latest,
    )

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(figures))
    return generate_latest(registry), CONTENT_TYPE_LATEST
