// Documents attached to the message being written (the 📎 button, a drop onto the composer, a paste), and what
// the thread shows of them: the files a message was sent with, and under a reply the passages its prompt quoted
// (its sources). A file is uploaded at once over HTTP (POST /attachments/) and becomes the person's pending
// attachment; the next send names it (the send frame's `attachments`). Server: chat/documents/.
import { $, state, showError, conversationUrl } from "./state.js";

import { t, tn, fill } from "./i18n.js";
const data = $("thread").dataset;
const limits = state.config.attachments || { max_bytes: 10 * 1024 * 1024, per_message: 5 };

let pending = [];          // uploaded, not yet sent: {id, name, size, pages, passages}
const uploading = new Set(); // names of the files on their way up
const inFlight = new Map();  // a send's client_id -> the attachments it named (given back if it is refused)

function csrf() {
  return document.querySelector("#composer input[name=csrfmiddlewaretoken]")?.value || "";
}

export function sizeText(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

function details(a) {
  const parts = [sizeText(a.size)];
  if (a.pages) parts.push(fill(tn("%(n)s page", "%(n)s pages", a.pages), { n: a.pages }));
  if (a.passages > 1) parts.push(fill(tn("%(n)s passage", "%(n)s passages", a.passages), { n: a.passages }));
  return parts.join(" · ");
}

function chip(a, removable) {
  const el = document.createElement("span");
  el.className = "attachment-chip";
  el.dataset.id = a.id;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = `📄 ${a.name}`;
  name.title = a.name;
  const info = document.createElement("small");
  info.textContent = details(a);
  el.append(name, info);
  if (removable) {
    const x = document.createElement("button");
    x.type = "button";
    x.className = "remove";
    x.textContent = "×";
    x.title = x.ariaLabel = fill(t("Remove %(name)s"), { name: a.name });
    x.addEventListener("click", () => remove(a.id));
    el.appendChild(x);
  }
  return el;
}

function render() {
  const box = $("attachments");
  const items = pending.map((a) => chip(a, true));
  for (const name of uploading) {
    const el = document.createElement("span");
    el.className = "attachment-chip uploading";
    el.textContent = `⏳ ${name} — ${t("reading…")}`;
    items.push(el);
  }
  box.replaceChildren(...items);
  box.hidden = items.length === 0;
}

async function uploadOne(file) {
  const name = file.name || "pasted.txt";
  if (file.size > limits.max_bytes) {
    showError(fill(t("%(name)s: this file is too large: at most %(size)s."), { name, size: sizeText(limits.max_bytes) }));
    return;
  }
  uploading.add(name);
  render();
  try {
    const body = new FormData();
    body.append("file", file, name);
    const response = await fetch(data.attachmentUploadUrl, {
      method: "POST", body, headers: { "X-CSRFToken": csrf() }, credentials: "same-origin",
    });
    const answer = await response.json().catch(() => null);
    if (response.ok && answer?.attachment) {
      pending.push(answer.attachment);
      showError("");
    } else {
      showError(`${name}: ${answer?.error?.detail || t("the file could not be attached.")}`);
    }
  } catch {
    showError(`${name}: ${t("the file could not be sent; check the connection and try again.")}`);
  } finally {
    uploading.delete(name);
    render();
  }
}

export async function upload(files) {
  for (const file of files) {
    if (pending.length + uploading.size >= limits.per_message) {
      showError(t("At most %s files can be attached to one message.").replace("%s", () => limits.per_message));
      return;
    }
    await uploadOne(file); // one at a time: each is read on the server before the next goes
  }
}

async function remove(id) {
  pending = pending.filter((a) => a.id !== id);
  render();
  await fetch(conversationUrl(data.attachmentRemoveUrl, id), {
    method: "DELETE", headers: { "X-CSRFToken": csrf() }, credentials: "same-origin",
  }).catch(() => {});
}

// For the send frame: the attachments to name, {} when none; null while a file is still on its way up (the
// send waits, or the file would be left behind).
export function forSend() {
  if (uploading.size) {
    showError(t("Wait a moment: a file is still being attached."));
    return null;
  }
  return pending.length ? { attachments: pending.map((a) => a.id) } : {};
}

export function sent(clientId) {
  if (!pending.length) return;
  inFlight.set(clientId, pending);
  pending = [];
  render();
}

export function giveBack(clientId) {
  const back = inFlight.get(clientId);
  if (!back) return;
  inFlight.delete(clientId);
  pending = [...back, ...pending];
  render();
}

// --- in the thread: a message's files, a reply's sources ---------------------------------------------------------
function sourceText(s) {
  if (s.whole) return `[${s.n}] ${s.name}`;
  const parts = [`[${s.n}] ${s.name}`];
  if (s.page) parts.push(fill(t("page %(page)s"), { page: s.page }));
  parts.push(s.passages ? fill(t("passage %(n)s / %(of)s"), { n: s.passage, of: s.passages })
    : fill(t("passage %(n)s"), { n: s.passage }));
  return parts.join(" · ");
}

export function decorate(el, m) {
  el.querySelectorAll(":scope > .attached, :scope > .sources").forEach((node) => node.remove());
  const meta = el.querySelector(":scope > .meta");
  if (m.role === "user" && m.attachments?.length) {
    const box = document.createElement("div");
    box.className = "attached";
    box.append(...m.attachments.map((a) => chip(a, false)));
    el.insertBefore(box, meta);
  }
  if (m.role === "assistant" && m.sources?.length) {
    const box = document.createElement("div");
    box.className = "sources";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = t("Sources:");
    box.appendChild(label);
    for (const s of m.sources) {
      const item = document.createElement("span");
      item.className = "source";
      item.dataset.attachment = s.attachment;
      if (s.passage) item.dataset.passage = s.passage;
      item.textContent = sourceText(s);
      item.title = s.whole ? t("the whole document was in the prompt") : t("this passage was in the prompt");
      box.appendChild(item);
    }
    el.insertBefore(box, meta);
  }
}

// --- wiring: the button, drop onto the composer, paste into the input --------------------------------------------
$("attach").addEventListener("click", () => $("attach-input").click());
$("attach-input").addEventListener("change", (e) => {
  const files = [...e.target.files];
  e.target.value = "";
  upload(files);
});
const composer = $("composer");
composer.addEventListener("dragover", (e) => {
  if (![...(e.dataTransfer?.types || [])].includes("Files")) return;
  e.preventDefault();
  composer.classList.add("dropping");
});
composer.addEventListener("dragleave", (e) => {
  if (!composer.contains(e.relatedTarget)) composer.classList.remove("dropping");
});
composer.addEventListener("drop", (e) => {
  composer.classList.remove("dropping");
  if (!e.dataTransfer?.files?.length) return;
  e.preventDefault();
  upload([...e.dataTransfer.files]);
});
$("input").addEventListener("paste", (e) => {
  const files = [...(e.clipboardData?.files || [])];
  if (!files.length) return; // text pastes as text
  e.preventDefault();
  upload(files);
});

// After a reload: the files attached and not yet sent are still there.
fetch(data.attachmentPendingUrl, { credentials: "same-origin" })
  .then((r) => (r.ok ? r.json() : null))
  .then((answer) => { if (answer?.attachments) { pending = answer.attachments; render(); } })
  .catch(() => {});
