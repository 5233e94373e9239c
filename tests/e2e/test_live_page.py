"""The live generations page on the real stack: a person's reply streams from the real worker, a reviewer sees
it on the page (over HTTP, through Daphne) with that worker's name and its tokens so far, presses Cancel, and
the person's socket gets ``done`` with status ``stopped`` and the text so far — the path of the person's Stop."""

import asyncio
import re
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookies import SimpleCookie

import pytest
from django.contrib.auth.models import Permission

from chat.models import AuditEvent, Message
from tests.browser.chromium import CHROMIUM, LAUNCH_ARGS, SCREENSHOTS
from tests.helpers.live import recv_until, send

pytestmark = pytest.mark.e2e

PAGE = "/admin/chat/livegeneration/"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Reviewer:
    """A reviewer's browser reduced to HTTP: the session cookie, the CSRF cookie the page sets, and forms."""

    def __init__(self, origin: str, session_cookie: str):
        self.origin = origin
        self.cookies = dict([session_cookie.split("=", 1)])

    def _open(self, path: str, data: dict | None = None) -> str:
        """GET (or POST ``data``), following a redirect by hand so the cookies it sets (messages) are kept."""
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(
            self.origin + path, data=body, headers={"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        )
        try:
            response = urllib.request.build_opener(_NoRedirect).open(request, timeout=30)
        except urllib.error.HTTPError as err:
            if err.code != 302:
                raise
            self._keep_cookies(err.headers)
            return self._open(err.headers["Location"])
        with response:
            self._keep_cookies(response.headers)
            return response.read().decode()

    def _keep_cookies(self, headers) -> None:
        for header in headers.get_all("Set-Cookie") or []:
            self.cookies.update({k: m.value for k, m in SimpleCookie(header).items()})

    def page(self) -> str:
        return self._open(PAGE)

    def cancel(self, page: str, message_id: int) -> str:
        """Press the row's Cancel: POST the page's cancel form (its CSRF token) to the button's formaction."""
        form = page.split('<form id="live-cancel"')[1].split("</form>")[0]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        action = re.search(rf'formaction="([^"]*/{message_id}/cancel/)"', page).group(1)
        return self._open(action, {"csrfmiddlewaretoken": token})


def row_cells(html: str, pk: int) -> dict[str, str]:
    row = html.split(f'name="_selected_action" value="{pk}"')[1].split("</tr>")[0]
    return dict(re.findall(r'<td class="field-(\w+)">([^<]*)</td>', row))


def screenshot(origin: str, session_cookie: str) -> None:
    """The live page in real Chromium (its refresh script under the site's CSP), saved as live.png."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 520})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda msg: (
                    errors.append(msg.text) if msg.type == "error" and "Content Security Policy" in msg.text else None
                ),
            )
            page.on(
                "response",
                lambda r: (
                    errors.append(f"{r.status} {r.url}")
                    if r.status >= 400 and not r.url.endswith("/favicon.ico")
                    else None
                ),
            )
            name, value = session_cookie.split("=", 1)
            page.context.add_cookies([{"name": name, "value": value, "url": origin}])
            page.goto(origin + PAGE)
            page.wait_for_selector("#result_list .field-holder")
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "live.png"))
            assert errors == [], errors
        finally:
            browser.close()


def test_a_reviewer_sees_a_streaming_reply_and_cancels_it_like_a_stop(chat, live_stack, make_user, session_cookie):
    _, person = chat("storyteller")
    reviewer = make_user("live-reviewer")
    reviewer.is_staff = True
    reviewer.save()
    reviewer.user_permissions.add(Permission.objects.get(codename="review_conversation"))
    reviewer_cookie = session_cookie(reviewer)
    http = Reviewer(live_stack.origin, reviewer_cookie)
    worker_name = f"{socket.gethostname()}-{live_stack.worker.pid}"

    def seen_with_tokens(reply_id: int) -> tuple[str, dict]:
        """The live page once the worker's heartbeat has published a token count for the reply (≤ 3 s)."""
        deadline = time.monotonic() + 20
        while True:
            page = http.page()
            cells = row_cells(page, reply_id)
            if cells["tokens"].isdigit() and int(cells["tokens"]) > 0 or time.monotonic() > deadline:
                return page, cells
            time.sleep(0.5)

    async def go():
        async with person.connect() as ws:
            await send(
                ws,
                {
                    "type": "send",
                    "conversation": None,
                    "params": {"max_new_tokens": 1000},
                    "content": "Write a very long story about a dragon who learns to bake bread.",
                },
            )
            frames = await recv_until(ws, "delta")
            reply_id = frames[-1]["message"]
            page, cells = await asyncio.to_thread(seen_with_tokens, reply_id)
            if shutil.which(CHROMIUM):
                await asyncio.to_thread(screenshot, live_stack.origin, reviewer_cookie)
            after = await asyncio.to_thread(http.cancel, page, reply_id)
            frames += await recv_until(ws, "done", message=reply_id)
            return reply_id, cells, after, frames

    reply_id, cells, after, frames = asyncio.run(go())
    assert (cells["holder"], cells["state"], cells["owner"]) == (worker_name, "streaming", "storyteller")
    assert 0 < int(cells["tokens"]) < 1000 and cells["streaming_for"].endswith(" s")
    assert f"Stopping 1 reply being streamed: #{reply_id};" in after
    done = frames[-1]
    assert (done["status"], done["finish_reason"]) == ("stopped", "cancelled")
    streamed = "".join(f["text"] for f in frames if f["type"] == "delta" and f["message"] == reply_id)
    assert done["content"] and done["content"] == streamed and done["usage"]["completion_tokens"] < 1000
    assert int(cells["tokens"]) <= done["usage"]["completion_tokens"]  # the page's figure was a real count so far
    stored = Message.objects.get(pk=reply_id)
    assert (stored.status, stored.finish_reason, stored.content) == ("stopped", "cancelled", done["content"])
    event = AuditEvent.objects.get(action=AuditEvent.Action.CANCELLED_GENERATION, message_id=reply_id)
    assert (event.actor_name, event.details["was"], event.details["outcome"]) == (
        "live-reviewer",
        "streaming",
        "stopping",
    )
    assert f'value="{reply_id}"' not in http.page()  # gone from the live page once ended
