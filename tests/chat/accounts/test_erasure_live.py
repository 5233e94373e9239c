"""Account deletion on the live stack (Daphne, a Celery worker with the bundled model, Redis), where the finding
was seen: the worker went on after the person was gone — a deleted person's token counter came back seconds
later (the model's title, charged after the deletion), and a reply deleted mid-stream had its log written
again. Now nothing is charged to a deleted person and nothing of their replies stays in Redis."""

import asyncio
import re
import time

import pytest
from channels.db import database_sync_to_async

from chat.accounts import services as account_services
from chat.names import gone_key, reply_keys, reserved_key
from chat.store import client
from tests.helpers.live import recv, recv_until, send

pytestmark = pytest.mark.e2e


def wait_for_log(live_stack, pattern: str, timeout: float = 120.0) -> None:
    """Until the worker's log says ``pattern`` (a line it writes once it is done with the reply or title)."""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, live_stack.log_tail(n=200_000)):
        assert time.monotonic() < deadline, f"no {pattern!r} in the worker's log:\n{live_stack.log_tail()}"
        time.sleep(0.1)


def leftovers(user_id: int, reply_id: int) -> list[str]:
    """What Redis still holds of a deleted person: counters, reservations, the keys of their reply."""
    r = client()
    return [*r.scan_iter(f"chat:tokens:{user_id}:*"), *[k for k in (reserved_key(user_id),) if r.exists(k)]] + [
        k for k in reply_keys(reply_id) if r.exists(k)
    ]


async def first_reply(ws, content: str, **params) -> tuple[int, int]:
    """Send the first message of a new conversation; (conversation id, reply id) once the reply is queued."""
    await send(ws, {"type": "send", "conversation": None, "content": content, "params": params})
    while (frame := await recv(ws))["type"] != "message" or frame["message"]["role"] != "assistant":
        assert frame["type"] != "error", frame
    return frame["message"]["conversation"], frame["message"]["id"]


def test_a_person_deleted_once_their_reply_is_done_is_not_charged_for_its_title(chat, live_stack):
    """The finding: the reply's done, the person deletes their account, and the title the worker asks the model
    for next was charged to them: their counter came back. Now the title finds them gone and charges nothing."""
    user, ws_client = chat("titled")

    async def go():
        async with ws_client.connect() as ws:
            conversation, reply = await first_reply(ws, "Name three colours of the rainbow.", max_new_tokens=8)
            await recv_until(ws, "done", message=reply)
            await database_sync_to_async(account_services.account_delete)(user_id=user.pk)
            return conversation, reply

    conversation, reply = asyncio.run(go())
    wait_for_log(live_stack, rf"title for conversation {conversation}: ")
    assert leftovers(user.pk, reply) == []
    assert client().exists(gone_key(user.pk))


def test_a_person_deleted_mid_reply_leaves_no_log_or_counter_of_it(chat, live_stack):
    """Deleted while their reply streams: the worker is told to stop, its last deltas' log is cleared when it
    ends, and what it generated is charged to no one."""
    user, ws_client = chat("streaming")

    async def go():
        async with ws_client.connect() as ws:
            _, reply = await first_reply(ws, "Write a long story about a lighthouse keeper.", max_new_tokens=400)
            while (await recv(ws))["type"] != "delta":  # it is streaming
                pass
            await database_sync_to_async(account_services.account_delete)(user_id=user.pk)
            return reply

    reply = asyncio.run(go())
    wait_for_log(live_stack, rf"reply {reply} ended ")
    assert leftovers(user.pk, reply) == []
