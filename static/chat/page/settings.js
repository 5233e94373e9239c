// The settings panel: system prompt, temperature, top_p and max new tokens for the conversation on screen (they
// apply to its next reply), or, with no conversation open, the person's own defaults that new chats start from.
// Bounds and the model's defaults are shown beside each field; an empty field means "the model's default".
import { $, state } from "./state.js";
import { send } from "./socket.js";

const FIELDS = ["temperature", "top_p", "max_new_tokens"];
const dialog = $("settings");

for (const name of FIELDS) { // bounds and defaults, from chat/conversations/params.py through the page's config
  const b = state.config.bounds[name], input = $(`set-${name}`);
  input.min = b.min;
  input.max = b.max;
  input.step = b.step;
  input.placeholder = "model default";
  $(`hint-${name}`).textContent = `${b.min} – ${b.max}; empty: ${b.default}`;
}
$("settings-privacy").textContent = $("privacy").textContent;

function current() {
  return state.conversation === null ? state.config.defaults : (state.settings || { system_prompt: "", params: {} });
}

export function openSettings() {
  const s = current();
  const forNew = state.conversation === null;
  $("settings-scope").textContent = forNew
    ? "Your defaults: every new chat starts with these."
    : "This conversation: they apply from its next reply.";
  $("set-as-default-row").hidden = forNew;
  $("set-as-default").checked = false;
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
  return { system_prompt: $("set-system").value, params };
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
  const s = { system_prompt: f.system_prompt, params: f.params };
  if (f.conversation === null) state.config.defaults = s;
  else if (f.conversation === state.conversation) state.settings = s;
  $("settings-saved").textContent = "Saved.";
  setTimeout(() => { $("settings-saved").textContent = ""; }, 3000);
}
