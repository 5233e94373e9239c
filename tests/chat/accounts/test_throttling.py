"""Login throttling (django-axes): per client address — never per username alone, which would let anyone lock
anyone out — on the chat login and the admin login;
never the address a client writes in X-Forwarded-For (behind the real nginx, Daphne's --proxy-headers gives the
client's address: tests/e2e/test_nginx.py); unlock by staff in the admin or with the management command."""

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-test-password"
LIMIT = 3


@pytest.fixture(autouse=True)
def small_limit(settings):
    settings.AXES_FAILURE_LIMIT = LIMIT


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password=PASSWORD)


def log_in(client, username, password, url="/accounts/login/", **headers):
    return client.post(url, {"username": username, "password": password}, **headers)


def signed_in(response) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client.session


def is_locked(response) -> bool:
    return response.status_code == 429 and b'data-code="login_locked"' in response.content


def test_the_nth_wrong_password_locks_and_the_right_one_is_refused_until_unlocked(alice):
    client = Client()
    for n in range(1, LIMIT):
        wrong = log_in(client, "alice", "guess")
        assert wrong.status_code == 200 and b"Please enter a correct username" in wrong.content, n
    locked = log_in(client, "alice", "guess")
    assert is_locked(locked)
    assert b"Try again in 15 minutes" in locked.content  # the cool-off, said as a time to retry
    right = log_in(client, "alice", PASSWORD)
    assert is_locked(right) and "_auth_user_id" not in client.session
    # The guesser's address is locked, not alice: she signs in from her own, and her address is not locked by
    # someone else's guesses at her name.
    assert signed_in(log_in(Client(REMOTE_ADDR="10.9.9.9"), "alice", PASSWORD))
    assert is_locked(log_in(client, "alice", PASSWORD))

    call_command("axes_reset_username", "alice")
    assert signed_in(log_in(client, "alice", PASSWORD))


def test_staff_unlock_a_person_in_the_admin(alice, django_user_model):
    from axes.models import AccessAttempt

    client = Client()
    for _ in range(LIMIT):
        log_in(client, "alice", "guess")
    assert is_locked(log_in(client, "alice", PASSWORD))
    root = django_user_model.objects.create_superuser(username="root", password=PASSWORD)
    staff = Client()
    staff.force_login(root)
    attempts = list(AccessAttempt.objects.filter(username="alice").values_list("pk", flat=True))
    assert attempts
    listing = staff.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and b"alice" in listing.content
    staff.post("/admin/axes/accessattempt/", {"action": "delete_selected", "_selected_action": attempts, "post": "yes"})
    assert not AccessAttempt.objects.filter(username="alice").exists()
    assert signed_in(log_in(client, "alice", PASSWORD))


def test_an_ipv6_client_is_counted_per_64_and_its_neighbours_are_not():
    """One machine is usually given a whole IPv6 /64: counted per address it would have endless tries."""
    attacker = Client(REMOTE_ADDR="2001:db8:1:2::a")
    for name in ("carol", "dave", "erin"):
        log_in(attacker, name, "guess")
    assert is_locked(log_in(Client(REMOTE_ADDR="2001:db8:1:2:ffff::b"), "alice", PASSWORD))  # the same /64
    assert not is_locked(log_in(Client(REMOTE_ADDR="2001:db8:1:3::a"), "alice", "guess"))  # the next /64


def test_the_throttled_address_of_each_kind_of_client():
    from types import SimpleNamespace

    from chat.accounts.client_address import throttle_address

    def of(address):
        return throttle_address(SimpleNamespace(META={"REMOTE_ADDR": address} if address else {}))

    assert of("198.51.100.7") == "198.51.100.7" and of("::ffff:198.51.100.7") == "198.51.100.7"
    assert of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::" and of("2001:DB8:1:2::9") == "2001:db8:1:2::"
    assert of(None) is None and of("not-an-address") == "not-an-address"


def test_one_address_guessing_many_usernames_is_locked_and_other_addresses_are_not(alice, django_user_model):
    django_user_model.objects.create_user(username="bob", password=PASSWORD)
    attacker = Client(REMOTE_ADDR="203.0.113.5")
    for name in ("carol", "dave", "erin"):
        log_in(attacker, name, "guess")
    assert is_locked(log_in(attacker, "bob", PASSWORD))  # a right password, from the locked address
    assert signed_in(log_in(Client(REMOTE_ADDR="203.0.113.6"), "bob", PASSWORD))
    assert signed_in(log_in(Client(REMOTE_ADDR="203.0.113.7"), "alice", PASSWORD))


def test_a_forged_forwarded_header_never_moves_the_failures_to_another_address(alice, django_user_model, settings):
    """Even with TRUSTED_PROXY on: there Daphne (--proxy-headers) sets the address from the proxy's header, and
    Django still reads only the address it was given."""
    settings.TRUSTED_PROXY = True
    django_user_model.objects.create_user(username="bob", password=PASSWORD)
    client = Client(REMOTE_ADDR="192.0.2.1")
    for n, name in enumerate(("carol", "dave", "erin")):
        log_in(client, name, "guess", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")  # a new forged address each time
    assert is_locked(log_in(client, "bob", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.77"))


def test_the_admin_login_is_throttled_too(django_user_model):
    django_user_model.objects.create_superuser(username="root", password=PASSWORD)
    client = Client()
    for _ in range(LIMIT - 1):
        assert log_in(client, "root", "guess", url="/admin/login/").status_code == 200
    assert is_locked(log_in(client, "root", "guess", url="/admin/login/"))
    assert is_locked(log_in(client, "root", PASSWORD, url="/admin/login/"))
    assert is_locked(log_in(Client(), "root", PASSWORD))  # the same lock on the chat login
    call_command("axes_reset_username", "root")
    response = log_in(client, "root", PASSWORD, url="/admin/login/")
    assert response.status_code == 302 and "_auth_user_id" in client.session


def test_the_client_address_is_the_one_daphne_gives_never_the_header(settings):
    """With TRUSTED_PROXY Daphne itself puts the proxy's X-Forwarded-For into the request's address; Django
    never reads the header for it, even with the setting on, or whoever reaches Daphne could choose the address
    their failures count on. (That Daphne gets --proxy-headers exactly with TRUSTED_PROXY: tests/test_deploy.py;
    the address through the real nginx: tests/e2e/test_nginx.py.)"""
    from django.test import RequestFactory

    from chat.accounts.client_address import client_address

    settings.TRUSTED_PROXY = True
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert client_address(request) == "192.0.2.1"
