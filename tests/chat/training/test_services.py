"""Starting a run: what it selects (never a conversation whose key kept no text), the held-out draw, its
examples and audit rows, its refusals, the task it queues; cancelling; deletions flagging the runs that used a
conversation; the sweep of a run whose training worker died."""

from __future__ import annotations

import os
import time

import pytest
import redis

from chat import names
from chat.conversations import organise
from chat.errors import ChatError, ErrorCode
from chat.models import AuditEvent, Conversation, TrainingExample, TrainingRun
from chat.review import services as review_services
from chat.training import liveness, selectors, services
from chat.training.sweep import sweep_runs
from tests.chat.training.conftest import BASE, conversation

pytestmark = pytest.mark.django_db
State = TrainingRun.State


def _queued_tasks() -> list[bytes]:
    return redis.Redis.from_url(os.environ["REDIS_URL"]).lrange(names.TRAINING_QUEUE, 0, -1)


@pytest.fixture
def empty_training_queue():
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    r.delete(names.TRAINING_QUEUE)
    yield
    r.delete(names.TRAINING_QUEUE)


def test_run_start_records_examples_and_audit_and_queues_the_task(
    gold_conversations, trainer, make_user, django_capture_on_commit_callbacks, empty_training_queue
):
    owner = make_user("apiuser")
    hidden = conversation(owner, "A secret question", "A secret answer", source="api", content_kept=False)
    other_model = conversation(owner, "Another model's chat", "Its gold", model="bundled:smollm2-135m-instruct")
    no_gold = conversation(owner, "Nothing corrected here", None)
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_start(actor=trainer, name="facts-1", base=BASE)
    assert run.state == State.QUEUED and run.started_by == trainer and run.started_by_name == "trainer"
    used = set(TrainingExample.objects.filter(run=run).values_list("conversation_ref", flat=True))
    assert used == {c.pk for c in gold_conversations}
    assert hidden.pk not in used and other_model.pk not in used and no_gold.pk not in used
    splits = list(TrainingExample.objects.filter(run=run, kind="sft").values_list("split", flat=True))
    assert splits.count("heldout") == 2 and splits.count("train") == 8  # 20 % of ten
    # the model's own replies lose to the gold answers: a preference pair per training conversation
    assert TrainingExample.objects.filter(run=run, kind="preference").count() == 8
    audit = AuditEvent.objects.filter(action=AuditEvent.Action.TRAINED)
    assert sorted(audit.values_list("conversation_id", flat=True)) == sorted(used)
    assert {row.details["run"] for row in audit} == {run.pk}
    assert {row.actor_id for row in audit} == {trainer.pk}
    assert len(_queued_tasks()) == 1 and names.TRAIN_ADAPTER_TASK.encode() in _queued_tasks()[0]


def test_the_heldout_draw_is_deterministic_and_an_explicit_selection_still_skips_texts_not_kept(
    gold_conversations, trainer, make_user, django_capture_on_commit_callbacks, empty_training_queue
):
    owner = make_user("apiuser")
    hidden = conversation(owner, "A secret question", "A secret answer", source="api", content_kept=False)
    with django_capture_on_commit_callbacks(execute=True):
        first = services.run_start(actor=trainer, name="a", base=BASE)
        second = services.run_start(
            actor=trainer, name="b", base=BASE, conversations=Conversation.objects.all(), selection={"all": True}
        )
    heldout = [
        set(TrainingExample.objects.filter(run=r, split="heldout").values_list("conversation_ref", flat=True))
        for r in (first, second)
    ]
    assert heldout[0] == heldout[1] and len(heldout[0]) == 2
    assert not TrainingExample.objects.filter(conversation_ref=hidden.pk).exists()
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.TRAINED, conversation_id=hidden.pk).exists()
    assert second.selection == {"all": True}


def test_refusals(gold_conversations, trainer, make_user, tiny_base):
    with pytest.raises(ChatError) as err:
        services.run_start(actor=trainer, name="bad name!", base=BASE)
    assert err.value.code == ErrorCode.INVALID_NAME
    with pytest.raises(ChatError) as err:
        services.run_start(actor=trainer, name="x", base="no-such-model")
    assert err.value.code == ErrorCode.MODEL_NOT_FOUND
    with pytest.raises(ChatError) as err:
        services.run_start(actor=make_user("nobody"), name="x", base=BASE)
    assert err.value.code == ErrorCode.FORBIDDEN
    with pytest.raises(ChatError) as err:  # one conversation: nothing left to hold out
        services.run_start(
            actor=trainer, name="x", base=BASE, conversations=Conversation.objects.filter(pk=gold_conversations[0].pk)
        )
    assert err.value.code == ErrorCode.NO_EXAMPLES
    with pytest.raises(ChatError) as err:  # the seed draws the held-out split at the start: checked there
        services.run_start(actor=trainer, name="x", base=BASE, hyperparameters={"seed": "x"})
    assert err.value.code == ErrorCode.INVALID_PARAMS and "seed must be a whole number, not 'x'" in err.value.detail
    services.run_start(actor=trainer, name="taken", base=BASE)
    with pytest.raises(ChatError) as err:
        services.run_start(actor=trainer, name="taken", base=BASE)
    assert err.value.code == ErrorCode.NAME_TAKEN
    assert TrainingRun.objects.count() == 1
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TRAINED).count() == len(gold_conversations)


def test_cancel_a_queued_run_ends_it_with_the_reason_and_a_running_one_is_asked(gold_conversations, trainer):
    queued = services.run_start(actor=trainer, name="q", base=BASE)
    run = services.run_cancel(actor=trainer, run_id=queued.pk, reason="wrong selection")
    assert run.state == State.CANCELLED and run.reason == "Cancelled by trainer: wrong selection"
    assert run.finished_at is not None
    with pytest.raises(ChatError) as err:
        services.run_cancel(actor=trainer, run_id=queued.pk)
    assert err.value.code == ErrorCode.NOT_CANCELLABLE
    running = services.run_start(actor=trainer, name="r", base=BASE)
    assert services.run_claim(run_id=running.pk, worker="w1") is not None
    run = services.run_cancel(actor=trainer, run_id=running.pk)
    assert run.state == State.RUNNING and run.cancel_requested and selectors.cancel_requested(run_id=run.pk)
    # the worker ends it, keeping staff's reason
    assert services.run_finish(run_id=run.pk, state=State.CANCELLED)
    run.refresh_from_db()
    assert run.state == State.CANCELLED and run.reason == "Cancelled by trainer."
    assert not services.run_finish(run_id=run.pk, state=State.FAILED, reason="late")  # a run ends once


def test_deleting_a_used_conversation_flags_the_run_and_drops_its_stored_answers(gold_conversations, trainer, settings):
    settings.CHAT_REVIEW_ENABLED = True
    run = services.run_start(actor=trainer, name="flag-me", base=BASE)
    heldout = TrainingExample.objects.filter(run=run, split="heldout").first()
    TrainingRun.objects.filter(pk=run.pk).update(
        state=State.DONE,
        metrics={
            "evaluation": {
                "rows": [
                    {
                        "conversation": heldout.conversation_ref,
                        "message": heldout.message_ref,
                        "candidate": {"answer": "echoing the person", "chrf": 1.0, "loglik": -1.0},
                        "base": {"answer": "also echoing", "chrf": 1.0, "loglik": -2.0},
                    }
                ]
            }
        },
    )
    untouched = services.run_start(
        actor=trainer, name="other", base=BASE, conversations=Conversation.objects.exclude(pk=heldout.conversation_ref)
    )
    owner = Conversation.objects.get(pk=heldout.conversation_ref).owner
    organise.conversation_delete(user=owner, conversation_id=heldout.conversation_ref)
    run.refresh_from_db()
    assert run.uses_deleted_data
    row = run.metrics["evaluation"]["rows"][0]
    assert row["erased"] and "answer" not in row["candidate"] and "answer" not in row["base"]
    assert row["candidate"]["chrf"] == 1.0  # the figures stay
    assert TrainingExample.objects.filter(
        run=run, conversation_ref=heldout.conversation_ref, conversation=None
    ).exists()
    untouched.refresh_from_db()
    assert not untouched.uses_deleted_data
    # staff deleting a transcript, and a person deleting their account, flag it the same way
    root = type(owner).objects.create_superuser(username="root", password=None)
    another = next(c.pk for c in gold_conversations if c.pk != heldout.conversation_ref)
    review_services.conversations_delete(actor=root, conversation_ids=[another])
    untouched.refresh_from_db()
    assert untouched.uses_deleted_data


def test_the_sweep_fails_a_running_run_whose_training_worker_died(gold_conversations, trainer, settings):
    settings.CHAT_LEASE_TTL_S = 5
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    while r.info("server")["uptime_in_seconds"] < 5:  # a Redis just started: heartbeats are not back yet
        time.sleep(0.5)
    dead = services.run_start(actor=trainer, name="dead", base=BASE)
    alive = services.run_start(actor=trainer, name="alive", base=BASE, conversations=Conversation.objects.all())
    services.run_claim(run_id=dead.pk, worker="host-died-123")
    services.run_claim(run_id=alive.pk, worker="host-alive-456")
    liveness.heartbeat("host-alive-456")
    TrainingRun.objects.update(started_at=dead.created_at.replace(year=2000))  # longer ago than a lease
    try:
        assert sweep_runs() == [dead.pk]
    finally:
        liveness.gone("host-alive-456")
    dead.refresh_from_db()
    assert dead.state == State.FAILED and "training worker running it stopped" in dead.reason
    alive.refresh_from_db()
    assert alive.state == State.RUNNING


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--since", "2026-13-01"], "argument --since: '2026-13-01' is not a date: write it as YYYY-MM-DD."),
        (["--hyperparameters", "{bad"], "argument --hyperparameters: '{bad' is not JSON"),
        (["--hyperparameters", "[2]"], "argument --hyperparameters: '[2]' is not a JSON object"),
        (["--owner", "nobody"], "No user named 'nobody' (--owner): no conversation of theirs to select."),
    ],
)
def test_the_command_refuses_what_it_cannot_read_with_a_sentence(gold_conversations, tiny_base, argv, said):
    """``manage.py train_adapter``: a date, JSON or owner it cannot use is a sentence (argparse's own error, or
    CommandError), not a traceback from inside; nothing is started."""
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError) as err:
        call_command("train_adapter", "x", "--base", BASE, *argv)
    assert said in str(err.value)
    assert TrainingRun.objects.count() == 0
