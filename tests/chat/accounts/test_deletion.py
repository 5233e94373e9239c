"""Deleting a person, by themselves or by staff in the admin: their sessions go by the session index
(``chat/accounts/session_index.py``), never by reading other people's, at a cost that does not grow with the site; a
session the index lacks signs no one in; the admin's Delete and its delete_selected action do what self-service
deletion does (sessions, login records, Redis counters, open sockets closed)."""

import asyncio
import time

import pytest
from axes.models import AccessAttempt
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chat.accounts import services, session_index
from chat.limits import quotas
from chat.names import sessions_key
from chat.store import client as redis_client
from tests.chat.accounts.test_data_rights import _counters_of
from tests.helpers.support import communicator

PASSWORD = "a-long-test-password"


def browsers(user, n: int = 2) -> list[str]:
    """``n`` signed-in browsers of the person (Django's login, so the signal indexes each): their session keys."""
    keys = []
    for _ in range(n):
        browser = Client()
        browser.force_login(user)
        keys.append(browser.session.session_key)
    return keys


def session_statements(queries) -> list[str]:
    return [q["sql"] for q in queries if "django_session" in q["sql"]]


@pytest.mark.django_db
def test_deleting_a_person_deletes_their_sessions_by_key_at_a_cost_that_other_sessions_do_not_change(
    django_user_model, django_capture_on_commit_callbacks
):
    carol = django_user_model.objects.create_user(username="carol", password=PASSWORD)
    alice = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    carols, alices = browsers(carol), browsers(alice)
    assert set(session_index.session_keys(alice.pk)) >= set(alices)

    with CaptureQueriesContext(connection) as few, django_capture_on_commit_callbacks(execute=True):
        services.account_delete(user_id=carol.pk)  # two other sessions on the site: alice's
    others = [django_user_model.objects.create_user(username=f"other{n}", password=PASSWORD) for n in range(5)]
    other_sessions = [key for person in others for key in browsers(person, 10)]  # 50 sessions of 5 people
    with CaptureQueriesContext(connection) as many, django_capture_on_commit_callbacks(execute=True):
        counts = services.account_delete(user_id=alice.pk)

    assert counts["sessions"] == 2
    assert not Session.objects.filter(session_key__in=carols + alices).exists()  # both browsers, each of them
    assert Session.objects.filter(session_key__in=other_sessions).count() == 50  # the others' are untouched
    # The session table is only ever touched by key: one DELETE … WHERE session_key IN (…), never a read.
    for statements in (session_statements(few), session_statements(many)):
        assert len(statements) == 1, statements
        assert statements[0].startswith("DELETE") and '"session_key" IN' in statements[0], statements
    assert len(many) == len(few), [q["sql"] for q in many]  # 50 more sessions on the site cost nothing
    assert not redis_client().exists(sessions_key(alice.pk))


@pytest.mark.django_db
def test_a_login_indexes_its_session_a_logout_drops_it_and_old_entries_fall_out(django_user_model):
    alice = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    browser = Client()
    assert browser.post("/accounts/login/", {"username": "alice", "password": PASSWORD}).status_code == 302
    key = browser.session.session_key
    r = redis_client()
    assert key in session_index.session_keys(alice.pk)
    assert 0 < r.ttl(sessions_key(alice.pk)) <= settings.SESSION_COOKIE_AGE
    r.zadd(sessions_key(alice.pk), {"long-expired": time.time() - settings.SESSION_COOKIE_AGE - 60})
    second = Client()
    second.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    keys = session_index.session_keys(alice.pk)
    assert "long-expired" not in keys and {key, second.session.session_key} <= set(keys)
    browser.post("/accounts/logout/")
    assert key not in session_index.session_keys(alice.pk)
    assert second.session.session_key in session_index.session_keys(alice.pk)


@pytest.mark.django_db
def test_a_session_the_index_lacks_signs_no_one_in_once_the_person_is_gone(django_user_model):
    """What the index misses (a session from before it existed) stays as a row, but void: Django finds no user
    for it."""
    alice = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    browser = Client()
    browser.force_login(alice)
    assert browser.get("/").status_code == 200
    redis_client().delete(sessions_key(alice.pk))  # as before the index existed
    services.account_delete(user_id=alice.pk)
    session = SessionStore(session_key=browser.session.session_key)
    assert session.exists(session.session_key) and session[SESSION_KEY] == str(alice.pk)  # left behind
    response = browser.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def admin_delete(staff: Client, how: str, user_id: int):
    """Staff delete a person in the admin: the change page's Delete, or the list's delete_selected action,
    each confirmed as the admin's confirmation page does."""
    if how == "change page":
        return staff.post(f"/admin/auth/user/{user_id}/delete/", {"post": "yes"})
    return staff.post("/admin/auth/user/", {"action": "delete_selected", "_selected_action": [user_id], "post": "yes"})


@pytest.mark.parametrize("how", ["change page", "delete_selected"])
@pytest.mark.django_db(transaction=True)
def test_staff_deleting_a_person_in_the_admin_deletes_what_self_service_deletion_does(django_user_model, settings, how):
    settings.CHAT_SOCKET_REFRESH_S = 3600  # not the timer: the deletion tells the socket
    settings.AXES_FAILURE_LIMIT = 10
    root = django_user_model.objects.create_superuser(username="root", password=PASSWORD)
    staff = Client()
    staff.force_login(root)
    alice = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    bob = django_user_model.objects.create_user(username="bob", password=PASSWORD)
    Client().post("/accounts/login/", {"username": "alice", "password": "wrong"})  # a login record
    assert AccessAttempt.objects.filter(username="alice").exists()
    sessions = {user.pk: browsers(user) for user in (alice, bob)}
    for user in (alice, bob):
        quotas.message_hit(user.pk, quotas.allowance_for(user.pk))
        quotas.tokens_count(user.pk, 42)
    bob_counters = _counters_of(bob.pk)

    async def go():
        alices = communicator(f"sessionid={sessions[alice.pk][0]}")
        bobs = communicator(f"sessionid={sessions[bob.pk][0]}")
        assert (await alices.connect())[0] and (await bobs.connect())[0]  # each counted in Redis
        assert len(_counters_of(alice.pk)) == 4  # tokens, the minute's window, sockets, session index
        response = await database_sync_to_async(admin_delete)(staff, how, alice.pk)
        closed = await alices.receive_output(timeout=5)
        await bobs.send_to(text_data='{"type": "noop"}')
        still = await bobs.receive_json_from(timeout=5)
        await bobs.disconnect()
        return response, closed, still

    response, closed, still = asyncio.run(go())
    assert response.status_code == 302, response.content[:500]
    assert not django_user_model.objects.filter(pk=alice.pk).exists()
    assert closed == {"type": "websocket.close", "code": 4401}  # her open socket closed at once
    assert still["code"] == "unknown_type"  # bob's goes on
    assert not Session.objects.filter(session_key__in=sessions[alice.pk]).exists()
    assert not AccessAttempt.objects.filter(username="alice").exists()
    assert _counters_of(alice.pk) == []
    assert Session.objects.filter(session_key__in=sessions[bob.pk]).count() == 2
    assert _counters_of(bob.pk) == bob_counters
