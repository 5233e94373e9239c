// The conversation on screen: messages, the reply streaming in, and what a person can do to a message (copy,
// edit and resend, regenerate, flip between alternatives ‹ 2/3 ›, rate), each reply's model, and Compare's pairs
// (compare.js lays them out). Replies are sanitised Markdown (markdown.js); what a person typed is shown exactly
// as typed (textContent).
import { $, state, showError, button, newClientId, urls, conversationUrl } from "./state.js";
import { send } from "./socket.js";
import { refreshQuota } from "./quota.js";
import * as markdown from "./markdown.js";
import * as compare from "./compare.js";
import { t, fill, language } from "./i18n.js";
import { infoButton, timeTag } from "./info.js";
import { continueParts } from "./continue.js";
import { decorate } from "./attachments.js";

const ACTIVE = ["queued", "streaming"];
let follow = true; // keep the newest text in view, until the person scrolls up

export function setActive(id) {
  state.active = id;
  $("stop").hidden = id === null;
  $("send").disabled = id !== null;
  document.querySelectorAll(".msg .meta .needs-idle").forEach((b) => { b.disabled = id !== null; });
}

// --- auto-scroll ----------------------------------------------------------------------------------------
export function scrollDown(force) {
  const box = $("messages");
  if (force) follow = true;
  if (follow) box.scrollTop = box.scrollHeight;
  $("jump").hidden = follow;
}

$("messages").addEventListener("scroll", () => {
  const box = $("messages");
  follow = box.scrollHeight - box.scrollTop - box.clientHeight < 48;
  $("jump").hidden = follow;
}, { passive: true });
// A wheel turned up pauses following at once: waiting for the scroll event would let a render that comes first
// pull the view back down while a reply streams.
$("messages").addEventListener("wheel", (e) => {
  if (e.deltaY < 0) { follow = false; $("jump").hidden = false; }
}, { passive: true });
$("jump").addEventListener("click", () => { scrollDown(true); $("input").focus(); });
// The button floats just above what is under the messages — the error line and the message box, whose height
// changes (Stop, attached files, a refusal) — never behind it.
const underMessages = new ResizeObserver(() => {
  const error = $("error");
  const below = $("composer").offsetHeight + (error.hidden ? 0 : error.offsetHeight + 8);
  $("jump").style.bottom = `${below + 12}px`;
});
underMessages.observe($("composer"));
underMessages.observe($("error"));

// --- messages ---------------------------------------------------------------------------------------------
export function renderMessage(m) {
  const known = { ...(state.messages.get(m.id) || {}), ...m };
  state.messages.set(m.id, known);
  let el = state.elements.get(m.id);
  if (!el) {
    el = document.createElement("div");
    el.dataset.id = m.id;
    el.innerHTML = '<div class="body"></div><div class="meta"></div>';
    $("messages").appendChild(el);
    state.elements.set(m.id, el);
    $("messages").querySelector(".empty")?.remove();
  }
  el.className = `msg ${known.role} ${known.status}`;
  const streaming = known.role === "assistant" && ACTIVE.includes(known.status);
  // The reply being written is announced to screen readers as it grows; finished ones are not re-read.
  if (streaming) el.setAttribute("aria-live", "polite"); else el.removeAttribute("aria-live");
  el.setAttribute("aria-busy", String(streaming));
  const body = el.querySelector(".body");
  if (known.role === "assistant") markdown.render(body, known.content);
  else body.textContent = known.content;
  renderMeta(el, known);
  decorate(el, known); // a message's files, a reply's sources
  if (streaming) setActive(m.id);
  scrollDown();
  return el;
}

// The reply's model, small, first in its meta line ("Reply A" / "Reply B" in a blind comparison not yet picked).
function modelTag(m) {
  if (m.role !== "assistant" || !m.model) return [];
  const tag = document.createElement("span");
  tag.className = "model-tag";
  tag.textContent = compare.shownName(m);
  if (!compare.unpicked(m.id)?.blind) tag.title = m.model;
  return [tag];
}

function renderMeta(el, m) {
  const meta = el.querySelector(".meta");
  meta.replaceChildren(...modelTag(m), ...timeTag(m));
  const finished = !ACTIVE.includes(m.status);
  const paired = compare.unpicked(m.id) !== null; // side by side until the pick: no ‹ ›, no Regenerate yet
  if (m.siblings && m.siblings.length > 1 && !paired) meta.prepend(switcher(m));
  if (m.role === "user") {
    const copy = button(t("Copy"), "copy-message", () => markdown.copyText(m.content, copy), t("Copy this message"));
    meta.appendChild(copy);
    if (finished) meta.appendChild(button(t("Edit"), "edit needs-idle", () => startEdit(m.id), t("Edit and resend this message")));
    return;
  }
  const words = { queued: t("waiting for the model…"), stopped: t("stopped"), failed: t("failed") };
  const parts = [];
  if (words[m.status]) parts.push(words[m.status]);
  if (m.error) parts.push(m.error);
  if (parts.length) {
    const info = document.createElement("span");
    info.className = "info";
    info.textContent = parts.join(" · ");
    meta.appendChild(info);
  }
  if (!finished) return;
  meta.append(...continueParts(el, m, paired), ...infoButton(el, m, compare.unpicked(m.id)?.blind));
  if (m.content) {
    const copy = button(t("Copy"), "copy-message", () => markdown.copyText(markdown.source(el.querySelector(".body")), copy),
                        t("Copy this reply as Markdown"));
    meta.appendChild(copy);
  }
  if (!paired) {
    meta.appendChild(button(t("Regenerate"), "regenerate needs-idle",
                            () => send({ type: "regenerate", message: m.id, client_id: newClientId() }),
                            t("Write this reply again")));
  }
  meta.appendChild(thumbs(m));
  meta.append(...compare.metaParts(m));
  meta.querySelectorAll(".needs-idle").forEach((b) => { b.disabled = state.active !== null; });
}

function switcher(m) {
  const at = m.siblings.indexOf(m.id);
  const nav = document.createElement("span");
  nav.className = "switcher";
  nav.setAttribute("role", "group");
  nav.setAttribute("aria-label", t("Alternatives of this message"));
  const go = (i) => () => send({ type: "switch", message: m.siblings[i] });
  const prev = button("‹", "prev needs-idle", go(at - 1), t("Previous alternative"));
  const next = button("›", "next needs-idle", go(at + 1), t("Next alternative"));
  prev.disabled = at <= 0;
  next.disabled = at >= m.siblings.length - 1;
  const where = document.createElement("span");
  where.className = "position";
  where.textContent = `${at + 1}/${m.siblings.length}`;
  nav.append(prev, where, next);
  return nav;
}

// --- feedback: 👍/👎, each with an optional comment; pressing the chosen one again takes it back ------------------
function thumbs(m) {
  const box = document.createElement("span");
  box.className = "feedback";
  const rating = m.feedback?.rating || 0;
  for (const [value, label, title] of [[1, "👍", t("Good reply")], [-1, "👎", t("Bad reply")]]) {
    const b = button(label, value > 0 ? "thumb up" : "thumb down", () => rate(m.id, rating === value ? 0 : value), title);
    b.setAttribute("aria-pressed", String(rating === value));
    box.appendChild(b);
  }
  if (rating && m.feedback.comment) {
    const said = document.createElement("span");
    said.className = "comment";
    said.textContent = `“${m.feedback.comment}”`;
    box.appendChild(said);
  }
  return box;
}

function rate(id, rating) {
  if (!send({ type: "feedback", message: id, rating, comment: "" })) return;
  if (rating === 0) return;
  const el = state.elements.get(id);
  el.querySelector(".feedback-form")?.remove();
  const form = document.createElement("form");
  form.className = "feedback-form";
  const input = document.createElement("input");
  input.type = "text";
  input.maxLength = 2000;
  input.placeholder = rating > 0 ? t("What was good? (optional)") : t("What was wrong? (optional)");
  input.setAttribute("aria-label", t("Comment on this reply (optional)"));
  const save = document.createElement("button");
  save.type = "submit";
  save.textContent = t("Send comment");
  form.append(input, save, button(t("Close"), "close", () => form.remove()));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (send({ type: "feedback", message: id, rating, comment: input.value })) form.remove();
  });
  el.appendChild(form);
  input.focus();
}

export function feedbackArrived(f) {
  const m = state.messages.get(f.message);
  if (!m) return;
  m.feedback = f.rating ? { rating: f.rating, comment: f.comment } : null;
  renderMeta(state.elements.get(f.message), m);
}

// --- edit and resend ------------------------------------------------------------------------------------------
export function startEdit(id, draft) {
  const el = state.elements.get(id);
  const m = state.messages.get(id);
  if (!el || !m || state.active !== null || el.querySelector(".edit-form")) return false;
  const form = document.createElement("form");
  form.className = "edit-form";
  const box = document.createElement("textarea");
  box.value = draft ?? m.content;
  box.rows = Math.min(10, box.value.split("\n").length + 1);
  box.setAttribute("aria-label", t("Edit your message"));
  const save = document.createElement("button");
  save.type = "submit";
  save.className = "primary";
  save.textContent = t("Send");
  const close = () => { form.remove(); el.classList.remove("editing"); $("input").focus(); };
  form.append(box, save, button(t("Cancel"), "cancel", close));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!box.value.trim()) return;
    const pending = { id: newClientId(), content: box.value, edit: id };
    if (send({ type: "edit", message: id, content: box.value, client_id: pending.id })) {
      state.pending = pending;
      close();
    }
  });
  box.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
    if (e.key === "Escape") { e.stopPropagation(); close(); }
  });
  el.classList.add("editing");
  el.appendChild(form);
  box.focus();
  return true;
}

// A refused send or edit: what was typed goes back where it was typed (unless something new was typed there).
export function giveBack(pending) {
  state.pending = null;
  if (pending.edit !== null && startEdit(pending.edit, pending.content)) return;
  if (!$("input").value) $("input").value = pending.content; // the message box, if the editor cannot open now
}

export function editLast() {
  const users = [...state.messages.values()].filter((m) => m.role === "user" && state.elements.has(m.id));
  if (users.length) startEdit(users[users.length - 1].id);
}

// A message that replaces another (an edit, a regenerate): the old one and everything after it leave the screen.
export function removeFrom(id) {
  const el = state.elements.get(id);
  if (!el) return;
  let node = el.closest("#messages > *"); // a Compare pair goes whole
  while (node) {
    const next = node.nextElementSibling;
    for (const gone of [node, ...node.querySelectorAll("[data-id]")]) {
      if (!gone.dataset.id) continue;
      state.elements.delete(Number(gone.dataset.id));
      state.messages.delete(Number(gone.dataset.id));
    }
    node.remove();
    node = next;
  }
}

function focusMessage(id) {
  const el = state.elements.get(id);
  el.tabIndex = -1; // focusable by script, not a stop for Tab
  el.focus({ preventScroll: true });
}

// Compare: re-draw both replies' meta lines (names, the pick buttons once both are done, whose pick it was).
function refreshPair(c) {
  for (const id of [c.first, c.second]) {
    if (state.elements.has(id)) renderMeta(state.elements.get(id), state.messages.get(id));
  }
}

// The replies still being written on screen (Compare writes two at once).
const writing = () => [...state.messages.values()]
  .filter((m) => m.role === "assistant" && ACTIVE.includes(m.status) && state.elements.has(m.id)).map((m) => m.id);

// --- the thread ---------------------------------------------------------------------------------------------
export function clearThread(title) {
  $("messages").replaceChildren();
  state.elements.clear();
  state.messages.clear();
  compare.forgetAll();
  setActive(null);
  $("title").textContent = title || t("New chat");
  document.title = title ? fill(t("%(title)s · Chat"), { title }) : t("Chat");
  const hint = document.createElement("p");
  hint.className = "empty";
  hint.textContent = t("Ask anything to start a conversation.");
  $("messages").appendChild(hint);
  follow = true;
}

export async function loadThread(id) {
  const res = await fetch(conversationUrl(urls.conversation, id));
  if (!res.ok) return null;
  const data = await res.json();
  if (state.conversation !== id) return null; // another conversation was opened meanwhile
  clearThread(data.conversation.title);
  state.settings = { system_prompt: data.conversation.system_prompt, params: data.conversation.params,
                     model: data.conversation.model };
  data.messages.forEach((m) => {
    renderMessage(m);
    const c = m.comparison && compare.register(m.comparison);
    if (!c || c.chosen !== null) return;
    // Not picked yet: both replies side by side (the branch holds the first; the comparison has both). The
    // first comes again next in the thread, with all its fields, and is re-drawn where it stands.
    for (const r of m.comparison.replies) {
      renderMessage({ conversation: m.conversation, role: "assistant", siblings: [c.first, c.second], ...r,
                      ...data.messages.find((x) => x.id === r.id) });
    }
    compare.pairUp(c);
    refreshPair(c);
  });
  scrollDown(true);
  return data;
}

export const threadHandlers = {
  message(f) {
    const m = f.message;
    if (m.conversation !== state.conversation) return;
    // Regenerate's button leaves with the reply it replaces: focus follows to the new reply, not to <body>.
    const focusLost = f.replaces && state.elements.get(f.replaces)?.contains(document.activeElement);
    if (f.replaces) removeFrom(f.replaces);
    // Compare: only its replies come as two siblings replacing nothing. Known as a comparison from the first
    // frame (so a blind one never shows a name: this tab knows its own blind sends; the compared frame that
    // follows tells the others), and the second frame pairs the two up.
    if (m.role === "assistant" && !f.replaces && m.siblings?.length === 2 && !compare.comparisonOf(m.id)) {
      const [first, second] = m.siblings;
      compare.register({ id: null, prompt: null, first, second, chosen: null,
                         blind: compare.blindSends.has(f.client_id) });
    }
    renderMessage(m);
    if (focusLost) focusMessage(m.id);
    const c = compare.unpicked(m.id);
    if (c && m.id === c.second && compare.pairUp(c)) refreshPair(c);
  },
  compared(f) {
    const c = compare.register(f.comparison);
    if (c.chosen === null) compare.pairUp(c);
    else compare.settle(c); // the picked one on the branch (a thread frame follows when it was not shown)
    refreshPair(c);
  },
  delta(f) {
    const el = state.elements.get(f.message);
    if (!el) return;
    if (el.className !== "msg assistant streaming") {
      el.className = "msg assistant streaming";
      const m = state.messages.get(f.message);
      m.status = "streaming";
      el.querySelector(".meta").replaceChildren(...modelTag(m));
    }
    el.dataset.deltas = Number(el.dataset.deltas || 0) + 1; // per reply, where the browser tests read it
    const body = el.querySelector(".body");
    // A reply's text from its start replaces what was shown: a socket that had not followed the reply (after a
    // reload, the one of Compare's two that the subscribe did not resume) gets every delta again from seq 0,
    // over the checkpoint the thread loaded.
    if (f.seq === 0 && markdown.source(body)) markdown.render(body, "");
    markdown.append(body, f.text); // rendered, and scrolled to, at the next frame
  },
  done(f) {
    const el = state.elements.get(f.message);
    if (!el) return;
    // What streamed in should be exactly what was stored: a lost or doubled delta would differ. Counted where
    // the browser tests read it; the stored text is shown either way.
    const streamed = markdown.source(el.querySelector(".body"));
    if (state.messages.get(f.message)?.status === "streaming" && streamed !== f.content) {
      $("messages").dataset.streamMismatches = Number($("messages").dataset.streamMismatches || 0) + 1;
    }
    renderMessage({ id: f.message, role: "assistant", content: f.content, status: f.status, usage: f.usage,
                    timing: f.timing, error: f.error, finish_reason: f.finish_reason,
                    sources: f.sources });
    const other = compare.partner(f.message); // its pick button waits for both
    if (other !== null) renderMeta(state.elements.get(other), state.messages.get(other));
    if (state.active === f.message) setActive(writing()[0] ?? null);
    refreshQuota();
  },
  subscribed(f) {
    if (f.conversation === state.conversation && f.active === null) setActive(null);
  },
  feedback: feedbackArrived,
};

// After each render: follow the reply, and leave the render counts where the browser tests read them
// (a module's variables are out of a test's reach, and the page's CSP forbids the eval of wait_for_function).
markdown.whenRendered(() => {
  scrollDown();
  const s = markdown.stats, data = $("messages").dataset;
  data.deltas = s.appends;
  data.frameRenders = s.frameRenders;
  data.fullRenders = s.fullRenders;
  data.renderMs = s.renderMs.toFixed(1);
  data.maxFrameMs = s.maxFrameMs.toFixed(1);
  data.maxLiveChars = s.maxLiveChars;
});

export function stopActive() {
  if (state.active === null) return;
  new Set([state.active, ...writing()]).forEach((id) => send({ type: "stop", message: id })); // Compare's both
}

export { showError };
