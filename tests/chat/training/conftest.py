"""Training runs' tests: a tiny random base model served under ``tiny-base`` (quality does not matter where it is
used: the run's life, its record, its refusals), conversations with gold answers made as people and reviewers
leave them, and a trainer (staff with ``chat.train_model``)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from chat import served
from chat.models import Conversation, GoldAnswer, Message
from tests.helpers.live import build_tiny_model

BASE = "tiny-base"
BUNDLED = "bundled:smollm2-135m-instruct"


@pytest.fixture(scope="session")
def tiny_base_folder(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture
def tiny_base(settings, tiny_base_folder, tmp_path):
    """This process serves the bundled model (the default) and ``tiny-base``; adapters are saved under a
    temporary folder; evaluation answers are short; every progress step is written."""
    settings.CHAT_SERVED_MODELS = served.parse(f"{BUNDLED}={BUNDLED},{BASE}={tiny_base_folder}", "")
    settings.CHAT_DEFAULT_MODEL = settings.CHAT_MODEL = BUNDLED
    settings.CHAT_ADAPTER_DIR = tmp_path / "adapters"
    settings.CHAT_TRAINING_EVAL_TOKENS = 4
    settings.CHAT_TRAINING_PROGRESS_S = 0
    settings.CHAT_TRAINING_HYPERPARAMETERS = {"epochs": 1, "max_length": 64}
    return BASE


@pytest.fixture
def trainer(django_user_model):
    user = django_user_model.objects.create_user(username="trainer", password=None, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="train_model"))
    return django_user_model.objects.get(pk=user.pk)  # permissions are cached on the instance


def conversation(owner, question: str, gold: str | None, *, model: str = BASE, **fields) -> Conversation:
    """A conversation of ``model``: a question, the model's reply, and a reviewer's gold answer for it."""
    conv = Conversation.objects.create(owner=owner, model_name=model, title=question[:40], **fields)
    asked = Message.objects.create(conversation=conv, role=Message.Role.USER, content=question)
    reply = Message.objects.create(
        conversation=conv,
        parent=asked,
        role=Message.Role.ASSISTANT,
        content="I do not know.",
        status=Message.Status.COMPLETE,
        model_name=model,
    )
    if gold is not None:
        GoldAnswer.objects.create(message=reply, content=gold)
    return conv


@pytest.fixture
def gold_conversations(make_user, tiny_base):
    """Ten conversations of the tiny base with gold answers (two held out at the default 20 %)."""
    owner = make_user("owner")
    return [conversation(owner, f"What is fact number {i}?", f"Fact {i} is {i * 7}.") for i in range(10)]
