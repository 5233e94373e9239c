"""Two tabs of one person in real Chromium against the real stack (Daphne, Redis, a worker): a reply streams only to
the tab showing its conversation; the other tab lists the new conversation and hears that its reply ended, and
receives none of its deltas. Frames are counted, never timed."""

import json

import pytest

from tests.browser.chromium import skip_without_chromium, wait_until, watch_for_script_errors

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser.people import DONE, open_browser  # noqa: E402

pytestmark = pytest.mark.e2e


def record_frames(page):
    page.frames_in = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: page.frames_in.append(json.loads(payload))))


def test_a_reply_streams_only_to_the_tab_showing_it_and_the_other_tab_gets_its_list_frames(person, live_stack):
    with sync_playwright() as p:
        browser, first = open_browser(p, live_stack.origin, person[1])
        record_frames(first)
        first.goto(live_stack.origin + "/")
        expect(first.locator("#connection")).to_have_text("connected")
        first.fill("#input", "Name a fruit.")
        first.press("#input", "Enter")
        expect(first.locator(".msg.assistant")).to_have_class("msg assistant complete", timeout=DONE)
        shown = int(first.evaluate("location.hash.slice(1)"))

        second = first.context.new_page()
        second_errors = []
        watch_for_script_errors(second, second_errors)
        record_frames(second)
        second.goto(f"{live_stack.origin}/#{shown}")
        expect(second.locator("#connection")).to_have_text("connected")
        wait_until(lambda: any(f["type"] == "subscribed" for f in second.frames_in), "the tab subscribed", page=second)

        before = len(first.frames_in)
        first.click("#new-chat")  # the first tab shows none, then the conversation its send starts
        first.fill("#input", "Name a colour.")
        first.press("#input", "Enter")
        expect(first.locator(".msg.assistant")).to_have_class("msg assistant complete", timeout=DONE)
        later = first.frames_in[before:]
        reply = next(f["message"] for f in later if f["type"] == "done")
        ended = {"type": "activity", "conversation": None, "message": reply, "state": "ended"}

        def second_heard_the_end():
            return any({**f, "conversation": None} == ended for f in second.frames_in)

        wait_until(second_heard_the_end, "the other tab heard that the reply ended", page=second)
        expect(second.locator("#conversations li")).to_have_count(2)  # the new conversation is listed there
        second_types = [f["type"] for f in second.frames_in]
        assert "delta" not in second_types and "done" not in second_types, second.frames_in
        first_deltas = [f for f in later if f["type"] == "delta"]
        assert first_deltas and {f["message"] for f in first_deltas} == {reply}
        assert [f for f in later if f["type"] == "activity"] == []  # it shows that one: message and done
        # New chat told the server the tab shows none; the other tab heard the reply start and end.
        assert {"type": "subscribed", "conversation": None, "active": None, "actives": []} in later
        assert [f["state"] for f in second.frames_in if f["type"] == "activity"] == ["started", "ended"]

        started = next(f["message"]["conversation"] for f in later if f["type"] == "message")
        second.locator(f'#conversations li[data-id="{started}"] a').first.click()  # the other tab opens it
        expect(second.locator(".msg.assistant")).to_have_count(1)
        expect(second.locator(".msg.assistant")).to_have_class("msg assistant complete")
        browser.close()
        assert first.errors == [] and second_errors == []
