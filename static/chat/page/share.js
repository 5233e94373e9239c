// Share links from the chat page (docs/chat-page.md#share-links): the Share button in a conversation's header
// opens a small dialog with the conversation's read-only link (made on request), Copy and Revoke. Other parts of
// the page (the sidebar's ⋯ menu) open it for any of the person's conversations with window.chatShare.open(id).
// Plain HTTP endpoints with the session and the CSRF token, like a form's POST; the server checks ownership.
import { $, state, conversationUrl } from "./state.js";
import { copyText } from "./markdown.js";
import { t, tn, fill, language } from "./i18n.js";

const data = $("thread").dataset;
const urls = { shares: data.sharesUrl, revoke: data.shareRevokeUrl }; // for the placeholder id 0 (state.js)
for (const [name, url] of Object.entries(urls)) {
  if (!url) throw new Error(`chat page: the template gives no ${name} URL`);
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// The dialog, built once on first use (every text set as text, never as HTML).
let ui = null;
let shown = { conversation: null, share: null };

function build() {
  const link = el("input", { id: "share-url", readOnly: true, type: "text" });
  link.setAttribute("aria-label", t("Share link"));
  const copy = el("button", { id: "share-copy", type: "button", textContent: t("Copy") });
  const row = el("div", { className: "share-link-row" }, link, copy);
  const meta = el("p", { id: "share-meta", className: "share-meta" });
  const status = el("p", { id: "share-status", className: "share-status" });
  status.setAttribute("role", "status");
  const error = el("p", { id: "share-error", className: "share-error", hidden: true });
  error.setAttribute("role", "alert");
  const create = el("button", { id: "share-create", type: "button", className: "primary", textContent: t("Create link") });
  const revoke = el("button", { id: "share-revoke", type: "button", className: "danger", textContent: t("Revoke link") });
  const close = el("button", { id: "share-close", type: "button", textContent: t("Close") });
  const dialog = el(
    "dialog",
    { id: "share-dialog", className: "panel share-dialog" },
    el("h2", { id: "share-heading", textContent: t("Share this conversation") }),
    el("p", {
      className: "share-explain",
      textContent: t("Anyone with the link can read this conversation as it is shown now, without signing in. "
        + "Messages written later are not shared, nor is the system prompt. You can revoke the link at any time, "
        + "here or on the Account page."),
    }),
    row, meta, status, error,
    el("div", { className: "buttons" }, revoke, create, close),
  );
  dialog.setAttribute("aria-labelledby", "share-heading");
  document.body.append(dialog);
  copy.addEventListener("click", () => copyText(link.value, copy));
  link.addEventListener("focus", () => link.select());
  create.addEventListener("click", makeLink);
  revoke.addEventListener("click", revokeLink);
  close.addEventListener("click", () => dialog.close());
  ui = { dialog, link, copy, row, meta, status, error, create, revoke };
}

function show(share, statusText = "") {
  shown.share = share;
  ui.row.hidden = ui.meta.hidden = ui.revoke.hidden = !share;
  ui.create.hidden = Boolean(share);
  ui.link.value = share ? share.url : "";
  ui.meta.textContent = share
    ? fill(tn("Made %(date)s · %(count)s message", "Made %(date)s · %(count)s messages", share.messages), {
      date: new Date(share.created_at).toLocaleString(language), count: share.messages,
    })
    : "";
  ui.status.textContent = statusText;
  ui.error.hidden = true;
}

function refuse(text) {
  ui.error.textContent = text;
  ui.error.hidden = false;
}

async function call(url, method) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRFToken"] = data.csrfToken;
  let response;
  try {
    response = await fetch(url, { method, headers, credentials: "same-origin" });
  } catch {
    throw new Error(t("The server could not be reached: try again in a moment."));
  }
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (!response.ok) {
    throw new Error(body?.error?.detail || t("The server refused that; reload the page and try again."));
  }
  return body;
}

async function makeLink() {
  const id = shown.conversation;
  ui.create.disabled = true;
  try {
    const body = await call(conversationUrl(urls.shares, id), "POST");
    if (shown.conversation === id) {
      show(body.share, t("Link made: copy it and send it to whoever you like."));
      ui.link.focus();
    }
  } catch (e) {
    refuse(e.message);
  } finally {
    ui.create.disabled = false;
  }
}

async function revokeLink() {
  const share = shown.share;
  if (!share) return;
  ui.revoke.disabled = true;
  try {
    await call(conversationUrl(urls.revoke, share.id), "POST");
    if (shown.share === share) {
      show(null, t("The link was revoked: it no longer works."));
      ui.create.focus(); // the Revoke button is gone: focus stays in the dialog
    }
  } catch (e) {
    refuse(e.message);
  } finally {
    ui.revoke.disabled = false;
  }
}

/** Open the Share dialog for one of the person's conversations: its newest live link, or a button to make one. */
export async function open(conversationId) {
  if (!ui) build();
  shown = { conversation: conversationId, share: null };
  show(null);
  ui.create.hidden = true; // until the server says whether a link exists
  if (!ui.dialog.open) ui.dialog.showModal();
  try {
    const body = await call(conversationUrl(urls.shares, conversationId), "GET");
    if (shown.conversation === conversationId) show(body.shares[0] || null);
  } catch (e) {
    if (shown.conversation === conversationId) {
      show(null);
      refuse(e.message);
    }
  }
}

window.chatShare = { open };
$("share")?.addEventListener("click", () => { if (state.conversation !== null) open(state.conversation); });
