"""Several models over the OpenAI API and the socket, on the live stack (tests/helpers/live.py): `/v1/models` lists
per person the models they may use that have a live worker (RESTRICTED only for its group's members), `model`
routes a completion to a worker of that model, an unknown or forbidden model is 404 `model_not_found` listing the
person's models, and a model whose worker is gone is 503 `no_worker` naming it; the socket refuses alike."""

import asyncio
import json
import signal
import urllib.request

import pytest

from chat.models import Conversation, Message
from chat.replies import liveness
from tests.e2e.test_models_live import ask
from tests.helpers.live import DEFAULT_MODEL, RESTRICTED, TESTERS, TINY

pytestmark = pytest.mark.e2e


@pytest.fixture
def restricted_worker(live_stack):
    """RESTRICTED's worker, for this test only (the test stops it itself; stopped here if it did not)."""
    proc = live_stack.start_worker("restricted", model=RESTRICTED)
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def openai_client(live_stack, user):
    import openai

    from chat.api import services

    key = services.api_key_create(owner=user, name="models").plaintext
    return openai.OpenAI(base_url=f"http://127.0.0.1:{live_stack.port}/v1", api_key=key, max_retries=0), key


def listed(live_stack, key: str) -> list[dict]:
    """`GET /v1/models` as JSON (the SDK's objects drop the fields OpenAI does not have)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{live_stack.port}/v1/models", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def test_models_are_listed_routed_and_refused_per_person_over_the_api_and_the_socket(
    live_stack, tiny_worker, restricted_worker, chat
):
    import openai
    from django.contrib.auth.models import Group

    alice, alice_socket = chat("alice")
    bob, bob_socket = chat("bob")
    bob.groups.add(Group.objects.get_or_create(name=TESTERS)[0])
    alice_api, alice_key = openai_client(live_stack, alice)
    bob_api, bob_key = openai_client(live_stack, bob)

    # /v1/models: each person's usable models with a live worker, in the configured order, with their windows.
    assert [m["id"] for m in listed(live_stack, alice_key)] == [DEFAULT_MODEL, TINY]
    bobs = listed(live_stack, bob_key)
    assert [m["id"] for m in bobs] == [DEFAULT_MODEL, TINY, RESTRICTED]
    assert [(m["display_name"], m["object"]) for m in bobs] == [
        ("SmolLM2 135M", "model"),
        ("Tiny", "model"),
        ("Tiny for testers", "model"),
    ]
    assert bobs[0]["context_window"] == 8192 and bobs[1]["context_window"] == bobs[2]["context_window"] == 1024
    assert bob_api.models.retrieve(RESTRICTED).id == RESTRICTED
    with pytest.raises(openai.NotFoundError) as hidden:
        alice_api.models.retrieve(RESTRICTED)  # forbidden reads as unknown
    assert hidden.value.body["code"] == "model_not_found"

    # `model` routes: each completion written by a worker of the model it names, which the reply stores.
    hi = [{"role": "user", "content": "Hi"}]
    tiny = alice_api.chat.completions.create(model=TINY, max_tokens=4, messages=hi)
    theirs = bob_api.chat.completions.create(model=RESTRICTED, max_tokens=4, messages=hi)
    assert (tiny.model, theirs.model) == (TINY, RESTRICTED)
    replies = {
        m.pk: m for m in Message.objects.filter(pk__in=[int(c.id.removeprefix("chatcmpl-")) for c in (tiny, theirs)])
    }
    by_worker = {m.model_name: m.worker.rsplit("-", 1)[1] for m in replies.values()}
    assert by_worker == {TINY: str(tiny_worker.pid), RESTRICTED: str(restricted_worker.pid)}
    assert {m.conversation.model_name for m in replies.values()} == {TINY, RESTRICTED}

    # Unknown or forbidden: 404 model_not_found listing the person's own models; nothing stored.
    stored = Conversation.objects.filter(owner=alice).count()
    for name in (RESTRICTED, "gpt-4o"):
        with pytest.raises(openai.NotFoundError) as refused:
            alice_api.chat.completions.create(model=name, max_tokens=4, messages=hi)
        body = refused.value.body
        assert (body["code"], body["param"], body["type"]) == ("model_not_found", "model", "invalid_request_error")
        assert (
            body["message"] == f"There is no model called '{name}' for you here. You may use: {DEFAULT_MODEL}, {TINY}."
        )
    assert Conversation.objects.filter(owner=alice).count() == stored

    async def alice_asks():  # the socket: the same refusal, for a new conversation's model and Compare's second
        async with alice_socket.connect() as ws:
            forbidden, _ = await ask(ws, "Hi", model=RESTRICTED)
            compared, _ = await ask(ws, "Hi", model=TINY, compare=RESTRICTED)
            return forbidden, compared

    for refused in asyncio.run(alice_asks()):
        assert refused["type"] == "error" and refused["code"] == "model_not_found", refused
        assert refused["detail"] == (
            f"There is no model called '{RESTRICTED}' for you here. You may use: {DEFAULT_MODEL}, {TINY}."
        )
    assert Conversation.objects.filter(owner=alice).count() == stored

    # Its worker stopped (a goodbye: its heartbeat goes at once): 503 no_worker naming the model, over the API and
    # the socket, and /v1/models no longer lists it; the other models go on.
    restricted_worker.send_signal(signal.SIGTERM)
    restricted_worker.wait(30)
    assert liveness.workers_alive(RESTRICTED) == []
    with pytest.raises(openai.InternalServerError) as down:
        bob_api.chat.completions.create(model=RESTRICTED, max_tokens=4, messages=hi)
    assert down.value.status_code == 503
    assert (down.value.body["code"], down.value.body["param"]) == ("no_worker", "model")
    assert f"No worker is running the model {RESTRICTED} right now" in down.value.body["message"]

    async def bob_asks():
        async with bob_socket.connect() as ws:
            return (await ask(ws, "Hi", model=RESTRICTED))[0]

    refused = asyncio.run(bob_asks())
    assert refused["type"] == "error" and refused["code"] == "no_worker" and RESTRICTED in refused["detail"]
    assert [m["id"] for m in listed(live_stack, bob_key)] == [DEFAULT_MODEL, TINY]
    assert bob_api.models.retrieve(RESTRICTED).id == RESTRICTED  # still his to name, just not running
    assert bob_api.chat.completions.create(model=TINY, max_tokens=4, messages=hi).model == TINY
