"""The account pages in real Chromium against Django's live_server (no worker needed): sign up while sign-up
awaits approval, see why the chat is closed, download the data, delete the account."""

import json

from tests.browser.chromium import (
    CHROMIUM,
    LAUNCH_ARGS,
    SCREENSHOTS,
    skip_without_chromium,
    watch_for_script_errors,
)

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

PASSWORD = "Correct-Horse-7"


def test_sign_up_awaiting_approval_download_and_delete(transactional_db, live_server, settings, tmp_path):
    settings.CHAT_SIGNUP = "approval"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800}, accept_downloads=True)
        page.set_default_timeout(30_000)
        errors = []
        # A deletion with the wrong password is answered 400 with the form again: the one failed load expected.
        # Django's live_server serves no websockets, so the chat page's socket, opened in the moment the page is
        # shown after sign-up, may fail its handshake (404) before the test moves on: expected here too.
        watch_for_script_errors(page, errors, expected=("status of 400", "/ws/chat/' failed"))
        page.goto(f"{live_server.url}/accounts/signup/")
        expect(page.locator(".note")).to_contain_text("approved by its staff")
        page.fill("#id_username", "gina")
        page.fill("#id_email", "gina@example.com")
        page.fill("#id_password1", PASSWORD)
        page.fill("#id_password2", PASSWORD)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{live_server.url}/")
        expect(page.locator("#pending")).to_contain_text("waiting for approval by the site's staff")

        page.click("#account-link")
        expect(page.locator("h1")).to_have_text("Your account")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "account.png"), full_page=True)
        with page.expect_download() as info:
            page.click("text=Download my data")
        saved = tmp_path / "data.json"
        info.value.save_as(saved)
        data = json.loads(saved.read_text())
        assert data["user"]["username"] == "gina" and data["conversations"] == []
        assert data["account"]["approved_at"] is None

        page.fill("#id_password", "not my password")
        page.click("button.danger")
        expect(page.locator(".errorlist")).to_contain_text("not your password")
        page.fill("#id_password", PASSWORD)
        page.click("button.danger")
        expect(page.locator("h1")).to_have_text("Account deleted")

        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("#id_username", "gina")
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator(".errorlist")).to_contain_text("Please enter a correct username")
        browser.close()
    assert errors == [], f"script errors on the page: {errors}"
