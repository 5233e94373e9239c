// The settings panel: model, system prompt, temperature, top_p and max new tokens for the conversation on screen
// (they apply to its next reply), or, with no conversation open, the person's own defaults that new chats start
// from (their default model included).
// Bounds and the defaults are shown beside each field; an empty field means the default (the site's temperature and
// top-p for chats, the model's own length).
import { $, state } from "./state.js";
import { send } from "./socket.js";
import { defaultModel, fillSelect, modelSettingsArrived } from "./models.js";
import { t, fill } from "./i18n.js";

const FIELDS = ["temperature", "top_p", "max_new_tokens"];
const dialog = $("settings");

for (const name of FIELDS) { // bounds and defaults, from chat/conversations/params.py through the page's config
  const b = state.config.bounds[name], input = $(`set-${name}`);
  input.min = b.min;
  input.max = b.max;
  input.step = b.step;
  input.placeholder = b.placeholder ?? t("default"); // the value that applies when left empty
  $(`hint-${name}`).textContent = fill(t("%(min)s – %(max)s; empty: %(default)s"), b);
}
$("settings-privacy").textContent = $("privacy").textContent;

function current() {
  return state.conversation === null ? state.config.defaults : (state.settings || { system_prompt: "", params: {} });
}

export function openSettings() {
  const s = current();
  const forNew = state.conversation === null;
  $("settings-scope").textContent = forNew
    ? t("Your defaults: every new chat starts with these.")
    : t("This conversation: they apply from its next reply.");
  $("set-as-default-row").hidden = forNew;
  $("set-as-default").checked = false;
  fillSelect($("set-model"), forNew ? defaultModel() : s.model);
  $("hint-model").textContent = forNew ? t("New chats start with this model.") : t("This conversation's next reply is written by this model.");
  $("set-system").value = s.system_prompt || "";
  for (const name of FIELDS) $(`set-${name}`).value = s.params?.[name] ?? "";
  dialog.showModal();
  $("set-system").focus();
}

function read() {
  const params = {};
  for (const name of FIELDS) {
    const raw = $(`set-${name}`).value.trim();
    if (raw !== "") params[name] = Number(raw);
  }
  const values = { system_prompt: $("set-system").value, params };
  // The model as shown: a conversation's only once its thread has said which it is.
  if (state.conversation === null || state.settings) values.model = $("set-model").value;
  return values;
}

$("open-settings").addEventListener("click", openSettings);
$("settings-cancel").addEventListener("click", () => dialog.close());
$("settings-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const values = read();
  if (!send({ type: "settings", conversation: state.conversation, ...values })) return;
  if (state.conversation !== null && $("set-as-default").checked) send({ type: "settings", conversation: null, ...values });
  dialog.close();
});

export function settingsArrived(f) {
  modelSettingsArrived(f); // the header's picker
  if (f.conversation === null) {
    state.config.defaults = { system_prompt: f.system_prompt, params: f.params, model_name: f.model };
  } else if (f.conversation === state.conversation) {
    state.settings = { system_prompt: f.system_prompt, params: f.params, model: f.model };
  }
  $("settings-saved").textContent = t("Saved.");
  setTimeout(() => { $("settings-saved").textContent = ""; }, 3000);
}
