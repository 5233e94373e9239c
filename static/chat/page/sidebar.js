// The conversation list: newest first in day groups (Today, Yesterday, Previous 7 days, then by month), search
// across titles and message text as you type (matches highlighted), more pages as it scrolls (the JSON
// endpoint's cursor), and the current conversation's rename, delete and export.
import { $, state, showError, urls, conversationUrl } from "./state.js";
import { send } from "./socket.js";
import { t, fill, language } from "./i18n.js";

let items = [];        // {id, title, updated_at, snippet?} in the order shown
let next = null;       // cursor of the next page, null at the end
let query = "";
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
  const params = new URLSearchParams();
  if (query) params.set("q", query);
  if (!reset && next) params.set("after", next);
  const asked = query;
  loading = (async () => {
    try {
      const res = await fetch(`${urls.conversations}?${params}`);
      if (!res.ok || asked !== query) return;
      const data = await res.json();
      items = reset ? data.conversations : items.concat(data.conversations.filter((c) => !has(c.id)));
      next = data.next;
      render();
    } finally {
      loading = null;
    }
  })();
  return loading;
}

export const has = (id) => items.some((c) => c.id === id);
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

export function render() {
  const root = $("conversations");
  root.replaceChildren();
  const now = new Date();
  let list = null, current = null;
  for (const c of items) {
    const group = query ? t("Results") : groupOf(c.updated_at, now);
    if (group !== current) {
      current = group;
      const heading = document.createElement("h2");
      heading.className = "group";
      heading.textContent = group;
      list = document.createElement("ul");
      list.setAttribute("aria-label", group);
      root.append(heading, list);
    }
    const li = document.createElement("li");
    li.dataset.id = c.id;
    const a = document.createElement("a");
    a.href = `#${c.id}`;
    a.appendChild(highlighted(c.title || fill(t("Conversation %(id)s"), { id: c.id })));
    a.classList.toggle("current", c.id === state.conversation);
    if (c.id === state.conversation) a.setAttribute("aria-current", "page");
    a.addEventListener("click", (e) => { e.preventDefault(); onOpen(c.id); });
    li.appendChild(a);
    if (query && c.snippet) {
      const p = document.createElement("p");
      p.className = "snippet";
      p.appendChild(highlighted(c.snippet));
      li.appendChild(p);
    }
    list.appendChild(li);
  }
  if (!items.length) {
    const p = document.createElement("p");
    p.className = "none";
    p.textContent = query ? t("No conversation matches.") : t("No conversations yet.");
    root.appendChild(p);
  }
  $("more").hidden = next === null;
}

// A conversation was created, retitled or had a new message: it goes to the top with its new title.
export function touch(c, moved) {
  const old = items.find((x) => x.id === c.id);
  if (query && !old) return;
  const row = { ...(old || {}), ...c, updated_at: moved || !old ? new Date().toISOString() : old.updated_at };
  items = moved || !old ? [row, ...items.filter((x) => x.id !== c.id)] : items.map((x) => (x.id === c.id ? row : x));
  render();
}

export function forget(id) {
  items = items.filter((x) => x.id !== id);
  render();
}

// --- search, paging --------------------------------------------------------------------------------------------
let typing = null;
$("search").addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(() => { query = $("search").value.trim(); reload(); }, 150);
});
$("more").addEventListener("click", () => loadMore(false));
// The next page loads when the end of the list scrolls into view (the button stays for keyboards).
new IntersectionObserver((entries) => {
  if (entries.some((e) => e.isIntersecting)) loadMore(false);
}, { root: $("conversation-list") }).observe($("more"));

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
