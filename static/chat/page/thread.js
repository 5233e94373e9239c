// The conversation on screen: messages, the reply streaming in, and what a person can do to a message (copy,
// edit and resend, regenerate, flip between alternatives ‹ 2/3 ›, rate). Replies are sanitised Markdown
// (markdown.js); what a person typed is shown exactly as typed (textContent).
import { $, state, showError, button, newClientId, urls, conversationUrl } from "./state.js";
import { send } from "./socket.js";
import { refreshQuota } from "./quota.js";
import * as markdown from "./markdown.js";

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
  if (streaming) setActive(m.id);
  scrollDown();
  return el;
}

function renderMeta(el, m) {
  const meta = el.querySelector(".meta");
  meta.replaceChildren();
  const finished = !ACTIVE.includes(m.status);
  if (m.siblings && m.siblings.length > 1) meta.appendChild(switcher(m));
  if (m.role === "user") {
    const copy = button("Copy", "copy-message", () => markdown.copyText(m.content, copy), "Copy this message");
    meta.appendChild(copy);
    if (finished) meta.appendChild(button("Edit", "edit needs-idle", () => startEdit(m.id), "Edit and resend this message"));
    return;
  }
  const words = { queued: "waiting for the model…", stopped: "stopped", failed: "failed" };
  const parts = [];
  if (words[m.status]) parts.push(words[m.status]);
  if (m.error) parts.push(m.error);
  if (m.timing && m.timing.tokens_per_s) parts.push(`${m.usage.completion_tokens} tokens · ${m.timing.tokens_per_s.toFixed(1)} tok/s`);
  if (parts.length) {
    const info = document.createElement("span");
    info.className = "info";
    info.textContent = parts.join(" · ");
    meta.appendChild(info);
  }
  if (!finished) return;
  if (m.content) {
    const copy = button("Copy", "copy-message", () => markdown.copyText(markdown.source(el.querySelector(".body")), copy),
                        "Copy this reply as Markdown");
    meta.appendChild(copy);
  }
  meta.appendChild(button("Regenerate", "regenerate needs-idle",
                          () => send({ type: "regenerate", message: m.id, client_id: newClientId() }),
                          "Write this reply again"));
  meta.appendChild(thumbs(m));
  meta.querySelectorAll(".needs-idle").forEach((b) => { b.disabled = state.active !== null; });
}

function switcher(m) {
  const at = m.siblings.indexOf(m.id);
  const nav = document.createElement("span");
  nav.className = "switcher";
  nav.setAttribute("role", "group");
  nav.setAttribute("aria-label", "Alternatives of this message");
  const go = (i) => () => send({ type: "switch", message: m.siblings[i] });
  const prev = button("‹", "prev needs-idle", go(at - 1), "Previous alternative");
  const next = button("›", "next needs-idle", go(at + 1), "Next alternative");
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
  for (const [value, label, title] of [[1, "👍", "Good reply"], [-1, "👎", "Bad reply"]]) {
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
  input.placeholder = rating > 0 ? "What was good? (optional)" : "What was wrong? (optional)";
  input.setAttribute("aria-label", "Comment on this reply (optional)");
  const save = document.createElement("button");
  save.type = "submit";
  save.textContent = "Send comment";
  form.append(input, save, button("Close", "close", () => form.remove()));
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
  box.setAttribute("aria-label", "Edit your message");
  const save = document.createElement("button");
  save.type = "submit";
  save.className = "primary";
  save.textContent = "Send";
  const close = () => { form.remove(); el.classList.remove("editing"); $("input").focus(); };
  form.append(box, save, button("Cancel", "cancel", close));
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
  let node = el;
  while (node) {
    const next = node.nextElementSibling;
    if (node.dataset.id) {
      state.elements.delete(Number(node.dataset.id));
      state.messages.delete(Number(node.dataset.id));
    }
    node.remove();
    node = next;
  }
}

// --- the thread ---------------------------------------------------------------------------------------------
export function clearThread(title) {
  $("messages").replaceChildren();
  state.elements.clear();
  state.messages.clear();
  setActive(null);
  $("title").textContent = title || "New chat";
  document.title = title ? `${title} · Chat` : "Chat";
  const hint = document.createElement("p");
  hint.className = "empty";
  hint.textContent = "Ask anything to start a conversation.";
  $("messages").appendChild(hint);
  follow = true;
}

export async function loadThread(id) {
  const res = await fetch(conversationUrl(urls.conversation, id));
  if (!res.ok) return null;
  const data = await res.json();
  if (state.conversation !== id) return null; // another conversation was opened meanwhile
  clearThread(data.conversation.title);
  state.settings = { system_prompt: data.conversation.system_prompt, params: data.conversation.params };
  data.messages.forEach((m) => renderMessage(m));
  scrollDown(true);
  return data;
}

export const threadHandlers = {
  message(f) {
    const m = f.message;
    if (m.conversation !== state.conversation) return;
    if (f.replaces) removeFrom(f.replaces);
    renderMessage(m);
  },
  delta(f) {
    const el = state.elements.get(f.message);
    if (!el) return;
    if (el.className !== "msg assistant streaming") {
      el.className = "msg assistant streaming";
      state.messages.get(f.message).status = "streaming";
      el.querySelector(".meta").replaceChildren();
    }
    markdown.append(el.querySelector(".body"), f.text); // rendered, and scrolled to, at the next frame
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
                    timing: f.timing, error: f.error });
    if (state.active === f.message) setActive(null);
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
  if (state.active !== null) send({ type: "stop", message: state.active });
}

export { showError };
