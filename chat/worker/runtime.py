"""What one worker process holds: the model, its engine, its link to Redis and the leases it renews.

This package is where the Django world (``chat``) uses the model world (``inference``); ``inference`` never
calls back. A worker process runs Celery's threads pool: every task is a thread of one process that holds one
``Runtime``, and all tasks feed its one ``BatchEngine``, whose own thread runs them in shared forward passes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from django.conf import settings

from chat import events
from chat.replies import balance, liveness
from chat.replies.sweep import sweep
from chat.store import client as redis_client
from chat.store import wait_until_loaded
from chat.worker.link import WorkerLink
from inference.engine import BatchEngine
from inference.loading import LoadedModel, configure_threads, load_model
from inference.prefill import default_chunk, default_chunk_decoding

log = logging.getLogger(__name__)
# A CPU worker's deltas per second at most where CHAT_STREAM_DELTAS_PER_S is unset: measured on 2 cores
# (docs/benchmarks.md), 8 and 16 streams wrote 1.1-1.3x the tokens with 2-3 tokens a delta instead of one.
CPU_DELTAS_PER_S = 80
# A reply's deltas are never further apart: a socket looks for a reply that went quiet after 2 s
# (chat/realtime/delivery.py), and a reader should not wait longer for text already made.
MAX_FLUSH_S = 1.0


class Runtime:
    """What one worker process holds: the model, its engine, its link to Redis and the leases it renews."""

    def __init__(self, loaded: LoadedModel | None = None, *, background: bool = True):
        """Load the configured model (or use ``loaded``: tests), start its engine, link and, with
        ``background``, the heartbeat and sweep threads."""
        self.threads = configure_threads(settings.CHAT_TORCH_THREADS or None)
        started = time.monotonic()
        # The one served model this process holds (CHAT_WORKER_MODEL); its options override the site's.
        self.served = next(m for m in settings.CHAT_SERVED_MODELS if m.name == settings.CHAT_WORKER_MODEL)
        self.model = self.served.name
        self.loaded = loaded or load_model(
            self.served.spec,
            device=self.served.device or settings.CHAT_DEVICE,
            precision=self.served.precision or settings.CHAT_MODEL_PRECISION,
            cache_dir=settings.CHAT_MODEL_CACHE,
            packed=settings.CHAT_CPU_PACKED_LINEARS,
        )
        self.engine = BatchEngine(
            self.loaded.model,
            self.loaded.tokenizer,
            max_batch_size=self.served.max_batch or settings.CHAT_MAX_BATCH,
            prefix_cache_bytes=settings.CHAT_PREFIX_CACHE_MB * 2**20,
            prefill_chunk=(
                default_chunk(self.loaded.device)
                if settings.CHAT_PREFILL_CHUNK is None
                else settings.CHAT_PREFILL_CHUNK
            ),
            prefill_chunk_decoding=(
                default_chunk_decoding(self.loaded.device)
                if settings.CHAT_PREFILL_CHUNK_DECODING is None
                else settings.CHAT_PREFILL_CHUNK_DECODING
            ),
            fuse_chunks=settings.CHAT_PREFILL_FUSED,
            direct_decode=settings.CHAT_DECODE_DIRECT,
            kv_budget_bytes=settings.CHAT_KV_BUDGET_MB * 2**20,
            preempt=settings.CHAT_PREEMPT,
            # Adapters of this model (training runs) are served here, loaded on first use (inference/adapters.py).
            max_adapters=settings.CHAT_MAX_ADAPTERS,
            adapter_budget_bytes=settings.CHAT_ADAPTER_BUDGET_MB * 2**20,
            adapter_idle_s=settings.CHAT_ADAPTER_IDLE_S,
            eos_ids=set() if settings.CHAT_BENCH_IGNORE_EOS else None,
        ).start()
        self.engine.warmup()
        self.name = worker_name()
        # Deltas per second the process aims to publish at most, all replies together (0: no bound; a reply's
        # first and last pieces go at once, and flush_interval says when it gives way): each costs ~1.6 ms
        # of CPU between this process, Redis and Daphne, which on a small CPU host is taken from the engine
        # (docs/benchmarks.md); a GPU host was not measured.
        self.deltas_per_s = settings.CHAT_STREAM_DELTAS_PER_S
        if self.deltas_per_s is None:
            self.deltas_per_s = CPU_DELTAS_PER_S if str(self.loaded.device).startswith("cpu") else 0
        self.holding: set[int] = set()  # replies this process is generating: their leases are renewed
        self.tokens: dict[int, int] = {}  # their tokens so far, published with each heartbeat
        self._beat_now = threading.Event()
        wait_until_loaded(redis_client())
        if background:
            balance.start(self.name, self.model)
        self.link = WorkerLink(
            on_cancel=lambda message_id: self.engine.cancel(str(message_id)), on_reconnect=self._beat_now.set
        )
        if background:
            events.route_sync_sends(self.link.call_patiently)  # reply_finish's done goes through this loop
            threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True).start()
            threading.Thread(target=self._sweeps, name="sweep", daemon=True).start()
        log.info(
            "model %s (%s) ready on %s at %s (%d torch threads) in %.1f s",
            self.model,
            self.loaded.name,
            self.loaded.device,
            self.loaded.precision or self.loaded.dtype,
            self.threads,
            time.monotonic() - started,
        )

    def close(self) -> None:
        """Stop the engine and the link, and stop counting as alive (tests; a worker keeps its runtime for life):
        a closed runtime left in the live set looked like a peer to the next test's balancing."""
        self.engine.shutdown()
        self.link.close()
        liveness.worker_gone(self.name, self.model)

    def _heartbeats(self) -> None:
        """Heartbeat and leases every CHAT_HEARTBEAT_S, at once when Redis is back after an outage. Its own
        thread: nothing slow (a sweep, the database) may delay it past the lease's expiry."""
        while True:
            try:
                self.beat()
                wait = settings.CHAT_HEARTBEAT_S
            except Exception:  # Redis away: try again soon, it comes back
                log.warning("heartbeat failed", exc_info=True)
                wait = min(0.5, settings.CHAT_HEARTBEAT_S)
            self._beat_now.wait(wait)
            self._beat_now.clear()

    def beat(self) -> None:
        """One heartbeat: this worker, its leases and each reply's tokens so far."""
        liveness.heartbeat(
            self.name,
            list(self.holding),
            dict(self.tokens),
            # The window too: admission bounds what a reply can cost with it (chat/replies/admission.py).
            {
                **self.engine.stats(),
                "in_flight": len(self.holding),
                "context_window": self.engine.context_window,
                "model": self.model,  # /metrics and /readyz report per model
                "max_batch": self.engine.max_batch_size,
            },
            model=self.model,
        )

    def _sweeps(self) -> None:
        while True:
            time.sleep(settings.CHAT_SWEEP_INTERVAL_S)
            try:
                sweep()
            except Exception:  # Redis or the database away: try again next round
                log.warning("sweep failed", exc_info=True)

    def flush_interval(self) -> float:
        """Seconds between two deltas of one reply at least: ``CHAT_STREAM_FLUSH_MS``, widened while this process
        streams so many replies that their deltas would pass its bound (``deltas_per_s``): 16 replies at 80 a
        second get one delta each per 200 ms, with whatever tokens came meanwhile. Streaming: the engine's rows
        decoding, not the replies held (those being prepared, waiting for a row or being stored publish
        nothing). Widened to MAX_FLUSH_S at most: past bound × MAX_FLUSH_S rows the process publishes a delta a
        row a second, over its bound, rather than leave a reader without text for longer. A flush interval set
        longer than that is the operator's and kept."""
        interval = settings.CHAT_STREAM_FLUSH_MS / 1000
        if self.deltas_per_s > 0:
            streaming = min(len(self.holding), self.engine.active)
            interval = max(interval, min(streaming / self.deltas_per_s, MAX_FLUSH_S))
        return interval

    def hold(self, message_id: int) -> None:
        """Take the reply's lease now; never raises (Redis away: the heartbeat thread takes it within a beat)."""
        self.holding.add(message_id)
        self.tokens[message_id] = 0
        try:
            liveness.heartbeat(self.name, [message_id], {message_id: 0}, model=self.model)
        except Exception:
            log.warning("could not take the lease of %s now; the heartbeat will", message_id, exc_info=True)

    def release(self, message_id: int) -> None:
        self.holding.discard(message_id)
        self.tokens.pop(message_id, None)
        try:
            liveness.release(message_id)
        except Exception:
            log.warning("could not release the lease of %s", message_id, exc_info=True)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def loaded() -> Runtime | None:
    """The process's runtime if it was created, without creating it (shutdown must not load a model)."""
    return _runtime


def current() -> Runtime:
    """The process's runtime, created once (at worker start; lazily behind a lock otherwise)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
        return _runtime


def worker_name() -> str:
    """This worker process's name: its heartbeat, its leases, its count and its own queue go by it."""
    return f"{socket.gethostname()}-{os.getpid()}"
