"""When a person's sessions change, their open sockets hear of it at once (not only at their next timer):
a logout closes the sockets of that session, a password change makes every socket re-check its own. A login
and a logout also keep the person's session index (``chat/accounts/session_index.py``) that account deletion uses."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db import transaction
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from chat import events
from chat.accounts import session_index


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    session_index.session_indexed(user.pk, getattr(getattr(request, "session", None), "session_key", None))


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    key = getattr(getattr(request, "session", None), "session_key", None)
    if user is not None and key:
        session_index.session_unindexed(user.pk, key)
        events.notify_event(user.pk, events.session_ended_event(key))


@receiver(pre_save, sender=get_user_model())
def _remember_password(sender, instance, **kwargs):
    # A password change invalidates the person's other sessions (their session hash no longer matches).
    fields = kwargs.get("update_fields")
    if instance.pk and (fields is None or {"password", "is_active"} & set(fields)):
        old = sender.objects.filter(pk=instance.pk).values_list("password", "is_active").first()
        instance._sessions_changed = old is not None and old != (instance.password, instance.is_active)


@receiver(post_save, sender=get_user_model())
def _password_changed(sender, instance, created, **kwargs):
    if not created and getattr(instance, "_sessions_changed", False):
        # After commit: the sockets re-read the user, and must see the new password hash or is_active.
        transaction.on_commit(lambda: events.notify_event(instance.pk, events.session_ended_event("")))
