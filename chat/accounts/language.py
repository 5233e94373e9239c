"""The pages' language: the person's own choice (Account page) or, without one, the browser's Accept-Language.

The choice is kept on the person's ``ChatDefaults`` row, so it follows them to every device, and carried per
browser in Django's language cookie, which ``LocaleMiddleware`` reads on every request: logging in puts the
stored choice into that cookie (one query per login, none per request, no session read for a probe), the
Account page sets both (``services.language_store``). Anonymous pages (log in, sign up) use Django's
``set_language`` view: the cookie only. A device the person is already signed in on keeps its cookie until
they change it there or log in again.

The chat socket has no request: ``language_for_scope`` reads the same cookie and header from the handshake, so
the error sentences a socket sends are in the page's language.
"""

from __future__ import annotations

from types import SimpleNamespace

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.utils import translation

from chat.accounts.selectors import stored_language


def set_language_cookie(response, language: str) -> None:
    """Carry the choice in this browser ("" forgets it: the browser's Accept-Language speaks again)."""
    if not language:
        response.delete_cookie(settings.LANGUAGE_COOKIE_NAME, path=settings.LANGUAGE_COOKIE_PATH)
        return
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )


@receiver(user_logged_in)
def _remember_language_at_login(sender, request, user, **kwargs):
    # Read once here; the middleware below writes it into the response's cookie.
    if request is not None:
        request.chat_login_language = stored_language(user)


class StoredLanguageMiddleware:
    """After a login: the person's stored language becomes this browser's cookie, and this response's language."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        language = getattr(request, "chat_login_language", "")
        if language:
            set_language_cookie(response, language)
        return response


def language_for_scope(scope) -> str:
    """The language of a socket's page: Django's own choice (cookie, then Accept-Language) from the handshake."""
    headers = dict(scope.get("headers") or [])
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    request = SimpleNamespace(COOKIES=scope.get("cookies") or {}, META={"HTTP_ACCEPT_LANGUAGE": accept})
    return translation.get_language_from_request(request)
