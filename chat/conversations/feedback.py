"""A person's ratings of the replies in their own conversations (thumbs and a comment): what the review panel and
the preference export read (chat/review/)."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext

from chat import events
from chat.conversations import selectors
from chat.errors import ChatError, ErrorCode
from chat.models import Feedback, Message
from chat.text import clean_text

FEEDBACK_COMMENT_CHARS = 2000


def feedback_set(*, user, message_id, rating, comment="") -> Feedback | None:
    """Rate a finished reply in one of the user's own conversations: +1 or -1 with an optional comment,
    replacing the user's earlier rating of it; 0 takes the rating back (returns None)."""
    # bool is an int in Python; a stray true must not read as a thumb up.
    if isinstance(rating, bool) or rating not in (1, -1, 0):
        raise ChatError(ErrorCode.INVALID_RATING, gettext("A rating is 1 (good) or -1 (bad), or 0 to take it back."))
    text = clean_text(comment).strip()
    if len(text) > FEEDBACK_COMMENT_CHARS:
        raise ChatError(
            ErrorCode.TOO_LONG,
            gettext("The comment is too long: at most %(feedback_comment_chars)s characters.")
            % {"feedback_comment_chars": FEEDBACK_COMMENT_CHARS},
        )
    message = selectors.message_get_for_user(user=user, message_id=message_id)
    if message.role != Message.Role.ASSISTANT:
        raise ChatError(ErrorCode.NOT_RATEABLE, gettext("Only an assistant reply can be rated."))
    if message.supplied:
        raise ChatError(
            ErrorCode.NOT_RATEABLE,
            gettext(
                "This turn was written by the program that called the API, not by the "
                "model; only the model's replies can be rated."
            ),
        )
    if message.is_active:
        raise ChatError(
            ErrorCode.NOT_RATEABLE, gettext("This reply is still being written; rate it once it has finished.")
        )
    with transaction.atomic():
        if rating == 0:
            Feedback.objects.filter(message=message, user=user).delete()
            transaction.on_commit(lambda: events.notify(user.id, events.feedback_frame(message.pk, 0, "")))
            return None
        feedback, _ = Feedback.objects.update_or_create(
            message=message, user=user, defaults={"rating": int(rating), "comment": text}
        )
        transaction.on_commit(lambda: events.notify(user.id, events.feedback_frame(message.pk, int(rating), text)))
    return feedback
