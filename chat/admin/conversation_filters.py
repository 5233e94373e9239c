"""The filters of the review panel's conversation list (chat/admin/conversations.py): by owner, by model (the
conversation's, or any of its replies'), with negative feedback, with a gold answer, with a failed or stopped
reply. A filter that looks at messages is an EXISTS per row, added to the query only when it is used."""

from __future__ import annotations

from django.db.models import Exists, OuterRef

from chat.admin.common import ModelFilter, TextFilter, YesNoFilter
from chat.models import GoldAnswer, Message


class OwnerFilter(TextFilter):
    title = "owner (username)"
    parameter_name = "owner"
    lookup = "owner__username__iexact"


class ConversationModelFilter(ModelFilter):
    """The conversation's model: the one its next reply goes to (a switch applies from the next reply)."""

    title = "model (the conversation's)"


class ReplyModelFilter(ModelFilter):
    """Conversations with a reply written by this model: one that switched models, or a Compare's second
    model, is found by either (an EXISTS per row, as the search's)."""

    title = "a reply by model"
    parameter_name = "reply_model"

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        replies = Message.objects.filter(
            conversation=OuterRef("pk"), role=Message.Role.ASSISTANT, model_name=self.value()
        )
        return queryset.filter(Exists(replies))


class NegativeFeedbackFilter(YesNoFilter):
    title = "negative feedback"
    parameter_name = "negative"
    annotation = "has_negative"


class ProblemFilter(YesNoFilter):
    title = "a failed or stopped reply"
    parameter_name = "problem"
    annotation = "has_problem"


class GoldAnswerFilter(YesNoFilter):
    """Conversations with a reviewer's gold answer on one of their replies (what a training run learns from), or
    without one: an EXISTS, not an annotation of every row."""

    title = "a gold answer"
    parameter_name = "gold"

    def queryset(self, request, queryset):
        if self.value() not in ("yes", "no"):
            return queryset
        gold = Exists(GoldAnswer.objects.filter(message__conversation=OuterRef("pk")))
        return queryset.filter(gold) if self.value() == "yes" else queryset.exclude(gold)
