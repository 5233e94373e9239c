"""Continue (chat/conversations/continuation.py, chat/worker/job.py, inference/prompt.py): a reply cut at its
length bound goes on as the same message, with the tokens greedy generation would have written for the longer
bound; it is refused with a sentence and a code where it cannot; its person is charged this run like any reply.
A real engine over a tiny random Llama, the real Redis and database."""

import pytest

from chat.conversations import continuation
from chat.conversations import services as conversation_services
from chat.errors import ChatError, ErrorCode
from chat.limits import quotas
from chat.models import Message
from chat.replies import services as reply_services
from chat.store import client
from chat.worker import runtime as worker_runtime
from inference.loading import LoadedModel
from inference.prompt import build_prompt
from tests.helpers.worker import dones, queued_reply, run_job

pytestmark = pytest.mark.django_db(transaction=True)

GREEDY = {"temperature": 0, "max_new_tokens": 10}


def continued(user, reply_id, rt):  # noqa: F811
    continuation.message_continue(user=user, message_id=reply_id)
    assert Message.objects.get(pk=reply_id).status == Message.Status.QUEUED
    claimed = reply_services.reply_claim(message_id=reply_id)
    return run_job(user, claimed, rt)


@pytest.fixture(scope="module")
def bundled_model(bundled_path):
    """The bundled SmolLM2-135M itself: a trained model writes text that encodes back to the tokens it wrote,
    which a random one does not (below)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(bundled_path, torch_dtype=torch.float32).eval()


@pytest.fixture
def bundled_rt(bundled_model, tokenizer, settings):
    settings.CHAT_PREFIX_CACHE_MB = 0
    loaded = LoadedModel("bundled", bundled_model, tokenizer, "cpu", None)
    runtime = worker_runtime.Runtime(loaded, background=False)
    yield runtime
    runtime.close()


QUESTION = "Write a long story about a dragon."


def still_alive(settings):
    """The bundled model's runs take longer on a loaded machine than a worker's heartbeat lives: beat again (as
    tests/chat/conftest.py's a_worker_is_alive does) before each reply is admitted."""
    import os

    from chat.replies import liveness

    for model in settings.CHAT_SERVED_MODELS:
        liveness.heartbeat(f"unit-tests-{os.getpid()}", [], model=model.name)


def test_continue_writes_what_greedy_generation_writes_for_the_longer_bound(make_user, bundled_rt, tokenizer, settings):
    user = make_user()
    reply = queued_reply(user, content=QUESTION, params={"temperature": 0, "max_new_tokens": 12})
    run_job(user, reply, bundled_rt)
    first = Message.objects.get(pk=reply.id)
    assert (first.finish_reason, first.completion_tokens) == ("length", 12)

    still_alive(settings)
    frames = continued(user, reply.id, bundled_rt)
    extended = Message.objects.get(pk=reply.id)
    assert Message.objects.filter(conversation_id=reply.conversation_id, role="assistant").count() == 1
    assert (extended.status, extended.finish_reason, extended.completion_tokens) == ("complete", "length", 24)
    # Streamed the same way: its text so far as delta 0, then the new text; done carries the whole.
    deltas = [f for f in frames if f["type"] == "delta"]
    assert deltas[0]["seq"] == 0 and deltas[0]["text"] == first.content
    assert "".join(d["text"] for d in deltas) == extended.content == dones(frames)[0]["content"]
    # What a tab that subscribes late reads first: the stream log, the whole reply.
    assert "".join(client().lrange(f"chat:stream:{reply.id}", 0, -1)) == extended.content

    # The same question answered at once with twice the bound: the same reply, token for token.
    still_alive(settings)
    whole = queued_reply(user, content=QUESTION, params={"temperature": 0, "max_new_tokens": 24})
    run_job(user, whole, bundled_rt)
    assert extended.content == Message.objects.get(pk=whole.id).content
    assert len(extended.content) > len(first.content) > 20


def test_a_continuation_prompt_is_exact_where_the_text_encodes_back_to_its_tokens(make_user, rt, tokenizer):  # noqa: F811
    """The tokenizer boundary: the continuation's prompt is the reply's prompt followed by its text encoded as
    text. A random model writes splits the tokenizer would not make (" nsized" as " ns" + "ized"), so its
    continuation reads the tokenizer's own split and may then go elsewhere; a trained model's text encodes back
    to what it wrote (above). The prompt part is the same either way."""
    rt.engine.eos_ids = set()
    user = make_user()
    reply = queued_reply(user, content="Tell me a story", params=GREEDY)
    run_job(user, reply, rt)
    first = Message.objects.get(pk=reply.id)
    history = [{"role": "user", "content": "Tell me a story"}]
    plain = build_prompt(tokenizer, history, max_new_tokens=10, window=512).input_ids
    cont = build_prompt(tokenizer, history, max_new_tokens=10, window=512, continuing=first.content).input_ids
    assert cont[: len(plain)] == plain and tokenizer.decode(cont[len(plain) :]) == first.content
    continued(user, reply.id, rt)
    assert Message.objects.get(pk=reply.id).content.startswith(first.content)


def test_the_prompt_of_a_continuation_is_the_reply_prompt_then_its_text(tokenizer, plain_tokenizer):
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count to five"}]
    for tok in (tokenizer, plain_tokenizer):  # the chat template, and the plain format
        prompt = build_prompt(tok, history, max_new_tokens=8, window=256)
        cont = build_prompt(tok, history, max_new_tokens=8, window=256, continuing=" One, two, <|im_end|>")
        text = tok.decode(cont.input_ids[len(prompt.input_ids) :])
        assert cont.input_ids[: len(prompt.input_ids)] == prompt.input_ids and text == " One, two, <|im_end|>"
        # The typed special token stays text: it cannot close the turn.
        assert tok.convert_tokens_to_ids("<|im_end|>") not in cont.input_ids[len(prompt.input_ids) :]


def test_a_reply_too_long_to_continue_in_the_window_is_refused_with_a_sentence(tokenizer):
    from inference.prompt import PromptTooLong

    with pytest.raises(PromptTooLong, match="to continue this reply"):
        build_prompt(tokenizer, [{"role": "user", "content": "hi"}], max_new_tokens=8, window=64, continuing="x " * 80)


def _cut(user, rt, **extra):  # noqa: F811
    rt.engine.eos_ids = set()
    reply = queued_reply(user, params=GREEDY, **extra)
    run_job(user, reply, rt)
    return Message.objects.get(pk=reply.id)


def refused(user, message_id, code):
    with pytest.raises(ChatError) as caught:
        continuation.message_continue(user=user, message_id=message_id)
    assert caught.value.code == code and caught.value.detail.endswith(".")
    return caught.value


def test_continue_is_refused_where_it_cannot_go_on_and_for_anyone_else(make_user, rt):  # noqa: F811
    alice, mallory = make_user("alice"), make_user("mallory")
    reply = _cut(alice, rt)
    before = (reply.content, reply.status, reply.finish_reason)
    refused(mallory, reply.id, ErrorCode.NOT_FOUND)  # not theirs: as if it did not exist
    user_message = reply.parent
    refused(alice, user_message.id, ErrorCode.NOT_CONTINUABLE)  # not a reply
    Message.objects.filter(pk=reply.id).update(finish_reason="stop")
    refused(alice, reply.id, ErrorCode.NOT_CONTINUABLE)  # ended on its own
    Message.objects.filter(pk=reply.id).update(finish_reason="length", is_current=False)
    refused(alice, reply.id, ErrorCode.NOT_CONTINUABLE)  # off the shown branch
    Message.objects.filter(pk=reply.id).update(is_current=True)
    # Something follows it: a message sent after it.
    sent = conversation_services.message_send(
        user=alice, conversation_id=reply.conversation_id, content="and then?", params=GREEDY
    )
    refused(alice, reply.id, ErrorCode.NOT_CONTINUABLE)
    reply_services.reply_stop(message=sent.assistant_message)
    refused(alice, reply.id, ErrorCode.NOT_CONTINUABLE)  # answered, even once that reply ended
    assert (Message.objects.get(pk=reply.id).content,) == (before[0],)

    # Still being written: a second Continue of the same reply; another reply being written: busy.
    other = _cut(alice, rt)
    busy = conversation_services.message_send(user=alice, conversation_id=None, content="x", params=GREEDY)
    Message.objects.filter(pk=busy.assistant_message.pk).update(conversation_id=other.conversation_id, parent=None)
    refused(alice, other.id, ErrorCode.BUSY)
    reply_services.reply_stop(message=busy.assistant_message)
    continuation.message_continue(user=alice, message_id=other.id)
    refused(alice, other.id, ErrorCode.NOT_CONTINUABLE)
    # Stopped while queued, it keeps its text (and can no longer be continued: it ended by Stop).
    reply_services.reply_stop(message=Message.objects.get(pk=other.id))
    stopped = Message.objects.get(pk=other.id)
    assert (stopped.status, stopped.content, stopped.completion_tokens) == ("stopped", other.content, 10)
    refused(alice, other.id, ErrorCode.NOT_CONTINUABLE)


def test_a_person_who_may_no_longer_use_the_replys_model_cannot_continue_it(make_user, rt, settings):  # noqa: F811
    """Send and regenerate refuse a model its person lost (here: its group); Continue does too, or one cut reply
    continued again and again would keep them on it."""
    import json

    from django.contrib.auth.models import Group

    from chat import served

    alice = make_user("alice")
    researchers = Group.objects.create(name="researchers")
    alice.groups.add(researchers)
    reply = _cut(alice, rt)
    name = reply.model_name
    settings.CHAT_SERVED_MODELS = served.parse("", name, json.dumps({name: {"groups": ["researchers"]}}))
    alice.groups.remove(researchers)
    alice = type(alice).objects.get(pk=alice.pk)  # the groups are read afresh, as on a new request
    caught = refused(alice, reply.id, ErrorCode.NOT_CONTINUABLE)
    assert "no longer use the model" in caught.detail
    assert Message.objects.get(pk=reply.id).status == "complete"  # nothing queued
    alice.groups.add(researchers)
    alice = type(alice).objects.get(pk=alice.pk)
    assert continuation.message_continue(user=alice, message_id=reply.id).status == "queued"


def test_a_continuation_is_charged_like_any_reply(make_user, rt):  # noqa: F811
    user = make_user()
    reply = _cut(user, rt)
    after_first = quotas.tokens_used_today(user.pk)
    assert after_first == reply.prompt_tokens + 10
    continued(user, reply.id, rt)
    extended = Message.objects.get(pk=reply.id)
    # This run's prompt (the question and the reply so far) and its 10 new tokens, reserved first and settled.
    assert quotas.tokens_used_today(user.pk) == after_first + extended.prompt_tokens + 10
    assert extended.prompt_tokens > reply.prompt_tokens and quotas.tokens_held(user.pk) == 0


def test_a_person_at_their_allowance_cannot_continue(make_user, rt, settings):  # noqa: F811
    user = make_user()
    reply = _cut(user, rt)
    settings.CHAT_TOKENS_PER_DAY = quotas.tokens_used_today(user.pk)
    refused(user, reply.id, ErrorCode.QUOTA_EXHAUSTED)
    assert Message.objects.get(pk=reply.id).status == "complete"


def test_a_chat_samples_by_default_greedy_when_its_person_says_zero_and_the_api_keeps_the_models_own(
    make_user,
    rt,  # noqa: F811
    settings,
):
    from chat.api import services as api_services

    settings.CHAT_DEFAULT_TEMPERATURE, settings.CHAT_DEFAULT_TOP_P = 0.7, 0.9
    user = make_user()
    chat = queued_reply(user, params={"max_new_tokens": 4})
    run_job(user, chat, rt)
    assert Message.objects.get(pk=chat.id).params == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 4}
    greedy = queued_reply(user, params={"max_new_tokens": 4, "temperature": 0})
    run_job(user, greedy, rt)
    assert Message.objects.get(pk=greedy.id).params == {"temperature": 0.0, "top_p": 0.9, "max_new_tokens": 4}
    key = api_services.api_key_create(owner=user, name="k").key
    api = api_services.api_completion_create(
        key=key, turns=[{"role": "user", "content": "hi"}], params={"max_new_tokens": 4}
    )
    run_job(user, reply_services.reply_claim(message_id=api.id), rt)
    assert Message.objects.get(pk=api.id).params["temperature"] == 0.0  # the tiny model's config: greedy


def test_the_sweeps_queue_timeout_counts_from_continue_and_a_timed_out_one_keeps_its_text(
    make_user,
    rt,  # noqa: F811
    settings,
):
    from datetime import timedelta

    from django.utils import timezone

    from chat.replies import sweep

    user = make_user()
    reply = _cut(user, rt)
    settings.CHAT_QUEUE_TIMEOUT_S = 60
    Message.objects.filter(pk=reply.id).update(created_at=timezone.now() - timedelta(hours=1))  # an old reply
    continuation.message_continue(user=user, message_id=reply.id)
    assert sweep.sweep() == [] and Message.objects.get(pk=reply.id).status == "queued"  # just queued again
    settings.CHAT_QUEUE_TIMEOUT_S = 0  # nobody took it in time
    assert [m.id for m in sweep.sweep()] == [reply.id]
    stored = Message.objects.get(pk=reply.id)
    assert (stored.status, stored.error, stored.content) == ("failed", sweep.QUEUE_TIMED_OUT, reply.content)
    assert stored.completion_tokens == 10
