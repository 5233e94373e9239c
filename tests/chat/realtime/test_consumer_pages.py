"""The page's frames through the real consumer: edit, switch, feedback, settings, rename, delete. Every frame
received is checked against its schema (tests/helpers/support.py)."""

import pytest
from channels.db import database_sync_to_async

from chat.models import Conversation, Feedback, Message
from chat.replies import services
from tests.helpers.support import connect, frames_until, run

pytestmark = pytest.mark.django_db(transaction=True)


def _finish(message_id, text):
    services.reply_finish(message_id=message_id, content=text, status="complete", finish_reason="stop")


finish = database_sync_to_async(_finish)


def test_edit_switch_feedback_settings_rename_delete_over_the_socket(make_user, session_cookie):
    user = make_user()
    cookie = session_cookie(user)

    async def go():
        comm, connected, _ = await connect(cookie)
        assert connected
        await comm.send_json_to({"type": "send", "conversation": None, "content": "q1", "client_id": "a"})
        got = await frames_until(comm, "message", 3)
        got += await frames_until(comm, "message", 3)
        conv, question, reply = got[0]["conversation"]["id"], got[1]["message"], got[2]["message"]
        await finish(reply["id"], "a1")
        await frames_until(comm, "done")

        await comm.send_json_to({"type": "edit", "message": question["id"], "content": "q1 edited", "client_id": "b"})
        edited = (await frames_until(comm, "message"))[-1]
        assert edited["replaces"] == question["id"] and edited["client_id"] == "b"
        assert edited["message"]["siblings"] == [question["id"], edited["message"]["id"]]
        new_reply = (await frames_until(comm, "message"))[-1]["message"]
        await finish(new_reply["id"], "b1")
        await frames_until(comm, "done")

        await comm.send_json_to({"type": "switch", "message": question["id"]})
        assert (await frames_until(comm, "thread"))[-1] == {"type": "thread", "conversation": conv}

        await comm.send_json_to({"type": "feedback", "message": reply["id"], "rating": -1, "comment": "too short"})
        fb = (await frames_until(comm, "feedback"))[-1]
        assert (fb["rating"], fb["comment"]) == (-1, "too short")
        await comm.send_json_to({"type": "feedback", "message": question["id"], "rating": 1})
        assert (await frames_until(comm, "error"))[-1]["code"] == "not_rateable"

        await comm.send_json_to(
            {"type": "settings", "conversation": conv, "system_prompt": "Brief.", "params": {"max_new_tokens": 5}}
        )
        st = (await frames_until(comm, "settings"))[-1]
        assert (st["conversation"], st["params"]) == (conv, {"max_new_tokens": 5})
        await comm.send_json_to(
            {"type": "settings", "conversation": None, "system_prompt": "", "params": {"temperature": 5}}
        )
        assert (await frames_until(comm, "error"))[-1]["code"] == "invalid_params"

        await comm.send_json_to({"type": "rename", "conversation": conv, "title": "Renamed"})
        assert (await frames_until(comm, "conversation"))[-1]["conversation"] == {"id": conv, "title": "Renamed"}
        await comm.send_json_to({"type": "delete", "conversation": conv})
        assert (await frames_until(comm, "deleted"))[-1] == {"type": "deleted", "conversation": conv}
        await comm.disconnect()
        return reply["id"]

    reply_id = run(go(), timeout=60)
    assert not Conversation.objects.filter(owner=user).exists()
    assert not Message.objects.filter(pk=reply_id).exists() and not Feedback.objects.exists()


def test_a_switch_is_refused_while_a_reply_is_written(make_user, session_cookie):
    user = make_user()
    cookie = session_cookie(user)

    async def go():
        comm, _, _ = await connect(cookie)
        await comm.send_json_to({"type": "send", "conversation": None, "content": "q1"})
        got = (await frames_until(comm, "message")) + (await frames_until(comm, "message"))
        await comm.send_json_to({"type": "switch", "message": got[1]["message"]["id"]})
        error = (await frames_until(comm, "error"))[-1]
        await comm.disconnect()
        return error

    assert run(go())["code"] == "busy"
