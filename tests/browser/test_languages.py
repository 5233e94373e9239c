"""The pages in Simplified Chinese in real Chromium with a Chinese locale (docs/translating.md): the chat page, its
parts the scripts build (the connection status, a reply's buttons), the Account page and its language choice,
and the log-in page; at desktop and phone width, light and dark; no script errors."""

from tests.browser.chromium import CHROMIUM, LAUNCH_ARGS, SCREENSHOTS, new_page, skip_without_chromium

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser.people import db, say  # noqa: E402

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def chinese_browser(p, base, cookie=None, viewport=DESKTOP, color_scheme="dark"):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
    errors = []
    page = new_page(browser, base, errors, cookie=cookie, viewport=viewport, locale="zh-CN", color_scheme=color_scheme)
    page.errors = errors
    return browser, page


def no_sideways_scroll(page):
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


def shot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"i18n-{name}.png"))


def test_the_chat_page_in_chinese_with_what_its_scripts_build(live_stack, person):
    user, cookie = person
    with sync_playwright() as p:
        browser, page = chinese_browser(p, live_stack.origin, cookie, color_scheme="light")
        page.goto(live_stack.origin + "/")
        assert page.locator("html").get_attribute("lang") == "zh-hans"
        expect(page.locator("#connection")).to_have_text("已连接")  # set by socket.js through the catalog
        expect(page.locator("#new-chat")).to_have_text("+ 新建聊天")
        expect(page.locator("#send")).to_have_text("发送")
        expect(page.locator("#messages .empty")).to_have_text("提出任何问题，开始对话。")
        expect(page.locator("#quota")).to_contain_text("token")
        say(page, "你好")
        reply = page.locator(".msg.assistant").last
        expect(reply.locator("button.regenerate")).to_have_text("重新生成")
        expect(reply.locator("button.copy-message")).to_have_text("复制")
        expect(reply.locator("button.thumb.up")).to_have_attribute("title", "好回复")
        expect(page.locator(".msg.user").last.locator("button.edit")).to_have_text("编辑")
        expect(page.locator("#conversations .group").first).to_have_text("今天")
        shot(page, "chat-desktop-light")
        page.emulate_media(color_scheme="dark")
        shot(page, "chat-desktop-dark")

        page.set_viewport_size(PHONE)
        page.reload()
        expect(page.locator("#connection")).to_have_text("已连接")
        no_sideways_scroll(page)
        shot(page, "chat-phone-dark")
        browser.close()
        assert page.errors == [], f"script errors on the page: {page.errors}"


def test_the_account_page_switches_the_language_and_keeps_it(live_stack, person):
    from chat.models import ChatDefaults

    user, cookie = person
    with sync_playwright() as p:
        browser, page = chinese_browser(p, live_stack.origin, cookie)
        page.goto(live_stack.origin + "/accounts/")
        expect(page.locator("h1")).to_have_text("你的账户")
        expect(page.locator("#language h2")).to_have_text("语言")
        shot(page, "account-desktop-dark")

        page.select_option("#id_language", "en")
        page.locator("#language button").click()
        expect(page.locator("h1")).to_have_text("Your account")
        assert page.locator("html").get_attribute("lang") == "en"
        assert db(lambda: ChatDefaults.objects.get(user=user).language) == "en"
        page.goto(live_stack.origin + "/")  # the chosen language beats the browser's Chinese on every page
        expect(page.locator("#connection")).to_have_text("connected")
        expect(page.locator("#send")).to_have_text("Send")

        page.goto(live_stack.origin + "/accounts/")
        page.select_option("#id_language", "zh-hans")
        page.locator("#language button").click()
        expect(page.locator("h1")).to_have_text("你的账户")
        page.set_viewport_size(PHONE)
        no_sideways_scroll(page)
        shot(page, "account-phone-dark")
        browser.close()
        assert page.errors == [], f"script errors on the page: {page.errors}"


def test_the_login_page_in_chinese_and_its_language_switch(live_stack):
    with sync_playwright() as p:
        browser, page = chinese_browser(p, live_stack.origin, viewport=PHONE)
        page.goto(live_stack.origin + "/accounts/login/")
        expect(page.locator("h1")).to_have_text("登录")
        expect(page.locator("main button.primary")).to_have_text("登录")
        expect(page.locator("main")).to_contain_text("忘记密码？")
        no_sideways_scroll(page)
        shot(page, "login-phone-dark")
        page.set_viewport_size(DESKTOP)
        shot(page, "login-desktop-dark")

        page.select_option("#language-switch", "en")
        page.locator(".language-switch button").click()
        expect(page.locator("h1")).to_have_text("Log in")
        assert page.locator("html").get_attribute("lang") == "en"
        browser.close()
        assert page.errors == [], f"script errors on the page: {page.errors}"
