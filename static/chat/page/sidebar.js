// The conversation list: pinned ones on top, then the folders (folders.js), then newest first in day groups
// (Today, Yesterday, Previous 7 days, then by month); search across titles and message text as you type (matches
// highlighted), more pages as it scrolls (the JSON endpoint's cursor); the Archived view and the API toggle; and
// the current conversation's rename, delete and export. Rows, menus and select mode: rows.js, menu.js, bulk.js.
import { $, state, showError, urls, conversationUrl } from "./state.js";
import { on, send } from "./socket.js";
import { listing, listParams, setHooks, setWithApi } from "./listing.js";
import * as folders from "./folders.js";
import { rowFor } from "./rows.js";
import { keepOnly, selection, setSelecting } from "./bulk.js";
import { t, fill, language } from "./i18n.js";

let items = [];        // {id, title, updated_at, pinned, source, folder, archived, snippet?} in the order shown
let next = null;       // cursor of the next page, null at the end
let loading = null;
let onOpen = () => {};

export function whenChosen(callback) { onOpen = callback; }

export async function reload() {
  next = null;
  items = [];
  await loadMore(true);
}

async function loadMore(reset) {
  if (loading) return loading;
  if (!reset && next === null) return;
  const params = listParams(!reset && next ? { after: next } : {});
  const asked = listParams().toString(); // the view asked for: a search typed meanwhile makes this answer stale
  loading = (async () => {
    try {
      const res = await fetch(`${urls.conversations}?${params}`);
      if (!res.ok || asked !== listParams().toString()) return;
      const data = await res.json();
      items = reset ? data.conversations : items.concat(data.conversations.filter((c) => !items.some((x) => x.id === c.id)));
      next = data.next;
      if (data.folders) {
        listing.folders = data.folders;
        folders.reloadOpen();
      }
      render();
    } finally {
      loading = null;
    }
  })();
  return loading;
}

export const has = (id) => items.some((c) => c.id === id) || folders.has(id);
export const ids = () => items.map((c) => c.id);

function groupOf(stamp, now) {
  const day = new Date(stamp);
  const start = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  const days = Math.floor((start - new Date(day.getFullYear(), day.getMonth(), day.getDate())) / 86400000);
  if (days <= 0) return t("Today");
  if (days === 1) return t("Yesterday");
  if (days <= 7) return t("Previous 7 days");
  return day.toLocaleDateString(language, { month: "long", year: "numeric" });
}

// Text with each occurrence of the search words wrapped in <mark>; built from text nodes, never as HTML.
function highlighted(text) {
  const span = document.createElement("span");
  const query = listing.query;
  if (!query) { span.textContent = text; return span; }
  const lower = text.toLowerCase(), q = query.toLowerCase();
  let at = 0;
  for (let i = lower.indexOf(q); i !== -1; i = lower.indexOf(q, at)) {
    span.append(text.slice(at, i));
    const mark = document.createElement("mark");
    mark.textContent = text.slice(i, i + q.length);
    span.append(mark);
    at = i + q.length;
  }
  span.append(text.slice(at));
  return span;
}

function heading(root, text) {
  const h = document.createElement("h2");
  h.className = "group";
  h.textContent = text;
  const list = document.createElement("ul");
  list.setAttribute("aria-label", text);
  root.append(h, list);
  return list;
}

// Pinned first, then the folders, then the day groups; a search or the Archived view is one flat list.
export function render() {
  const root = $("conversations");
  root.replaceChildren();
  const now = new Date();
  const plain = !listing.query && listing.view === "list";
  const pinned = plain ? items.filter((c) => c.pinned) : [];
  let list = pinned.length ? heading(root, t("Pinned")) : null;
  for (const c of pinned) list.append(rowFor(c, highlighted(c.title || t("Conversation %s").replace("%s", () => c.id))));
  if (plain) folders.render(root);
  let current = null;
  for (const c of items) {
    if (plain && c.pinned) continue;
    const group = listing.query ? t("Results") : listing.view === "archived" ? t("Archived") : groupOf(c.updated_at, now);
    if (group !== current) {
      current = group;
      list = heading(root, group);
    }
    let snippet = null;
    if (listing.query && c.snippet) {
      snippet = document.createElement("p");
      snippet.className = "snippet";
      snippet.appendChild(highlighted(c.snippet));
    }
    list.append(rowFor(c, highlighted(c.title || t("Conversation %s").replace("%s", () => c.id)), snippet));
  }
  if (!items.length && !(plain && listing.folders.length)) {
    const p = document.createElement("p");
    p.className = "none";
    p.textContent = listing.query ? t("No conversation matches.")
      : listing.view === "archived" ? t("No archived conversations.") : t("No conversations yet.");
    root.appendChild(p);
  }
  $("more").hidden = next === null;
  if (selection.active) keepOnly(new Set([...items.map((c) => c.id), ...folders.rows().map((c) => c.id)]));
}
setHooks({ render, reload, open: (id) => onOpen(id) });

// A conversation was created, retitled or had a new message: it goes to the top (below the pinned ones) with its
// new title — in its folder if an open folder lists it, in the plain list otherwise.
export function touch(c, moved) {
  const old = items.find((x) => x.id === c.id);
  const filed = folders.touch(c, moved);
  if ((listing.query || listing.view === "archived" || filed) && !old) { render(); return; }
  const row = { ...(old || {}), ...c, updated_at: moved || !old ? new Date().toISOString() : old.updated_at };
  items = moved || !old ? [row, ...items.filter((x) => x.id !== c.id)] : items.map((x) => (x.id === c.id ? row : x));
  render();
}

export function forget(id) {
  items = items.filter((x) => x.id !== id);
  folders.forget(id);
  render();
}

// Another tab, or this one, pinned, archived, moved or filed: the list is reloaded (the server's order is the truth).
on("organised", () => reload());

// --- search, paging, the views --------------------------------------------------------------------------------
let typing = null;
$("search").addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(() => { listing.query = $("search").value.trim(); reload(); }, 150);
});
$("more").addEventListener("click", () => loadMore(false));
// The next page loads when the end of the list scrolls into view (the button stays for keyboards).
new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadMore(false);
}, { root: $("conversation-list") }).observe($("more"));

$("archived-view").addEventListener("click", () => {
  listing.view = listing.view === "archived" ? "list" : "archived";
  $("archived-view").setAttribute("aria-pressed", String(listing.view === "archived"));
  $("new-folder").hidden = listing.view === "archived";
  if (selection.active) setSelecting(false);
  reload();
});
$("show-api").checked = listing.withApi;
$("show-api").addEventListener("change", () => { setWithApi($("show-api").checked); reload(); });

// --- rename, delete, export of the conversation on screen ----------------------------------------------------------
export function showActions() {
  const id = state.conversation;
  $("conversation-actions").hidden = id === null;
  if (id === null) return;
  $("export-md").href = conversationUrl(urls.exportMd, id);
  $("export-json").href = conversationUrl(urls.exportJson, id);
}

$("rename").addEventListener("click", () => {
  const form = $("rename-form");
  $("rename-input").value = $("title").textContent;
  form.hidden = false;
  $("title").hidden = true;
  $("rename-input").select();
});
function closeRename() { $("rename-form").hidden = true; $("title").hidden = false; }
$("rename-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const title = $("rename-input").value.trim();
  if (title && send({ type: "rename", conversation: state.conversation, title })) closeRename();
});
$("rename-cancel").addEventListener("click", closeRename);
$("rename-input").addEventListener("keydown", (e) => { if (e.key === "Escape") { e.stopPropagation(); closeRename(); } });

$("delete").addEventListener("click", () => {
  $("delete-title").textContent = $("title").textContent;
  $("delete-note").hidden = state.active === null;
  $("confirm-delete").showModal();
});
$("confirm-delete").addEventListener("close", () => {
  if ($("confirm-delete").returnValue !== "delete" || state.conversation === null) return;
  // The server stops a reply still being written before it deletes.
  if (!send({ type: "delete", conversation: state.conversation })) showError(t("Not deleted: not connected."));
});
