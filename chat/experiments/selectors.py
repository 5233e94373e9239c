"""What people did in each arm of an A/B experiment, with Wilson 95% confidence intervals (scipy) on each rate.

Per arm: conversations, replies, thumbs up and down (per rated reply), regenerates and stops (per reply), and
Compare picks (of comparisons where the arm's model faced another, how often it was picked). A conversation
counts in the arm it was sent to, whatever the person did next (switching models included).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Exists, OuterRef, Q
from scipy.stats import binomtest

from chat.models import Comparison, Conversation, Experiment, Feedback, Message


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n``, and its Wilson 95% interval (None when n is 0)."""

    k: int
    n: int

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        if not self.n:
            return None
        ci = binomtest(self.k, self.n).proportion_ci(confidence_level=0.95, method="wilson")
        return (float(ci.low), float(ci.high))

    @property
    def percent(self) -> str:
        return f"{100 * self.value:.0f}%" if self.n else "—"

    @property
    def interval_text(self) -> str:
        low, high = self.interval or (0.0, 0.0)
        return f"95% {100 * low:.0f}–{100 * high:.0f}%"


@dataclass(frozen=True)
class ArmFigures:
    arm: str
    model: str
    conversations: int
    replies: int
    thumbs_up: Rate  # of rated replies
    regenerates: Rate  # of replies
    stops: Rate  # of replies
    picks: Rate  # of comparisons the arm's model was in

    @property
    def rates(self) -> tuple[Rate, ...]:
        """In the order the panel's table shows them."""
        return (self.thumbs_up, self.regenerates, self.stops, self.picks)


def arms(experiment: Experiment) -> list[ArmFigures]:
    """The control's figures, then the candidate's: five queries an arm whatever the size."""
    out = []
    for arm, model in (
        (Conversation.ExperimentArm.CONTROL, experiment.control),
        (Conversation.ExperimentArm.CANDIDATE, experiment.candidate),
    ):
        conversations = Conversation.objects.filter(experiment=experiment, experiment_arm=arm)
        replies = Message.objects.filter(conversation__in=conversations, role=Message.Role.ASSISTANT, supplied=False)
        counts = replies.aggregate(n=Count("id"), stopped=Count("id", filter=Q(status=Message.Status.STOPPED)))
        # A regenerate: a reply with an older reply to the same message (a Compare's second reply is not one).
        older = Message.objects.filter(
            parent_id=OuterRef("parent_id"), role=Message.Role.ASSISTANT, id__lt=OuterRef("id")
        )
        regenerated = (
            replies.filter(Exists(older)).exclude(Exists(Comparison.objects.filter(second_id=OuterRef("id")))).count()
        )
        ratings = Feedback.objects.filter(message__in=replies).aggregate(
            n=Count("id"), up=Count("id", filter=Q(rating=1))
        )
        compared = Comparison.objects.filter(prompt__conversation__in=conversations, chosen__isnull=False).filter(
            Q(first__model_name=model) | Q(second__model_name=model)
        )
        picks = compared.aggregate(n=Count("id"), won=Count("id", filter=Q(chosen__model_name=model)))
        out.append(
            ArmFigures(
                arm=arm,
                model=model,
                conversations=conversations.count(),
                replies=counts["n"],
                thumbs_up=Rate(ratings["up"], ratings["n"]),
                regenerates=Rate(regenerated, counts["n"]),
                stops=Rate(counts["stopped"], counts["n"]),
                picks=Rate(picks["won"], picks["n"]),
            )
        )
    return out
