"""The review panel's two small forms: a conversation's review, and a gold answer for a reply."""

from django import forms
from django.utils.translation import gettext_lazy as _

from chat.models import Conversation
from chat.review.services import NOTE_CHARS


class ReviewForm(forms.Form):
    state = forms.ChoiceField(choices=Conversation.ReviewState.choices)
    note = forms.CharField(required=False, max_length=NOTE_CHARS, widget=forms.Textarea(attrs={"rows": 3}))


class GoldAnswerForm(forms.Form):
    content = forms.CharField(
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 12, "cols": 90}),
        help_text=_("The answer the model should have given. Leave empty to remove it."),
    )
