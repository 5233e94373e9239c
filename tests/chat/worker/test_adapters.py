"""A reply of an adapter (``<base>+<run>``, a finished training run of the worker's model) is written by the base
model's runtime with the adapter applied, and so is its title; an adapter that is gone or cannot be loaded fails
its reply with a sentence and ``adapter_unavailable`` while the worker goes on serving. A real engine over a tiny
random Llama with a random LoRA saved as peft saves it, the real Redis, channel layer and database."""

import copy
from pathlib import Path

import pytest

from chat.conversations import services as conversation_services
from chat.models import Message, TrainingRun
from chat.replies import services as reply_services
from chat.worker import job as worker_job
from chat.worker import runtime as worker_runtime
from inference.adapters import Adapter
from inference.loading import LoadedModel
from tests.chat.worker.test_title_charges import requests_of
from tests.helpers.worker import dones, run_job
from tests.inference.test_adapters import lora_modules, save_lora
from tests.inference.test_engine import greedy_reference

pytestmark = pytest.mark.django_db(transaction=True)
N = 12


@pytest.fixture
def rt(tiny_llama, tokenizer, settings):
    """A runtime over its own copy of the tiny model (adapters change a model's modules while loaded)."""
    settings.CHAT_PREFIX_CACHE_MB = 0
    model = copy.deepcopy(tiny_llama)
    runtime = worker_runtime.Runtime(LoadedModel("tiny-llama", model, tokenizer, "cpu", None), background=False)
    runtime.engine.eos_ids = set()  # every reply runs to its length: texts compare token for token
    yield runtime
    runtime.close()
    assert lora_modules(model) == 0


@pytest.fixture
def run(rt, tiny_llama, tmp_path):
    folder = tmp_path / "codeword-1"
    save_lora(tiny_llama, folder, seed=1)
    return TrainingRun.objects.create(name="codeword-1", base_model=rt.model, state="done", adapter_path=str(folder))


@pytest.fixture
def staff(make_user):
    user = make_user("staff")
    user.is_superuser = True  # may use every model, adapters included (chat/replies/catalog.py)
    user.save()
    return user


def reply(user, model: str, content="Tell me about the sea") -> Message:
    sent = conversation_services.message_send(
        user=user, conversation_id=None, content=content, params={"max_new_tokens": N, "temperature": 0}, model=model
    )
    return reply_services.reply_claim(message_id=sent.assistant_message.id)


def greedy(model, tokenizer, ids) -> str:
    return tokenizer.decode(greedy_reference(model, tokenizer, ids, N), skip_special_tokens=True)


def test_an_adapters_reply_is_written_by_the_base_runtime_with_the_adapter_and_so_is_its_title(
    rt, run, staff, tiny_llama, tokenizer, monkeypatch
):
    from peft import PeftModel

    submitted = requests_of(rt, monkeypatch)
    message = reply(staff, run.served_name)
    job = worker_job.ReplyJob(message, rt)
    frames = run_job(staff, message, rt)
    stored = Message.objects.get(pk=message.id)
    [request] = submitted
    assert request.adapter == Adapter(run.served_name, run.adapter_path)
    with_adapter = PeftModel.from_pretrained(copy.deepcopy(tiny_llama), run.adapter_path).eval()
    assert (stored.status, stored.model_name) == ("complete", run.served_name)
    assert stored.content == greedy(with_adapter, tokenizer, request.input_ids)  # the adapter's greedy text
    assert stored.content != greedy(tiny_llama, tokenizer, request.input_ids)  # not the base's
    assert dones(frames)[0]["content"] == stored.content
    assert rt.engine.stats()["adapters_loaded"] == [run.served_name]

    # The title of its conversation is the adapter's too.
    job.ending = {"status": Message.Status.COMPLETE}
    assert job.wants_title()
    job.prepare()
    worker_job.make_title(job)
    assert [r.request_id for r in submitted] == [str(message.id), f"title-{message.id}"]
    assert submitted[1].adapter == request.adapter

    # The base's own reply on the same worker is the base's.
    base = reply(staff, rt.model)
    run_job(staff, base, rt)
    assert submitted[-1].adapter is None
    assert Message.objects.get(pk=base.id).content == greedy(tiny_llama, tokenizer, submitted[-1].input_ids)


@pytest.mark.parametrize("fault", ["run_gone", "files_gone"])
def test_an_adapter_that_is_gone_fails_its_reply_with_a_sentence_and_the_worker_goes_on(rt, run, staff, fault):
    message = reply(staff, run.served_name)
    if fault == "run_gone":  # removed between the send and the generation
        TrainingRun.objects.filter(pk=run.pk).delete()
        sentence = f"The model {run.served_name} is not available: its training run was removed or has not finished."
    else:  # its folder emptied: the engine cannot load it
        for path in list(Path(run.adapter_path).iterdir()):
            path.unlink()
        sentence = (
            f"The model {run.served_name} could not be served: its adapter's files are missing or unreadable "
            "(FileNotFoundError)."
        )
    frames = run_job(staff, message, rt)
    stored = Message.objects.get(pk=message.id)
    assert (stored.status, stored.error_code, stored.error) == ("failed", "adapter_unavailable", sentence)
    [done] = dones(frames)
    assert (done["error_code"], done["error"]) == ("adapter_unavailable", sentence)
    assert rt.engine.stats()["adapters_loaded"] == []

    after = reply(staff, rt.model)  # the worker serves the others as before
    run_job(staff, after, rt)
    stored = Message.objects.get(pk=after.id)
    assert (stored.status, stored.completion_tokens) == ("complete", N)
