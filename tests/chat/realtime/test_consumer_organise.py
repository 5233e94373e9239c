"""The sidebar's organising frames through the real consumer: pin, folder, move, archive, bulk delete, and their
refusals. Every frame received is checked against its schema (tests/helpers/support.py)."""

import pytest
from channels.db import database_sync_to_async

from chat.models import Conversation, Folder
from tests.helpers.support import connect, frames_until, run

pytestmark = pytest.mark.django_db(transaction=True)


def test_organising_frames_answer_organised_or_deleted_and_refuse_bad_fields(make_user, session_cookie):
    user = make_user()
    cookie = session_cookie(user)
    a, b, c = (Conversation.objects.create(owner=user, title=t).pk for t in "abc")
    other = Conversation.objects.create(owner=make_user("bob"), title="bob's").pk

    async def go():
        comm, connected, _ = await connect(cookie)
        assert connected
        await comm.send_json_to({"type": "pin", "conversation": a, "pinned": True})
        assert (await frames_until(comm, "organised"))[-1] == {"type": "organised", "conversations": [a]}
        await comm.send_json_to({"type": "folder", "name": "Work"})
        assert (await frames_until(comm, "organised"))[-1]["conversations"] == []
        folder = await database_sync_to_async(lambda: Folder.objects.get(owner=user).pk)()
        await comm.send_json_to({"type": "move", "conversation": b, "folder": folder})
        assert (await frames_until(comm, "organised"))[-1]["conversations"] == [b]
        await comm.send_json_to({"type": "archive", "conversations": [b, c], "archived": True})
        assert (await frames_until(comm, "organised"))[-1]["conversations"] == [b, c]
        refusals = [
            ({"type": "pin", "conversation": a, "pinned": "yes"}, "invalid_value"),
            ({"type": "archive", "conversations": [a, "2"], "archived": True}, "bad_id"),
            ({"type": "archive", "conversations": [a, other], "archived": True}, "not_found"),
            ({"type": "folder", "name": 5}, "invalid_name"),
            ({"type": "folder", "name": "Work"}, "name_taken"),
            ({"type": "folder_delete", "folder": folder + 1000}, "not_found"),
        ]
        for frame, code in refusals:
            await comm.send_json_to(frame)
            assert (await frames_until(comm, "error"))[-1]["code"] == code, frame
        await comm.send_json_to({"type": "delete_many", "conversations": [b, c]})
        gone = [(await frames_until(comm, "deleted"))[-1]["conversation"] for _ in range(2)]
        assert sorted(gone) == sorted([b, c])
        await comm.disconnect()

    run(go(), timeout=60)
    assert list(Conversation.objects.filter(owner=user).values_list("pk", "pinned", "archived_at")) == [(a, True, None)]
    assert Conversation.objects.filter(pk=other, archived_at=None).exists()
