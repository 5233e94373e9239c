"""The background end of a reply whose client went away (chat/api/follow.py): it follows the reply to its done,
leaves and deletes the log; bounded; every other way it ends is logged with the reply's id, and none leaves a
task exception that nobody retrieves. Real channel layer and Redis."""

import asyncio
import logging

from chat import events
from chat.api.follow import ReplyFollower, _background
from chat.names import stream_key
from chat.replies import streamlog
from chat.store import client

CONVERSATION, REPLY = 4242, 424242
DONE = {
    "type": "done",
    "message": REPLY,
    "conversation": CONVERSATION,
    "status": "stopped",
    "finish_reason": "cancelled",
    "content": "",
    "error": "",
    "error_code": "",
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    "timing": {"ttft_ms": None, "tokens_per_s": None},
}


async def _forget(*, timeout=10.0, break_it=None, then_done=False):
    follower = ReplyFollower()
    await follower.__aenter__()
    await follower.follow(REPLY, CONVERSATION)
    if break_it:
        break_it(follower)
    task = follower.forget_once_ended(timeout)
    assert task in _background
    if then_done:  # the worker's end, as reply_finish publishes it
        await events.send_to_conversation(CONVERSATION, DONE)
    await asyncio.wait_for(asyncio.shield(task), 20)
    await asyncio.sleep(0)  # its done callback
    return follower, task


def _a_log():
    asyncio.run(streamlog.append(REPLY, 0, ["some text"]))
    assert client().exists(stream_key(REPLY))


def test_the_reply_followed_to_its_done_loses_its_log():
    _a_log()
    follower, task = asyncio.run(_forget(then_done=True))
    assert task.exception() is None and task not in _background and follower.pump.cancelled()
    assert not client().exists(stream_key(REPLY))


def test_an_error_while_following_is_logged_with_the_reply_id_and_the_log_is_left_to_expire(monkeypatch, caplog):
    _a_log()
    caplog.set_level(logging.WARNING, logger="chat.api.follow")

    def break_it(follower):
        async def broken():
            raise RuntimeError("the follower broke")

        monkeypatch.setattr(follower, "next", broken)

    follower, task = asyncio.run(_forget(break_it=break_it))
    assert task.exception() is None and task not in _background  # nothing left for "never retrieved"
    [record] = [r for r in caplog.records if "failed" in r.getMessage()]
    assert str(REPLY) in record.getMessage() and record.exc_info[0] is RuntimeError
    assert follower.pump.cancelled()  # it left the group all the same
    assert client().exists(stream_key(REPLY))  # not known to have ended: its text is not deleted early


def test_a_reply_that_does_not_end_in_time_is_logged_and_let_go(caplog):
    _a_log()
    caplog.set_level(logging.WARNING, logger="chat.api.follow")
    follower, task = asyncio.run(_forget(timeout=0.2))
    assert task.exception() is None and follower.pump.cancelled()
    assert any(str(REPLY) in r.getMessage() and "did not end in time" in r.getMessage() for r in caplog.records)
    assert client().exists(stream_key(REPLY))


def teardown_function():
    client().delete(stream_key(REPLY))
