"""Limits per client address, before there is a person to count against: the accounts one address makes in an
hour (``signup_hit``: each new account brings its own allowance), the sign-up forms it sends whatever they led
to (``signup_attempt_hit``), and the password reset mail asked for, per client address and per email address
(``reset_hit``). The same moving windows in Redis as a person's messages per minute (``quotas.window_hit``).

A refusal is a ``ChatError`` with a stable code and a sentence that says when to try again.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.utils.translation import ngettext
from limits import RateLimitItemPerHour

from chat.errors import ChatError, ErrorCode
from chat.limits import quotas


def signup_hit(address: str | None) -> None:
    """Count one new account made from this client address, or refuse it (``signup_rate_limited``) when it made
    CHAT_SIGNUPS_PER_HOUR in the last hour. No address (a test client without one), or 0: not limited."""
    n = settings.CHAT_SIGNUPS_PER_HOUR
    if n <= 0 or not address:
        return
    wait = quotas.window_hit(RateLimitItemPerHour(n), "signups", address)
    if wait is None:
        return
    raise ChatError(
        ErrorCode.SIGNUP_RATE_LIMITED,
        ngettext(
            "%(n)s account has been made from your address in the last hour, the most this site allows; try again "
            "in %(wait)s, or ask the site's staff for an invite link.",
            "%(n)s accounts have been made from your address in the last hour, the most this site allows; try "
            "again in %(wait)s, or ask the site's staff for an invite link.",
            n,
        )
        % {"n": n, "wait": quotas.in_words(wait)},
        retry_after=wait,
    )


def signup_attempt_hit(address: str | None) -> None:
    """Count one sign-up form sent from this client address, whatever it leads to (an account, a form sent back
    with its mistakes, an email address that has an account already), or refuse it (``signup_rate_limited``)
    when CHAT_SIGNUP_ATTEMPTS_PER_HOUR were sent in the last hour. No address, or 0: not limited."""
    n = settings.CHAT_SIGNUP_ATTEMPTS_PER_HOUR
    if n <= 0 or not address:
        return
    wait = quotas.window_hit(RateLimitItemPerHour(n), "signup-attempts", address)
    if wait is None:
        return
    raise ChatError(
        ErrorCode.SIGNUP_RATE_LIMITED,
        ngettext(
            "%(n)s sign-up form has been sent from your address in the last hour, the most this site allows; try "
            "again in %(wait)s.",
            "%(n)s sign-up forms have been sent from your address in the last hour, the most this site allows; try "
            "again in %(wait)s.",
            n,
        )
        % {"n": n, "wait": quotas.in_words(wait)},
        retry_after=wait,
    )


def reset_hit(address: str | None, email: str) -> None:
    """Count one password reset request from this client address and for this email address, or refuse it
    (``reset_rate_limited``): CHAT_RESETS_PER_HOUR from one client address, CHAT_RESETS_PER_EMAIL_PER_HOUR for one
    email address (from anywhere). Counted whether or not an account has the address, so a refusal tells nothing
    about who has one. The email address is kept in Redis as a hash only."""
    per_address, per_email = settings.CHAT_RESETS_PER_HOUR, settings.CHAT_RESETS_PER_EMAIL_PER_HOUR
    if per_address > 0 and address:
        wait = quotas.window_hit(RateLimitItemPerHour(per_address), "resets", address)
        if wait is not None:
            raise ChatError(
                ErrorCode.RESET_RATE_LIMITED,
                ngettext(
                    "%(n)s password reset has been asked for from your address in the last hour, the most this "
                    "site allows; try again in %(wait)s.",
                    "%(n)s password resets have been asked for from your address in the last hour, the most this "
                    "site allows; try again in %(wait)s.",
                    per_address,
                )
                % {"n": per_address, "wait": quotas.in_words(wait)},
                retry_after=wait,
            )
    if per_email > 0:
        digest = hashlib.sha256(email.strip().casefold().encode()).hexdigest()
        wait = quotas.window_hit(RateLimitItemPerHour(per_email), "resets-email", digest)
        if wait is not None:
            raise ChatError(
                ErrorCode.RESET_RATE_LIMITED,
                ngettext(
                    "A reset link for this email address has been asked for %(n)s time in the last hour, the most "
                    "this site sends: check the mail already sent (and its spam folder), or try again in %(wait)s.",
                    "A reset link for this email address has been asked for %(n)s times in the last hour, the most "
                    "this site sends: check the mail already sent (and its spam folder), or try again in %(wait)s.",
                    per_email,
                )
                % {"n": per_email, "wait": quotas.in_words(wait)},
                retry_after=wait,
            )
