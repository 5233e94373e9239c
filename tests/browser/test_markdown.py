"""Replies as formatted, sanitised Markdown while they stream, in real Chromium against the real stack.

The bundled model does not reliably write Markdown, so these tests play the worker's part for one reply
(``ReplyPublisher``): a lease, each delta logged in the reply's stream log and published to the sockets showing
its conversation through the real channel layer, and the end through ``services.reply_finish`` — the same calls
``chat.worker.link`` and the worker make. Daphne, the consumer, its delivery and the page are the real ones.
"""

import asyncio
import json
import re
import threading

import pytest

from tests.browser.chromium import (
    CHROMIUM,
    LAUNCH_ARGS,
    SCREENSHOTS,
    new_page,
    skip_without_chromium,
    wait_until,
)

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.e2e

CODE = '''import csv


def read_rows(path):
    """Yield each row of a CSV file as a dict."""
    with open(path, newline="") as f:
        yield from csv.DictReader(f)'''

REPLY = f"""## Reading a CSV file

Use the standard library's `csv` module; see [the csv docs](https://docs.python.org/3/library/csv.html).

- open the file with `newline=""`
- wrap it in **`csv.DictReader`**
- iterate over the rows

```python
{CODE}
```

| reader | gives | streams |
|:---|:---:|---:|
| `csv.reader` | lists | yes |
| `csv.DictReader` | dicts | yes |
| `pandas.read_csv` | a DataFrame | no |

> Large files are read row by row.
"""

# Markup a model (or a person) might write; none of it may run, load, or link to a script.
XSS = [
    "<script>alert('script')</script>",
    "<img src=x onerror=alert('img')>",
    "[js link](javascript:alert('js-link'))",
    "[data link](data:text/html,<script>alert('data-link')</script>)",
    "[vb link](vbscript:msgbox('vb'))",
    "<iframe src=\"javascript:alert('iframe')\"></iframe>",
    "<style>body { display: none }</style>",
    "<b>raw bold</b>",
    "<a href=\"javascript:alert('anchor')\">anchor</a>",
    "<svg onload=\"alert('svg')\"></svg>",
    "<details open ontoggle=\"alert('details')\">x</details>",
    "![pixel](https://tracker.example/p.png?leak=secret)",
    "inline <img src=x onerror=alert('inline')> and <a href=\"javascript:alert('inline-a')\">a</a> in a sentence",
]
HOSTILE = "\n\n".join(XSS)
FORBIDDEN = "script, iframe, img, style, svg, b, details, input, form, object, embed, link, meta, [style]"


def pieces_of(text: str, size: int = 4) -> list[str]:
    """Small deltas, the size of a token or two: runs of up to ``size`` characters with their leading spaces."""
    pieces = re.findall(r"\s*\S{1,%d}|\s+" % size, text)
    assert "".join(pieces) == text
    return pieces


def long_reply(count: int = 2000) -> list[str]:
    """``count`` small deltas of a reply with headings, paragraphs, lists, code blocks and tables."""
    blocks, part = [], 0
    while True:
        part += 1
        blocks.append(
            f"## Part {part}\n\nThis part explains step {part} of the process in plain words, with "
            f"`inline_{part}` code and [a link](https://example.com/{part}).\n\n- first point of part "
            f"{part}\n- second point of part {part}\n"
        )
        if part % 4 == 0:
            blocks.append(f"```python\ndef step_{part}(x):\n    return x * {part}\n```\n")
        if part % 5 == 0:
            blocks.append(f"| step | square |\n|---|---:|\n| {part} | {part * part} |\n")
        pieces = pieces_of("\n".join(blocks))
        if len(pieces) >= count:
            return pieces[:count]


class ReplyPublisher(threading.Thread):
    """Plays the worker's part for one reply, in a thread of its own (Playwright's loop runs in the test's
    thread, and the ORM refuses calls there): a lease so the sweep leaves the reply alone, every delta logged
    then published through the channel layer, then the end through ``services.reply_finish``."""

    def __init__(
        self, conversation_id: int, message_id: int, pieces: list[str], burst: int = 20, pause_s: float = 0.01
    ):
        super().__init__(daemon=True)
        self.conversation_id, self.message_id, self.pieces = conversation_id, message_id, pieces
        self.burst, self.pause_s = burst, pause_s
        self.error = None

    def run(self):
        from django.db import connection

        from chat.models import Message
        from chat.replies import liveness, services

        try:
            liveness.heartbeat("browser-test", [self.message_id])
            asyncio.run(self._stream())
            services.reply_finish(
                message_id=self.message_id,
                content="".join(self.pieces),
                status=Message.Status.COMPLETE,
                finish_reason=Message.FinishReason.STOP,
                completion_tokens=len(self.pieces),
            )
            liveness.release(self.message_id)
        except BaseException as exc:  # reported by finish(), in the test's thread
            self.error = exc
        finally:
            connection.close()

    async def _stream(self):
        from channels import DEFAULT_CHANNEL_LAYER
        from channels.layers import channel_layers

        from chat import events
        from chat.replies import liveness, streamlog

        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        try:
            for seq, text in enumerate(self.pieces):
                await streamlog.append(self.message_id, seq, self.pieces)
                frame = events.delta_frame(self.message_id, seq, text)
                await events.send_to_conversation(self.conversation_id, frame, layer)
                if seq % self.burst == self.burst - 1:
                    await asyncio.sleep(self.pause_s)
                if seq % 200 == 199:
                    liveness.heartbeat("browser-test", [self.message_id])
        finally:
            await layer.close_pools()

    def finish(self, timeout: float = 180.0) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the reply publisher did not finish"
        if self.error is not None:
            raise self.error


def streaming_reply(make_user, session_cookie, name: str, history=()) -> dict:
    """A conversation whose newest reply is ``streaming``, as a worker leaves it when it claims the task."""
    from django.utils import timezone

    from chat.models import Conversation, Message

    user = make_user(name)
    conversation = Conversation.objects.create(owner=user, title="Markdown")
    parent = None
    for role, content in history:
        parent = Message.objects.create(conversation=conversation, parent=parent, role=role, content=content)
    prompt = Message.objects.create(conversation=conversation, parent=parent, role="user", content="Show me.")
    reply = Message.objects.create(
        conversation=conversation,
        parent=prompt,
        role="assistant",
        content="",
        status=Message.Status.STREAMING,
        started_at=timezone.now(),
    )
    return {"user": user.pk, "conversation": conversation.pk, "message": reply.pk, "cookie": session_cookie(user)}


@pytest.fixture
def code_reply(live_stack, transactional_db, make_user, session_cookie):
    return streaming_reply(make_user, session_cookie, "ines")


@pytest.fixture
def hostile_reply(live_stack, transactional_db, make_user, session_cookie):
    return streaming_reply(make_user, session_cookie, "jonas", history=[("user", HOSTILE), ("assistant", HOSTILE)])


@pytest.fixture
def long_stream(live_stack, transactional_db, make_user, session_cookie):
    return streaming_reply(make_user, session_cookie, "karl")


@pytest.fixture
def browser(live_stack, transactional_db):
    """``open_chat(reply, **context_options)``: a signed-in page on the reply's conversation, after the page
    has subscribed to it. Each page records its dialogs and the frames its socket received (checked against
    chat/frames.py); script errors and CSP violations fail the test."""
    from chat.frames import check_frame

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        errors = []

        def open_chat(reply, **context_options):
            context_options.setdefault("viewport", {"width": 1200, "height": 800})
            page = new_page(chromium, live_stack.origin, errors, cookie=reply["cookie"], **context_options)
            page.dialogs, page.frames_in = [], []
            page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))

            def on_frame(payload):
                frame = json.loads(payload)
                try:
                    check_frame(frame)
                except Exception as exc:  # an event handler's exception would be lost: fail at the end
                    errors.append(f"frame {frame} does not match chat/frames.py: {exc}")
                page.frames_in.append(frame)

            page.frames_out = []

            def on_socket(ws):
                ws.on("framereceived", on_frame)
                ws.on("framesent", lambda payload: page.frames_out.append(json.loads(payload)))

            page.on("websocket", on_socket)
            page.goto(f"{live_stack.origin}/#{reply['conversation']}")
            expect(page.locator("#connection")).to_have_text("connected")
            expect(page.locator(".msg.user").first).to_be_visible()  # the thread is in
            wait_until(lambda: any(f["type"] == "subscribed" for f in page.frames_in), "the page subscribed", page=page)
            # Once: a second subscribe's snapshot would swallow the deltas sent between the two.
            assert [f["type"] for f in page.frames_out].count("subscribe") == 1, page.frames_out
            return page

        yield open_chat
        chromium.close()
    assert errors == [], f"script errors on the page: {errors}"


def stat(page, name: str) -> float:
    return float(page.locator("#messages").get_attribute(f"data-{name}"))


def test_a_streamed_reply_renders_as_markdown_with_highlighted_code_and_copy_buttons(code_reply, browser):
    page = browser(code_reply, permissions=["clipboard-read", "clipboard-write"])
    publisher = ReplyPublisher(code_reply["conversation"], code_reply["message"], pieces_of(REPLY))
    publisher.start()
    publisher.finish()
    reply = page.locator(".msg.assistant")
    expect(reply).to_have_class("msg assistant complete")
    body = reply.locator(".body")

    expect(body.locator("h2")).to_have_text("Reading a CSV file")
    expect(body.locator("ul > li")).to_have_count(3)
    expect(body.locator("li strong code")).to_have_text("csv.DictReader")
    link = body.locator("a", has_text="the csv docs")
    expect(link).to_have_attribute("href", "https://docs.python.org/3/library/csv.html")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(body.locator("p > code").first).to_have_text("csv")
    expect(body.locator("table th")).to_have_text(["reader", "gives", "streams"])
    expect(body.locator("table tbody tr")).to_have_count(3)
    expect(body.locator("table td").nth(1)).to_have_attribute("align", "center")
    expect(body.locator("blockquote")).to_have_text("Large files are read row by row.")

    code = body.locator(".code-block code.hljs.language-python")
    expect(code).to_have_count(1)
    expect(body.locator(".code-block .code-head")).to_contain_text("python")
    assert code.locator("span.hljs-keyword").count() >= 4  # import, def, with, yield, from …
    expect(code.locator("span.hljs-string").first).to_contain_text("Yield each row")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "code-and-table.png"))
    body.locator(".code-block .copy-code").click()
    expect(body.locator(".code-block .copy-code")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == CODE
    reply.locator(".meta .copy-message").click()
    assert page.evaluate("navigator.clipboard.readText()") == REPLY  # the Markdown source, as stored

    background = page.locator("body").evaluate("e => getComputedStyle(e).backgroundColor")

    dark = browser(code_reply, color_scheme="dark")
    expect(dark.locator(".msg.assistant .code-block code.hljs")).to_have_count(1)
    dark_background = dark.locator("body").evaluate("e => getComputedStyle(e).backgroundColor")
    code_background = dark.locator(".code-block code.hljs").evaluate("e => getComputedStyle(e).backgroundColor")
    assert (background, dark_background, code_background) == (
        "rgb(246, 247, 249)",
        "rgb(13, 17, 23)",
        "rgb(13, 17, 23)",
    )
    dark.screenshot(path=str(SCREENSHOTS / "dark.png"))
    assert page.dialogs == [] and dark.dialogs == []


def test_markup_in_replies_and_in_typed_text_never_runs(hostile_reply, browser):
    page = browser(hostile_reply)
    publisher = ReplyPublisher(hostile_reply["conversation"], hostile_reply["message"], pieces_of(HOSTILE, size=3))
    publisher.start()
    # While it streams, the open tail goes through the same sanitiser: sample it as it grows.
    while publisher.is_alive():
        assert page.locator(f"#messages :is({FORBIDDEN})").count() == 0
        page.wait_for_timeout(50)
    publisher.finish()
    expect(page.locator(".msg.assistant").last).to_have_class("msg assistant complete")

    typed = "\n".join(XSS)
    page.fill("#input", typed)
    page.press("#input", "Enter")
    expect(page.locator(".msg.user")).to_have_count(3)
    expect(page.locator(".msg.user .body").last).to_have_text(typed)  # what a person typed, exactly as typed
    expect(page.locator("#stop")).to_be_visible()
    page.click("#stop")  # a worker busy prefilling the long prompt ends it at its next step
    expect(page.locator(".msg.assistant").last).to_have_class(
        re.compile(r"msg assistant (stopped|complete)"), timeout=120_000
    )

    for reply in (page.locator(".msg.assistant").first, page.locator(".msg.assistant").nth(1)):
        body = reply.locator(".body")
        expect(body).to_contain_text("<b>raw bold</b>")  # raw HTML is shown as text
        expect(body).to_contain_text("<script>alert('script')</script>")
        expect(body).to_contain_text("js link")
        expect(body.locator("a", has_text="js link")).to_have_count(0)  # the words stay, the link goes
        expect(body.locator("a", has_text="data link")).to_have_count(0)
        expect(body.locator("a", has_text="vb link")).to_have_count(0)
        expect(body.locator("a", has_text="pixel")).to_have_attribute(  # an image is a link, never loaded
            "href", "https://tracker.example/p.png?leak=secret"
        )
    expect(page.locator(".msg.user .body").first).to_have_text(HOSTILE)
    assert page.locator(f"#messages :is({FORBIDDEN})").count() == 0
    links = page.locator("#messages a")
    for i in range(links.count()):
        href = links.nth(i).get_attribute("href")
        assert href.startswith("https://"), href
        assert links.nth(i).get_attribute("rel") == "noopener noreferrer nofollow"
    page.reload()  # and again as loaded from the database
    expect(page.locator(".msg.assistant").nth(1)).to_contain_text("<b>raw bold</b>")
    assert page.locator(f"#messages :is({FORBIDDEN})").count() == 0
    assert page.dialogs == []


def test_a_2000_token_reply_renders_at_most_once_a_frame(long_stream, browser):
    page = browser(long_stream)
    pieces = long_reply(2000)
    content = "".join(pieces)
    publisher = ReplyPublisher(long_stream["conversation"], long_stream["message"], pieces)
    publisher.start()
    settled_mid_stream, scrolled_to, held = 0, None, 0
    box = page.locator("#messages")
    while publisher.is_alive():
        settled_mid_stream = max(settled_mid_stream, page.locator(".msg.assistant .md-done > *").count())
        if scrolled_to is None and box.evaluate("e => e.scrollHeight - e.clientHeight") > 1000:
            # The person scrolls up to read: following pauses.
            box.hover()
            page.mouse.wheel(0, -400)
            expect(page.locator("#jump")).to_be_visible()
            settling = [box.evaluate("e => e.scrollTop")]
            while len(settling) < 2 or settling[-1] != settling[-2]:  # a wheel scroll may glide for a moment
                page.wait_for_timeout(100)
                settling.append(box.evaluate("e => e.scrollTop"))
            scrolled_to = settling[-1]
        elif scrolled_to is not None:
            assert box.evaluate("e => e.scrollTop") == scrolled_to  # the text grows below; the view stays
            held += 1
        page.wait_for_timeout(100)
    publisher.finish()
    reply = page.locator(".msg.assistant")
    expect(reply).to_have_class("msg assistant complete")
    assert held >= 3, "the reply ended before the paused view was watched"
    assert box.evaluate("e => e.scrollHeight - e.scrollTop - e.clientHeight") > 400
    page.click("#jump")  # back to the newest text, following again
    expect(page.locator("#jump")).to_be_hidden()
    assert box.evaluate("e => e.scrollHeight - e.scrollTop - e.clientHeight") < 48
    assert reply.get_attribute("aria-live") is None and reply.get_attribute("aria-busy") == "false"

    deltas = [f for f in page.frames_in if f["type"] == "delta" and f["message"] == long_stream["message"]]
    assert [f["seq"] for f in deltas] == list(range(2000))
    assert "".join(f["text"] for f in deltas) == content
    assert stat(page, "deltas") == 2000  # each delta handed to the renderer …
    renders, full = stat(page, "frame-renders"), stat(page, "full-renders")
    longest_tail = stat(page, "max-live-chars")
    print(
        f"\n2,000-delta reply ({len(content)} characters): {renders:.0f} streaming renders, {full:.0f} whole "
        f"renders, {stat(page, 'render-ms'):.0f} ms rendering in all, the longest streaming render "
        f"{stat(page, 'max-frame-ms'):.1f} ms, longest open tail parsed in one render: {longest_tail:.0f} characters"
    )
    assert 2 <= renders <= 2000 / 4  # … but rendered at most once a frame: renders far fewer than deltas
    assert settled_mid_stream > 0  # settled blocks were kept while the reply streamed …
    assert longest_tail * 5 < len(content)  # … so no frame re-parsed the whole reply

    body = reply.locator(".body")  # and the finished reply is the whole Markdown, rendered once more
    expect(body.locator("h2")).to_have_count(len(re.findall(r"^## ", content, re.M)))
    expect(body.locator("code.hljs.language-python")).to_have_count(content.count("```python"))
    expect(body.locator("table")).to_have_count(len(re.findall(r"^\|---", content, re.M)))
    expect(body).to_contain_text("This part explains step 1 of the process")
    assert page.dialogs == []
