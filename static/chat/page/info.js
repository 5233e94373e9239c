// Each message's time (a small stamp, the full date on hover) and each finished reply's ⓘ card: its model, tokens,
// speed and why it ended. Drawn from what the thread endpoint and the done frame both carry (created_at, usage,
// timing, finish_reason), so they are the same after a reload, and re-drawn from the page's record of the message
// whenever its meta line is (a thumbs click, a comparison's pick), so nothing there vanishes.
import { button } from "./state.js";
import { label } from "./models.js";
import { t, fill as fillText, language } from "./i18n.js";

const ACTIVE = ["queued", "streaming"];

export function timeTag(m) {
  const when = m.created_at ? new Date(m.created_at) : null;
  if (!when || Number.isNaN(when.getTime())) return [];
  const stamp = document.createElement("time");
  stamp.className = "stamp";
  stamp.dateTime = m.created_at;
  // In the page's language, as every other date of the page (the browser's own may differ).
  const clock = when.toLocaleTimeString(language, { hour: "2-digit", minute: "2-digit" });
  const today = when.toDateString() === new Date().toDateString();
  stamp.textContent = today ? clock : `${when.toLocaleDateString(language, { month: "short", day: "numeric" })} ${clock}`;
  stamp.title = when.toLocaleString(language, { dateStyle: "full", timeStyle: "medium" });
  return [stamp];
}

function endedWords(m) {
  return {
    stop: t("finished its answer"),
    length: t("cut off at the length limit"),
    cancelled: t("stopped"),
    error: t("failed"),
  }[m.finish_reason] || "";
}

function rows(m) {
  const usage = m.usage || {};
  const timing = m.timing || {};
  // Its display name, and the served name where that differs (what the API and the review panel call it).
  const name = m.model ? (label(m.model) === m.model ? m.model : `${label(m.model)} (${m.model})`) : "—";
  const out = [[t("Model"), name]];
  const reply = usage.completion_tokens ?? m.completion_tokens;
  if (reply) {
    out.push([t("Tokens"), fillText(t("%(reply)s in the reply · %(prompt)s in the prompt"),
      { reply, prompt: usage.prompt_tokens || 0 })]);
  }
  if (timing.tokens_per_s) out.push([t("Speed"), `${timing.tokens_per_s.toFixed(1)} ${t("tokens/s")}`]);
  if (timing.ttft_ms != null) out.push([t("First token"), `${(timing.ttft_ms / 1000).toFixed(2)} s`]);
  if (endedWords(m)) out.push([t("Ended"), endedWords(m)]);
  return out;
}

function fill(card, m) {
  const list = document.createElement("dl");
  for (const [name, value] of rows(m)) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }
  card.replaceChildren(list);
}

// The ⓘ button of a finished reply (a blind comparison not yet picked has none: it would name the model).
export function infoButton(el, m, blind) {
  if (m.role !== "assistant" || ACTIVE.includes(m.status) || blind) return [];
  const open = el.querySelector(".info-card");
  if (open) fill(open, m); // re-drawn with what the page knows now
  // A plain "i" drawn round by the stylesheet: the circled-i character is missing from common Linux fonts (a box).
  const b = button("i", "info-button", () => toggle(el, m, b), t("About this reply: model, tokens, speed"));
  b.setAttribute("aria-expanded", String(Boolean(open)));
  return [b];
}

function toggle(el, m, b) {
  const open = el.querySelector(".info-card");
  if (open) {
    open.remove();
    b.setAttribute("aria-expanded", "false");
    return;
  }
  const card = document.createElement("div");
  card.className = "info-card";
  card.setAttribute("role", "note");
  card.setAttribute("aria-label", t("About this reply"));
  fill(card, m);
  el.appendChild(card);
  card.scrollIntoView({ block: "nearest" }); // the last reply's card opens below the visible part
  b.setAttribute("aria-expanded", "true");
}

// Escape closes an open card, focus back on its button.
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape") return;
  const card = document.activeElement?.closest?.(".msg")?.querySelector(".info-card");
  if (!card) return;
  const msg = card.closest(".msg");
  card.remove();
  const b = msg.querySelector(".info-button");
  if (b) { b.setAttribute("aria-expanded", "false"); b.focus(); }
});
