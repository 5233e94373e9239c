"""Events only where they are looked at (issue 23): a tab receives the reply frames of the one conversation it
shows, and list-level frames for its sidebar. Real ASGI app, real Redis channel layer, the worker's own link
publishing deltas; every assertion counts frames, none times anything."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from tests.helpers.support import connect, frames_until, run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def many(settings):
    settings.CHAT_MAX_ACTIVE_PER_USER = 8
    settings.CHAT_MAX_SOCKETS_PER_USER = 10
    settings.CHAT_FRAME_RATE = "1000/second"


@pytest.fixture
def link():
    from chat.worker.link import WorkerLink

    worker = WorkerLink()  # the worker's side, as the task uses it
    yield worker
    worker.close()


def streaming(user, content="Hi"):
    """A new conversation whose reply a worker has claimed; its stream log empty."""
    from chat.conversations import services as conversation_services
    from chat.replies import services as reply_services
    from chat.replies.streamlog import clear

    sent = conversation_services.message_send(user=user, conversation_id=None, content=content)
    reply = reply_services.reply_claim(message_id=sent.assistant_message.id)
    asyncio.run(clear(reply.id))
    return sent.conversation.id, reply.id


def stop_requested(reply_id) -> bool:
    from chat.models import Message

    return Message.objects.filter(pk=reply_id, stop_requested=True).exists()


def finish(reply_id, content):
    from chat.replies import services as reply_services

    reply_services.reply_finish(message_id=reply_id, content=content, status="complete", finish_reason="stop")


async def show(comm, conversation_id):
    await comm.send_json_to({"type": "subscribe", "conversation": conversation_id})
    return await frames_until(comm, "subscribed")


async def stream(link, conversation_id, reply_id, pieces):
    for seq in range(len(pieces)):
        await asyncio.to_thread(link.delta, conversation_id, reply_id, seq, pieces)


async def frames_until_count(comm, kind, count, limit=200):
    """Frames until ``count`` frames of ``kind`` have come."""
    got = []
    while sum(f["type"] == kind for f in got) < count:
        assert len(got) < limit, got
        got.append(await comm.receive_json_from(timeout=10))
    return got


def test_eight_tabs_each_showing_one_of_eight_replies_receive_only_their_own_deltas(
    make_user, session_cookie, many, link
):
    """One person, 8 replies at once, 8 tabs each showing a different conversation: each token reaches one tab
    (8 × 5 deliveries, not 8 × 8 × 5), and each tab hears of the other 7 replies only as their ``activity`` end."""
    user = make_user()
    chats = [streaming(user, f"question {n}") for n in range(8)]
    pieces = {reply: [f"r{n}.{i} " for i in range(5)] for n, (_, reply) in enumerate(chats)}
    cookie = session_cookie(user)

    async def go():
        tabs = [(await connect(cookie))[0] for _ in chats]
        for tab, (conversation, _) in zip(tabs, chats):
            await show(tab, conversation)
        for i in range(5):  # interleaved, as a batch of 8 decodes them
            for conversation, reply in chats:
                await asyncio.to_thread(link.delta, conversation, reply, i, pieces[reply])
        for _, reply in chats:
            await database_sync_to_async(finish)(reply, "".join(pieces[reply]))
        got = []
        for tab in tabs:
            # Its own done, and the other seven's ends: every frame published before them has come too.
            frames = await frames_until(tab, "done", 20)
            frames += await frames_until_count(tab, "activity", 7 - sum(f["type"] == "activity" for f in frames))
            assert await tab.receive_nothing(timeout=0.3)
            got.append(frames)
            await tab.disconnect()
        return got

    got = run(go(), timeout=60)
    deliveries = 0
    for frames, (conversation, reply) in zip(got, chats):
        deltas = [f for f in frames if f["type"] == "delta"]
        deliveries += len(deltas)
        assert {f["message"] for f in deltas} == {reply}
        assert "".join(f["text"] for f in deltas) == "".join(pieces[reply])
        [done] = [f for f in frames if f["type"] == "done"]
        assert (done["message"], done["conversation"]) == (reply, conversation)
        others = [f for f in frames if f["type"] == "activity"]
        assert sorted(f["message"] for f in others) == sorted(r for _, r in chats if r != reply)
        assert {f["state"] for f in others} == {"ended"}
        assert {f["type"] for f in frames} == {"delta", "done", "activity"}  # no message of another reply
    assert deliveries == 8 * 5  # one delivery per token per tab that looks at it


def test_a_tab_showing_one_conversation_gets_the_list_events_of_another_but_none_of_its_reply_frames(
    make_user, session_cookie, many, link
):
    from chat.conversations import organise

    user = make_user()
    shown, _ = streaming(user, "shown")
    other, other_reply = streaming(user, "elsewhere")
    cookie = session_cookie(user)

    async def go():
        tab, _, _ = await connect(cookie)
        await show(tab, shown)
        await stream(link, other, other_reply, ["not ", "for ", "this tab"])
        await database_sync_to_async(organise.conversation_rename)(user=user, conversation_id=other, title="Renamed")
        await database_sync_to_async(finish)(other_reply, "not for this tab")
        frames = await frames_until(tab, "activity")
        assert await tab.receive_nothing(timeout=0.3)
        await tab.disconnect()
        return frames

    assert run(go()) == [
        {"type": "conversation", "conversation": {"id": other, "title": "Renamed"}},
        {"type": "activity", "conversation": other, "message": other_reply, "state": "ended"},
    ]


def test_switching_conversations_moves_the_subscription_and_none_shows_nothing(make_user, session_cookie, many, link):
    user = make_user()
    (a, reply_a), (b, reply_b) = streaming(user, "a"), streaming(user, "b")
    cookie = session_cookie(user)

    async def go():
        tab, _, _ = await connect(cookie)
        await show(tab, a)
        await stream(link, a, reply_a, ["a0 ", "a1 "])
        first = [await tab.receive_json_from(timeout=10) for _ in range(2)]
        switched = await show(tab, b)  # b's reply so far (nothing yet), then subscribed
        await asyncio.to_thread(link.delta, a, reply_a, 2, ["a0 ", "a1 ", "a2 "])  # a: not shown any more
        await stream(link, b, reply_b, ["b0 "])
        second = await tab.receive_json_from(timeout=10)
        none = await show(tab, None)  # a new chat: no conversation shown
        await asyncio.to_thread(link.delta, b, reply_b, 1, ["b0 ", "b1 "])
        back = await show(tab, a)  # a again: its text so far from the log, then its deltas from there
        await asyncio.to_thread(link.delta, a, reply_a, 3, ["a0 ", "a1 ", "a2 ", "a3"])
        third = await tab.receive_json_from(timeout=10)
        await tab.disconnect()
        return first, switched, second, none, back, third

    first, switched, second, none, back, third = run(go())
    assert [(f["message"], f["seq"]) for f in first] == [(reply_a, 0), (reply_a, 1)]
    assert [f["type"] for f in switched] == ["message", "subscribed"] and switched[0]["message"]["id"] == reply_b
    assert (second["type"], second["message"], second["text"]) == ("delta", reply_b, "b0 ")
    assert none == [{"type": "subscribed", "conversation": None, "active": None, "actives": []}]
    snapshot = back[0]
    assert (snapshot["message"]["id"], snapshot["message"]["content"], snapshot["seq"]) == (reply_a, "a0 a1 a2 ", 2)
    assert (third["type"], third["message"], third["seq"], third["text"]) == ("delta", reply_a, 3, "a3")


def test_another_persons_conversation_cannot_be_shown_nor_heard(make_user, session_cookie, many, link):
    alice, bob = make_user("alice"), make_user("bob")
    mine, _ = streaming(alice, "mine")
    theirs, their_reply = streaming(bob, "theirs")
    cookie = session_cookie(alice)

    async def go():
        tab, _, _ = await connect(cookie)
        await show(tab, mine)
        for frame in (
            {"type": "subscribe", "conversation": theirs},
            {"type": "send", "conversation": theirs, "content": "let me in"},
        ):
            await tab.send_json_to(frame)
            refused = await tab.receive_json_from(timeout=10)
            assert (refused["type"], refused["code"]) == ("error", "not_found")
            assert refused["detail"].endswith(".")
        await stream(link, theirs, their_reply, ["secret"])
        await database_sync_to_async(finish)(their_reply, "secret")
        # Still showing its own: the next frame is the answer to showing it again, nothing of Bob's before it.
        again = await show(tab, mine)
        await tab.disconnect()
        return again

    again = run(go())
    assert [f["type"] for f in again] == ["message", "subscribed"] and again[-1]["conversation"] == mine
    assert Message.objects.filter(conversation_id=theirs).count() == 2


def test_two_tabs_showing_the_same_conversation_both_receive_each_delta_once(make_user, session_cookie, many, link):
    user = make_user()
    shown, reply = streaming(user)
    elsewhere, _ = streaming(user, "elsewhere")
    cookie = session_cookie(user)
    pieces = ["one ", "two ", "three"]

    async def go():
        tabs = [(await connect(cookie))[0] for _ in range(3)]
        await show(tabs[0], shown)
        await show(tabs[1], shown)
        await show(tabs[2], elsewhere)
        await stream(link, shown, reply, pieces)
        await database_sync_to_async(finish)(reply, "".join(pieces))
        got = [await frames_until(tab, "done" if n < 2 else "activity") for n, tab in enumerate(tabs)]
        for tab in tabs:
            await tab.disconnect()
        return got

    first, second, third = run(go())
    for frames in (first, second):
        assert [(f["type"], f.get("seq")) for f in frames] == [("delta", 0), ("delta", 1), ("delta", 2), ("done", None)]
    assert third == [{"type": "activity", "conversation": shown, "message": reply, "state": "ended"}]


def test_a_new_conversation_streams_to_the_tab_that_started_it_and_only_announces_itself_elsewhere(
    make_user, session_cookie, many, link
):
    """The first frames of a new conversation go to the person's group (no tab can show it yet); its sending tab
    then joins it and gets its deltas; a tab showing another conversation gets the list's frames, no delta."""
    user = make_user()
    elsewhere, _ = streaming(user, "elsewhere")
    cookie = session_cookie(user)

    async def go():
        sender, _, _ = await connect(cookie)
        other, _, _ = await connect(cookie)
        await show(other, elsewhere)
        await sender.send_json_to({"type": "send", "conversation": None, "content": "Brand new", "client_id": "n1"})
        opened = [await sender.receive_json_from(timeout=10) for _ in range(3)]
        conversation, reply = opened[0]["conversation"]["id"], opened[2]["message"]["id"]
        await database_sync_to_async(lambda: Message.objects.filter(pk=reply).update(status="streaming"))()
        await stream(link, conversation, reply, ["fresh ", "text"])
        await database_sync_to_async(finish)(reply, "fresh text")
        streamed = await frames_until(sender, "done")
        seen = await frames_until_count(other, "activity", 2)
        assert await other.receive_nothing(timeout=0.3) and await sender.receive_nothing(timeout=0.3)
        await sender.disconnect()
        await other.disconnect()
        return opened, streamed, seen, conversation, reply

    opened, streamed, seen, conversation, reply = run(go())
    assert [f["type"] for f in opened] == ["conversation", "message", "message"]
    assert all(f["client_id"] == "n1" for f in opened)
    assert [(f["type"], f.get("text")) for f in streamed] == [("delta", "fresh "), ("delta", "text"), ("done", None)]
    assert [f["type"] for f in seen] == ["conversation", "message", "message", "activity", "activity"]
    assert [f["state"] for f in seen[3:]] == ["started", "ended"] and {f["message"] for f in seen[3:]} == {reply}


def test_a_tab_that_reconnects_mid_reply_resumes_it(make_user, session_cookie, many, link):
    """The page opens a new socket and subscribes again: the text so far from the stream log, the rest live."""
    user = make_user()
    conversation, reply = streaming(user)
    cookie = session_cookie(user)
    pieces = ["a ", "b ", "c ", "d"]

    async def go():
        tab, _, _ = await connect(cookie)
        await show(tab, conversation)
        await stream(link, conversation, reply, pieces[:2])
        before = [await tab.receive_json_from(timeout=10) for _ in range(2)]
        await tab.disconnect()  # the connection drops; the reply goes on
        await asyncio.to_thread(link.delta, conversation, reply, 2, pieces)
        tab, _, _ = await connect(cookie)
        resumed = await show(tab, conversation)
        await asyncio.to_thread(link.delta, conversation, reply, 3, pieces)
        await database_sync_to_async(finish)(reply, "".join(pieces))
        after = await frames_until(tab, "done")
        await tab.disconnect()
        return before, resumed, after

    before, resumed, after = run(go())
    assert [f["seq"] for f in before] == [0, 1]
    assert (resumed[0]["message"]["content"], resumed[0]["seq"]) == ("a b c ", 2)
    assert resumed[1]["actives"] == [reply]
    assert [(f["type"], f.get("seq")) for f in after] == [("delta", 3), ("done", None)]
    assert after[-1]["content"] == "a b c d"


def test_acting_on_a_reply_of_another_conversation_shows_that_conversation(make_user, session_cookie, many, link):
    """Stop (like regenerate, continue, edit) acts on what the tab shows: the tab moves to that reply's conversation
    before the action publishes anything, so its own answer reaches it, and the conversation it left goes quiet."""
    user = make_user()
    (a, reply_a), (b, reply_b) = streaming(user, "a"), streaming(user, "b")
    cookie = session_cookie(user)

    async def go():
        tab, _, _ = await connect(cookie)
        await show(tab, a)
        await tab.send_json_to({"type": "stop", "message": reply_b})
        # The stop's last step is the stored request (after the tab moved): the worker's deltas come after it, as
        # on a real server where they come from another process (the test publishes them itself, at once).
        for _ in range(200):
            if await database_sync_to_async(stop_requested)(reply_b):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the stop was never stored")
        await stream(link, a, reply_a, ["not shown any more"])
        await stream(link, b, reply_b, ["still ", "going"])  # the worker has not seen the stop yet
        await database_sync_to_async(finish)(reply_a, "not shown any more")
        frames = await frames_until_count(tab, "delta", 2)
        ended = await tab.receive_json_from(timeout=10)
        await tab.disconnect()
        return frames, ended

    frames, ended = run(go())
    assert [(f["type"], f["message"], f["text"]) for f in frames] == [
        ("delta", reply_b, "still "),
        ("delta", reply_b, "going"),
    ]
    assert ended == {"type": "activity", "conversation": a, "message": reply_a, "state": "ended"}
