"""Organising the sidebar in real Chromium against the real stack: pin (survives a reload), folders (make one,
move a chat in through its ⋯ menu), archive and the Archived view, select mode's bulk archive and delete, the API
conversations' toggle and badge; the menu by keyboard; at phone width in the drawer and in dark mode. Rows are
read back from the database. Screenshots: organise-*.png (docs/chat-page.md#screenshots)."""

import pytest

from tests.browser.chromium import SCREENSHOTS as SHOTS
from tests.browser.chromium import skip_without_chromium

skip_without_chromium()

from playwright.sync_api import expect  # noqa: E402

from tests.browser.people import db  # noqa: E402

pytestmark = pytest.mark.e2e


def chats(user, titles, **fields):
    """Conversations of ``user``, the last title the newest."""
    from chat.models import Conversation

    return db(lambda: [Conversation.objects.create(owner=user, title=t, **fields).pk for t in titles])


def row(page, title):
    return page.locator("#conversations li.row", has_text=title)


def menu_item(page, title, item):
    row(page, title).first.locator(".more-actions").click()
    page.get_by_role("menuitem", name=item, exact=True).click()


def no_sideways_scroll(page):
    return page.evaluate("document.documentElement.scrollWidth <= innerWidth")


def test_pin_folders_archive_and_the_menu_by_keyboard(page, person):
    from chat.models import Conversation, Folder

    user = person[0]
    alpha, beta, gamma = chats(user, ["Alpha plans", "Beta notes", "Gamma ideas"])
    page.reload()
    names = page.locator("#conversations li.row > a")
    expect(names).to_have_text(["Gamma ideas", "Beta notes", "Alpha plans"])

    # Pin: on top under "Pinned", and still there after a reload.
    menu_item(page, "Alpha plans", "Pin")
    expect(page.locator("#conversations h2.group").first).to_have_text("Pinned")
    expect(names.first).to_contain_text("Alpha plans")
    page.reload()
    expect(names.first).to_contain_text("Alpha plans")
    assert db(lambda: Conversation.objects.get(pk=alpha).pinned)

    # A folder, and a chat moved into it through its ⋯ menu.
    page.click("#new-folder")
    page.fill("#name-input", "Work")
    page.press("#name-input", "Enter")
    folder = page.locator("section.folder", has_text="Work")
    expect(folder).to_be_visible()
    menu_item(page, "Beta notes", "Move to folder…")
    page.select_option("#move-select", label="Work")
    page.click("#move-dialog button[value=move]")
    expect(folder.locator(".count")).to_have_text("1")
    folder.locator(".folder-toggle").click()
    expect(folder.locator("li.row")).to_have_text(["Beta notes⋯"])
    expect(page.locator("#conversations > ul li.row", has_text="Beta notes")).to_have_count(0)
    work = db(lambda: Folder.objects.get(owner=user, name="Work"))
    assert db(lambda: Conversation.objects.get(pk=beta).folder_id) == work.pk

    # A name taken, whatever its case: said beside the field, the dialog kept open with what was typed.
    page.click("#new-folder")
    page.fill("#name-input", "work")
    page.press("#name-input", "Enter")
    expect(page.locator("#name-dialog")).to_be_visible()
    assert (
        page.locator("#name-input").evaluate("e => e.validationMessage") == "You have a folder called “work” already."
    )
    page.fill("#name-input", "Home")
    page.press("#name-input", "Enter")
    expect(page.locator("#name-dialog")).to_be_hidden()
    home = page.locator("section.folder", has_text="Home")
    expect(home).to_be_visible()
    # The conversation on show moved into a closed folder: the folder opens, its row stays in sight.
    row(page, "Gamma ideas").locator("a").first.click()
    expect(page.locator("#title")).to_have_text("Gamma ideas")
    menu_item(page, "Gamma ideas", "Move to folder…")
    page.select_option("#move-select", label="Home")
    page.click("#move-dialog button[value=move]")
    expect(home.locator("li.row", has_text="Gamma ideas")).to_be_visible()
    menu_item(page, "Gamma ideas", "Move to folder…")
    page.select_option("#move-select", label="No folder")
    page.click("#move-dialog button[value=move]")
    expect(page.locator("#conversations > ul li.row", has_text="Gamma ideas")).to_have_count(1)

    # The menu by keyboard: it opens on the first item, arrows move, Escape closes it and focus goes back.
    trigger = row(page, "Gamma ideas").locator(".more-actions")
    trigger.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("menuitem", name="Rename…", exact=True)).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("menuitem", name="Pin", exact=True)).to_be_focused()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    expect(page.get_by_role("menuitem", name="Delete…", exact=True)).to_be_focused()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "organise-menu.png"))
    page.keyboard.press("Escape")
    expect(page.get_by_role("menu")).to_have_count(0)
    expect(trigger).to_be_focused()
    page.screenshot(path=str(SHOTS / "organise-folders.png"))

    # Archive: out of the list, in the Archived view with its mark, and back.
    menu_item(page, "Gamma ideas", "Archive")
    expect(row(page, "Gamma ideas")).to_have_count(0)
    assert db(lambda: Conversation.objects.get(pk=gamma).archived_at is not None)
    page.click("#archived-view")
    expect(page.locator("#conversations li.row")).to_have_count(1)
    page.screenshot(path=str(SHOTS / "organise-archived.png"))
    menu_item(page, "Gamma ideas", "Unarchive")
    expect(page.locator("#conversations .none")).to_have_text("No archived conversations.")
    page.click("#archived-view")
    expect(row(page, "Gamma ideas")).to_have_count(1)
    menu_item(page, "Gamma ideas", "Archive")
    page.fill("#search", "gamma")  # search still finds an archived conversation, marked
    expect(row(page, "Gamma ideas").locator(".mark.archived")).to_have_text("Archived")
    page.fill("#search", "")

    # Deleting the folder keeps its chat: back in the plain list.
    folder.locator(".folder-head .more-actions").click()
    page.get_by_role("menuitem", name="Delete folder…", exact=True).click()
    page.click("#forget-dialog button[value=delete]")
    expect(page.locator("section.folder", has_text="Work")).to_have_count(0)
    expect(row(page, "Beta notes")).to_have_count(1)
    assert db(lambda: Conversation.objects.filter(owner=user).count()) == 3

    # Rename and delete from the menu; a delete asks first, and Cancel keeps the conversation.
    menu_item(page, "Beta notes", "Rename…")
    page.fill("#name-input", "Beta, renamed")
    page.press("#name-input", "Enter")
    expect(row(page, "Beta, renamed")).to_have_count(1)
    menu_item(page, "Alpha plans", "Delete…")
    page.click("#forget-cancel")
    expect(row(page, "Alpha plans")).to_have_count(1)
    menu_item(page, "Alpha plans", "Delete…")
    page.click("#forget-dialog button[value=delete]")
    expect(row(page, "Alpha plans")).to_have_count(0)
    assert db(lambda: sorted(Conversation.objects.filter(owner=user).values_list("title", flat=True))) == [
        "Beta, renamed",
        "Gamma ideas",
    ]


def test_bulk_archive_and_delete_and_the_api_toggle(page, person):
    from chat.models import Conversation

    user = person[0]
    one, two, three, four = chats(user, ["One", "Two", "Three", "Four"])
    chats(user, ["Made by a script"], source="api", api_key_name="ci")
    page.reload()
    expect(page.locator("#conversations li.row")).to_have_count(4)  # the API's conversation is left out
    other_tab = page.context.new_page()
    other_tab.goto(page.base + "/")
    expect(other_tab.locator("#conversations li.row")).to_have_count(4)

    page.click("#select-mode")
    page.locator("#conversations li.row", has_text="One").locator("input.pick").check()
    row(page, "Two").locator("a").click()  # a click on the row selects it too, in select mode
    expect(page.locator("#bulk-count")).to_have_text("2 selected")
    page.screenshot(path=str(SHOTS / "organise-bulk.png"))
    page.click("#bulk-archive")
    expect(page.locator("#conversations li.row")).to_have_count(2)
    assert db(lambda: Conversation.objects.filter(pk__in=[one, two], archived_at__isnull=False).count()) == 2
    expect(other_tab.locator("#conversations li.row")).to_have_count(2)  # the person's other tab follows
    other_tab.close()

    page.click("#select-mode")
    row(page, "Three").locator("input.pick").check()
    row(page, "Four").locator("input.pick").check()
    page.click("#bulk-delete")
    expect(page.locator("#forget-text")).to_contain_text("2 selected conversations")
    page.click("#forget-dialog button[value=delete]")
    expect(page.locator("#conversations li.row")).to_have_count(0)
    assert db(lambda: list(Conversation.objects.filter(pk__in=[three, four]))) == []

    page.check("#show-api")
    expect(row(page, "Made by a script").locator(".mark.api")).to_have_text("API")
    page.screenshot(path=str(SHOTS / "organise-api.png"))
    page.reload()  # remembered in this browser
    expect(page.locator("#show-api")).to_be_checked()
    expect(row(page, "Made by a script")).to_have_count(1)
    page.uncheck("#show-api")
    expect(row(page, "Made by a script")).to_have_count(0)


def test_the_menu_fits_a_phone_in_the_drawer_light_and_dark(page, person):
    from chat.conversations import organise

    user = person[0]
    ids = chats(user, ["A conversation with a rather long title that runs past the width of a phone", "Short"])
    db(lambda: organise.folder_save(user=user, name="Projects of the spring"))
    db(lambda: organise.conversation_pin(user=user, conversation_id=ids[1], pinned=True))
    page.set_viewport_size({"width": 390, "height": 800})
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.reload()
        page.click("#menu")
        expect(page.locator("#sidebar")).to_be_in_viewport()
        row(page, "rather long title").locator(".more-actions").click()
        menu = page.get_by_role("menu")
        expect(menu).to_be_visible()
        box = menu.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        assert no_sideways_scroll(page)
        page.screenshot(path=str(SHOTS / f"organise-phone-{scheme}.png"))
        page.keyboard.press("Escape")
        expect(menu).to_have_count(0)
        expect(page.locator("body")).to_have_class("chat drawer-open")  # Escape closed the menu, not the drawer
    page.set_viewport_size({"width": 1280, "height": 800})
    page.reload()
    page.locator("section.folder .folder-toggle").click()
    row(page, "Short").locator(".more-actions").click()
    expect(page.get_by_role("menuitem", name="Unpin", exact=True)).to_be_visible()
    page.screenshot(path=str(SHOTS / "organise-dark.png"))
