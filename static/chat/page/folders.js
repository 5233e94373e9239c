// The person's folders ("projects") in the sidebar, between the pinned conversations and the day groups: each a
// collapsible group whose conversations load when it opens (a page at a time, pinned first). Which folders are
// open is remembered per browser. New folder, and each folder's ⋯ menu (rename, delete: its chats are kept).
import { $, state, urls } from "./state.js";
import { send } from "./socket.js";
import { listing, listParams, redraw, store, t } from "./listing.js";
import { askName, folderNameTaken } from "./dialogs.js";
import { folderMenu } from "./menu.js";
import { rowFor } from "./rows.js";

const OPEN = "chat.openFolders";
const opened = new Set((listing.stored(OPEN) || "").split(",").filter(Boolean).map(Number));
const contents = new Map(); // folder id -> {items, next}

async function load(id, after = null) {
  const res = await fetch(`${urls.conversations}?${listParams({ folder: id, after })}`);
  if (!res.ok) return;
  const data = await res.json();
  const old = after ? contents.get(id)?.items || [] : [];
  contents.set(id, { items: old.concat(data.conversations.filter((c) => !old.some((o) => o.id === c.id))),
                     next: data.next });
  redraw();
}

// After the list's first page (it carries the folders): the open folders load again, the others are forgotten.
export function reloadOpen() {
  const known = new Set(listing.folders.map((f) => f.id));
  for (const id of [...contents.keys()]) if (!known.has(id)) contents.delete(id);
  return Promise.all([...opened].filter((id) => known.has(id)).map((id) => load(id)));
}

function toggle(id) {
  if (opened.has(id)) opened.delete(id); else { opened.add(id); load(id); }
  store(OPEN, [...opened].join(","));
  redraw();
  $(`folder-${id}`)?.focus();
}

// The conversation on show moved into a closed folder: the folder opens, or its row would vanish from the list.
document.addEventListener("chat:moved", ({ detail }) => {
  if (detail.folder && detail.conversation === state.conversation && !opened.has(detail.folder)) {
    opened.add(detail.folder);
    store(OPEN, [...opened].join(","));
    load(detail.folder);
  }
});

export function render(root) {
  if (!listing.folders.length) return;
  const heading = document.createElement("h2");
  heading.className = "group";
  heading.textContent = t("Folders");
  root.append(heading);
  for (const f of listing.folders) {
    const section = document.createElement("section");
    section.className = "folder";
    section.dataset.folder = f.id;
    const head = document.createElement("div");
    head.className = "folder-head";
    const button = document.createElement("button");
    button.type = "button";
    button.id = `folder-${f.id}`;
    button.className = "folder-toggle";
    const isOpen = opened.has(f.id);
    button.setAttribute("aria-expanded", String(isOpen));
    const name = document.createElement("span");
    name.className = "folder-name";
    name.textContent = f.name;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = String(f.count);
    button.append(isOpen ? "▾ " : "▸ ", name, " ", count);
    button.addEventListener("click", () => toggle(f.id));
    const more = document.createElement("button");
    more.type = "button";
    more.className = "more-actions";
    more.textContent = "⋯";
    more.setAttribute("aria-label", t("Actions for folder %s").replace("%s", () => f.name));
    more.setAttribute("aria-haspopup", "menu");
    more.setAttribute("aria-expanded", "false");
    more.addEventListener("click", () => folderMenu(more, f));
    head.append(button, more);
    section.append(head);
    if (isOpen) {
      const list = document.createElement("ul");
      list.setAttribute("aria-label", f.name);
      const got = contents.get(f.id);
      for (const c of got?.items || []) {
        const label = document.createElement("span");
        label.textContent = c.title || t("Conversation %s").replace("%s", () => c.id);
        list.append(rowFor(c, label));
      }
      section.append(list);
      if (got && !got.items.length) {
        const none = document.createElement("p");
        none.className = "none";
        none.textContent = t("No conversations in this folder.");
        section.append(none);
      }
      if (got?.next) {
        const more = document.createElement("button");
        more.type = "button";
        more.className = "link";
        more.textContent = t("Load more");
        more.addEventListener("click", () => load(f.id, got.next));
        section.append(more);
      }
    }
    root.append(section);
  }
}

export const has = (id) => [...contents.values()].some((c) => c.items.some((x) => x.id === id));
export const rows = () => [...contents.values()].flatMap((c) => c.items);

// A conversation had a new message or title: updated where a folder lists it. True when one does.
export function touch(c, moved) {
  let found = false;
  for (const got of contents.values()) {
    const old = got.items.find((x) => x.id === c.id);
    if (!old) continue;
    found = true;
    const row = { ...old, ...c, updated_at: moved ? new Date().toISOString() : old.updated_at };
    got.items = moved ? [row, ...got.items.filter((x) => x.id !== c.id)] : got.items.map((x) => (x.id === c.id ? row : x));
    got.items.sort((a, b) => Number(b.pinned) - Number(a.pinned)); // stable: pinned first, each by date
  }
  return found;
}

export function forget(id) {
  for (const got of contents.values()) got.items = got.items.filter((x) => x.id !== id);
}

$("new-folder").addEventListener("click", async () => {
  const name = await askName(t("New folder"), "", t("Name"), folderNameTaken());
  if (name) send({ type: "folder", name });
});
