"""The chat page when the network misbehaves, in real Chromium against the real stack: a socket dropped mid-reply
(back-off, resume, nothing lost or doubled), a send the server never answered (its text given back), and a new
chat whose first frames were lost (it still appears, whole)."""

import json

import pytest

from tests.browser.chromium import skip_without_chromium, wait_until

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser.people import DONE, db, open_browser  # noqa: E402

pytestmark = pytest.mark.e2e


def test_a_dropped_socket_reconnects_and_the_reply_finishes_once(patient_person, live_stack):
    """Mid-reply the network drops and the server stays away for three tries; the page backs off, comes back and
    the reply finishes once. Then a send is lost with the socket: its text comes back to the box."""
    from chat.models import Message

    sockets, refused, lose_sends = [], [], []

    def through(ws):
        if sockets and len(refused) < 3:  # the server stays away for three more tries
            refused.append(ws)
            ws.close()
            return
        server = ws.connect_to_server()

        def to_server(message):
            if lose_sends and json.loads(message)["type"] == "send":
                ws.close()  # the frame and the socket are lost together
                return
            server.send(message)

        ws.on_message(to_server)
        sockets.append(ws)

    with sync_playwright() as p:
        browser, page = open_browser(p, live_stack.origin, patient_person[1])
        page.route_web_socket("**/ws/chat/", through)
        page.goto(live_stack.origin + "/")
        expect(page.locator("#connection")).to_have_text("connected")
        page.fill("#input", "Write a long story about a lighthouse keeper and a storm.")
        page.press("#input", "Enter")
        reply = page.locator(".msg.assistant")
        expect(reply).to_have_class("msg assistant streaming")
        wait_until(lambda: len(reply.locator(".body").inner_text()) > 20, "some text arrived", page=page)
        sockets[-1].close()  # the network drops mid-reply
        seen = []

        def status():  # the waits the page announces, each shown for a second or more
            text = page.locator("#connection").inner_text()
            if text.startswith("reconnecting") and (not seen or seen[-1] != text):
                seen.append(text)
            return len(sockets) == 2 and text == "connected"

        wait_until(status, "the page reconnected", timeout=30, page=page)
        # A socket dropped at once is a failed try: each waits twice as long as the one before, and says so.
        assert seen == ["reconnecting… (in 1 s)", "reconnecting… (in 2 s)", "reconnecting… (in 4 s)"], seen
        assert len(refused) == 3
        expect(page.locator(".msg.assistant")).to_have_class("msg assistant complete", timeout=DONE)
        expect(page.locator(".msg.assistant")).to_have_count(1)
        # The page compares the text that streamed in with the stored text at the end: nothing lost or doubled.
        assert page.locator("#messages").get_attribute("data-stream-mismatches") is None
        stored = db(lambda: Message.objects.get(conversation__owner=patient_person[0], role="assistant"))
        assert stored.status == "complete" and stored.content

        lose_sends.append(True)
        page.wait_for_timeout(5000)  # the socket has been up long enough for the back-off to start again
        page.fill("#input", "Lost on the way")
        page.press("#input", "Enter")
        expect(page.locator("#input")).to_have_value("")
        expect(page.locator("#connection")).to_contain_text("reconnecting")
        expect(page.locator("#connection")).to_have_text("connected", timeout=30_000)
        expect(page.locator("#input")).to_have_value("Lost on the way")
        expect(page.locator("#error")).to_contain_text("The connection dropped before the server answered")
        assert len(sockets) == 3
        assert not db(lambda: Message.objects.filter(content="Lost on the way").exists())
        browser.close()
        assert page.errors == []


def test_a_new_chat_whose_first_frames_were_lost_still_appears(person, live_stack):
    """The network loses a new conversation's conversation and message frames; its deltas still come. The page
    reloads the list, finds the new conversation and opens it: question, reply and title all appear. Then a new
    chat loses only its conversation frame and its question's message frame: the reply's message frame (a
    conversation the list lacks) makes the page open the whole conversation, question included."""
    from chat.models import Conversation

    dropped = []
    lose = {"conversation", "user", "assistant"}  # the conversation frame, and message frames by their role

    def lossy(ws):
        server = ws.connect_to_server()

        def to_page(message):
            frame = json.loads(message)
            kind = frame["message"]["role"] if frame["type"] == "message" else frame["type"]
            if kind in lose and "seq" not in frame:
                dropped.append(frame)
                return
            ws.send(message)

        server.on_message(to_page)

    with sync_playwright() as p:
        browser, page = open_browser(p, live_stack.origin, person[1])
        page.route_web_socket("**/ws/chat/", lossy)
        page.goto(live_stack.origin + "/")
        expect(page.locator("#connection")).to_have_text("connected")
        page.fill("#input", "Name three rivers.")
        page.press("#input", "Enter")
        expect(page.locator(".msg.user .body")).to_have_text("Name three rivers.")
        expect(page.locator(".msg.assistant")).to_have_class("msg assistant complete", timeout=DONE)
        expect(page.locator("#conversations li")).to_have_count(1)
        assert [f["type"] for f in dropped[:3]] == ["conversation", "message", "message"]

        lose.discard("assistant")  # the next chat loses its conversation frame and its question's message frame
        dropped.clear()
        page.click("#new-chat")
        page.fill("#input", "Name three lakes.")
        page.press("#input", "Enter")
        expect(page.locator(".msg.user .body")).to_have_text("Name three lakes.")
        expect(page.locator(".msg.assistant")).to_have_class("msg assistant complete", timeout=DONE)
        expect(page.locator("#conversations li")).to_have_count(2)
        expect(page.locator(".msg")).to_have_count(2)
        # What was lost of the new chat (the first chat's model-made title may have been lost meanwhile too).
        newest = db(lambda: Conversation.objects.filter(owner=person[0]).latest("id").pk)
        lost = [
            f["type"] if f["type"] == "conversation" else f["message"]["role"]
            for f in dropped
            if newest == (f["conversation"]["id"] if f["type"] == "conversation" else f["message"]["conversation"])
        ]
        assert lost == ["conversation", "user"], dropped
        browser.close()
        assert page.errors == []
