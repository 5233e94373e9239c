"""Writes of the improvement loop's training runs: starting one (its examples and audit rows, then the task on the
``training`` queue), cancelling one, and the training worker's writes as the run goes (claim, record, progress,
end).

A run ends once: ``run_finish`` moves it from ``running`` (or ``queued``) to ``done``, ``failed`` or
``cancelled`` with a conditional update, so the worker's own end, a cancel and the sweep of a dead worker
(``chat/training/sweep.py``) cannot both win.
"""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from chat import names
from chat.accounts.selectors import may_train
from chat.errors import ChatError, ErrorCode
from chat.models import AuditEvent, Conversation, TrainingExample, TrainingRun
from chat.review.selectors import id_chunks
from chat.training import selectors

log = logging.getLogger(__name__)

TRAIN_PERMISSION = "chat.train_model"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,59}")
COMMAND_ACTOR = "manage.py"  # who a run started or an audit row written from the command line names
State = TrainingRun.State
QUEUE_UNREACHABLE = gettext_lazy("The training queue could not be reached; start the run again in a moment.")


def can_train(user) -> bool:
    """Whether this user may start, cancel and read training runs (``accounts.selectors.may_train``)."""
    return may_train(user=user)


def _require(actor) -> None:
    """``actor`` None: the command line (whoever runs manage.py already holds the database); else staff who
    may train."""
    if actor is not None and not can_train(actor):
        raise ChatError(ErrorCode.FORBIDDEN, _("Only staff with the train_model permission may do this."))
    if actor is None and not settings.CHAT_REVIEW_ENABLED:
        raise ChatError(ErrorCode.FORBIDDEN, _("CHAT_REVIEW_ENABLED is off: no one reads people's conversations."))


def _who(actor) -> str:
    return actor.get_username() if actor is not None else COMMAND_ACTOR


def _base_models() -> list[str]:
    return [m.name for m in settings.CHAT_SERVED_MODELS]


@transaction.atomic
def run_start(
    *,
    actor,
    name: str,
    base: str,
    conversations: QuerySet | None = None,
    selection: dict | None = None,
    hyperparameters: dict | None = None,
) -> TrainingRun:
    """Start a training run called ``name`` of the served model ``base`` on ``conversations`` (by default every
    conversation of ``base`` with a gold answer; ``selection`` records the filters that chose them).

    Picks the examples (``selectors.plan``: gold answers, a held-out share of their conversations, the training
    conversations' preference pairs; never a conversation whose API key kept no text), writes them and one
    ``trained`` audit row per conversation used, and queues the task on the ``training`` queue once committed.
    """
    _require(actor)
    name = (name or "").strip()
    if not NAME.fullmatch(name):
        raise ChatError(
            ErrorCode.INVALID_NAME,
            _(
                "A run's name is 1 to 60 letters, digits, - or _, starting with a letter or digit "
                "(it is served as <base>+<name>)."
            ),
        )
    if base not in _base_models():
        raise ChatError(
            ErrorCode.MODEL_NOT_FOUND,
            _("%(base)r is not a model served here; a run adapts one of: %(models)s.")
            % {"base": base, "models": ", ".join(_base_models())},
        )
    if TrainingRun.objects.filter(name=name).exists():
        raise ChatError(
            ErrorCode.NAME_TAKEN,
            _("A training run called %(name)r exists already; pick another name.") % {"name": name},
        )
    requested = {
        "dpo_min_pairs": settings.CHAT_TRAINING_DPO_MIN_PAIRS,
        **settings.CHAT_TRAINING_HYPERPARAMETERS,
        **(hyperparameters or {}),
    }
    seed = requested.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):  # it draws the held-out split here, before any run
        raise ChatError(
            ErrorCode.INVALID_PARAMS,
            _("The hyperparameter seed must be a whole number, not %(seed)r.") % {"seed": seed},
        )
    chosen = conversations if conversations is not None else selectors.conversations_selected(base=base)
    planned = selectors.plan(chosen, heldout_share=settings.CHAT_TRAINING_HELDOUT_SHARE, seed=seed)
    if not any(p.split == TrainingExample.Split.TRAIN and p.kind == TrainingExample.Kind.SFT for p in planned):
        raise ChatError(
            ErrorCode.NO_EXAMPLES,
            _(
                "These conversations hold too few gold answers: a run needs gold answers in two conversations at "
                "least, one to learn from and one held out to evaluate it (conversations whose API key keeps no text "
                "are never used)."
            ),
        )
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                name=name,
                base_model=base,
                started_by=actor,
                started_by_name=_who(actor),
                selection=selection
                or (
                    {"default": f"every conversation of {base} with a gold answer"}
                    if conversations is None
                    else {"given": "conversations chosen by the caller"}
                ),
                hyperparameters=requested,
            )
    except IntegrityError:  # the same name started at the same moment
        raise ChatError(
            ErrorCode.NAME_TAKEN, _("A training run called %(name)r exists already.") % {"name": name}
        ) from None
    TrainingExample.objects.bulk_create(
        [
            TrainingExample(
                run=run,
                conversation_id=p.conversation_id,
                conversation_ref=p.conversation_id,
                message_ref=p.message_id,
                split=p.split,
                kind=p.kind,
            )
            for p in planned
        ],
        batch_size=1000,
    )
    used = (
        TrainingExample.objects.filter(run=run)
        .order_by("conversation_ref", "split")
        .values("conversation_ref", "split")
        .annotate(n=Count("pk"))
    )
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                actor=actor,
                actor_name=_who(actor),
                action=AuditEvent.Action.TRAINED,
                conversation_id=row["conversation_ref"],
                details={"run": run.pk, "name": name, "split": row["split"], "examples": row["n"]},
            )
            for row in used
        ],
        batch_size=1000,
    )
    transaction.on_commit(lambda: run_dispatch(run_id=run.pk))
    return run


def run_dispatch(*, run_id: int) -> None:
    """Queue the run's task on the training queue, by name (no web process imports the training code); when the
    broker is unreachable, the run fails at once with a sentence instead of waiting forever."""
    from celery import current_app

    try:
        current_app.send_task(names.TRAIN_ADAPTER_TASK, args=[run_id], queue=names.TRAINING_QUEUE)
    except Exception as exc:
        log.warning("could not queue training run %s: %s", run_id, exc)
        run_finish(run_id=run_id, state=State.FAILED, reason=QUEUE_UNREACHABLE, only_from=(State.QUEUED,))


@transaction.atomic
def run_cancel(*, actor, run_id: int, reason: str = "") -> TrainingRun:
    """Stop a run: a queued one ends ``cancelled`` now; a running one is asked to stop, and its worker ends it
    ``cancelled`` after the step it is on (``selectors.cancel_requested``). The reason says who, and why."""
    _require(actor)
    run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
    if run is None:
        raise ChatError(ErrorCode.NOT_FOUND, _("No such training run."))
    if run.state in TrainingRun.ENDED:
        raise ChatError(ErrorCode.NOT_CANCELLABLE, _("The run has already ended (%(state)s).") % {"state": run.state})
    said = " ".join((reason or "").split())[:500]
    text = f"Cancelled by {_who(actor)}" + (f": {said}" if said else ".")
    if run.state == State.QUEUED:
        run_finish(run_id=run.pk, state=State.CANCELLED, reason=text, only_from=(State.QUEUED,))
    else:
        TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True, reason=text)
    run.refresh_from_db()
    return run


def heldout_read(*, actor, run: TrainingRun, page: str = "training_run") -> int:
    """Record that ``actor`` read a run's held-out texts (prompts, gold answers, the answers next to them): one
    ``opened_transcript`` audit row per held-out conversation, as opening each transcript would write."""
    conversation_ids = selectors.heldout_conversations(run_id=run.pk)
    for ids in id_chunks(conversation_ids):
        AuditEvent.objects.bulk_create(
            [
                AuditEvent(
                    actor=actor,
                    actor_name=_who(actor),
                    action=AuditEvent.Action.OPENED_TRANSCRIPT,
                    conversation_id=pk,
                    details={"page": page, "run": run.pk},
                )
                for pk in ids
            ]
        )
    return len(conversation_ids)


# --- the training worker's writes


def run_claim(*, run_id: int, worker: str) -> TrainingRun | None:
    """Worker side: take a queued run (``running``, this worker's); None when it is not queued any more
    (cancelled while queued, or a task delivered twice)."""
    taken = TrainingRun.objects.filter(pk=run_id, state=State.QUEUED).update(
        state=State.RUNNING, worker=worker, started_at=timezone.now(), progress={}
    )
    return TrainingRun.objects.get(pk=run_id) if taken else None


def run_record(*, run_id: int, **fields) -> None:
    """Worker side: what reproducing the run needs, once known (``base_weights_sha256``, ``library_versions``,
    the full ``hyperparameters``)."""
    allowed = {"base_weights_sha256", "library_versions", "hyperparameters"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"not a recorded field: {', '.join(sorted(unknown))}")
    TrainingRun.objects.filter(pk=run_id).update(**fields)


def run_progress(*, run_id: int, progress: dict) -> None:
    """Worker side: where a running run is (step, steps, loss, examples, seconds left)."""
    TrainingRun.objects.filter(pk=run_id, state=State.RUNNING).update(progress=progress)


def _without_erased(metrics: dict) -> dict:
    """The evaluation's answers for held-out conversations deleted while the run was going go too (as a deletion
    after the run does: ``accounts.erasure.runs_flag``); the run is then flagged by that deletion already."""
    rows = (metrics or {}).get("evaluation", {}).get("rows") or []
    asked = {row.get("conversation") for row in rows if row.get("conversation")}
    alive = set(Conversation.objects.filter(pk__in=asked).values_list("pk", flat=True)) if asked else set()
    for row in rows:
        if row.get("conversation") and row["conversation"] not in alive:
            for arm in ("candidate", "base", "default"):
                if isinstance(row.get(arm), dict):
                    row[arm].pop("answer", None)
            row["erased"] = True
    return metrics


def run_finish(
    *,
    run_id: int,
    state: str,
    reason: str = "",
    metrics: dict | None = None,
    adapter_path: str = "",
    progress: dict | None = None,
    only_from: tuple[str, ...] = (State.RUNNING,),
) -> bool:
    """End a run once (a conditional update from ``only_from``): ``done`` with its metrics and adapter, or
    ``failed``/``cancelled`` with the reason (a cancel keeps the reason staff gave when none is passed).
    False when it had already ended."""
    fields = {"state": state, "finished_at": timezone.now()}
    if reason:
        fields["reason"] = reason
    if state == State.DONE:
        fields["reason"] = ""  # a cancel asked for too late to stop it: it is done, not "cancelled by"
    if metrics is not None:
        fields["metrics"] = _without_erased(metrics)
    if adapter_path:
        fields["adapter_path"] = adapter_path
    if progress is not None:
        fields["progress"] = progress
    ended = TrainingRun.objects.filter(pk=run_id, state__in=only_from).update(**fields)
    if ended:
        log.info("training run %s %s%s", run_id, state, f": {reason}" if reason else "")
    return bool(ended)
