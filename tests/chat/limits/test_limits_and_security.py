"""Hostile input and sessions: frame floods, socket caps, logouts elsewhere, CSP, inert HTML in the admin."""

import asyncio
import re

import pytest
from channels.db import database_sync_to_async

from chat.conversations import services as conversation_services
from chat.replies import services as reply_services
from tests.helpers.support import communicator as sock

pytestmark = pytest.mark.django_db(transaction=True)
HOSTILE = [
    "<svg onload=alert(1)>",
    "[x](javascript:alert(1))",
    '<a href="javascript:alert(2)">go</a>',
    '<img src="data:text/html;base64,PHNjcmlwdD5hbGVydCgzKTwvc2NyaXB0Pg==">',
    "<script>alert(4)</script>",
]


def test_a_frame_flood_is_refused_and_the_socket_recovers(make_user, session_cookie, settings):
    settings.CHAT_FRAME_RATE = "5/second"
    cookie = session_cookie(make_user())

    async def go():
        comm = sock(cookie)
        assert (await comm.connect())[0]
        for _ in range(12):
            await comm.send_to(text_data='{"type": "noop"}')
        codes = [(await comm.receive_json_from(timeout=10))["code"] for _ in range(12)]
        await asyncio.sleep(1.1)
        await comm.send_to(text_data='{"type": "noop"}')
        after = (await comm.receive_json_from(timeout=10))["code"]
        await comm.disconnect()
        return codes, after

    codes, after = asyncio.run(go())
    assert codes.count("unknown_type") == 5 and codes.count("too_many_frames") == 7
    assert after == "unknown_type"  # a second later the socket is served again


def test_the_frame_rate_is_a_persons_over_all_their_sockets_and_not_anothers(make_user, session_cookie, settings):
    """Two sockets of one person share CHAT_FRAME_RATE (ten sockets would otherwise send ten times it to the
    process's one database thread); another person's socket, at the same moment, has all of its own."""
    settings.CHAT_FRAME_RATE = "5/second"
    alice, bob = session_cookie(make_user("alice")), session_cookie(make_user("bob"))

    async def go():
        socks = [sock(alice), sock(alice), sock(bob)]
        for comm in socks:
            assert (await comm.connect())[0]
        for comm in socks:
            for _ in range(4):
                await comm.send_to(text_data='{"type": "noop"}')
        codes = [[(await comm.receive_json_from(timeout=10))["code"] for _ in range(4)] for comm in socks]
        for comm in socks:
            await comm.disconnect()
        return codes

    first, second, other = asyncio.run(go())
    # The two sockets' frames are served interleaved: which socket's frames came first is not fixed.
    assert sorted(first + second) == ["too_many_frames"] * 3 + ["unknown_type"] * 5
    assert other == ["unknown_type"] * 4


def test_each_user_has_a_cap_on_open_sockets(make_user, session_cookie, settings):
    settings.CHAT_MAX_SOCKETS_PER_USER = 2
    alice, bob = make_user("alice"), make_user("bob")
    cookie, other = session_cookie(alice), session_cookie(bob)

    async def go():
        first, second, third = sock(cookie), sock(cookie), sock(cookie)
        assert (await first.connect())[0] and (await second.connect())[0]
        await third.connect()
        refused = await third.receive_json_from(timeout=10)
        closed = await third.receive_output(timeout=10)
        bobs = sock(other)
        assert (await bobs.connect())[0]  # the cap is per user
        await first.disconnect()
        fourth = sock(cookie)
        assert (await fourth.connect())[0]  # a closed socket frees its place
        for comm in (second, fourth, bobs):
            await comm.disconnect()
        return refused, closed

    refused, closed = asyncio.run(go())
    assert refused["code"] == "too_many_sockets" and closed == {"type": "websocket.close", "code": 4429}


def test_a_socket_whose_session_ended_elsewhere_is_closed_by_its_timer(make_user, session_cookie, settings):
    """A session deleted behind the app's back (no signal): the socket's periodic check closes it, idle."""
    from django.contrib.sessions.models import Session

    settings.CHAT_SOCKET_REFRESH_S = 0.3
    cookie = session_cookie(make_user())

    async def go():
        comm = sock(cookie)
        assert (await comm.connect())[0]
        await database_sync_to_async(lambda: Session.objects.all().delete())()
        return await comm.receive_output(timeout=5)

    assert asyncio.run(go()) == {"type": "websocket.close", "code": 4401}


def test_logout_closes_that_sessions_idle_socket_at_once(make_user, settings):
    """The timer is slow (an hour here): the logout itself tells the sockets. Another session's socket stays."""
    from django.test import Client

    settings.CHAT_SOCKET_REFRESH_S = 3600
    user = make_user()
    browsers = [Client(), Client()]
    for browser in browsers:
        browser.force_login(user)
    cookies = [f"sessionid={b.cookies['sessionid'].value}" for b in browsers]

    async def go():
        leaving, staying = sock(cookies[0]), sock(cookies[1])
        assert (await leaving.connect())[0] and (await staying.connect())[0]
        await database_sync_to_async(browsers[0].post)("/accounts/logout/")
        closed = await leaving.receive_output(timeout=5)
        await staying.send_to(text_data='{"type": "noop"}')
        still = await staying.receive_json_from(timeout=5)
        await staying.disconnect()
        return closed, still

    closed, still = asyncio.run(go())
    assert closed == {"type": "websocket.close", "code": 4401}
    assert still["code"] == "unknown_type"


def test_a_password_change_closes_the_other_sessions_sockets_at_once(make_user, settings):
    from django.test import Client

    settings.CHAT_SOCKET_REFRESH_S = 3600
    user = make_user()
    browser = Client()
    browser.force_login(user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"

    def change_password():
        user.set_password("another-long-password")
        user.save()

    async def go():
        comm = sock(cookie)
        assert (await comm.connect())[0]
        await database_sync_to_async(change_password)()
        return await comm.receive_output(timeout=5)

    assert asyncio.run(go()) == {"type": "websocket.close", "code": 4401}


def test_pages_forbid_inline_script_and_framing(client, make_user):
    client.force_login(make_user())
    response = client.get("/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", response.content.decode())  # no inline script


def test_hostile_message_text_is_stored_as_typed_and_shown_escaped_in_the_admin(client, django_user_model):
    staff = django_user_model.objects.create_superuser("root", "root@example.com", "a-long-test-password")
    sent = [conversation_services.message_send(user=staff, conversation_id=None, content=text) for text in HOSTILE[:1]]
    conversation = sent[0].conversation
    for text in HOSTILE[1:]:
        reply_services.reply_finish(
            message_id=sent[-1].assistant_message.id, content=text, status="complete", finish_reason="stop"
        )
        sent.append(conversation_services.message_send(user=staff, conversation_id=conversation.id, content=text))
    client.force_login(staff)
    pages = [
        client.get(f"/admin/chat/conversation/{conversation.id}/change/").content.decode(),
        client.get("/admin/chat/message/").content.decode(),
        client.get(f"/admin/chat/message/{sent[1].assistant_message.id}/change/").content.decode(),
    ]
    for page in pages:
        assert "<svg onload" not in page and '<a href="javascript:' not in page and "<script>alert" not in page
        assert '<img src="data:' not in page
    assert "&lt;svg onload=alert(1)&gt;" in pages[0]
    api = client.get(f"/conversations/{conversation.id}/").json()
    assert api["messages"][0]["content"] == HOSTILE[0]  # stored as typed; the page renders it as text
