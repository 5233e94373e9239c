"""The worker side of a reply: the Celery task and what one worker process holds (model, engine, link, leases).

This is where the Django world (``chat``) uses the model world (``inference``); ``inference`` never calls back.
A worker process runs Celery's threads pool: every task is a thread of one process that holds one model, and
all tasks feed one ``BatchEngine`` whose own thread runs them in shared forward passes.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_init, worker_shutdown
from django.conf import settings
from django.db import DatabaseError

from inference.engine import BatchEngine, GenerationRequest
from inference.loading import LoadedModel, configure_threads, load_model
from inference.output import coalesce
from inference.prompt import TOO_LONG, PromptTooLong, build_prompt
from inference.sampling import resolve_params

from chat import balance, conversations, events, liveness, quotas, services, selectors
from chat.logs import log_context
from chat.models import Conversation, Message
from chat.redis import client as redis_client, wait_until_loaded
from chat.sweep import sweep
from chat.worker_link import WorkerLink

log = logging.getLogger(__name__)

CHECKPOINT_S = 3.0
# The final write is retried this long (a database blip, SQLite busy) while the lease is still renewed; after
# that the lease goes and the sweep ends the reply with its streamed text.
FINISH_RETRY_DELAYS_S = (0.25, 0.5, 1, 2, 4)


class Runtime:
    """What one worker process holds: the model, its engine, its link to Redis and the leases it renews."""

    def __init__(self, loaded: LoadedModel | None = None, *, background: bool = True):
        """Load the configured model (or use ``loaded``: tests), start its engine, link and, with
        ``background``, the heartbeat and sweep threads."""
        self.threads = configure_threads(settings.CHAT_TORCH_THREADS or None)
        started = time.monotonic()
        self.loaded = loaded or load_model(settings.CHAT_MODEL, device=settings.CHAT_DEVICE,
                                           dtype=settings.CHAT_DTYPE, cache_dir=settings.CHAT_MODEL_CACHE)
        self.engine = BatchEngine(self.loaded.model, self.loaded.tokenizer, max_batch_size=settings.CHAT_MAX_BATCH,
                                  prefix_cache_bytes=settings.CHAT_PREFIX_CACHE_MB * 2**20,
                                  eos_ids=set() if settings.CHAT_BENCH_IGNORE_EOS else None).start()
        self.engine.warmup()
        self.name = worker_name()
        self.holding: set[int] = set()  # replies this process is generating: their leases are renewed
        self.tokens: dict[int, int] = {}  # their tokens so far, published with each heartbeat
        self._beat_now = threading.Event()
        wait_until_loaded(redis_client())
        if background:
            balance.start(self.name)
        self.link = WorkerLink(on_cancel=lambda message_id: self.engine.cancel(str(message_id)),
                               on_reconnect=self._beat_now.set)
        if background:
            events.route_sync_sends(self.link.call_patiently)  # message_finish's done goes through this loop
            threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True).start()
            threading.Thread(target=self._sweeps, name="sweep", daemon=True).start()
        log.info("model %s ready on %s (%d torch threads) in %.1f s", self.loaded.name, self.loaded.device,
                 self.threads, time.monotonic() - started)

    def close(self) -> None:
        """Stop the engine and the link, and stop counting as alive (tests; a worker keeps its runtime for life):
        a closed runtime left in the live set looked like a peer to the next test's balancing."""
        self.engine.shutdown()
        self.link.close()
        liveness.worker_gone(self.name)

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
        liveness.heartbeat(self.name, list(self.holding), dict(self.tokens),
                           {**self.engine.stats(), "in_flight": len(self.holding)})

    def _sweeps(self) -> None:
        while True:
            time.sleep(settings.CHAT_SWEEP_INTERVAL_S)
            try:
                sweep()
            except Exception:  # Redis or the database away: try again next round
                log.warning("sweep failed", exc_info=True)

    def hold(self, message_id: int) -> None:
        """Take the reply's lease now; never raises (Redis away: the heartbeat thread takes it within a beat)."""
        self.holding.add(message_id)
        self.tokens[message_id] = 0
        try:
            liveness.heartbeat(self.name, [message_id], {message_id: 0})
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


def runtime() -> Runtime:
    """The process's runtime, created once (at worker start; lazily behind a lock otherwise)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
        return _runtime


@worker_init.connect
def _load_at_start(sender=None, **kwargs):
    # The threads pool never forks, so loading here means the first task finds the model ready. Any other pool
    # would fork children after the engine's and link's threads started here: they would inherit dead threads.
    pool = str(getattr(sender, "pool_cls", ""))
    if "thread" not in pool.lower():
        raise RuntimeError(f"Start the worker with --pool threads (got {pool or 'the default prefork pool'}): "
                           "every task of a process shares the one model it loads.")
    runtime()


@worker_shutdown.connect
def _say_goodbye(**kwargs):
    if _runtime is not None:
        try:
            liveness.worker_gone(_runtime.name)
        except Exception:
            pass


@shared_task(name=services.GENERATE_REPLY_TASK, ignore_result=True)
def generate_reply(message_id: int, handed: bool = False) -> None:
    """Generate, stream and store one assistant reply; or, on a worker busier than another, hand it to that one
    (``chat/balance.py``; ``handed``: this is such a task, already counted here)."""
    rt = runtime()
    if not handed:
        target = balance.take(rt.name)
        if target is not None and _hand_on(message_id, target, rt.name):
            return
    try:
        message = services.message_start(message_id=message_id)
        if message is None:
            return  # stopped while queued, or already taken
        job = ReplyJob(message, rt)
        job.run()
        # After the reply's done (sent on commit by message_finish) and its lease: a title never delays the reply.
        if settings.CHAT_AUTO_TITLE and job.wants_title():
            make_title(job)
    finally:
        balance.give_back(rt.name)


def _hand_on(message_id: int, target: str, me: str) -> bool:
    """Put the task on ``target``'s own queue (its place is counted there already). False, with the count back
    here, when that cannot be done: this worker writes the reply after all."""
    try:
        balance.handed(message_id, target, ttl=settings.CHAT_QUEUE_TIMEOUT_S)
        generate_reply.apply_async(args=[message_id], kwargs={"handed": True}, queue=balance.own_queue(target))
        return True
    except Exception:
        log.warning("could not hand message %s to %s; generating it here", message_id, target, exc_info=True)
        balance.moved_back(target, me)
        return False


def worker_name() -> str:
    """This worker process's name: its heartbeat, its leases, its count and its own queue go by it."""
    return f"{socket.gethostname()}-{os.getpid()}"


@celeryd_after_setup.connect
def _read_own_queue(sender, instance, **kwargs):
    # Besides the shared queue, the queue of tasks another worker handed to this one (chat/balance.py).
    instance.app.amqp.queues.select_add(balance.own_queue(worker_name()))


TITLE_PROMPT = ("Write a short title, at most six words, for a chat that begins with the message below. Answer "
                "with the title only: no quotes, no full stop.\n\n{text}")
TITLE_MAX_TOKENS = 16


def make_title(job: "ReplyJob") -> None:
    """Ask the model for a short title of a new conversation and store it, unless the person renamed it
    meanwhile. Any failure keeps the title it has (the first words of the first message). Its tokens are the
    owner's, like the reply's: otherwise every new conversation would bring a generation that no quota counts."""
    conversation = job.message.conversation
    try:
        first = selectors.history_for_prompt(message=job.message)[-1]["content"]
        params = resolve_params({"temperature": 0.0, "max_new_tokens": TITLE_MAX_TOKENS},
                                job.rt.loaded.model.generation_config,
                                default_max_new_tokens=TITLE_MAX_TOKENS, max_new_tokens_cap=TITLE_MAX_TOKENS)
        prompt = build_prompt(job.rt.loaded.tokenizer, [{"role": "user", "content": TITLE_PROMPT.format(
            text=first[:2000])}], max_new_tokens=TITLE_MAX_TOKENS, window=job.rt.engine.context_window)
        handle = job.rt.engine.submit(GenerationRequest(
            input_ids=prompt.input_ids, params=params, stop_strings=tuple(prompt.stop_strings) + ("\n",),
            request_id=f"title-{job.id}"))
        chunks = list(coalesce(handle, 0))
        finished = chunks[-1].finished
        quotas.tokens_count(job.owner, finished.prompt_tokens + finished.completion_tokens)
        text = "".join(chunk.text for chunk in chunks if chunk.text)
        conversations.conversation_title_generated(conversation_id=conversation.pk, title=text,
                                                   replacing=conversation.title)
    except Exception:
        log.warning("no title for conversation %s; it keeps its first words", conversation.pk, exc_info=True)


def _failed(error: str, code: str = "") -> dict:
    return {"status": Message.Status.FAILED, "finish_reason": Message.FinishReason.ERROR, "error": error,
            "error_code": code}


class ReplyJob:
    """One reply on this worker: prepare the prompt, stream the engine's text, finish once."""

    def __init__(self, message: Message, rt: Runtime):
        self.message, self.rt = message, rt
        self.id = message.id
        self.owner = message.conversation.owner_id
        self.pieces: list[str] = []  # exactly what the stream log holds
        self.first_at: float | None = None
        self.ending: dict = {}

    def wants_title(self) -> bool:
        """A new chat conversation's first reply, finished well, under the title made from the first words. Not
        an API request's: a program needs no title, and it would cost a generation per request."""
        conversation = self.message.conversation
        return (conversation.source == conversation.Source.CHAT
                and self.ending.get("status") == Message.Status.COMPLETE and self.message.parent is not None
                and self.message.parent.parent_id is None
                and conversation.title == services.title_from(self.message.parent.content)
                and not Message.objects.filter(conversation_id=conversation.pk, role=Message.Role.ASSISTANT)
                .exclude(pk=self.id).exists())

    def run(self) -> None:
        with log_context(reply_id=self.id, user_id=self.owner, conversation_id=self.message.conversation_id):
            self._run()

    def _run(self) -> None:
        ending = _failed("The reply was interrupted.")
        try:
            self.rt.hold(self.id)
            try:
                request, used = self.prepare()
            except PromptTooLong as exc:
                ending = _failed(str(exc), Message.CONTEXT_LENGTH_EXCEEDED)
            except ValueError as exc:
                ending = _failed(str(exc))
            except Exception as exc:
                log.exception("could not prepare message %s", self.id)
                ending = _failed(f"The model could not start this reply ({type(exc).__name__}).")
            else:
                ending = self.stream(request, used)
        finally:
            self.ending = ending
            self.finish(ending)

    def prepare(self) -> tuple[GenerationRequest, dict]:
        """The prompt and sampling parameters for this reply."""
        params = resolve_params(self.message.params, self.rt.loaded.model.generation_config,
                                default_max_new_tokens=settings.CHAT_DEFAULT_MAX_NEW_TOKENS,
                                max_new_tokens_cap=settings.CHAT_MAX_NEW_TOKENS)
        history = selectors.history_for_prompt(message=self.message)
        window = self.rt.engine.context_window
        api = self.message.conversation.source == Conversation.Source.API
        # An API request without max_tokens reserves no default it never asked for: like OpenAI, it is refused
        # only when its messages leave no room for a reply, and otherwise runs until the window is full
        # (finish_reason length) or the default length, whichever comes first.
        to_the_window = api and not self.message.params.get("max_new_tokens")
        prompt = build_prompt(self.rt.loaded.tokenizer, history, window=window,
                              max_new_tokens=1 if to_the_window else params.max_new_tokens)
        if prompt.dropped_messages and api:
            # A program sends the whole context it wants read, and OpenAI refuses one that does not fit:
            # leaving its oldest turns out, as the chat does, would silently answer another request.
            if to_the_window:
                raise PromptTooLong(f"{TOO_LONG}: the request's messages need all of the {window} tokens the "
                                    "model reads, leaving no room for a reply; send fewer or shorter messages.")
            raise PromptTooLong(f"{TOO_LONG}: the request's messages and the {params.max_new_tokens} tokens "
                                f"reserved for the reply need more than the {window} tokens the model reads; "
                                "send fewer or shorter messages, or a smaller max_tokens.")
        if prompt.dropped_messages:
            services.message_checkpoint(message_id=self.id, content="", dropped_messages=prompt.dropped_messages)
        if to_the_window:  # stored as what bounded the reply
            params = dataclasses.replace(params, max_new_tokens=min(params.max_new_tokens,
                                                                    window - len(prompt.input_ids)))
        used = {"temperature": params.temperature, "top_p": params.top_p, "max_new_tokens": params.max_new_tokens}
        if params.seed is not None:
            used["seed"] = params.seed
        stop = tuple(self.message.params.get("stop") or ())  # the request's own (API), after the format's
        if stop:
            used["stop"] = list(stop)
        request = GenerationRequest(input_ids=prompt.input_ids, params=params,
                                    stop_strings=prompt.stop_strings + stop, request_id=str(self.id))
        return request, used

    def stream(self, request: GenerationRequest, used: dict) -> dict:
        """Run the request, publishing coalesced deltas and checkpointing; returns how the reply ended."""
        self.rt.link.clear_stream(self.id)
        handle = self.rt.engine.submit(request)
        checkpoint_at = time.monotonic()
        done = None
        try:
            for chunk in coalesce(handle, settings.CHAT_STREAM_FLUSH_MS / 1000):
                self.rt.tokens[self.id] = chunk.tokens  # read by the heartbeat thread: no Redis write here
                if chunk.text:
                    self.publish(chunk.text)
                    if time.monotonic() - checkpoint_at > CHECKPOINT_S:
                        checkpoint_at = time.monotonic()
                        if not self.checkpoint():
                            handle.cancel()  # Stop was stored while its broadcast was lost, or it ended elsewhere
                if chunk.finished:
                    done = chunk.finished
        except Exception as exc:
            handle.cancel()
            log.exception("streaming message %s failed", self.id)
            return _failed(f"The reply was interrupted ({type(exc).__name__}).")
        ttft_ms = int((self.first_at - self.message.created_at.timestamp()) * 1000) if self.first_at else None
        return {"status": Message.STATUS_FOR_REASON[done.reason], "finish_reason": done.reason, "error": done.error,
                "prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                "ttft_ms": max(ttft_ms, 0) if ttft_ms is not None else None,
                "tokens_per_s": done.tokens_per_s, "params": used}

    def checkpoint(self) -> bool:
        """Save the text so far; False when the reply should end now. A database blip skips one checkpoint
        instead of failing the reply (the final write is retried anyway)."""
        try:
            return services.message_checkpoint(message_id=self.id, content="".join(self.pieces))
        except DatabaseError:
            log.warning("checkpoint of message %s failed; going on", self.id, exc_info=True)
            return True

    def publish(self, text: str) -> None:
        """Log and send one delta. A delta that could not be published is not part of the reply, so the
        stored text never holds more than the stream log."""
        self.first_at = self.first_at or time.time()
        self.pieces.append(text)
        try:
            self.rt.link.delta(self.owner, self.id, len(self.pieces) - 1, self.pieces)
        except Exception:
            self.pieces.pop()
            raise

    def finish(self, ending: dict) -> None:
        """Store the end once (retried through a database blip), then let the lease go — always."""
        try:
            for delay in FINISH_RETRY_DELAYS_S + (None,):
                try:
                    if services.message_finish(message_id=self.id, content="".join(self.pieces), **ending) is None:
                        # Ended first elsewhere (its conversation deleted mid-reply, the sweep), with no counts:
                        # what this worker generated is still charged, or deleting a chat just before its reply
                        # ends would make the reply free.
                        quotas.tokens_count(self.owner, (ending.get("prompt_tokens") or 0)
                                            + (ending.get("completion_tokens") or 0))
                    log.info("reply %s ended %s (%s tokens)", self.id, ending["status"],
                             ending.get("completion_tokens"))
                    return
                except Exception:
                    if delay is None:
                        log.exception("could not store the end of message %s; the sweep will end it", self.id)
                        return
                    log.warning("storing the end of message %s failed; retrying in %s s", self.id, delay,
                                exc_info=True)
                    time.sleep(delay)
        finally:
            self.rt.release(self.id)
