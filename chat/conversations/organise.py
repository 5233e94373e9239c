"""A person's organising of their chats: a conversation's title (their own, or the model's short one), pin,
archive, folders ("projects"), moving a conversation into one, deleting one, and bulk archive and delete from the
sidebar's select mode.

Owner-only, like every write of a person here: an id that is not the person's is answered ``not_found`` (another
person's ids get the same answer as ids that do not exist), and a list with one such id changes nothing. Writes
use ``update()``, which leaves ``updated_at`` alone: organising is not activity, so a pinned or moved chat keeps
its place by date. Pin, archive, folders and moves tell the person's tabs with one ``organised`` frame on commit
(they reload their list); a new title is a ``conversation`` frame, a deletion a ``deleted`` one. The model's
title (``conversation_title_generated``) is the worker's write, not a person's: it checks no owner, and never
replaces a title the person gave meanwhile.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from chat import events
from chat.accounts import erasure
from chat.conversations import selectors
from chat.errors import ChatError, ErrorCode
from chat.models import Conversation, Folder, lock_person
from chat.replies.services import replies_end_for_deletion
from chat.text import TITLE_CHARS, clean_text, title_from

FOLDER_NAME_CHARS = 60
MAX_SELECTED = 100  # conversations in one bulk frame: a page of the list is 30; more is not a person clicking
FOLDER_NOT_FOUND = gettext_lazy("No such folder, or it is not yours.")


def _tell(user, conversation_ids) -> None:
    ids = list(conversation_ids)
    transaction.on_commit(lambda: events.notify(user.id, events.organised_frame(ids)))


def _owned(user, conversation_ids) -> list[int]:
    """The ids, each one of the person's conversations, or ``not_found`` for all of them."""
    ids = list(dict.fromkeys(int(i) for i in conversation_ids))
    if not ids:
        raise ChatError(ErrorCode.EMPTY, _("Select at least one conversation first."))
    if len(ids) > MAX_SELECTED:
        raise ChatError(
            ErrorCode.TOO_MANY_SELECTED,
            _("Too many conversations at once: at most %(n)d.") % {"n": MAX_SELECTED},
        )
    found = set(Conversation.objects.filter(owner=user, pk__in=ids).values_list("pk", flat=True))
    if len(found) != len(ids):
        raise ChatError(ErrorCode.NOT_FOUND, _(selectors.NOT_FOUND))
    return ids


def folder_get_for_user(*, user, folder_id) -> Folder:
    try:
        return Folder.objects.get(pk=int(folder_id), owner=user)
    except (Folder.DoesNotExist, TypeError, ValueError, OverflowError):
        raise ChatError(ErrorCode.NOT_FOUND, str(FOLDER_NOT_FOUND)) from None


def conversation_pin(*, user, conversation_id: int, pinned: bool) -> None:
    """Pin a conversation on top of the list (or unpin it)."""
    with transaction.atomic():
        conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
        Conversation.objects.filter(pk=conversation.pk).update(pinned=bool(pinned))
        _tell(user, [conversation.pk])


def conversations_archive(*, user, conversation_ids, archived: bool) -> list[int]:
    """Archive conversations (out of the list, kept whole, still found by search) or bring them back. An
    archived conversation keeps its pin and folder for when it comes back."""
    with transaction.atomic():
        ids = _owned(user, conversation_ids)
        Conversation.objects.filter(owner=user, pk__in=ids).update(archived_at=timezone.now() if archived else None)
        _tell(user, ids)
    return ids


def conversations_delete(*, user, conversation_ids) -> list[int]:
    """Delete several conversations: all of them, each as Delete does (replies being written stopped first, its
    words erased wherever kept), or none when one is not the person's."""
    with transaction.atomic():
        ids = _owned(user, conversation_ids)
        for conversation_id in ids:
            conversation_delete(user=user, conversation_id=conversation_id)
    return ids


def conversation_move(*, user, conversation_id: int, folder_id: int | None) -> None:
    """Put a conversation in one of the person's folders, or (``None``) take it out."""
    with transaction.atomic():
        conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
        folder = None if folder_id is None else folder_get_for_user(user=user, folder_id=folder_id)
        Conversation.objects.filter(pk=conversation.pk).update(folder=folder)
        _tell(user, [conversation.pk])


def _folder_name(name) -> str:
    text = " ".join(clean_text(name).split())
    if not text:
        raise ChatError(ErrorCode.EMPTY, _("Give the folder a name first."))
    if len(text) > FOLDER_NAME_CHARS:
        raise ChatError(
            ErrorCode.TOO_LONG, _("The name is too long: at most %(n)d characters.") % {"n": FOLDER_NAME_CHARS}
        )
    return text


def _taken(name: str) -> ChatError:
    return ChatError(ErrorCode.NAME_TAKEN, _("You have a folder called “%(name)s” already.") % {"name": name})


def folder_save(*, user, name, folder_id: int | None = None) -> Folder:
    """Make a folder (``folder_id`` None) or rename one of the person's. Names are the person's own: unique
    among their folders whatever the case ("Work" and "work" would look like one folder twice; a folder's own
    name may change case), at most ``CHAT_MAX_FOLDERS`` folders."""
    text = _folder_name(name)
    try:
        with transaction.atomic():
            if folder_id is None:
                # Counted under the person's row lock, so two tabs creating at once cannot pass the bound together.
                lock_person(user.pk)
                if Folder.objects.filter(owner=user).count() >= settings.CHAT_MAX_FOLDERS:
                    raise ChatError(
                        ErrorCode.TOO_MANY_FOLDERS,
                        _("You have %(n)d folders, the most there may be; delete one first.")
                        % {"n": settings.CHAT_MAX_FOLDERS},
                    )
                if Folder.objects.filter(owner=user, name__iexact=text).exists():
                    raise _taken(text)
                folder = Folder.objects.create(owner=user, name=text)
            else:
                folder = folder_get_for_user(user=user, folder_id=folder_id)
                if Folder.objects.filter(owner=user, name__iexact=text).exclude(pk=folder.pk).exists():
                    raise _taken(text)
                Folder.objects.filter(pk=folder.pk).update(name=text)
                folder.name = text
            _tell(user, [])
    except IntegrityError:  # the same name made at the same moment in another tab
        raise _taken(text) from None
    return folder


def folder_delete(*, user, folder_id: int) -> list[int]:
    """Delete one of the person's folders. Its conversations are kept: they leave the folder for the plain list
    (a folder is a label, deleting it must not delete chats). Returns their ids."""
    with transaction.atomic():
        folder = folder_get_for_user(user=user, folder_id=folder_id)
        ids = list(Conversation.objects.filter(folder=folder).values_list("pk", flat=True))
        Conversation.objects.filter(folder=folder).update(folder=None)
        folder.delete()
        _tell(user, ids)
    return ids


def conversation_rename(*, user, conversation_id: int, title) -> Conversation:
    """Give a conversation the person's own title (the model's automatic title never overwrites it)."""
    text = " ".join(clean_text(title).split())
    if not text:
        raise ChatError(ErrorCode.EMPTY, _("Type a title first."))
    if len(text) > TITLE_CHARS:
        raise ChatError(
            ErrorCode.TOO_LONG,
            _("The title is too long: at most %(title_chars)s characters.") % {"title_chars": TITLE_CHARS},
        )
    with transaction.atomic():
        conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
        Conversation.objects.filter(pk=conversation.pk).update(title=text)
        conversation.title = text
        transaction.on_commit(lambda: events.notify(user.id, events.conversation_frame(conversation)))
    return conversation


def conversation_delete(*, user, conversation_id: int) -> None:
    """Delete a conversation and everything in it, and its words wherever else they are kept (stream logs and
    keys in Redis, admin-log and audit texts: ``chat/accounts/erasure.py``). A reply still being written is
    stopped first: a queued one ends now, a streaming one is told to stop (its worker finds the rows gone, ends
    quietly and clears its stream log)."""
    with transaction.atomic():
        conversation = selectors.conversation_get_for_user(user=user, conversation_id=conversation_id)
        erasure.conversations_erase([conversation.pk])  # first: it tells the replies still being written to stop
        replies_end_for_deletion(conversation_ids=[conversation.pk])
        conversation.delete()
        transaction.on_commit(lambda: events.notify(user.id, events.deleted_frame(conversation_id)))


def conversation_title_generated(*, conversation_id: int, title: str, replacing: str, cut: bool = False) -> bool:
    """Worker: store the model's short title unless the conversation was renamed (or deleted) meanwhile. An
    unusable title keeps the first words. ``cut``: the model stopped at the title's token bound, so its last word
    may be half a word ("$100,0"): it goes, and an ellipsis says the title runs on. True when stored; the owner's
    tabs get a ``conversation`` frame."""
    text = " ".join(clean_text(title).split()).strip(" \"'`*#.")
    if cut and " " in text:
        text = text.rsplit(" ", 1)[0].rstrip(" ,;:-–—\"'`*#") + "…"
    if not text:
        return False
    if len(text) > TITLE_CHARS:
        text = title_from(text)
    with transaction.atomic():
        if not Conversation.objects.filter(pk=conversation_id, title=replacing).update(title=text):
            return False
        conversation = Conversation.objects.get(pk=conversation_id)
        transaction.on_commit(lambda: events.notify(conversation.owner_id, events.conversation_frame(conversation)))
    return True
