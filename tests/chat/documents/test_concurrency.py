"""Through the real ASGI app: while one person's upload of a slow hostile PDF is being read, another person's
chat goes on (the extraction runs off the event loop, in a thread of its own)."""

import asyncio
import json

import pytest
from channels.testing import HttpCommunicator
from django.utils.crypto import get_random_string

from chat.models import Attachment, Message
from tests.helpers.documents import pdf_heavy_page
from tests.helpers.support import connect, frames_until, run

pytestmark = pytest.mark.django_db(transaction=True)


async def http_upload(cookie: str, name: str, data: bytes) -> tuple[int, dict]:
    from chatsite.asgi import application

    token = get_random_string(32)
    boundary = "----chat-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = [
        (b"host", b"localhost"),
        (b"cookie", f"{cookie}; csrftoken={token}".encode()),
        (b"x-csrftoken", token.encode()),
        (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    response = await HttpCommunicator(application, "POST", "/attachments/", body=body, headers=headers).get_response(
        timeout=120
    )
    return response["status"], json.loads(response["body"])


def test_while_one_person_uploads_a_slow_hostile_pdf_another_keeps_chatting(make_user, session_cookie):
    alice_cookie, bob_cookie = session_cookie(make_user("alice")), session_cookie(make_user("bob"))
    heavy = pdf_heavy_page(250_000)  # one page of 250,000 text operators: seconds to read, under every bound

    async def go():
        upload = asyncio.ensure_future(http_upload(alice_cookie, "heavy.pdf", heavy))
        await asyncio.sleep(1.5)  # Alice's file is being read (its reading takes several times as long)
        # Its handshake shares the process with the reading thread (the GIL): given time, as the claim here is
        # that Bob's chat does not wait for Alice's upload to end — ``chatted_meanwhile`` — not how fast it is.
        comm, connected, _ = await connect(bob_cookie, timeout=10)
        assert connected
        await comm.send_json_to({"type": "send", "conversation": None, "content": "Hello from Bob", "client_id": "b"})
        frames = await frames_until(comm, "message")
        frames += await frames_until(comm, "message")  # Bob's message, then his queued reply
        chatted_meanwhile = not upload.done()
        await comm.disconnect()
        return chatted_meanwhile, frames, await upload

    chatted_meanwhile, frames, (status, body) = run(go(), timeout=120)
    assert [f["message"]["role"] for f in frames if f["type"] == "message"] == ["user", "assistant"]
    assert chatted_meanwhile, "Bob's send waited for Alice's upload"
    # Alice gets her answer too: stored, or (on a machine slower than CHAT_ATTACHMENT_EXTRACT_S allows) a sentence.
    if status == 201:
        assert body["attachment"]["name"] == "heavy.pdf" and Attachment.objects.get().owner.username == "alice"
    else:
        assert (status, body["error"]["code"]) == (400, "file_unreadable") and not Attachment.objects.exists()
    assert Message.objects.filter(conversation__owner__username="bob").count() == 2


def test_send_names_attachments_over_the_socket_and_another_persons_id_is_refused(make_user, session_cookie):
    from chat.documents.services import attachment_upload

    alice, bob = make_user("alice"), make_user("bob")
    mine = attachment_upload(user=alice, name="notes.md", data=b"# Notes\n\nThe boat leaves at nine.")
    bobs = attachment_upload(user=bob, name="bob.txt", data=b"Bob's secret")
    cookie = session_cookie(alice)

    async def go():
        comm, connected, _ = await connect(cookie)
        assert connected
        await comm.send_json_to(
            {"type": "send", "conversation": None, "content": "Read this", "client_id": "x", "attachments": [bobs.pk]}
        )
        refused = await frames_until(comm, "error")
        await comm.send_json_to({"type": "send", "conversation": None, "content": "Read", "attachments": "1"})
        malformed = await frames_until(comm, "error")
        await comm.send_json_to(
            {"type": "send", "conversation": None, "content": "Read this", "client_id": "y", "attachments": [mine.pk]}
        )
        frames = await frames_until(comm, "message")  # every frame checked against its schema on the way
        await comm.disconnect()
        return refused[-1], malformed[-1], frames[-1]

    refused, malformed, user_frame = run(go())
    assert (refused["code"], refused["client_id"]) == ("not_found", "x")
    assert malformed["code"] == "bad_id"
    assert user_frame["message"]["attachments"] == [
        {"id": mine.pk, "name": "notes.md", "kind": "text", "size": 33, "pages": None, "passages": 1, "chars": 33}
    ]
    assert Message.objects.filter(conversation__owner=alice).count() == 2  # only the accepted send
    assert Attachment.objects.get(pk=bobs.pk).message_id is None
