"""The chat page's socket keeps one handler per frame type: registering a second throws, and the first keeps
receiving its frames (it used to be replaced without a word). In real Chromium against the real stack; the test
plays the server's part for the frames it injects through Playwright's websocket route."""

import json

import pytest

from tests.browser.chromium import skip_without_chromium

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser.people import open_browser  # noqa: E402

pytestmark = pytest.mark.e2e

# Runs in the page: imports the socket module main.js imported (the same URL, so the same module instance), adds
# a handler for a frame type nobody handles, then tries a second for it, one for a type main.js already handles,
# and a second open callback. Each refusal's message is returned; "registered" would mean it went through.
REGISTER = """async () => {
  const main = document.querySelector('script[type="module"][src$="/main.js"]').src;
  const socket = await import(new URL("./socket.js", main).href);
  const tried = {};
  const attempt = (name, register) => {
    try { register(); tried[name] = "registered"; } catch (e) { tried[name] = e.message; }
  };
  socket.on("probe", (f) => { document.body.dataset.probe = (document.body.dataset.probe || "") + `first ${f.n};`; });
  attempt("second probe", () => socket.on("probe", () => { document.body.dataset.probe += "second;"; }));
  attempt("second error", () => socket.on("error", () => { document.body.dataset.probe += "error taken;"; }));
  attempt("second open", () => socket.whenOpen(() => {}));
  return tried;
}"""


def test_a_second_handler_for_a_frame_type_throws_and_the_first_still_runs(person, live_stack):
    sockets = []

    def through(ws):
        ws.connect_to_server()  # frames flow both ways as they would; the test may add its own to the page
        sockets.append(ws)

    with sync_playwright() as p:
        browser, page = open_browser(p, live_stack.origin, person[1])
        page.route_web_socket("**/ws/chat/", through)
        page.goto(live_stack.origin + "/")
        expect(page.locator("#connection")).to_have_text("connected")

        tried = page.evaluate(REGISTER)
        assert tried == {
            "second probe": 'socket.js: the "probe" frame already has a handler',
            "second error": 'socket.js: the "error" frame already has a handler',
            "second open": "socket.js: whenOpen() already has a callback",
        }

        # The first probe handler still gets its frames, and only it; the page's own error handler is still the
        # one that runs (it shows the sentence next to the input).
        sockets[-1].send(json.dumps({"type": "probe", "n": 1}))
        sockets[-1].send(json.dumps({"type": "error", "code": "probe", "detail": "A sentence from the server."}))
        expect(page.locator("#error")).to_have_text("A sentence from the server.")
        # Frames arrive in order: the error's sentence is shown, so the probe before it has been handled.
        assert page.locator("body").get_attribute("data-probe") == "first 1;"
        browser.close()
    assert page.errors == [], f"script errors on the page: {page.errors}"
