"""Staff's writes about A/B experiments and the default model: start, change the share, end, promote. Each is
audited (``AuditEvent``: experiment_started / _changed / _ended, model_promoted) and needs ``chat.train_model``.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from chat.accounts.selectors import may_train
from chat.errors import ChatError, ErrorCode
from chat.models import AuditEvent, Conversation, Experiment, SiteDefault
from chat.replies import catalog


def _require(actor) -> None:
    if not may_train(user=actor):
        raise ChatError(ErrorCode.FORBIDDEN, _("Only staff who may train models may run experiments and promote."))


def _share(value) -> float:
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = -1.0
    if not 0 < share <= 1:
        raise ChatError(ErrorCode.INVALID_SHARE, _("The share is a number above 0 and at most 1 (0.2 sends 1 in 5)."))
    return share


def _audit(actor, action: str, details: dict) -> None:
    AuditEvent.objects.create(actor=actor, actor_name=actor.get_username(), action=action, details=details)


@transaction.atomic
def experiment_start(*, actor, candidate: str, share) -> Experiment:
    """Send ``share`` of the new chat conversations of the default model to ``candidate`` instead, blind."""
    _require(actor)
    share = _share(share)
    control = catalog.site_default()
    model = catalog.get(candidate)
    if model is None:
        raise ChatError(
            ErrorCode.MODEL_NOT_FOUND,
            _("There is no served model or finished adapter %(candidate)r.") % {"candidate": candidate},
        )
    if model.name == control:
        raise ChatError(ErrorCode.COMPARE_SAME_MODEL, _("The candidate is already the default model."))
    if model.groups:
        # Everyone in its arm would get it, whatever their groups.
        raise ChatError(
            ErrorCode.MODEL_NOT_FOUND,
            _("%(name)s is open to some groups only: it cannot be tried on everyone.") % {"name": model.name},
        )
    try:
        with transaction.atomic():
            experiment = Experiment.objects.create(control=control, candidate=model.name, share=share, started_by=actor)
    except IntegrityError:
        raise ChatError(ErrorCode.EXPERIMENT_RUNNING, _("An experiment is already running; end it first.")) from None
    _audit(
        actor,
        AuditEvent.Action.EXPERIMENT_STARTED,
        {"experiment": experiment.pk, "control": control, "candidate": model.name, "share": share},
    )
    return experiment


def _running(experiment_id: int) -> Experiment:
    experiment = Experiment.objects.select_for_update().filter(pk=experiment_id).first()
    if experiment is None or experiment.state != Experiment.State.RUNNING:
        raise ChatError(ErrorCode.EXPERIMENT_NOT_RUNNING, _("That experiment is not running."))
    return experiment


@transaction.atomic
def experiment_set_share(*, actor, experiment_id: int, share) -> Experiment:
    """Change the share of new conversations the candidate gets (from the next one on)."""
    _require(actor)
    share = _share(share)
    experiment = _running(experiment_id)
    before, experiment.share = experiment.share, share
    experiment.save(update_fields=["share"])
    _audit(actor, AuditEvent.Action.EXPERIMENT_CHANGED, {"experiment": experiment.pk, "share": share, "was": before})
    return experiment


@transaction.atomic
def experiment_end(*, actor, experiment_id: int) -> Experiment:
    """End without promoting: no new conversation goes to the candidate, and the candidate arm's conversations
    go on with the control from their next reply."""
    _require(actor)
    experiment = _running(experiment_id)
    experiment.state, experiment.ended_at = Experiment.State.ENDED, timezone.now()
    experiment.save(update_fields=["state", "ended_at"])
    moved = Conversation.objects.filter(
        experiment=experiment, experiment_arm=Conversation.ExperimentArm.CANDIDATE, model_name=experiment.candidate
    ).update(model_name=experiment.control)
    _audit(actor, AuditEvent.Action.EXPERIMENT_ENDED, {"experiment": experiment.pk, "conversations_moved": moved})
    return experiment


@transaction.atomic
def model_promote(*, actor, model: str, experiment_id: int | None = None) -> SiteDefault:
    """Make ``model`` the site's default (new conversations, people's defaults aside); with ``experiment_id``,
    that experiment's candidate, ending it as promoted."""
    _require(actor)
    if experiment_id is not None:
        experiment = _running(experiment_id)
        model = experiment.candidate
        experiment.state, experiment.ended_at = Experiment.State.PROMOTED, timezone.now()
        experiment.save(update_fields=["state", "ended_at"])
    if catalog.get(model) is None:
        raise ChatError(
            ErrorCode.MODEL_NOT_FOUND, _("There is no served model or finished adapter %(model)r.") % {"model": model}
        )
    before = catalog.site_default()
    SiteDefault.objects.all().delete()
    row = SiteDefault.objects.create(model_name=model, promoted_by=actor)
    _audit(actor, AuditEvent.Action.MODEL_PROMOTED, {"model": model, "was": before, "experiment": experiment_id})
    return row
