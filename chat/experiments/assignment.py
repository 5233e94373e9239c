"""Which arm of the running A/B experiment a new conversation joins (chat/models/loop.py, ``Experiment``).

A new chat conversation of the experiment's control model (the default) goes to the candidate instead for the
experiment's share of them. The n-th such conversation is sent to the candidate when ``floor(n * share)`` grows
at n: after any number of conversations the candidate has had its share of them to within one, every process
counting with one Redis counter (``names.experiment_counter_key``). Chance would do as well over thousands of
conversations, and worse over the first dozens, which is when staff look.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from redis.exceptions import RedisError

from chat.models import Conversation, Experiment
from chat.names import experiment_counter_key
from chat.store import client

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arm:
    """A new conversation's place: its model, and the experiment and arm it is counted in (None, "": none)."""

    model: str
    experiment: Experiment | None = None
    arm: str = ""


def running() -> Experiment | None:
    return Experiment.objects.filter(state=Experiment.State.RUNNING).first()


def arm_for_new_conversation(model: str) -> Arm:
    """Where a new chat conversation of ``model`` goes: a conversation of the control takes part (the page's
    picker preselects the default, so "picked" cannot be told from "left as it was"); Redis away: the control,
    uncounted."""
    experiment = running()
    if experiment is None or model != experiment.control:
        return Arm(model)
    try:
        n = client().incr(experiment_counter_key(experiment.pk))
    except RedisError:
        log.warning("could not count a conversation in experiment %s; it stays on the control", experiment.pk)
        return Arm(model)
    if math.floor(n * experiment.share) > math.floor((n - 1) * experiment.share):
        return Arm(experiment.candidate, experiment, Conversation.ExperimentArm.CANDIDATE)
    return Arm(model, experiment, Conversation.ExperimentArm.CONTROL)


def shown_model(conversation: Conversation) -> str:
    """The model name the person is shown for their conversation: a candidate arm's shows the control's."""
    if conversation.experiment_arm == Conversation.ExperimentArm.CANDIDATE and conversation.experiment_id:
        experiment = conversation.experiment
        # While it runs; promoted, the candidate is the default and its name no secret.
        if conversation.model_name == experiment.candidate and experiment.state == Experiment.State.RUNNING:
            return experiment.control
    return conversation.model_name


def keeps_candidate(conversation: Conversation, model: str) -> bool:
    """Whether ``model`` is the candidate an experiment sent this conversation to, and the conversation keeps it:
    while the experiment runs, and once it was promoted (the default now); an ended one sent it back to the
    control. The person keeps it for the conversation although they may not pick it."""
    return (
        conversation.experiment_arm == Conversation.ExperimentArm.CANDIDATE
        and conversation.experiment_id is not None
        and model == conversation.experiment.candidate
        and conversation.experiment.state != Experiment.State.ENDED
    )
