"""The Celery task: a thin adapter from a message id to the engine and to ``chat.events``.

This is the one module where the Django world (chat) and the model world (inference) meet. A worker process
runs with ``--pool threads``: every task is a thread of one process that holds one model; the tasks feed
one ``BatchEngine`` whose thread runs all of them in shared forward passes.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

from celery import shared_task
from celery.signals import worker_init, worker_process_init, worker_shutdown

log = logging.getLogger(__name__)

_runtime = None
_runtime_lock = threading.Lock()
CHECKPOINT_S = 3.0
STATUS_FOR_REASON = {"stop": "complete", "length": "complete", "cancelled": "stopped", "error": "failed"}


class Runtime:
    """What one worker process holds: the model, its engine and its link to Redis."""

    def __init__(self):
        from django.conf import settings

        from chat.events import WorkerLink
        from inference.engine import BatchEngine
        from inference.loading import configure_threads, load_model

        configure_threads(settings.CHAT_TORCH_THREADS or None)
        started = time.monotonic()
        self.loaded = load_model(settings.CHAT_MODEL, device=settings.CHAT_DEVICE, dtype=settings.CHAT_DTYPE,
                                 cache_dir=settings.CHAT_MODEL_CACHE)
        self.engine = BatchEngine(self.loaded.model, self.loaded.tokenizer, max_batch_size=settings.CHAT_MAX_BATCH,
                                  prefix_cache_bytes=settings.CHAT_PREFIX_CACHE_MB * 2**20,
                                  eos_ids=set() if settings.CHAT_BENCH_IGNORE_EOS else None).start()
        self.engine.warmup()
        self.link = WorkerLink(on_cancel=lambda message_id: self.engine.cancel(str(message_id)))
        self.name = f"{socket.gethostname()}-{os.getpid()}"
        self.holding: set[int] = set()  # replies this process is generating: their leases are renewed
        threading.Thread(target=self._keepalive, name="keepalive", daemon=True).start()
        log.info("model %s ready on %s in %.1f s", settings.CHAT_MODEL, self.loaded.device,
                 time.monotonic() - started)


    def _keepalive(self) -> None:
        """Heartbeat and leases every CHAT_HEARTBEAT_S; a sweep for dead workers' replies now and then."""
        from django.conf import settings

        from chat import liveness

        next_sweep = 0.0
        while True:
            try:
                liveness.heartbeat(self.name, list(self.holding))
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + settings.CHAT_SWEEP_INTERVAL_S
                    liveness.sweep()
            except Exception:  # Redis or the database away: keep beating, it comes back
                log.warning("keepalive failed", exc_info=True)
            time.sleep(min(settings.CHAT_HEARTBEAT_S, settings.CHAT_SWEEP_INTERVAL_S))

    def hold(self, message_id: int) -> None:
        from chat import liveness

        self.holding.add(message_id)
        liveness.heartbeat(self.name, [message_id])

    def release(self, message_id: int) -> None:
        from chat import liveness

        self.holding.discard(message_id)
        try:
            liveness.release(message_id)
        except Exception:
            log.warning("could not release the lease of %s", message_id, exc_info=True)


def runtime() -> Runtime:
    """The process's runtime, created once (at worker start; lazily behind a lock otherwise)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
        return _runtime


@worker_init.connect
def _load_at_start(sender=None, **kwargs):
    # The threads pool never forks, so loading here means the first task finds the model ready.
    if "thread" in str(getattr(sender, "pool_cls", "")).lower():
        runtime()


@worker_process_init.connect
def _load_in_child(**kwargs):
    # Prefork children load their own copy after the fork (CUDA does not survive one).
    runtime()


@worker_shutdown.connect
def _say_goodbye(**kwargs):
    if _runtime is not None:
        from chat import liveness

        try:
            liveness.worker_gone(_runtime.name)
        except Exception:
            pass


@shared_task(name="inference.tasks.generate_reply", ignore_result=True)
def generate_reply(message_id: int) -> None:
    """Generate, stream and store one assistant reply."""
    from django.conf import settings

    from chat import events, selectors, services
    from inference.engine import GenerationRequest
    from inference.events import coalesce
    from inference.prompt import PromptTooLong, build_prompt
    from inference.sampling import resolve_params

    message = services.message_start(message_id=message_id)
    if message is None:
        return  # stopped while queued, or already taken
    owner = message.conversation.owner_id
    pieces: list[str] = []
    link = None

    def finish(status, reason, error="", **extra):
        final = services.message_finish(message_id=message_id, content="".join(pieces), status=status,
                                        finish_reason=reason, error=error, **extra)
        if _runtime is not None:
            _runtime.release(message_id)
        if final and link is not None:
            link.send(owner, events.done_event(final))

    try:
        rt = runtime()
        rt.hold(message_id)
        link = rt.link
        params = resolve_params(message.params, rt.loaded.model.generation_config,
                                default_max_new_tokens=settings.CHAT_DEFAULT_MAX_NEW_TOKENS,
                                max_new_tokens_cap=settings.CHAT_MAX_NEW_TOKENS)
        history = selectors.history_for_prompt(message=message)
        prompt = build_prompt(rt.loaded.tokenizer, history, max_new_tokens=params.max_new_tokens,
                              window=rt.engine.context_window)
    except (PromptTooLong, ValueError) as exc:
        return finish("failed", "error", error=str(exc))
    except Exception as exc:
        log.exception("could not prepare message %s", message_id)
        return finish("failed", "error", error=f"The model could not start this reply ({type(exc).__name__}).")
    used = {"temperature": params.temperature, "top_p": params.top_p, "max_new_tokens": params.max_new_tokens}
    handle = None
    first_at = None
    checkpoint_at = time.monotonic()
    try:
        link.clear_stream(message_id)
        handle = rt.engine.submit(GenerationRequest(input_ids=prompt.input_ids, params=params,
                                                    stop_strings=prompt.stop_strings, request_id=str(message_id)))
        for chunk in coalesce(handle, settings.CHAT_STREAM_FLUSH_MS / 1000):
            if chunk.text:
                first_at = first_at or time.time()
                pieces.append(chunk.text)
                link.delta(owner, message_id, len(pieces) - 1, pieces)
                if time.monotonic() - checkpoint_at > CHECKPOINT_S:
                    services.message_checkpoint(message_id=message_id, content="".join(pieces))
                    checkpoint_at = time.monotonic()
            if chunk.finished:
                done = chunk.finished
    except Exception as exc:
        if handle is not None:
            handle.cancel()
        log.exception("streaming message %s failed", message_id)
        return finish("failed", "error", error=f"The reply was interrupted ({type(exc).__name__}).")
    ttft_ms = int((first_at - message.created_at.timestamp()) * 1000) if first_at else None
    finish(STATUS_FOR_REASON[done.reason], done.reason, error=done.error, prompt_tokens=done.prompt_tokens,
           completion_tokens=done.completion_tokens, ttft_ms=max(ttft_ms, 0) if ttft_ms is not None else None,
           tokens_per_s=done.tokens_per_s, params=used)
