"""The training task, called in this process on a tiny random base (the queue and a real worker process are
tests/chat/training/test_worker_live.py's): a run that succeeds records everything reproducing it needs; a
cancelled run ends cancelled with staff's reason; a run whose base cannot load, or whose training raises, ends
failed with its reason; ``manage.py evaluate`` prints its JSON."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from chat import served
from chat.models import Conversation, TrainingRun
from chat.training import services
from chat.worker.training import train_adapter
from tests.chat.training.conftest import BASE, BUNDLED

State = TrainingRun.State


@pytest.mark.django_db
def test_a_run_trains_evaluates_and_records_what_reproduces_it(gold_conversations, trainer, settings):
    run = services.run_start(actor=trainer, name="ok", base=BASE)
    train_adapter(run.pk)
    run.refresh_from_db()
    assert run.state == State.DONE, run.reason
    assert re.fullmatch(r"[0-9a-f]{64}", run.base_weights_sha256)
    assert {"torch", "transformers", "peft", "trl", "datasets"} <= set(run.library_versions)
    hp = run.hyperparameters
    assert hp["epochs"] == 1 and hp["max_length"] == 64 and hp["rank"] == 8 and hp["seed"] == 0
    assert set(hp["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    adapter = Path(run.adapter_path)
    assert adapter == settings.CHAT_ADAPTER_DIR / "ok" and (adapter / "adapter_config.json").exists()
    assert run.progress["step"] == run.progress["steps"] == 2  # eight examples, batches of four, one epoch
    training = run.metrics["training"]
    assert training["examples"] == {"train": 8, "heldout": 2, "pairs": 8}
    assert training["dpo_ran"] is False  # eight pairs, fewer than CHAT_TRAINING_DPO_MIN_PAIRS
    evaluation = run.metrics["evaluation"]
    assert evaluation["examples"] == 2 and len(evaluation["rows"]) == 2
    for row in evaluation["rows"]:
        assert "prompt" not in row and "gold" not in row  # people's words stay in their conversation
        assert {"loglik", "chrf", "answer"} <= set(row["candidate"]) and {"loglik", "chrf", "answer"} <= set(
            row["base"]
        )
    assert evaluation["default"]["name"] == BUNDLED and evaluation["default"]["unscored"]
    assert evaluation["worse_than_default"] is False


@pytest.mark.django_db
def test_dpo_runs_on_enough_pairs_and_the_adapter_holds_no_reference_copy(gold_conversations, trainer, settings):
    settings.CHAT_TRAINING_DPO_MIN_PAIRS = 4
    run = services.run_start(actor=trainer, name="dpo", base=BASE)
    train_adapter(run.pk)
    run.refresh_from_db()
    assert run.state == State.DONE, run.reason
    assert run.metrics["training"]["dpo_ran"] and run.metrics["training"]["dpo_loss"] is not None
    assert run.progress["steps"] == 2 + 2  # SFT's two steps, then DPO's two
    assert not (Path(run.adapter_path) / "ref").exists()


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_run_ends_cancelled_with_its_reason(gold_conversations, trainer, settings):
    settings.CHAT_TRAINING_HYPERPARAMETERS = {"epochs": 2000, "max_length": 64}  # far longer than the test waits
    run = services.run_start(actor=trainer, name="stop-me", base=BASE)
    worker = threading.Thread(target=train_adapter, args=[run.pk])
    worker.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if (run.progress or {}).get("step", 0) >= 1:
            break
        time.sleep(0.1)
    assert run.state == State.RUNNING and run.progress["step"] >= 1
    services.run_cancel(actor=trainer, run_id=run.pk, reason="the selection was wrong")
    worker.join(120)
    assert not worker.is_alive()
    run.refresh_from_db()
    assert run.state == State.CANCELLED
    assert run.reason == "Cancelled by trainer: the selection was wrong"
    assert run.progress["step"] < run.progress["steps"] and not run.adapter_path
    assert not (settings.CHAT_ADAPTER_DIR / "stop-me").exists()


@pytest.mark.django_db
def test_a_base_whose_weights_cannot_load_fails_the_run_with_its_reason(
    gold_conversations, trainer, settings, tmp_path
):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')
    (broken / "model.safetensors").write_bytes(b"not weights")
    settings.CHAT_SERVED_MODELS = (*settings.CHAT_SERVED_MODELS, *served.parse(f"broken={broken}", ""))
    Conversation.objects.update(model_name="broken")
    run = services.run_start(actor=trainer, name="broken-base", base="broken")
    train_adapter(run.pk)
    run.refresh_from_db()
    assert run.state == State.FAILED
    assert run.reason.startswith("The weights of the base model broken could not be loaded")
    assert run.finished_at is not None and not run.adapter_path


@pytest.mark.django_db
def test_an_error_during_training_fails_the_run_with_its_reason(gold_conversations, trainer, settings):
    settings.CHAT_TRAINING_HYPERPARAMETERS = {"epochs": 1, "max_length": 64, "target_modules": ["no_such_layer"]}
    run = services.run_start(actor=trainer, name="raises", base=BASE)
    train_adapter(run.pk)
    run.refresh_from_db()
    assert run.state == State.FAILED
    assert run.reason.startswith("Training stopped with an error: NoMatchingPeftModuleError: Target modules")
    assert "no_such_layer" in run.reason
    # what it had recorded before it failed stays
    assert run.base_weights_sha256 and run.library_versions


@pytest.mark.django_db
def test_a_run_not_queued_any_more_is_left_alone(gold_conversations, trainer):
    run = services.run_start(actor=trainer, name="gone", base=BASE)
    services.run_cancel(actor=trainer, run_id=run.pk)
    train_adapter(run.pk)  # the task of a run cancelled while queued
    run.refresh_from_db()
    assert run.state == State.CANCELLED and run.worker == "" and run.started_at is None


@pytest.mark.django_db
def test_evaluate_prints_json_of_the_candidate_against_its_base(gold_conversations, trainer):
    run = services.run_start(actor=trainer, name="judged", base=BASE)
    train_adapter(run.pk)
    out = io.StringIO()
    call_command("evaluate", f"{BASE}+judged", "--against", BASE, stdout=out)
    result = json.loads(out.getvalue())
    assert result["candidate"] == f"{BASE}+judged" and result["against"] == BASE and result["examples"] == 2
    assert set(result["means"]) == {"candidate", "against"}
    assert isinstance(result["candidate_ahead"], bool)
    heldout = {row["message"] for row in TrainingRun.objects.get(pk=run.pk).metrics["evaluation"]["rows"]}
    assert {row["message"] for row in result["rows"]} == heldout
    for row in result["rows"]:
        assert "gold" not in row and "prompt" not in row
        assert isinstance(row["candidate"]["loglik"], float) and isinstance(row["against"]["chrf"], float)
