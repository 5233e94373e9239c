"""Two served models, and Compares made through the real services: ``message_send(compare=…)`` stores the two
replies and the ``Comparison``, each reply is claimed and finished as its worker would (``reply_claim`` stores the
worker, ``reply_finish`` the text), and ``compare_pick`` stores the person's pick."""

from __future__ import annotations

import os

import pytest

from chat import served
from chat.conversations import services
from chat.models import Comparison, Message
from chat.replies import liveness
from chat.replies import services as reply_services

BIG, SMALL = "big", "small"


@pytest.fixture
def two_models(settings):
    """This process serves ``big`` (the default) and ``small``, each with a live worker (a heartbeat in its
    model's live set, as tests/chat/conftest.py registers one for the default model)."""
    spec = "bundled:smollm2-135m-instruct"
    settings.CHAT_SERVED_MODELS = served.parse(f"{BIG}={spec},{SMALL}={spec}", "")
    settings.CHAT_DEFAULT_MODEL = settings.CHAT_MODEL = BIG
    name = f"review-tests-{os.getpid()}"
    for model in (BIG, SMALL):
        liveness.heartbeat(name, [], model=model)
    yield (BIG, SMALL)
    for model in (BIG, SMALL):
        liveness.worker_gone(name, model)


def written(reply: Message, text: str) -> Message:
    """``reply`` claimed by a worker of its model and finished with ``text``, as the worker leaves it."""
    reply_services.reply_claim(message_id=reply.pk, worker=f"{reply.model_name}-worker-1")
    reply_services.reply_finish(
        message_id=reply.pk,
        content=text,
        status=Message.Status.COMPLETE,
        finish_reason=Message.FinishReason.STOP,
        prompt_tokens=10,
        completion_tokens=len(text.split()),
        ttft_ms=50,
        tokens_per_s=20.0,
    )
    return Message.objects.get(pk=reply.pk)


def compared(
    user,
    question: str,
    texts: tuple[str, str],
    *,
    conversation_id: int | None = None,
    model: str = BIG,
    compare: str = SMALL,
    blind: bool = False,
    pick: int | None = None,
) -> Comparison:
    """``question`` sent with Compare (``model``'s reply first, ``compare``'s second), both replies written with
    ``texts``, and, when ``pick`` is 0 or 1, that reply picked by the person."""
    sent = services.message_send(
        user=user, conversation_id=conversation_id, content=question, model=model, compare=compare, blind=blind
    )
    replies = [written(reply, text) for reply, text in zip((sent.assistant_message, sent.compared), texts)]
    if pick is not None:
        services.compare_pick(user=user, message_id=replies[pick].pk)
    return Comparison.objects.select_related("prompt", "first", "second").get(prompt=sent.user_message)


def answered(user, question: str, text: str, *, conversation_id: int | None = None, model: str = BIG) -> Message:
    """``question`` sent with one reply, written with ``text``."""
    sent = services.message_send(user=user, conversation_id=conversation_id, content=question, model=model)
    return written(sent.assistant_message, text)
