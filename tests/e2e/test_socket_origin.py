"""The socket's Origin check on the live stack, as the finding was made: a page on another port or scheme of the
same host opened `/ws/chat/` with the person's cookies and renamed their conversation, where the same POST over
HTTP is refused by CSRF. Now the socket takes the origins that CSRF takes, nothing wider."""

import asyncio
import subprocess

import pytest
import websockets

from chat.models import Conversation
from chatsite import stack
from tests.helpers.live import recv, send

pytestmark = pytest.mark.e2e
TRUSTED = "https://chat.example.test"


async def rename(client, url: str, origin: str, conversation: int, title: str) -> int | dict:
    """Open ``url`` with the person's cookie and ``origin`` and rename the conversation: the frame the socket
    answers with, or the HTTP status the handshake was refused with."""
    try:
        async with websockets.connect(url, additional_headers={"Cookie": client.cookie, "Origin": origin}) as ws:
            await send(ws, {"type": "rename", "conversation": conversation, "title": title})
            return await recv(ws, 30)
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


@pytest.fixture
def trusting_daphne(live_stack):
    """A second Daphne of the live stack (same Redis, database and worker) with CSRF_TRUSTED_ORIGINS set."""
    port = stack.free_port()
    env = {**live_stack.env, "CSRF_TRUSTED_ORIGINS": TRUSTED}
    daphne = stack.start_daphne(
        port, env, stdout=open(live_stack.logs / "daphne-trusting.log", "w"), stderr=subprocess.STDOUT
    )
    yield f"ws://127.0.0.1:{port}/ws/chat/"
    stack.stop(daphne)


def test_another_port_or_scheme_is_refused_and_the_pages_own_or_a_trusted_origin_works(
    chat, live_stack, trusting_daphne
):
    user, client = chat("alice")
    conversation = Conversation.objects.create(owner=user, title="Mine").pk
    port = live_stack.port

    async def go():
        refused = {
            origin: await rename(client, live_stack.url, origin, conversation, "renamed by another page")
            for origin in (
                "http://127.0.0.1:9999",  # another port of the same host
                "http://localhost:1",
                f"http://localhost:{port}",  # the same port under another name: another origin
                f"https://127.0.0.1:{port}",  # another scheme
            )
        }
        own = await rename(client, live_stack.url, live_stack.origin, conversation, "by my own page")
        trusted = await rename(client, trusting_daphne, TRUSTED, conversation, "by a trusted origin")
        not_trusted_here = await rename(client, live_stack.url, TRUSTED, conversation, "by an untrusted origin")
        return refused, own, trusted, not_trusted_here

    refused, own, trusted, not_trusted_here = asyncio.run(go())
    assert refused == dict.fromkeys(refused, 403)
    assert own == {"type": "conversation", "conversation": {"id": conversation, "title": "by my own page"}}
    assert trusted == {"type": "conversation", "conversation": {"id": conversation, "title": "by a trusted origin"}}
    assert not_trusted_here == 403  # trusted only where CSRF_TRUSTED_ORIGINS says so
    assert Conversation.objects.get(pk=conversation).title == "by a trusted origin"
