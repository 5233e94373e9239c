"""``/v1/chat/completions`` and ``/v1/models``: async views served by Daphne (docs/api.md). Thin: authenticate,
check, hand the request to ``chat.api.services``, follow the reply, answer in OpenAI's shapes."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from channels.db import database_sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from chat.api import services as api_services
from chat.api.auth import authenticate
from chat.api.errors import ApiError, json_errors
from chat.api.follow import ReplyFollower
from chat.api.schemas import (
    FINISH_REASONS,
    CompletionRequest,
    chunk_object,
    completion_object,
    model_object,
    parse_completion_request,
    usage_object,
)
from chat.conversations import services as conversation_services
from chat.errors import ChatError, ErrorCode
from chat.models import Message
from chat.replies import catalog
from chat.replies.sweep import ensure_sweeper

log = logging.getLogger(__name__)
# /v1/models reports the model as created when this process started (it has no better date to give).
STARTED = int(time.time())


def _method_not_allowed(request, allowed: str) -> JsonResponse:
    response = ApiError(
        405, f"{request.method} is not allowed here; use {allowed}.", code=ErrorCode.METHOD_NOT_ALLOWED
    ).response()
    response["Allow"] = allowed
    return response


async def _key(request):
    return await database_sync_to_async(authenticate)(request.headers.get("Authorization"))


@csrf_exempt
@json_errors
async def models_list(request):
    """The models this key's owner may use that have a live worker now, with their context windows."""
    if request.method != "GET":
        return _method_not_allowed(request, "GET")
    try:
        key = await _key(request)
    except ApiError as exc:
        return exc.response()
    data = await database_sync_to_async(_models_for)(key.owner, live_only=True)
    return JsonResponse({"object": "list", "data": data})


def _models_for(user, live_only: bool) -> list[dict]:
    return [
        model_object(m["name"], STARTED, m["context_window"], display_name=m["label"], description=m["description"])
        for m in catalog.models_for(user)
        if m["live"] or not live_only
    ]


@csrf_exempt
@json_errors
async def model_get(request, model_id: str):
    """One model this person may use (whether or not a worker runs it now); 404 alike for an unknown one and
    one they may not use."""
    if request.method != "GET":
        return _method_not_allowed(request, "GET")
    try:
        key = await _key(request)
        found = [
            m for m in await database_sync_to_async(_models_for)(key.owner, live_only=False) if m["id"] == model_id
        ]
        if not found:
            raise ApiError(
                404, f"The model '{model_id[:100]}' does not exist.", param="model", code=ErrorCode.MODEL_NOT_FOUND
            )
    except ApiError as exc:
        return exc.response()
    return JsonResponse(found[0])


@csrf_exempt
@json_errors
async def chat_completions(request):
    """Store the request as an API conversation with a queued reply, then answer with the reply: whole, or
    streamed as server-sent events."""
    if request.method != "POST":
        return _method_not_allowed(request, "POST")
    try:
        key = await _key(request)
        try:
            body = json.loads(request.body)
        except RequestDataTooBig:
            raise ApiError(413, "The request body is too large.", code=ErrorCode.REQUEST_TOO_LARGE) from None
        except (ValueError, RecursionError):
            raise ApiError(400, "The request body is not valid JSON.", code=ErrorCode.INVALID_JSON) from None
        parsed = parse_completion_request(body)
    except ApiError as exc:
        return exc.response()
    ensure_sweeper()
    run = CompletionRun(key, parsed)
    try:
        return await run.start()
    except ApiError as exc:
        return exc.response()


class CompletionRun:
    """One completion: its follower, its reply and what has been streamed of it."""

    def __init__(self, key, parsed: CompletionRequest):
        self.key, self.parsed = key, parsed
        self.follower = ReplyFollower()
        self.reply: Message | None = None
        self.created = int(time.time())
        self.pieces: list[str] = []
        self.ended = False  # the done frame was read: nothing to stop
        self.closed = False

    @property
    def completion_id(self) -> str:
        return f"chatcmpl-{self.reply.id}"

    async def start(self):
        await self.follower.__aenter__()
        try:
            self.reply = await database_sync_to_async(api_services.api_completion_create)(
                key=self.key,
                turns=self.parsed.turns,
                params=self.parsed.params,
                end_user=self.parsed.end_user,
                model=self.parsed.model,
            )
        except ChatError as exc:
            await self.close()
            raise ApiError.from_chat(exc) from None
        except BaseException:
            await self.close()
            raise
        try:
            await self.follower.follow(self.reply.id, self.reply.conversation_id)
            await self.follower.catch_up()  # what was published before the follower joined the group
            # Wait for the first frame before answering: a reply that fails before its first token (too long
            # for the context, a lost queue) gets a real status code in both modes.
            first = await self.next()
            if first["type"] == "done" and first["status"] == Message.Status.FAILED:
                raise self.failure(first)
            if not self.parsed.stream:
                return await self.whole(first)
        except BaseException:
            await self.close()
            raise
        response = StreamingHttpResponse(self.events(first), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # a proxy in front must not hold the stream back
        return response

    async def next(self) -> dict:
        frame = await self.follower.next()
        if frame["type"] == "delta":
            self.pieces.append(frame["text"])
        else:
            self.ended = True
        return frame

    def failure(self, done: dict) -> ApiError:
        if done["error_code"] == ErrorCode.CONTEXT_LENGTH_EXCEEDED:
            return ApiError(400, done["error"], param="messages", code=ErrorCode.CONTEXT_LENGTH_EXCEEDED)
        if done["error_code"] == ErrorCode.ADAPTER_UNAVAILABLE:  # the model named cannot be served after all
            return ApiError(503, done["error"], type="server_error", param="model", code=ErrorCode.ADAPTER_UNAVAILABLE)
        return ApiError(
            500, done["error"] or "The reply failed.", type="server_error", code=ErrorCode.GENERATION_FAILED
        )

    def usage(self, done: dict) -> dict:
        return usage_object(done["usage"]["prompt_tokens"], done["usage"]["completion_tokens"])

    async def whole(self, frame: dict) -> JsonResponse:
        while frame["type"] != "done":
            frame = await self.next()
        await self.close()
        if frame["status"] == Message.Status.FAILED:
            raise self.failure(frame)
        return JsonResponse(
            completion_object(
                completion_id=self.completion_id,
                created=self.created,
                model=self.parsed.model,
                text="".join(self.pieces),
                finish_reason=FINISH_REASONS[frame["finish_reason"]],
                usage=self.usage(frame),
            )
        )

    def _sse(self, delta: dict | None, finish_reason: str | None = None, usage: dict | None = None) -> str:
        chunk = chunk_object(
            completion_id=self.completion_id,
            created=self.created,
            model=self.parsed.model,
            delta=delta,
            finish_reason=finish_reason,
            usage=usage,
        )
        return f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n"

    async def events(self, frame: dict):
        """The server-sent events: a role chunk, a chunk per delta, the finish chunk, the usage chunk when asked
        for, ``[DONE]``. A failure mid-stream is an ``error`` event (OpenAI's clients raise it)."""
        try:
            yield self._sse({"role": "assistant", "content": ""})
            while frame["type"] != "done":
                yield self._sse({"content": frame["text"]})
                frame = await self.next()
            if frame["status"] == Message.Status.FAILED:
                yield f"data: {json.dumps(self.failure(frame).body())}\n\n"
                return
            yield self._sse({}, FINISH_REASONS[frame["finish_reason"]])
            if self.parsed.include_usage:
                yield self._sse(None, usage=self.usage(frame))
            await self.close()  # first: a client that has read [DONE] finds no log of a reply not kept
            yield "data: [DONE]\n\n"
        finally:
            await self.close()

    async def close(self) -> None:
        """Once: leave the group; a reply that has not ended is stopped (the client went away: Django cancels
        the view's task when Daphne reports the disconnect, before the first chunk as after it); a reply whose
        text is not kept loses its stream log once it has ended."""
        if self.closed:
            return
        self.closed = True
        if self.reply is not None and not self.ended:
            # Its own task on the default executor, so a second cancellation cannot cut the stop short.
            stop = asyncio.ensure_future(
                database_sync_to_async(conversation_services.message_stop, thread_sensitive=False)(
                    user=self.key.owner, message_id=self.reply.id
                )
            )
            try:
                await asyncio.shield(stop)
            except Exception:
                log.warning("could not stop reply %s of a client that went away", self.reply.id, exc_info=True)
            if not self.key.store_conversations:
                # The client is gone but the worker is still ending the reply (within a step): follow it to its
                # end in the background, then delete its log, or its text would outlive the reply in Redis.
                self.follower.forget_once_ended()
                return
        await self.follower.__aexit__(None, None, None)
        if self.reply is not None and self.ended and not self.key.store_conversations:
            await self.follower.forget_log()
