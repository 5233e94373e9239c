"""Which served models a person may use and which is theirs by default (chat/replies/catalog.py), over the real
database and the real Redis (workers' liveness)."""

import pytest

from chat import served
from chat.errors import ChatError, ErrorCode
from chat.models import ChatDefaults
from chat.replies import catalog, liveness

pytestmark = pytest.mark.django_db

MODELS = "open=bundled:smollm2-135m-instruct,staff-only=/models/big,second=/models/second"
OPTIONS = {"staff-only": {"groups": ["researchers"], "label": "Big", "description": "for research"}}


@pytest.fixture
def three_models(settings):
    settings.CHAT_SERVED_MODELS = served.parse(MODELS, "", OPTIONS)
    settings.CHAT_DEFAULT_MODEL = "open"
    return settings.CHAT_SERVED_MODELS


def test_a_model_with_groups_is_open_to_their_members_and_superusers_only(three_models, make_user, django_user_model):
    from django.contrib.auth.models import Group

    alice, bob = make_user("alice"), make_user("bob")
    root = django_user_model.objects.create_superuser(username="root", password="a-long-test-password")
    bob.groups.add(Group.objects.create(name="researchers"))
    assert [m.name for m in catalog.usable(alice)] == ["open", "second"]
    assert [m.name for m in catalog.usable(bob)] == ["open", "staff-only", "second"]
    assert [m.name for m in catalog.usable(root)] == ["open", "staff-only", "second"]

    with pytest.raises(ChatError) as forbidden:
        catalog.resolve(alice, "staff-only")
    with pytest.raises(ChatError) as unknown:
        catalog.resolve(alice, "nonsense")
    # Forbidden and unknown are answered alike: nobody learns of a model they may not use.
    assert forbidden.value.code == unknown.value.code == ErrorCode.MODEL_NOT_FOUND
    assert forbidden.value.detail == "There is no model called 'staff-only' for you here. You may use: open, second."
    assert catalog.resolve(bob, "staff-only").label == "Big"


def test_the_default_is_the_persons_own_then_the_sites_then_the_first_they_may_use(three_models, make_user, settings):
    alice = make_user("alice")
    assert catalog.default_for(alice).name == "open" and catalog.resolve(alice, None).name == "open"
    ChatDefaults.objects.create(user=alice, model_name="second")
    assert catalog.default_for(alice).name == "second"
    ChatDefaults.objects.filter(user=alice).update(model_name="staff-only")  # a group she has since left
    assert catalog.default_for(alice).name == "open"
    settings.CHAT_DEFAULT_MODEL = "staff-only"  # a site default she may not use
    assert catalog.default_for(alice).name == "open"


def test_the_picker_lists_live_workers_and_the_window_per_model(three_models, make_user):
    alice = make_user("alice")
    liveness.heartbeat("w-second", [], stats={"context_window": 2048}, model="second")
    try:
        listed = {m["name"]: m for m in catalog.models_for(alice)}
    finally:
        liveness.worker_gone("w-second", "second")
    assert set(listed) == {"open", "second"}
    assert listed["second"]["live"] == 1 and listed["second"]["context_window"] == 2048
    assert listed["open"]["default"] and not listed["second"]["default"]
