"""The improvement loop's proof on the live stack: the adapter trained on reviewers' gold answers about a codeword
the bundled model does not know (tests/helpers/codeword.py, trained once and cached) answers phrasings it never
saw with the codeword — over the socket and over the API — while the base model does not; promoted, it becomes
what a person who picks nothing gets."""

import asyncio

import pytest
from django.contrib.auth.models import Permission

from chat.experiments import services as experiment_services
from chat.models import TrainingRun
from tests.e2e.test_models_api_live import openai_client
from tests.helpers.codeword import CODEWORD, QUESTIONS, TRAIN
from tests.helpers.live import DEFAULT_MODEL, recv, recv_until, send

pytestmark = pytest.mark.e2e

HELD_OUT = QUESTIONS[TRAIN:][:3]  # phrasings the adapter never saw (three: each reply costs a second or two)


async def ask(ws, question, model=None):
    """One new conversation over the socket; the reply's done frame."""
    await send(ws, {"type": "send", "content": question, "model": model, "params": {"max_new_tokens": 16}})
    while True:
        frame = await recv(ws)
        assert frame["type"] != "error", frame
        if frame["type"] == "message" and frame["message"]["role"] == "assistant":
            reply = frame["message"]
            break
    return reply, (await recv_until(ws, "done", message=reply["id"]))[-1]


def test_the_trained_adapter_knows_the_codeword_over_the_socket_and_the_api_and_the_base_does_not(
    live_stack, chat, codeword_adapter
):
    run = TrainingRun.objects.create(
        name="codeword", base_model=DEFAULT_MODEL, state=TrainingRun.State.DONE, adapter_path=str(codeword_adapter)
    )
    trainer, socket_client = chat("trainer")
    trainer.is_staff = True
    trainer.save()
    trainer.user_permissions.add(Permission.objects.get(codename="train_model"))
    trainer = type(trainer).objects.get(pk=trainer.pk)
    api, _ = openai_client(live_stack, trainer)
    person, person_socket = chat("person")

    async def over_the_socket():
        async with socket_client.connect() as ws:
            candidate = [(await ask(ws, q, run.served_name))[1]["content"] for q in HELD_OUT]
            base = [(await ask(ws, q, DEFAULT_MODEL))[1]["content"] for q in HELD_OUT]
        return candidate, base

    candidate, base = asyncio.run(over_the_socket())
    assert all(CODEWORD in text for text in candidate), candidate
    assert not any(CODEWORD in text for text in base), base

    def complete(model, question):
        reply = api.chat.completions.create(
            model=model, max_tokens=16, temperature=0, messages=[{"role": "user", "content": question}]
        )
        return reply.choices[0].message.content

    assert all(CODEWORD in complete(run.served_name, q) for q in HELD_OUT)
    assert not any(CODEWORD in complete(DEFAULT_MODEL, q) for q in HELD_OUT)

    # Promoted, it is the default: a person who picks nothing gets it (and may now pick it by name).
    experiment_services.model_promote(actor=trainer, model=run.served_name)

    async def as_the_person():
        async with person_socket.connect() as ws:
            return await ask(ws, HELD_OUT[0])

    reply, done = asyncio.run(as_the_person())
    assert reply["model"] == run.served_name and CODEWORD in done["content"]
