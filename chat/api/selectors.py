"""Reads about API keys: a person's own, newest first."""

from __future__ import annotations


def api_keys_for_user(*, user) -> list:
    """A person's API keys, newest first (the hash stays out of the page's reach)."""
    from chat.models import ApiKey

    return list(ApiKey.objects.filter(owner=user).defer("secret_hash").order_by("-created_at", "-id"))
