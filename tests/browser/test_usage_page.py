"""The review panel's usage page in real Chromium: a reviewer logs in, the charts (per day, and per model per day)
draw under the site's CSP."""

import datetime

import pytest

from tests.browser.chromium import (
    CHROMIUM,
    LAUNCH_ARGS,
    SCREENSHOTS,
    admin_log_in,
    skip_without_chromium,
)

PASSWORD = "a-long-test-password"
MODELS = ("bundled:smollm2-135m-instruct", "tiny")

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

# Whether any pixel of the canvas is painted (Chart.js draws on a transparent canvas). Playwright evaluates
# this through the DevTools protocol, which the page's CSP does not govern; the page's own scripts stay bound.
PAINTED = """canvas => {
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
    return {painted, width: canvas.width, height: canvas.height, chart: !!window.Chart && !!Chart.getChart(canvas)};
}"""


@pytest.fixture
def reviewer(transactional_db, django_user_model, reviewer_group):
    """A staff reviewer, and a month of varied use by three people, stored before the browser starts
    (Playwright's event loop makes the ORM refuse calls once it runs)."""
    from chat.models import Conversation, Message
    from tests.chat.admin.conftest import exchange

    user = django_user_model.objects.create_user(username="rita", password=PASSWORD, is_staff=True)
    user.groups.add(reviewer_group)
    now = datetime.datetime.now(datetime.timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0)
    for n, name in enumerate(["ann", "ben", "cat"]):
        conversation = Conversation.objects.create(owner=django_user_model.objects.create_user(username=name))
        for day in range(0, 30, n + 1):
            for k in range((day * 7 + n) % 5):
                status = (
                    Message.Status.FAILED
                    if (day + k) % 11 == 0
                    else Message.Status.STOPPED
                    if (day + k) % 13 == 0
                    else Message.Status.COMPLETE
                )
                exchange(
                    conversation,
                    now - datetime.timedelta(days=day, minutes=k),
                    status=status,
                    prompt=40 + day,
                    completion=60 + 7 * k + day,
                    ttft=80 + 10 * k,
                    speed=18.0 + k,
                    model=MODELS[(day + k) % 3 % 2],  # two models, one writing twice as many replies
                )
    return user


@pytest.mark.parametrize("scheme,shot", [("light", "usage.png"), ("dark", "usage-dark.png")])
def test_a_reviewer_sees_the_usage_chart_drawn(reviewer, live_server, scheme, shot):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, color_scheme=scheme)
        page.set_default_timeout(30_000)
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # Every console error counts (a CSP refusal is one), but the browser's own favicon probe: the site has none.
        page.on(
            "console",
            lambda msg: (
                errors.append(msg.text)
                if msg.type == "error" and not msg.location.get("url", "").endswith("/favicon.ico")
                else None
            ),
        )
        admin_log_in(page, live_server.url, "/admin/chat/usagereport/", "rita", PASSWORD)
        expect(page.locator("#content h1")).to_have_text("Usage")
        expect(page.locator("#usage-days tbody tr")).to_have_count(30)
        canvas = page.locator("#usage-chart")
        expect(canvas).to_be_visible()
        drawn = canvas.evaluate(PAINTED)
        assert drawn["chart"] and drawn["width"] > 300 and drawn["height"] > 200, drawn
        assert drawn["painted"] > 0.02 * drawn["width"] * drawn["height"], drawn  # bars, a line, axes, legend
        expect(page.locator("#usage-models tbody tr")).to_have_count(2)  # one row per model
        per_model = page.locator("#usage-models-chart")
        per_model.scroll_into_view_if_needed()
        drawn = per_model.evaluate(PAINTED)
        assert drawn["chart"] and drawn["painted"] > 0.02 * drawn["width"] * drawn["height"], drawn
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / shot), full_page=True)
        browser.close()
    assert errors == [], f"errors on the page (a CSP refusal shows here): {errors}"
