// The ⋯ menus of the sidebar: one conversation's (rename, pin, move to a folder, archive, share, export, delete)
// and one folder's (rename, delete). One menu at a time, placed by the button that opened it and kept inside the
// screen (a phone's drawer too). Keyboard: the first item takes focus, ↑/↓/Home/End move, Escape or Tab closes
// it and focus goes back to the ⋯ button; a click outside closes it.
import { showError, urls, conversationUrl } from "./state.js";
import { send } from "./socket.js";
import { t } from "./listing.js";
import { askFolder, askName, confirmDelete, folderNameTaken } from "./dialogs.js";

let open = null; // {menu, trigger}

export function closeMenu(focusBack = true) {
  if (!open) return;
  const { menu, trigger } = open;
  open = null;
  menu.remove();
  trigger.setAttribute("aria-expanded", "false");
  if (focusBack && trigger.isConnected) trigger.focus();
}

function itemsOf(menu) { return [...menu.querySelectorAll("[role=menuitem]")]; }

// items: [{label, run?, href?, download?, danger?}] — `run` for an action, `href` for a link (the exports).
export function showMenu(trigger, label, items) {
  const again = open?.trigger === trigger;
  closeMenu(false);
  if (again) { trigger.focus(); return; } // the ⋯ button toggles its menu
  const menu = document.createElement("div");
  menu.className = "row-menu";
  menu.setAttribute("role", "menu");
  menu.setAttribute("aria-label", label);
  for (const item of items) {
    const el = document.createElement(item.href ? "a" : "button");
    el.setAttribute("role", "menuitem");
    el.tabIndex = -1;
    el.textContent = item.label;
    if (item.danger) el.classList.add("danger");
    if (item.href) {
      el.href = item.href;
      if (item.download) el.setAttribute("download", "");
      el.addEventListener("click", () => closeMenu());
    } else {
      el.type = "button";
      el.addEventListener("click", () => { closeMenu(); item.run(); });
    }
    menu.append(el);
  }
  menu.addEventListener("keydown", (e) => {
    const all = itemsOf(menu);
    const at = all.indexOf(document.activeElement);
    const go = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: all.length - 1 }[e.key];
    if (go !== undefined) {
      e.preventDefault();
      all[(go + all.length) % all.length].focus();
    } else if (e.key === "Escape" || e.key === "Tab") {
      e.preventDefault(); // the page's own Escape (close the drawer, stop the reply) is not for this key
      e.stopPropagation();
      closeMenu();
    }
  });
  document.body.append(menu);
  place(menu, trigger);
  trigger.setAttribute("aria-expanded", "true");
  open = { menu, trigger };
  itemsOf(menu)[0]?.focus();
}

// Below the button, its right edge on the button's, moved up or left to stay on the screen.
function place(menu, trigger) {
  const r = trigger.getBoundingClientRect();
  const w = menu.offsetWidth, h = menu.offsetHeight;
  const left = Math.max(8, Math.min(r.right - w, innerWidth - w - 8));
  const top = r.bottom + 4 + h > innerHeight - 8 ? Math.max(8, r.top - h - 4) : r.bottom + 4;
  menu.style.left = `${left}px`;
  menu.style.top = `${top}px`;
}

document.addEventListener("pointerdown", (e) => {
  if (open && !open.menu.contains(e.target) && !open.trigger.contains(e.target)) closeMenu(false);
}, true);
addEventListener("resize", () => closeMenu(false));

const titleOf = (c) => c.title || t("Conversation %s").replace("%s", () => c.id);

export function conversationMenu(trigger, c) {
  const items = [
    { label: t("Rename…"), run: async () => {
      const title = await askName(t("Rename conversation"), titleOf(c), t("Title"));
      if (title) send({ type: "rename", conversation: c.id, title });
    } },
    { label: c.pinned ? t("Unpin") : t("Pin"), run: () => send({ type: "pin", conversation: c.id, pinned: !c.pinned }) },
    { label: t("Move to folder…"), run: async () => {
      const folder = await askFolder(titleOf(c), c.folder);
      if (folder === undefined) return;
      const to = folder ? Number(folder) : null;
      if (send({ type: "move", conversation: c.id, folder: to })) {
        document.dispatchEvent(new CustomEvent("chat:moved", { detail: { conversation: c.id, folder: to } }));
      }
    } },
    { label: c.archived ? t("Unarchive") : t("Archive"),
      run: () => send({ type: "archive", conversations: [c.id], archived: !c.archived }) },
  ];
  // Share links are another module's (share.js); the item shows where the page has it.
  if (window.chatShare?.open) items.push({ label: t("Share…"), run: () => window.chatShare.open(c.id) });
  items.push(
    { label: t("Export .md"), href: conversationUrl(urls.exportMd, c.id), download: true },
    { label: t("Export .json"), href: conversationUrl(urls.exportJson, c.id), download: true },
    { label: t("Delete…"), danger: true, run: async () => {
      const sure = await confirmDelete(t("Delete this conversation?"),
        t("“%s” and all its messages will be deleted. This cannot be undone.").replace("%s", () => titleOf(c)));
      // The server stops a reply still being written before it deletes.
      if (sure && !send({ type: "delete", conversation: c.id })) showError(t("Not deleted: not connected."));
    } },
  );
  showMenu(trigger, t("Actions for %s").replace("%s", () => titleOf(c)), items);
}

export function folderMenu(trigger, folder) {
  showMenu(trigger, t("Actions for folder %s").replace("%s", () => folder.name), [
    { label: t("Rename folder…"), run: async () => {
      const name = await askName(t("Rename folder"), folder.name, t("Name"), folderNameTaken(folder.id));
      if (name && name !== folder.name) send({ type: "folder", folder: folder.id, name });
    } },
    { label: t("Delete folder…"), danger: true, run: async () => {
      const sure = await confirmDelete(t("Delete this folder?"),
        t("The folder “%s” is deleted; its conversations are kept and go back to the list.").replace("%s", () => folder.name));
      if (sure) send({ type: "folder_delete", folder: folder.id });
    } },
  ]);
}
