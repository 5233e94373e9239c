"""The OpenAI-compatible API through the official ``openai`` client, against the live stack."""

import json
import time

import pytest
from django.conf import settings

from chat.models import Conversation, Message

pytestmark = pytest.mark.e2e
MODEL = settings.CHAT_MODEL


def test_a_whole_completion_is_stored_as_an_api_conversation(api):
    user, new, client = api()
    sent = time.time()
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        max_tokens=24,
        messages=[
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is the capital "}, {"type": "text", "text": "of France?"}],
            },
        ],
    )
    result, body = raw.parse(), json.loads(raw.http_response.content)
    choice = result.choices[0]
    assert result.object == "chat.completion" and result.model == MODEL and result.id.startswith("chatcmpl-")
    assert isinstance(body["created"], int) and sent - 2 <= body["created"] <= time.time()
    assert "system_fingerprint" not in body
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert result.usage.prompt_tokens > 10 and 0 < result.usage.completion_tokens <= 24
    reply = Message.objects.get(pk=int(result.id.removeprefix("chatcmpl-")))
    assert reply.content == choice.message.content and reply.status == "complete"
    conversation = reply.conversation
    assert (conversation.owner, conversation.source, conversation.api_key_id, conversation.api_key_name) == (
        user,
        "api",
        new.key.pk,
        "alice's key",
    )
    assert conversation.system_prompt == "You are terse." and conversation.content_kept
    assert reply.parent.content == "What is the capital of France?"


def test_streaming_sends_chunks_then_usage(api):
    _, _, client = api()
    stream = client.chat.completions.create(
        model=MODEL,
        max_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Count from one to ten."}],
    )
    chunks = list(stream)
    texts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len([t for t in texts if t]) > 1
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals in (["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    reply = Message.objects.get(pk=int(chunks[0].id.removeprefix("chatcmpl-")))
    assert reply.content == "".join(texts)
    plain = list(
        client.chat.completions.create(
            model=MODEL, max_tokens=4, stream=True, messages=[{"role": "user", "content": "Hi"}]
        )
    )
    assert all(c.usage is None and c.choices for c in plain)  # no usage chunk unless asked for
    assert plain[-1].choices[0].finish_reason in ("stop", "length")


def _reply(completion_id: str) -> Message:
    return Message.objects.get(pk=int(completion_id.removeprefix("chatcmpl-")))


def test_stop_strings_end_the_reply_before_them_and_max_tokens_ends_with_length(api):
    _, _, client = api()
    messages = [{"role": "user", "content": "Tell me about the sea in three sentences."}]
    free = client.chat.completions.create(model=MODEL, max_tokens=60, messages=messages).choices[0].message.content
    words = free.split()
    assert len(words) > 6, free
    stop = " " + words[5]  # greedy decoding: the same prompt gives the same text, so it meets this string again
    stopped = client.chat.completions.create(model=MODEL, max_tokens=60, messages=messages, stop=[stop, "zzzz"])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == free[: free.index(stop)]
    assert _reply(stopped.id).params["stop"] == [stop, "zzzz"]
    alone = client.chat.completions.create(model=MODEL, max_tokens=60, messages=messages, stop=stop)  # a string
    assert alone.choices[0].message.content == free[: free.index(stop)] and _reply(alone.id).params["stop"] == [stop]

    for limit in ({"max_completion_tokens": 5}, {"max_tokens": 5}):
        short = client.chat.completions.create(model=MODEL, messages=messages, **limit)
        assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 5, limit
        assert free.startswith(short.choices[0].message.content)


def test_models_are_listed_and_found(api):
    import openai

    from chat.replies import liveness
    from tests.helpers.live import TINY

    _, _, client = api()
    # The served models open to everyone with a live worker: the tiny one too once a test earlier in the session
    # started its worker (tests/e2e/test_models_api_live.py lists them per person).
    assert [m.id for m in client.models.list()] == [MODEL] + ([TINY] if liveness.workers_alive(TINY) else [])
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-4o")
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert unknown.value.body["param"] == "model"


def test_wrong_and_revoked_keys_get_401(api, live_stack):
    import openai

    from chat.api import services

    user, new, client = api()
    wrong = openai.OpenAI(
        base_url=f"http://127.0.0.1:{live_stack.port}/v1", api_key=new.plaintext[:-2] + "xx", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as bad:
        wrong.models.list()
    assert bad.value.status_code == 401 and bad.value.body["code"] == "invalid_api_key"
    assert client.models.list().data  # the right key works
    services.api_key_revoke(owner=user, key_id=new.key.pk)
    with pytest.raises(openai.AuthenticationError) as revoked:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "revoked" in revoked.value.message
    assert not Conversation.objects.filter(owner=user).exists()


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 10**6}, "max_completion_tokens"),
        ({"n": 2}, "n"),
        ({"stop": ["a"] * 5}, "stop"),
        ({"max_tokens": 0, "max_completion_tokens": 5}, "max_tokens"),
        ({"seed": 1.5}, "seed"),
        ({"seed": 2**63}, "seed"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, "messages"),
    ],
)
def test_bad_parameters_get_400_naming_them(api, extra, param):
    import openai

    user, _, client = api()
    request = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**request)
    assert refused.value.status_code == 400 and refused.value.body["param"] == param
    assert refused.value.body["type"] == "invalid_request_error" and refused.value.body["message"]
    assert not Conversation.objects.filter(owner=user).exists()


def test_unknown_fields_are_ignored(api):
    _, _, client = api()
    result = client.chat.completions.create(
        model=MODEL,
        max_tokens=3,
        n=1,
        user="end-user-42",
        messages=[{"role": "user", "content": "Hi"}],
        extra_body={"logit_bias_whatever": {"1": 2}, "frequency_penalty": 0},
    )
    assert result.choices[0].message.content
    assert _reply(result.id).conversation.api_user == "end-user-42"


def test_sampling_parameters_reach_the_reply_and_a_seed_repeats_it(api):
    """temperature and top_p are what the engine sampled with (the reply's stored params); the same seed at
    temperature 1 gives the same text again (the engine's per-request generator, tests/inference)."""
    _, _, client = api()
    request = dict(
        model=MODEL,
        max_tokens=12,
        temperature=1.0,
        top_p=0.9,
        seed=1234,
        messages=[{"role": "user", "content": "Invent a name for a cat."}],
    )
    first, second = (client.chat.completions.create(**request) for _ in range(2))
    assert first.choices[0].message.content == second.choices[0].message.content
    assert _reply(first.id).params == {"temperature": 1.0, "top_p": 0.9, "max_new_tokens": 12, "seed": 1234}


def test_too_long_for_the_context_is_400_context_length_exceeded_and_a_huge_body_413(api, tokenizer):
    import openai

    user, _, client = api()
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    # Over the characters a message may have: refused before anything is stored.
    with pytest.raises(openai.BadRequestError) as chars:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a" * (limit + 1)}])
    assert (chars.value.body["code"], chars.value.body["param"]) == ("context_length_exceeded", "messages")
    assert not Conversation.objects.filter(owner=user).exists()
    # Within the characters, beyond the model's window: a digit is a token of its own for this tokenizer.
    digits = "".join(str(i % 10) for i in range(limit))
    assert len(tokenizer.encode(digits, add_special_tokens=False)) > 8192
    with pytest.raises(openai.BadRequestError) as window:
        client.chat.completions.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": digits}])
    assert (window.value.body["code"], window.value.body["param"]) == ("context_length_exceeded", "messages")
    reply = Message.objects.get(conversation__owner=user, role="assistant")
    assert reply.status == "failed" and window.value.body["message"] == reply.error
    # Over Django's limit on a request body: 413, and nothing stored.
    with pytest.raises(openai.APIStatusError) as big:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)}]
        )
    assert big.value.status_code == 413 and big.value.body["code"] == "request_too_large"
    assert Conversation.objects.filter(owner=user).count() == 1


def test_a_key_that_keeps_no_text_leaves_counts_only_and_no_stream_log(api, live_stack):
    import redis

    from chat.names import stream_key

    user, _, client = api(store_conversations=False)
    result = client.chat.completions.create(
        model=MODEL,
        max_tokens=8,
        stream=True,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A secret plan."}],
    )
    chunks = list(result)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)  # the caller got the text
    reply = _reply(chunks[0].id)
    assert reply.prompt_tokens > 5 and reply.completion_tokens > 0 and reply.status == "complete"
    assert set(Message.objects.filter(conversation__owner=user).values_list("content", flat=True)) == {""}
    conversation = reply.conversation
    assert (conversation.system_prompt, conversation.title, conversation.content_kept) == ("", "", False)
    assert not redis.Redis.from_url(live_stack.env["REDIS_URL"]).exists(stream_key(reply.pk))
