"""Every check of a signed-in person's password — the password change (the site's page and the admin's), account
deletion — is throttled as logins are (django-axes, per client address): a signed-in browser is no unthrottled
password oracle. Wrong passwords there count with wrong logins, and once the address is locked the right
password is refused too, with the login's lockout page."""

import pytest
from axes.models import AccessAttempt
from django.test import Client

from tests.chat.accounts.test_throttling import LIMIT, PASSWORD, is_locked, log_in, signed_in

pytestmark = pytest.mark.django_db

NEW = "Brand-New-Horse-42"


@pytest.fixture(autouse=True)
def small_limit(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT


def change(client, old, url="/accounts/password_change/"):
    return client.post(url, {"old_password": old, "new_password1": NEW, "new_password2": NEW})


def delete(client, password):
    return client.post("/accounts/delete/", {"password": password})


def browser(user, address="198.51.100.20") -> Client:
    client = Client(REMOTE_ADDR=address)
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "check, url",
    [(change, "/accounts/password_change/"), (change, "/admin/password_change/"), (delete, None)],
    ids=["password change", "admin password change", "account deletion"],
)
def test_wrong_passwords_of_a_signed_in_person_lock_like_logins(django_user_model, check, url):
    alice = django_user_model.objects.create_user(username="alice", password=PASSWORD, is_staff=url is not None)
    client = browser(alice)

    def attempt(password):
        return check(client, password, url) if url else check(client, password)

    for n in range(1, LIMIT):
        wrong = attempt("guess")
        assert wrong.status_code in (200, 400) and not is_locked(wrong), n  # the form again, saying why
    assert AccessAttempt.objects.filter(ip_address="198.51.100.20", username="alice").get().failures_since_start == (
        LIMIT - 1
    )
    assert is_locked(attempt("guess"))
    locked = attempt(PASSWORD)  # the right one, from the locked address: refused, as a login is
    assert is_locked(locked) and b"Try again in 15 minutes" in locked.content
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD) and not alice.check_password(NEW)
    assert is_locked(log_in(Client(REMOTE_ADDR="198.51.100.20"), "alice", PASSWORD))  # one count, one lock
    assert signed_in(log_in(Client(REMOTE_ADDR="198.51.100.21"), "alice", PASSWORD))  # another address is not


def test_wrong_logins_and_wrong_old_passwords_add_up(django_user_model):
    alice = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    client = browser(alice)
    for _ in range(LIMIT - 1):
        log_in(Client(REMOTE_ADDR="198.51.100.20"), "bob", "guess")
    assert is_locked(change(client, "guess"))
    assert is_locked(change(client, PASSWORD))


def test_the_right_old_password_still_changes_it(django_user_model):
    alice = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    client = browser(alice)
    assert change(client, "guess").status_code == 200
    assert change(client, PASSWORD).status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(NEW)
    assert client.get("/").status_code == 200  # this session stays signed in
