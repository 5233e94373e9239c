"""The OpenAI-compatible API through the official ``openai`` client, against the live stack."""
import pytest
from django.conf import settings

from chat.models import Conversation, Message

pytestmark = pytest.mark.e2e
MODEL = settings.CHAT_MODEL


def test_a_whole_completion_is_stored_as_an_api_conversation(api):
    user, new, client = api()
    result = client.chat.completions.create(model=MODEL, max_tokens=24, messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "What is the capital "},
                                     {"type": "text", "text": "of France?"}]}])
    choice = result.choices[0]
    assert result.object == "chat.completion" and result.model == MODEL and result.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert result.usage.prompt_tokens > 10 and 0 < result.usage.completion_tokens <= 24
    reply = Message.objects.get(pk=int(result.id.removeprefix("chatcmpl-")))
    assert reply.content == choice.message.content and reply.status == "complete"
    conversation = reply.conversation
    assert (conversation.owner, conversation.source, conversation.api_key_id, conversation.api_key_name) == \
        (user, "api", new.key.pk, "alice's key")
    assert conversation.system_prompt == "You are terse." and conversation.content_kept
    assert reply.parent.content == "What is the capital of France?"


def test_streaming_sends_chunks_then_usage(api):
    _, _, client = api()
    stream = client.chat.completions.create(model=MODEL, max_tokens=30, stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Count from one to ten."}])
    chunks = list(stream)
    texts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len([t for t in texts if t]) > 1
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals in (["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    reply = Message.objects.get(pk=int(chunks[0].id.removeprefix("chatcmpl-")))
    assert reply.content == "".join(texts)


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
    assert stopped.choices[0].message.content == free[:free.index(stop)]
    assert _reply(stopped.id).params["stop"] == [stop, "zzzz"]

    short = client.chat.completions.create(model=MODEL, max_completion_tokens=5, messages=messages)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 5
    assert free.startswith(short.choices[0].message.content)


def test_models_are_listed_and_found(api):
    import openai

    _, _, client = api()
    assert [m.id for m in client.models.list()] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("gpt-4o")
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert unknown.value.body["param"] == "model"


def test_wrong_and_revoked_keys_get_401(api, live_stack):
    import openai

    from chat import api_keys

    user, new, client = api()
    wrong = openai.OpenAI(base_url=f"http://127.0.0.1:{live_stack.port}/v1", api_key=new.plaintext[:-2] + "xx",
                          max_retries=0)
    with pytest.raises(openai.AuthenticationError) as bad:
        wrong.models.list()
    assert bad.value.status_code == 401 and bad.value.body["code"] == "invalid_api_key"
    assert client.models.list().data  # the right key works
    api_keys.api_key_revoke(owner=user, key_id=new.key.pk)
    with pytest.raises(openai.AuthenticationError) as revoked:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "revoked" in revoked.value.message
    assert not Conversation.objects.filter(owner=user).exists()


@pytest.mark.parametrize("extra, param", [
    ({"temperature": 3}, "temperature"), ({"top_p": 0}, "top_p"), ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": 10**6}, "max_completion_tokens"), ({"n": 2}, "n"), ({"stop": ["a"] * 5}, "stop"),
    ({"messages": []}, "messages"), ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[0]"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, "messages"),
])
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
    result = client.chat.completions.create(model=MODEL, max_tokens=3, seed=7, user="end-user-42",
                                            messages=[{"role": "user", "content": "Hi"}],
                                            extra_body={"logit_bias_whatever": {"1": 2}, "frequency_penalty": 0})
    assert result.choices[0].message.content
    assert _reply(result.id).conversation.api_user == "end-user-42"
