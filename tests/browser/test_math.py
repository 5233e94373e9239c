"""LaTeX math in replies (static/chat/page/math.js through markdown.js), in real Chromium without the live stack.

The page here is a harness served by Playwright's router from the checkout's own files: the vendored libraries,
KaTeX's stylesheet and fonts, the page's stylesheets and the real markdown.js, under the very CSP the site sends
(built from ``settings.CONTENT_SECURITY_POLICY``), so a formula that set an inline style, an inline script or an
eval would show as a console error here as on the site. A harness module (a file, as the CSP wants) imports
markdown.js and renders a reply into a ``.msg.assistant .body`` like the chat page's.
"""

from pathlib import Path

import pytest
from django.conf import settings

from tests.browser.chromium import CHROMIUM, LAUNCH_ARGS, SCREENSHOTS, skip_without_chromium, watch_for_script_errors

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

STATIC = Path(__file__).resolve().parents[2] / "static"
ORIGIN = "http://math.test"
HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/chat/page/chat.css">
<link rel="stylesheet" href="/static/vendor/katex-0.19.1/katex.min.css">
<link rel="stylesheet" href="/static/chat/page/math.css">
</head><body><section id="messages"><div class="msg assistant"><div class="body"></div></div></section>
<script src="/static/vendor/marked-18.2.1/marked.umd.js"></script>
<script src="/static/vendor/dompurify-3.4.18/purify.min.js"></script>
<script src="/static/vendor/highlight.js-11.12.0/highlight.min.js"></script>
<script src="/static/vendor/katex-0.19.1/katex.min.js"></script>
<script type="module" src="/harness.js"></script>
</body></html>"""
HARNESS = """import { render, append } from "/static/chat/page/markdown.js";
window.renderReply = (source) => render(document.querySelector(".msg .body"), source);
window.streamReply = (source) => append(document.querySelector(".msg .body"), source);
document.body.dataset.ready = "yes";
"""
TYPES = {".js": "text/javascript", ".css": "text/css", ".woff2": "font/woff2", ".map": "application/json"}

REPLY = r"""The roots of $ax^2 + bx + c = 0$ are

$$
x = \frac{-b \pm \sqrt{b^2 - 4ac}}{2a}
$$

and Euler's identity is \(e^{i\pi} + 1 = 0\); in display form \[\sum_{n=1}^{\infty} \frac{1}{n^2} = \frac{\pi^2}{6}\]

Apples cost $5 and pears $6, a total of \$11.

Code stays code: `$x$ in a span`, and

```python
price = "$5"  # $not math$
print(f"$$ {price} $$")
```
"""

HOSTILE = r"""Links: $\href{javascript:alert('href')}{click}$ and $\url{javascript:alert('url')}$.

Classes: $\htmlClass{primary}{x}$, $\htmlId{send}{y}$, $\htmlStyle{position:fixed;inset:0}{z}$,
$\htmlData{foo=bar}{w}$ and $\includegraphics{https://tracker.example/p.png}$.

Styles KaTeX would set as attributes: $\pmb{x}$ and $\fcolorbox{red}{yellow}{boxed}$.

Broken: $\frac{1}{$ and $\undefinedcommand{x}$ and $\rule{10000em}{10000em}$.

Loops: $\def\a{\a\a}\a$ and $<img src=x onerror=alert('img')>$ and $</span><script>alert(1)</script>$.
"""


def csp_header() -> str:
    directives = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


@pytest.fixture
def harness():
    """``open(width, dark=False, **context)``: the harness page, ready, under the site's CSP."""
    csp = csp_header()
    assert "'unsafe-inline'" not in csp and "style-src 'self'" in csp  # what the test is about

    def serve(route):
        path = route.request.url.removeprefix(ORIGIN).split("?")[0]
        headers = {"Content-Security-Policy": csp}
        if path == "/":
            return route.fulfill(body=HTML, content_type="text/html", headers=headers)
        if path == "/harness.js":
            return route.fulfill(body=HARNESS, content_type="text/javascript", headers=headers)
        file = (STATIC / path.removeprefix("/static/")).resolve()
        if not path.startswith("/static/") or STATIC not in file.parents or not file.is_file():
            return route.fulfill(status=404, body="not found", headers=headers)
        return route.fulfill(body=file.read_bytes(), content_type=TYPES.get(file.suffix, "text/plain"), headers=headers)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        errors, pages = [], []

        def open_page(width: int, dark: bool = False, **context):
            ctx = browser.new_context(
                viewport={"width": width, "height": 800}, color_scheme="dark" if dark else "light", **context
            )
            ctx.route(f"{ORIGIN}/**", serve)
            page = ctx.new_page()
            page.set_default_timeout(30_000)
            watch_for_script_errors(page, errors)
            page.dialogs = []
            page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
            page.requests = []
            page.on("request", lambda r: page.requests.append(r.url))
            page.goto(ORIGIN + "/")
            expect(page.locator("body")).to_have_attribute("data-ready", "yes")
            pages.append(page)
            return page

        yield open_page
        browser.close()
        assert errors == [], f"script errors or CSP violations on the page: {errors}"
        assert all(p.dialogs == [] for p in pages)


def test_inline_and_display_math_render_and_code_and_prices_stay_text(harness):
    for width, dark in ((1280, False), (390, True), (1280, True), (390, False)):
        page = harness(width, dark)
        page.evaluate("source => window.renderReply(source)", REPLY)
        body = page.locator(".msg .body")
        expect(body.locator(".katex")).to_have_count(4)
        expect(body.locator(".katex-display")).to_have_count(2)  # $$…$$ on its lines, and \[…\] in a paragraph
        expect(body.locator(".math-inline .katex")).to_have_count(2)  # $…$ and \(…\)
        # MathML for screen readers carries the source.
        annotations = body.locator("annotation").evaluate_all("els => els.map(e => e.textContent)")
        assert annotations == [
            "ax^2 + bx + c = 0",
            r"x = \frac{-b \pm \sqrt{b^2 - 4ac}}{2a}",
            r"e^{i\pi} + 1 = 0",
            r"\sum_{n=1}^{\infty} \frac{1}{n^2} = \frac{\pi^2}{6}",
        ]
        expect(body.locator(".katex .mfrac")).to_have_count(3)
        expect(body.locator(".katex svg")).not_to_have_count(0)  # the square root's stretchy sign
        # Prices are prices, an escaped dollar a dollar.
        expect(body.locator("p", has_text="Apples")).to_have_text("Apples cost $5 and pears $6, a total of $11.")
        # Code is code, character for character.
        expect(body.locator("p > code")).to_have_text("$x$ in a span")
        expect(body.locator("pre code")).to_have_text('price = "$5"  # $not math$\nprint(f"$$ {price} $$")')
        assert body.locator("code .katex, pre .katex").count() == 0
        # The KaTeX fonts came from this origin, and the formula fits a phone.
        assert any("/static/vendor/katex-0.19.1/fonts/" in url for url in page.requests)
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"math-{width}-{'dark' if dark else 'light'}.png"), full_page=True)


def test_a_streaming_reply_typesets_math_as_it_arrives(harness):
    page = harness(1280)
    for piece in ["Area: $\\pi", " r^2$ and", "\n\n$$\n\\int_0^1 x", "\\,dx = \\tfrac12\n$$\n\ndone"]:
        page.evaluate("piece => window.streamReply(piece)", piece)
        page.wait_for_timeout(50)  # one animation frame renders what came
    body = page.locator(".msg .body")
    expect(body.locator(".katex")).to_have_count(2)
    expect(body.locator(".katex-display")).to_have_count(1)
    expect(body).to_contain_text("done")


def test_hostile_tex_is_inert(harness):
    page = harness(1280)
    page.evaluate("source => window.renderReply(source)", HOSTILE)
    body = page.locator(".msg .body")
    # Nothing that links, loads, runs or borrows the page's classes and ids.
    assert body.locator("a, img, script, iframe, [href], [src], [onerror], [onclick], #send").count() == 0
    assert page.locator(".msg .body .primary").count() == 0
    classes = " ".join(body.locator("[class]").evaluate_all("els => els.map(e => e.className.baseVal ?? e.className)"))
    assert "primary" not in classes.split()
    styled = body.locator("[style]").evaluate_all("els => els.map(e => e.getAttribute('style'))")
    assert not any("fixed" in s or "inset" in s for s in styled), styled
    # Untrusted commands are drawn as red, inert text; unparsable TeX is shown as its source.
    expect(body).to_contain_text("\\href")
    expect(body).to_contain_text("\\htmlClass")
    expect(body.locator(".math-source", has_text="\\frac{1}{")).to_have_count(1)
    expect(body.locator(".math-source", has_text="\\undefinedcommand")).to_have_count(1)
    expect(body.locator(".math-source", has_text="\\def\\a")).to_have_count(1)  # the expansion bound stopped it
    expect(body.locator(".math-source", has_text="fcolorbox")).to_have_count(0)  # drawn, without a style attribute
    expect(body.locator(".katex .colorbox")).to_have_count(1)
    # A huge rule is capped at maxSize: the reply does not cover the page.
    height = body.evaluate("e => e.getBoundingClientRect().height")
    assert height < 2000, height
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth + 1")
    # Text that looks like HTML inside $…$ stays text.
    expect(body).to_contain_text("onerror")
    page.screenshot(path=str(SCREENSHOTS / "math-hostile.png"), full_page=True)
