"""The hardening of issue 19 on the real stack, over HTTP through Daphne as `make run` serves it: a HEAD of a
searched review list is audited, wrong old passwords on the password change page lock the client address as
wrong logins do, and password reset mail to one address stops at its bound (the mail counted where the console
backend writes it, Daphne's output)."""

import http.client
import re
import urllib.parse
import uuid
from http.cookies import SimpleCookie

import pytest
from django.conf import settings

from chat.models import AuditEvent
from tests.chat.admin.conftest import make_chat

pytestmark = pytest.mark.e2e

PASSWORD = "a-long-test-password"  # make_user's
NEW = "Brand-New-Horse-42"


class Http:
    """A small HTTP client from one loopback address (Daphne sees it as the client's), keeping cookies."""

    def __init__(self, port: int, source: str, cookie: str = ""):
        self.port, self.source = port, source
        self.cookies = {name: morsel.value for name, morsel in SimpleCookie(cookie).items()}

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30, source_address=(self.source, 0))
        data, headers = None, {}
        if body is not None:  # a form: with the CSRF token Django checks, as a browser sends it
            token = self.cookies.get("csrftoken") or self._token(path)
            data = urllib.parse.urlencode({**body, "csrfmiddlewaretoken": token})
            headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"http://127.0.0.1:{self.port}"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        content = response.read()
        for raw in response.headers.get_all("Set-Cookie") or []:
            self.cookies.update({name: morsel.value for name, morsel in SimpleCookie(raw).items()})
        conn.close()
        return response.status, content

    def _token(self, path: str) -> str:
        """The form's page first, for its CSRF cookie."""
        status, _ = self.request("GET", path)
        assert status == 200, (path, status)
        return self.cookies["csrftoken"]


def test_a_head_of_a_searched_review_list_is_audited(live_stack, transactional_db, make_user, reviewer_group):
    from django.test import Client

    reviewer = make_user("reviewer")
    reviewer.is_staff = True
    reviewer.save()
    reviewer.groups.add(reviewer_group)
    make_chat(make_user("owner"), content="a secret {n}")
    browser = Client()
    browser.force_login(reviewer)
    client = Http(live_stack.port, "127.0.0.1", f"sessionid={browser.cookies['sessionid'].value}")
    for words in ("secret", "nothing+like+it"):
        status, body = client.request("HEAD", f"/admin/chat/conversation/?q={words}")
        assert status == 200 and body == b""
    rows = list(AuditEvent.objects.order_by("id").values_list("actor_name", "action", "details"))
    assert rows == [
        ("reviewer", "searched", {"page": "conversation", "query": "secret", "results": 1}),
        ("reviewer", "searched", {"page": "conversation", "query": "nothing like it", "results": 0}),
    ]


def test_wrong_old_passwords_lock_the_password_change_as_logins_are(
    live_stack, transactional_db, make_user, session_cookie
):
    alice = make_user("alice")
    client = Http(live_stack.port, "127.0.0.31", session_cookie(alice))
    page = "/accounts/password_change/"

    def change(old):
        return client.request("POST", page, {"old_password": old, "new_password1": NEW, "new_password2": NEW})

    for n in range(1, settings.AXES_FAILURE_LIMIT):
        status, body = change("guess")
        assert status == 200 and b"Your old password was entered incorrectly" in body, n
    status, body = change("guess")
    assert status == 429 and b'data-code="login_locked"' in body
    status, body = change(PASSWORD)  # the right one, from the locked address
    assert status == 429 and b'data-code="login_locked"' in body
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)
    login = Http(live_stack.port, "127.0.0.31")
    status, body = login.request("POST", "/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert status == 429 and b'data-code="login_locked"' in body  # the same lock as the login's


def test_reset_mail_to_one_address_stops_at_its_bound(live_stack, transactional_db, django_user_model):
    email = f"alice-{uuid.uuid4().hex[:8]}@example.com"
    django_user_model.objects.create_user(username="alice", email=email, password=PASSWORD)
    bound = settings.CHAT_RESETS_PER_EMAIL_PER_HOUR
    statuses = []
    for n in range(bound + 2):  # a new client address each time: the bound is the email address's
        status, body = Http(live_stack.port, f"127.0.0.{40 + n}").request(
            "POST", "/accounts/password_reset/", {"email": email}
        )
        statuses.append(status)
        if status == 429:
            assert b'data-code="reset_rate_limited"' in body
    assert statuses == [302] * bound + [429] * 2
    output = (live_stack.logs / "daphne.log").read_text(errors="replace")
    assert len(re.findall(rf"^To: {re.escape(email)}$", output, flags=re.M)) == bound
