// The model picker and Compare's controls. The picker in the header says which model a new chat goes to (the
// `send` frame's `model`) or, with a conversation open, which model it uses: changing it there switches the
// conversation (a `settings` frame with `model`), from its next reply. Compare, above the message box, sends one
// message to two models at once (`compare`, optionally `blind`). The list is the page config's `models`: those
// this person may use, with `live` workers counted when the page loaded (0: none running then — still offered, so
// the server's own no_worker sentence says what is wrong if it is still so).
import { $, state } from "./state.js";
import { send } from "./socket.js";
import { t, fill, language } from "./i18n.js";

const models = state.config.models;
const byName = new Map(models.map((m) => [m.name, m]));

/** A model's display name (its label), or the name itself for one not served to this person any more. */
export const label = (name) => byName.get(name)?.label || name || "";

/** The model new chats start with: the person's own default if they may still use it, else the site's. */
export function defaultModel() {
  const own = state.config.defaults.model_name;
  if (own && byName.has(own)) return own;
  return (models.find((m) => m.default) || models[0])?.name || "";
}

/** Fill a <select> with the models (but `except`), `value` chosen; a value not in the list (a conversation whose
 * model is no longer served to this person) gets an option of its own, so the select never lies about it. */
export function fillSelect(select, value, except = null) {
  select.replaceChildren();
  for (const m of models) {
    if (m.name === except) continue;
    const option = new Option(m.live ? m.label : fill(t("%(model)s (unavailable)"), { model: m.label }), m.name);
    option.title = m.description;
    select.appendChild(option);
  }
  if (value && !byName.has(value)) select.appendChild(new Option(fill(t("%(model)s (not served)"), { model: value }), value));
  if (value) select.value = value;
}

/** What the picker shows beside the name: description, context window, and whether a worker is running. */
function about(name) {
  const m = byName.get(name);
  if (!m) return t("This model is not served to you any more: pick another.");
  const parts = [];
  if (m.description) parts.push(m.description);
  if (m.context_window) parts.push(fill(t("%(n)s-token window"), { n: m.context_window.toLocaleString(language) }));
  if (!m.live) parts.push(t("unavailable: no worker was running for it when the page loaded"));
  return parts.join(" · ");
}

const picker = $("model");
const note = $("model-note");
let current = null; // the open conversation's model as the server last said (null: a new chat)

function showAbout() {
  $("model-about").textContent = about(picker.value);
  fillCompare();
}

/** A new chat: the person's default model, preselected. */
export function showNewChat() {
  current = null;
  fillSelect(picker, defaultModel());
  note.textContent = "";
  showAbout();
}

/** The open conversation's model (from its thread, or a settings frame). */
export function showConversation(name) {
  current = name;
  fillSelect(picker, name);
  note.textContent = "";
  showAbout();
}

/** The model a new chat's first message goes to. */
export const chosen = () => picker.value;

/** A message was sent: a switch's note ("from the next reply on") has done its job. */
export function sent() { note.textContent = ""; }

picker.addEventListener("change", () => {
  showAbout();
  if (state.conversation === null) return; // a new chat: the choice goes with its first message
  // settings carries the whole settings: what is sent is stored, so the conversation's own go with the model.
  const s = state.settings;
  const ok = s && send({ type: "settings", conversation: state.conversation, system_prompt: s.system_prompt,
                         params: s.params, model: picker.value });
  if (!ok) { // not connected (the error line says so), or the thread not loaded yet: show what is true
    fillSelect(picker, current || defaultModel());
    showAbout();
  }
});

// --- Compare -------------------------------------------------------------------------------------------------
const compareOn = $("compare-on"), compareModel = $("compare-model"), blind = $("compare-blind");
$("compare-bar").hidden = models.length < 2; // nothing to compare with one model

function fillCompare() {
  const keep = compareModel.value;
  fillSelect(compareModel, "", picker.value);
  if (keep && keep !== picker.value && byName.has(keep)) compareModel.value = keep;
}

function showCompare() {
  const on = compareOn.checked;
  $("compare-options").hidden = !on;
  $("send").textContent = on ? t("Send to both") : t("Send");
}
compareOn.addEventListener("change", showCompare);

/** A send's Compare fields: the second model and blind, when Compare is ticked; none otherwise. */
export function compareChoice() {
  if (!compareOn.checked || !compareModel.value) return {};
  return { compare: compareModel.value, blind: blind.checked };
}

// --- settings frames -----------------------------------------------------------------------------------------
/** The person's default model changed (the settings panel, no chat open), or a conversation's model did. */
export function modelSettingsArrived(f) {
  if (f.conversation === null) {
    models.forEach((m) => { m.default = m.name === f.model; });
    if (state.conversation === null) showNewChat();
  } else if (f.conversation === state.conversation && f.model !== current) {
    showConversation(f.model); // stored: here, in the settings panel or in another tab
    note.textContent = fill(t("Switched to %(model)s: it answers from the next reply on."), { model: label(f.model) });
  }
}

showNewChat();
showCompare();
