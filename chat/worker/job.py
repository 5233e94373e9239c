"""One reply on a worker (``ReplyJob``: prepare the prompt, stream the engine's text, finish once) and the title
the model makes for a new conversation after its first reply.

A reply of an adapter (``<base>+<run>``, a finished training run of this worker's model) is written by this
worker with the adapter applied to its rows (``inference/adapters.py``), in the same batches as the base's own
replies; its title too."""

from __future__ import annotations

import dataclasses
import logging
import time

from django.conf import settings
from django.db import DatabaseError

from chat.conversations import organise
from chat.documents import prompt as document_prompt
from chat.documents import services as document_services
from chat.errors import ErrorCode
from chat.limits import quotas
from chat.logs import log_context
from chat.models import Conversation, Message
from chat.replies import catalog, selectors
from chat.replies import services as reply_services
from chat.served import split_adapter
from chat.text import title_from
from chat.worker.places import PlaceNotes
from chat.worker.runtime import Runtime
from inference.adapters import ADAPTER_UNAVAILABLE, Adapter
from inference.engine import GenerationRequest
from inference.output import coalesce
from inference.prompt import TOO_LONG, PromptTooLong, build_prompt
from inference.sampling import resolve_params

log = logging.getLogger(__name__)


def chat_sampling_defaults() -> dict:
    """What a chat reply samples with where its person chose nothing (settings.md)."""
    return {"temperature": settings.CHAT_DEFAULT_TEMPERATURE, "top_p": settings.CHAT_DEFAULT_TOP_P}


CHECKPOINT_S = 3.0


# The final write is retried this long (a database blip, SQLite busy) while the lease is still renewed; after
# that the lease goes and the sweep ends the reply with its streamed text.
FINISH_RETRY_DELAYS_S = (0.25, 0.5, 1, 2, 4)


TITLE_PROMPT = (
    "Write a short title, at most six words, for a chat that begins with the message below. Answer "
    "with the title only: no quotes, no full stop.\n\n{text}"
)


TITLE_MAX_TOKENS = 16


class AdapterUnavailable(Exception):
    """The reply's model is an adapter this worker cannot serve; the message is a sentence for its reader."""


def adapter_for(model_name: str, rt: Runtime) -> Adapter | None:
    """The adapter a reply of ``model_name`` is written with here: None for this worker's own model (or a reply of
    an earlier release, which names none); an adapter of this worker's model by the run's name and folder.
    Raises ``AdapterUnavailable`` for an adapter that is not (or no longer) a finished run of this model."""
    if not model_name or model_name == rt.model:
        return None
    model = catalog.get(model_name)
    if model is not None and model.adapter and model.base == rt.model:
        return Adapter(model.name, model.adapter_path)
    if (model is None or model.adapter) and split_adapter(model_name)[1]:
        raise AdapterUnavailable(
            f"The model {model_name} is not available: its training run was removed or has not finished."
        )
    # A configured model (routing sent it here as this worker's: chat/worker/tasks.py), or a name no longer served,
    # which this worker's model writes as it did before adapters existed.
    return None


def make_title(job: "ReplyJob") -> None:
    """Ask the model for a short title of a new conversation and store it, unless the person renamed it
    meanwhile. Any failure keeps the title it has (the first words of the first message). Its tokens are the
    owner's, like the reply's, reserved the same way first (``quotas.title_reserve``: its prompt, counted, and
    TITLE_MAX_TOKENS): a person at their allowance, or deleted meanwhile, gets no title and is charged nothing.
    Otherwise every new conversation would bring a generation that no quota counts."""
    conversation = job.message.conversation
    outcome = "kept its first words"
    try:
        history = selectors.history_for_prompt(message=job.message)
        if not history:
            outcome = "none: the conversation is gone"
            return
        params = resolve_params(
            {"temperature": 0.0, "max_new_tokens": TITLE_MAX_TOKENS},
            job.rt.loaded.model.generation_config,
            default_max_new_tokens=TITLE_MAX_TOKENS,
            max_new_tokens_cap=TITLE_MAX_TOKENS,
        )
        prompt = build_prompt(
            job.rt.loaded.tokenizer,
            [{"role": "user", "content": TITLE_PROMPT.format(text=history[-1]["content"][:2000])}],
            max_new_tokens=TITLE_MAX_TOKENS,
            window=job.rt.engine.context_window,
        )
        reservation = f"title-{job.id}"
        bound = len(prompt.input_ids) + TITLE_MAX_TOKENS
        if not quotas.title_reserve(job.owner, quotas.allowance_for(job.owner), bound, reservation):
            outcome = "none: its owner is at their allowance or gone"
            return
        used = 0
        try:
            handle = job.rt.engine.submit(
                GenerationRequest(
                    input_ids=prompt.input_ids,
                    params=params,
                    stop_strings=tuple(prompt.stop_strings) + ("\n",),
                    request_id=reservation,
                    adapter=job.adapter,  # the model that wrote the reply names its conversation
                    fair_key=str(job.owner),  # the owner's turn, like the reply's
                )
            )
            chunks = list(coalesce(handle, 0))
            finished = chunks[-1].finished
            used = finished.prompt_tokens + finished.completion_tokens
        finally:
            quotas.tokens_settle(job.owner, reservation, used)
        text = "".join(chunk.text for chunk in chunks if chunk.text)
        if organise.conversation_title_generated(
            conversation_id=conversation.pk, title=text, replacing=conversation.title, cut=finished.reason == "length"
        ):
            outcome = "stored"
    except Exception:
        log.warning("no title for conversation %s; it keeps its first words", conversation.pk, exc_info=True)
    finally:
        log.info("title for conversation %s: %s", conversation.pk, outcome)


def _failed(error: str, code: ErrorCode | str = "") -> dict:
    return {
        "status": Message.Status.FAILED,
        "finish_reason": Message.FinishReason.ERROR,
        "error": error,
        "error_code": code,
    }


class ReplyJob:
    """One reply on this worker: prepare the prompt, stream the engine's text, finish once."""

    def __init__(self, message: Message, rt: Runtime):
        self.message, self.rt = message, rt
        self.id = message.id
        self.owner = message.conversation.owner_id
        self.pieces: list[str] = []  # exactly what the stream log holds
        self.first_at: float | None = None
        self.ending: dict = {}
        self.adapter: Adapter | None = None  # set by ``prepare`` for a reply of an adapter
        # Continue (chat/conversations/continuation.py): a queued reply that already has text is one that ended on
        # its length bound and is being extended; a new reply is queued empty and gets text only once streaming.
        # Its text so far is the stream's first piece, and its earlier counts are added to this run's.
        self.continuing = message.content if message.status == Message.Status.STREAMING else ""
        self.earlier_tokens = (message.completion_tokens or 0) if self.continuing else 0

    def wants_title(self) -> bool:
        """A new chat conversation's first reply that finished well (of a Compare, the first of the two), under the
        title made from the first words: a first reply stopped or failed leaves the title to the next answer to that
        first message (regenerated), or the conversation kept its first words for good. Not an API request's: a
        program needs no title, and it would cost a generation per request."""
        conversation = self.message.conversation
        return (
            conversation.source == conversation.Source.CHAT
            and self.ending.get("status") == Message.Status.COMPLETE
            and self.message.parent is not None
            and self.message.parent.parent_id is None
            and not self.continuing
            and conversation.title == title_from(self.message.parent.content)
            # The conversation's first reply to finish well only: of a Compare's two, or of regenerations, the first.
            and not Message.objects.filter(
                conversation_id=conversation.pk,
                role=Message.Role.ASSISTANT,
                status=Message.Status.COMPLETE,
                pk__lt=self.id,
            ).exists()
        )

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
                ending = _failed(str(exc), ErrorCode.CONTEXT_LENGTH_EXCEEDED)
            except AdapterUnavailable as exc:
                ending = _failed(str(exc), ErrorCode.ADAPTER_UNAVAILABLE)
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
        self.adapter = adapter_for(self.message.model_name, self.rt)
        api = self.message.conversation.source == Conversation.Source.API
        params = resolve_params(
            # A chat samples unless its person chose otherwise (temperature 0: greedy), so Regenerate gives another
            # answer; an API request keeps the model's own defaults, as its caller reads them from /v1/models.
            self.message.params if api else {**chat_sampling_defaults(), **self.message.params},
            self.rt.loaded.model.generation_config,
            default_max_new_tokens=settings.CHAT_DEFAULT_MAX_NEW_TOKENS,
            max_new_tokens_cap=settings.CHAT_MAX_NEW_TOKENS,
        )
        history = selectors.history_for_prompt(message=self.message)
        window = self.rt.engine.context_window
        if not api:
            # The conversation's attached documents: whole, or their passages ranked for this question; the
            # reply keeps which it quoted (its sources, shown under it).
            history, sources = document_prompt.with_documents(history=history, message=self.message)
            if sources:
                document_services.reply_sources_store(message_id=self.id, sources=sources)
        # An API request without max_tokens reserves no default it never asked for: like OpenAI, it is refused
        # only when its messages leave no room for a reply, and otherwise runs until the window is full
        # (finish_reason length) or the default length, whichever comes first.
        to_the_window = api and not self.message.params.get("max_new_tokens")
        prompt = build_prompt(
            self.rt.loaded.tokenizer,
            history,
            window=window,
            max_new_tokens=1 if to_the_window else params.max_new_tokens,
            continuing=self.continuing,
        )
        if prompt.dropped_messages and api:
            # A program sends the whole context it wants read, and OpenAI refuses one that does not fit:
            # leaving its oldest turns out, as the chat does, would silently answer another request.
            if to_the_window:
                raise PromptTooLong(
                    f"{TOO_LONG}: the request's messages need all of the {window} tokens the "
                    "model reads, leaving no room for a reply; send fewer or shorter messages."
                )
            raise PromptTooLong(
                f"{TOO_LONG}: the request's messages and the {params.max_new_tokens} tokens "
                f"reserved for the reply need more than the {window} tokens the model reads; "
                "send fewer or shorter messages, or a smaller max_tokens."
            )
        if prompt.dropped_messages:
            reply_services.reply_checkpoint(
                message_id=self.id, content=self.continuing, dropped_messages=prompt.dropped_messages
            )
        if to_the_window:  # stored as what bounded the reply
            params = dataclasses.replace(
                params, max_new_tokens=min(params.max_new_tokens, window - len(prompt.input_ids))
            )
        used = {"temperature": params.temperature, "top_p": params.top_p, "max_new_tokens": params.max_new_tokens}
        if params.seed is not None:
            used["seed"] = params.seed
        stop = tuple(self.message.params.get("stop") or ())  # the request's own (API), after the format's
        if stop:
            used["stop"] = list(stop)
        request = GenerationRequest(
            input_ids=prompt.input_ids,
            params=params,
            stop_strings=prompt.stop_strings + stop,
            request_id=str(self.id),
            adapter=self.adapter,
            # Whose turn it is when rows are scarce: the engine admits the person served least first (an opaque key
            # to it: inference/fairness.py).
            fair_key=str(self.owner),
        )
        return request, used

    def stream(self, request: GenerationRequest, used: dict) -> dict:
        """Run the request, publishing coalesced deltas and checkpointing; returns how the reply ended."""
        self.rt.link.clear_stream(self.id)
        if self.continuing:  # the text so far as the stream's first delta: a reload shows it whole, then the rest
            self.pieces.append(self.continuing)
            self.rt.link.delta(self.message.conversation_id, self.id, 0, self.pieces)
        handle = self.rt.engine.submit(request)
        checkpoint_at = time.monotonic()
        done = None
        conversation_id = self.message.conversation_id
        every = settings.CHAT_QUEUE_FRAME_MS / 1000
        places = PlaceNotes(lambda ahead: self.rt.link.queued(self.owner, self.id, conversation_id, ahead), every)
        try:
            # A place held back by PlaceNotes comes again after ``every`` (coalesce's requeue), so it goes out
            # even if the line then stops moving.
            for chunk in coalesce(handle, self.rt.flush_interval, requeue_s=every):
                if chunk.queued is not None:  # waiting for a row behind others: tell its person their place
                    places.update(chunk.queued)
                    continue
                if places.stop_waiting():  # it waited and now runs: no page loaded from now on shows a place
                    self.rt.link.clear_place(self.id)
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
        finally:
            if places.stop_waiting():  # it ended while still waiting (stopped, failed)
                self.rt.link.clear_place(self.id)
        ttft_ms = int((self.first_at - self.message.created_at.timestamp()) * 1000) if self.first_at else None
        if self.continuing:  # the first token came with the reply's first run
            ttft_ms = self.message.ttft_ms
        return {
            "status": Message.STATUS_FOR_REASON[done.reason],
            "finish_reason": done.reason,
            "error": done.error,
            # The engine could not load the reply's adapter: the one engine error a person can be told the cause of.
            "error_code": ErrorCode.ADAPTER_UNAVAILABLE if done.code == ADAPTER_UNAVAILABLE else "",
            "prompt_tokens": done.prompt_tokens,
            # A continued reply counts all its tokens; its person is charged this run's (its prompt, then the new).
            "completion_tokens": self.earlier_tokens + done.completion_tokens,
            "charged": done.prompt_tokens + done.completion_tokens,
            "ttft_ms": max(ttft_ms, 0) if ttft_ms is not None else None,
            "tokens_per_s": done.tokens_per_s,
            "params": used,
        }

    def checkpoint(self) -> bool:
        """Save the text so far; False when the reply should end now. A database blip skips one checkpoint
        instead of failing the reply (the final write is retried anyway)."""
        try:
            return reply_services.reply_checkpoint(message_id=self.id, content="".join(self.pieces))
        except DatabaseError:
            log.warning("checkpoint of message %s failed; going on", self.id, exc_info=True)
            return True

    def publish(self, text: str) -> None:
        """Log and send one delta. A delta that could not be published is not part of the reply, so the
        stored text never holds more than the stream log."""
        self.first_at = self.first_at or time.time()
        self.pieces.append(text)
        try:
            self.rt.link.delta(self.message.conversation_id, self.id, len(self.pieces) - 1, self.pieces)
        except Exception:
            self.pieces.pop()
            raise

    def finish(self, ending: dict) -> None:
        """Store the end once (retried through a database blip), then let the lease go — always."""
        try:
            for delay in FINISH_RETRY_DELAYS_S + (None,):
                try:
                    # No piece yet: the stored text stays (none for a new reply; a continued one's text so far).
                    content = "".join(self.pieces) or None
                    if reply_services.reply_finish(message_id=self.id, content=content, **ending) is None:
                        # Ended first elsewhere (its conversation deleted mid-reply, the sweep), with no counts:
                        # what this worker generated is still charged, or deleting a chat just before its reply
                        # ends would make the reply free (a deleted person is charged nothing: quotas).
                        charged = ending.get("charged")
                        if charged is None:
                            charged = (ending.get("prompt_tokens") or 0) + (ending.get("completion_tokens") or 0)
                        quotas.tokens_count(self.owner, charged)
                        if not Message.objects.filter(pk=self.id).exists():
                            # Deleted: the deltas logged after the deletion cleared the log made it again.
                            self.rt.link.clear_stream(self.id)
                    log.info(
                        "reply %s ended %s (%s tokens)", self.id, ending["status"], ending.get("completion_tokens")
                    )
                    return
                except Exception:
                    if delay is None:
                        log.exception("could not store the end of message %s; the sweep will end it", self.id)
                        return
                    log.warning("storing the end of message %s failed; retrying in %s s", self.id, delay, exc_info=True)
                    time.sleep(delay)
        finally:
            self.rt.release(self.id)
