"""Password-reset mail is bounded per client address and per email address, and sign-up forms are counted per
client address whatever they led to: neither page is a way to send unlimited mail to someone, or to test
unlimited email addresses for an account. The windows are the ``limits`` package's moving windows in Redis, as
the messages a minute are (chat/limits/quotas.py)."""

import re

import pytest
from django.test import Client

from chat.errors import ErrorCode

pytestmark = pytest.mark.django_db

PASSWORD = "Correct-Horse-7"


@pytest.fixture(autouse=True)
def small_limits(settings):
    settings.CHAT_RESETS_PER_HOUR = 4
    settings.CHAT_RESETS_PER_EMAIL_PER_HOUR = 2
    settings.CHAT_SIGNUP_ATTEMPTS_PER_HOUR = 3


def reset(address: str, email: str):
    return Client(REMOTE_ADDR=address).post("/accounts/password_reset/", {"email": email}, follow=True)


def refused(response, code: ErrorCode) -> bool:
    return response.status_code == 429 and f'data-code="{code}"'.encode() in response.content


def refusal(response) -> str:
    """The page's sentence of refusal."""
    return re.search(r'<p class="refusal"[^>]*>(.*?)</p>', response.content.decode(), flags=re.S).group(1)


def sent(response) -> bool:
    return response.status_code == 200 and b"Check your email" in response.content


def test_reset_mail_to_one_email_address_is_bounded_from_any_client_address(django_user_model, mailoutbox):
    django_user_model.objects.create_user(username="alice", email="alice@example.com", password=PASSWORD)
    assert sent(reset("203.0.113.1", "alice@example.com"))
    assert sent(reset("203.0.113.2", "ALICE@example.com"))  # the same address, however it is written
    third = reset("203.0.113.3", "alice@example.com")
    assert refused(third, ErrorCode.RESET_RATE_LIMITED) and third.redirect_chain == []
    assert "Retry-After" in third and b"check the mail already sent" in third.content
    assert len(mailoutbox) == 2
    # An address with no account is counted and refused alike: the refusal tells nothing about who has one.
    for n in (1, 2):
        assert sent(reset(f"203.0.113.{10 + n}", "nobody@example.com"))
    nobody = reset("203.0.113.13", "nobody@example.com")
    assert refused(nobody, ErrorCode.RESET_RATE_LIMITED)
    assert refusal(nobody) == refusal(third)
    assert len(mailoutbox) == 2


def test_reset_requests_from_one_client_address_are_bounded_whatever_the_email(django_user_model, mailoutbox):
    for name in ("a", "b", "c", "d", "e"):
        django_user_model.objects.create_user(username=name, email=f"{name}@example.com", password=PASSWORD)
    for name in ("a", "b", "c", "nobody"):
        assert sent(reset("198.51.100.9", f"{name}@example.com")), name
    fifth = reset("198.51.100.9", "e@example.com")
    assert refused(fifth, ErrorCode.RESET_RATE_LIMITED) and b"from your address" in fifth.content
    assert [m.to for m in mailoutbox] == [["a@example.com"], ["b@example.com"], ["c@example.com"]]
    assert sent(reset("198.51.100.10", "e@example.com"))  # another client address is not held back
    assert len(mailoutbox) == 4


def sign_up(client, name, email):
    return client.post(
        "/accounts/signup/", {"username": name, "email": email, "password1": PASSWORD, "password2": PASSWORD}
    )


def test_sign_up_attempts_are_counted_per_client_address_not_only_the_accounts_made(django_user_model):
    """Testing email addresses for an account makes no account, so counting accounts never bounded it."""
    django_user_model.objects.create_user(username="alice", email="alice@example.com", password=PASSWORD)
    prober = Client(REMOTE_ADDR="192.0.2.50")
    exists = sign_up(prober, "x0", "alice@example.com")  # 1: no account made, the form says why
    assert exists.status_code == 200 and b"An account with this email address exists already" in exists.content
    mistaken = prober.post("/accounts/signup/", {"username": "x1", "email": "bob@example.com", "password1": "a"})
    assert mistaken.status_code == 200  # 2: a form sent back with its mistakes
    assert sign_up(prober, "carol", "carol@example.com").status_code == 302  # 3: an account made
    fourth = sign_up(Client(REMOTE_ADDR="192.0.2.50"), "x3", "alice@example.com")  # another browser, same address
    assert refused(fourth, ErrorCode.SIGNUP_RATE_LIMITED)
    assert b"exists already" not in fourth.content  # refused before the form is checked: nothing said of it
    assert b'value="x3"' in fourth.content and b"alice@example.com" in fourth.content  # what was typed is kept
    assert django_user_model.objects.count() == 2
    other = sign_up(Client(REMOTE_ADDR="192.0.2.51"), "dave", "dave@example.com")
    assert other.status_code == 302
