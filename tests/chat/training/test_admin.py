"""Training runs in the panel: only staff who may train see them; the conversation list's action starts a run on
the filtered list; a queued run's page refreshes itself and cancels; a done run's page shows the evaluation
with the held-out questions and gold answers next to both answers, and showing them is audited per held-out
conversation."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from chat.models import AuditEvent, TrainingRun
from chat.training import services
from chat.worker.training import train_adapter
from tests.chat.training.conftest import BASE

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_only_staff_who_may_train_see_runs(gold_conversations, trainer, django_user_model):
    run = services.run_start(actor=trainer, name="seen", base=BASE)
    staff = django_user_model.objects.create_user(username="staff", password=None, is_staff=True)
    for url in (reverse("admin:chat_trainingrun_changelist"), reverse("admin:chat_trainingrun_change", args=[run.pk])):
        assert _client(staff).get(url).status_code == 403
        assert _client(trainer).get(url).status_code == 200


def test_the_action_starts_a_run_on_the_filtered_list(gold_conversations, trainer, reviewer_group):
    trainer.groups.add(reviewer_group)  # the conversation list is a reviewer's
    client = _client(trainer)
    url = reverse("admin:chat_conversation_changelist") + f"?model_name={BASE}"
    ids = [str(c.pk) for c in gold_conversations]
    asked = client.post(url, {"action": "train_adapter", "index": 0, "_selected_action": ids, "select_across": "1"})
    assert asked.status_code == 200 and b"Start the training run" in asked.content
    started = client.post(
        url,
        {
            "action": "train_adapter",
            "index": 0,
            "_selected_action": ids,
            "select_across": "1",
            "apply": "1",
            "name": "from-panel",
            "base": BASE,
            "rank": "4",
            "learning_rate": "0.001",
            "epochs": "",  # blank: the default
        },
    )
    run = TrainingRun.objects.get(name="from-panel")
    assert run.hyperparameters["rank"] == 4 and run.hyperparameters["learning_rate"] == 0.001
    assert run.hyperparameters.get("epochs") == settings.CHAT_TRAINING_HYPERPARAMETERS.get("epochs")
    assert started.status_code == 302 and started["Location"] == reverse("admin:chat_trainingrun_change", args=[run.pk])
    assert run.selection["filters"] == {"model_name": BASE} and run.selection["all_filtered"] is True
    assert run.examples.values("conversation_ref").distinct().count() == len(gold_conversations)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.TRAINED, actor=trainer).count() == len(gold_conversations)
    refused = client.post(
        url,
        {
            "action": "train_adapter",
            "index": 0,
            "_selected_action": ids,
            "apply": "1",
            "name": "rank-zero",
            "base": BASE,
            "rank": "0",
        },
    )
    assert refused.status_code == 200 and b"Ensure this value is greater than or equal to 1." in refused.content
    assert not TrainingRun.objects.filter(name="rank-zero").exists()


def test_a_queued_run_refreshes_and_cancels_and_a_done_run_shows_its_audited_evaluation(gold_conversations, trainer):
    client = _client(trainer)
    queued = services.run_start(actor=trainer, name="waiting", base=BASE)
    page = client.get(reverse("admin:chat_trainingrun_change", args=[queued.pk])).content.decode()
    assert 'http-equiv="refresh"' in page and "Cancel the run" in page and "No training worker is alive" in page
    assert "waiting for a training worker — as of" in page  # what it waits for, not "— — as of"
    client.post(reverse("admin:chat_trainingrun_cancel", args=[queued.pk]), {"reason": "not now"})
    queued.refresh_from_db()
    assert queued.state == TrainingRun.State.CANCELLED and queued.reason == "Cancelled by trainer: not now"
    page = client.get(reverse("admin:chat_trainingrun_change", args=[queued.pk])).content.decode()
    assert 'http-equiv="refresh"' not in page and "Cancelled by trainer: not now" in page

    done = services.run_start(actor=trainer, name="finished", base=BASE, conversations=None)
    train_adapter(done.pk)
    # A trainer who is not a reviewer sees the figures, none of the held-out words, and reads nothing audited.
    before = AuditEvent.objects.filter(action=AuditEvent.Action.OPENED_TRANSCRIPT).count()
    page = client.get(reverse("admin:chat_trainingrun_change", args=[done.pk])).content.decode()
    assert "Evaluation on 2 held-out gold answers" in page and "What is fact number" not in page
    # said hidden, not "conversation gone", and no link to a conversation page they may not open
    assert "words needs the reviewer permission" in page and "conversation gone" not in page
    assert "conversation #" not in page
    # nor the models' answers to those questions (a model often says the question again)
    done.refresh_from_db()
    rows = done.metrics["evaluation"]["rows"]
    answers = [r[side]["answer"].strip() for r in rows for side in ("candidate", "base") if r[side]["answer"].strip()]
    assert answers and not any(escape(a)[:40] in page for a in answers)
    assert page.count("<em>hidden</em>") == 2 * len(rows)
    # nor can the run list be filtered on them from its address: a yes/no oracle on each answer
    listing = reverse("admin:chat_trainingrun_changelist")
    for lookup in ("metrics__icontains", "selection__icontains"):
        assert client.get(listing, {lookup: answers[0][:6]}).status_code == 400
    assert client.get(listing, {"state__exact": "done"}).status_code == 200  # its own filters still apply
    assert AuditEvent.objects.filter(action=AuditEvent.Action.OPENED_TRANSCRIPT).count() == before
    trainer.user_permissions.add(Permission.objects.get(codename="review_conversation"))
    client = _client(type(trainer).objects.get(pk=trainer.pk))
    page = client.get(reverse("admin:chat_trainingrun_change", args=[done.pk])).content.decode()
    heldout = done.examples.filter(split="heldout")
    assert "Evaluation on 2 held-out gold answers" in page
    for example in heldout:  # each held-out question, its gold answer and both answers, with a link
        assert f"conversation #{example.conversation_ref}" in page
    assert "Fact " in page and "What is fact number" in page
    counts_pairs = done.examples.filter(kind="preference").count()
    assert f"held out: 2 · preference pairs: {counts_pairs}</td>" in page
    assert "<code>{&quot;default&quot;: &quot;every conversation of tiny-base" in page  # JSON, not a repr
    opened = AuditEvent.objects.filter(action=AuditEvent.Action.OPENED_TRANSCRIPT).order_by("pk")[before:]
    assert sorted(row.conversation_id for row in opened) == sorted(e.conversation_ref for e in heldout)
    assert {row.details["page"] for row in opened} == {"training_run"}
