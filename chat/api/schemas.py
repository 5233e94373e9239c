"""The chat completion request, checked the way OpenAI's API checks it (every refusal names its parameter), and
the objects the API returns. Unknown fields are ignored, as OpenAI's clients expect of compatible servers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from django.conf import settings

from chat.api.errors import ApiError, invalid
from chat.conversations.params import SEED_MAX, SEED_MIN, stop_strings_clean
from chat.errors import ChatError, ErrorCode
from chat.models import Message

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_MESSAGES = 200
OBJECT_OWNER = "chatsite"


@dataclass
class CompletionRequest:
    model: str
    turns: list[dict]
    params: dict = field(
        default_factory=dict
    )  # chat.conversations.params names: temperature, top_p, max_new_tokens, stop
    stream: bool = False
    include_usage: bool = False
    end_user: str = ""


def _number(
    body: dict,
    name: str,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    integer: bool = False,
    out_of_range: str = "",
):
    """``body[name]`` checked: None when absent; ``out_of_range``: the sentence when it is outside the bounds
    (else one that names them)."""
    value = body.get(name)
    if value is None:
        return None
    try:
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:
        ok = False
    if not ok or (integer and int(value) != value):
        raise invalid(name, f"'{name}' must be {'an integer' if integer else 'a number'}.", ErrorCode.INVALID_TYPE)
    if value < low or value > high or (low_open and value == low):
        raise invalid(
            name,
            out_of_range
            or f"'{name}' must be {'greater than' if low_open else 'at least'} {low:g} and at most "
            f"{high:g}; got {value!r}.",
        )
    return int(value) if integer else float(value)


def _content(message: dict, i: int) -> str:
    """A message's text: a string, or a list of text parts joined (images and audio are not supported)."""
    content = message.get("content")
    if content is None and message.get("role") == "assistant":
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid(
                    f"messages[{i}].content[{j}]",
                    "Only text content parts ({'type': 'text', 'text': ...}) are supported.",
                )
            texts.append(part["text"])
        return "".join(texts)
    raise invalid(
        f"messages[{i}].content", "'content' must be a string or a list of text parts.", ErrorCode.INVALID_TYPE
    )


def _turns(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "'messages' must be a non-empty array.", ErrorCode.INVALID_TYPE)
    if len(messages) > MAX_MESSAGES:
        raise invalid("messages", f"At most {MAX_MESSAGES} messages in one request.")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise invalid(f"messages[{i}]", "Each message must be an object.", ErrorCode.INVALID_TYPE)
        role = message.get("role")
        role = ROLES.get(role) if isinstance(role, str) else None
        if role is None:
            raise invalid(
                f"messages[{i}].role",
                "'role' must be one of system, developer, user or assistant (tools are not supported).",
            )
        turns.append({"role": role, "content": _content(message, i)})
    if turns[-1]["role"] != "user":
        raise invalid("messages", "The last message must be the user's.")
    return turns


def parse_completion_request(body) -> CompletionRequest:
    """Check a request body; ``ApiError`` (400 naming the parameter) otherwise. Whether the person may use the
    model, and whether it has a worker, is the service's to say (``chat/replies/catalog.py``)."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code=ErrorCode.INVALID_JSON)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid(
            "model", "'model' is required: a model id from GET /v1/models.", ErrorCode.MISSING_REQUIRED_PARAMETER
        )
    n = body.get("n")
    if n is not None and n != 1:
        raise invalid("n", "Only n=1 is supported: one choice per request.")
    turns = _turns(body)
    cap = settings.CHAT_MAX_NEW_TOKENS
    # Both checked, whichever is given: a bad max_tokens is refused even beside a good max_completion_tokens.
    max_tokens = _number(body, "max_tokens", 1, cap, integer=True)
    max_completion_tokens = _number(body, "max_completion_tokens", 1, cap, integer=True)
    params = {
        "temperature": _number(body, "temperature", 0, 2),
        "top_p": _number(body, "top_p", 0, 1, low_open=True),
        "max_new_tokens": max_completion_tokens or max_tokens,
        # chat/conversations/params.py's sentence: bounds written with :g would read "at most 9.22337e+18"
        "seed": _number(
            body, "seed", SEED_MIN, SEED_MAX, integer=True, out_of_range="'seed' must be a 64-bit integer."
        ),
    }
    if body.get("stop") is not None:
        try:
            params["stop"] = stop_strings_clean(body["stop"])
        except ChatError as exc:
            raise invalid("stop", exc.detail) from None
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise invalid("stream", "'stream' must be a boolean.", ErrorCode.INVALID_TYPE)
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise invalid("stream_options", "'stream_options' must be an object.", ErrorCode.INVALID_TYPE)
    user = body.get("user") or ""
    if not isinstance(user, str) or len(user) > 256:
        raise invalid("user", "'user' must be a string of at most 256 characters.", ErrorCode.INVALID_TYPE)
    return CompletionRequest(
        model=model,
        turns=turns,
        params={k: v for k, v in params.items() if v is not None},
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        end_user=user,
    )


# --- responses --------------------------------------------------------------------------------------------
# A stopped reply (the person pressed Stop in the chat, staff cancelled it) ends as "stop": OpenAI has no
# "cancelled", and its text so far is a valid, shorter answer.
FINISH_REASONS = {
    Message.FinishReason.STOP: "stop",
    Message.FinishReason.LENGTH: "length",
    Message.FinishReason.CANCELLED: "stop",
}


def model_object(model_id: str, created: int, context_window: int | None = None, **extra) -> dict:
    """OpenAI's model object, plus the context window (tokens) where its workers have said it, and ``extra``
    (the picker's display name and description)."""
    out = {"id": model_id, "object": "model", "created": created, "owned_by": OBJECT_OWNER}
    if context_window is not None:
        out["context_window"] = context_window
    return {**out, **extra}


def usage_object(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_object(
    *, completion_id: str, created: int, model: str, text: str, finish_reason: str, usage: dict
) -> dict:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }


def chunk_object(
    *,
    completion_id: str,
    created: int,
    model: str,
    delta: dict | None,
    finish_reason: str | None = None,
    usage: dict | None = None,
) -> dict:
    """One streamed chunk; ``delta`` None makes the usage-only chunk (no choices), sent last when asked for."""
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk
