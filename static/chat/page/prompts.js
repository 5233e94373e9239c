// The prompt library in the chat input: typing "/" (at the start or after a space) opens a list of the person's
// prompts and the shared ones, filtered by what follows the slash as it is typed. Arrows move, Enter or Tab
// picks, Escape closes; a click picks too. A picked prompt's text replaces the "/name"; if the text holds
// {{variables}}, a small form asks for each first. Nothing is sent: the person reads it and presses Send.
// Loaded as its own module beside main.js; its keyboard listener runs before main.js's (capture), so Enter picks
// rather than sends while the list is open.
import { $ } from "./state.js";

const t = (s) => (window.gettext ? window.gettext(s) : s);
const listUrl = $("thread").dataset.promptsUrl;
const libraryUrl = $("thread").dataset.promptsPageUrl;
const input = $("input");
const list = $("prompt-suggestions");
const VARIABLE = /\{\{\s*([^{}]{1,40}?)\s*\}\}/g;
const TRIGGER = /(^|\s)\/([A-Za-z0-9_-]{0,40})$/; // "/name" just before the caret

let prompts = [];
let loadedAt = 0;
let shown = [];       // the prompts in the open list
let selected = 0;
let range = null;     // [start, end] of the "/name" being replaced

async function load() {
  try {
    const r = await fetch(listUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (r.ok) {
      prompts = (await r.json()).prompts;
      loadedAt = Date.now();
      return true;
    }
  } catch {
    // Offline for a moment: the list stays as it was; the next "/" tries again.
  }
  return false;
}

// The prompts fetched again; once they arrive, what is typed at a "/" by then is drawn from them (not the word at
// the "/": typing goes on) — even if the list closed meanwhile: "/s" typed before they came matched none of the
// none there were, and closed it as a slash before a word no prompt has.
function refresh() {
  load().then((ok) => { if (ok && document.activeElement === input) update(); });
}

function close() {
  list.hidden = true;
  list.replaceChildren();
  shown = [];
  range = null;
  input.setAttribute("aria-expanded", "false");
  input.removeAttribute("aria-activedescendant");
}

function highlight(index) {
  selected = index;
  [...list.children].forEach((li, i) => li.setAttribute("aria-selected", String(i === index)));
  const li = list.children[index];
  if (li && li.id) {
    input.setAttribute("aria-activedescendant", li.id);
    li.scrollIntoView({ block: "nearest" });
  }
}

function render(query) {
  const q = query.toLowerCase();
  shown = prompts.filter((p) => p.name.startsWith(q))
    .concat(prompts.filter((p) => !p.name.startsWith(q) && (p.name.includes(q) || p.title.toLowerCase().includes(q))));
  list.replaceChildren();
  if (!shown.length) {
    if (q) { close(); return; } // a slash followed by a word no prompt has: the person is typing a path, say
    const li = document.createElement("li");
    li.className = "empty";
    const a = document.createElement("a");
    a.href = libraryUrl;
    a.textContent = t("No saved prompts yet: make one on the Prompts page.");
    li.append(a);
    list.append(li);
  }
  shown.forEach((p, i) => {
    const li = document.createElement("li");
    li.id = `prompt-option-${i}`;
    li.setAttribute("role", "option");
    li.dataset.name = p.name;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `/${p.name}`;
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = p.title;
    li.append(name, title);
    if (p.shared && !p.mine) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = t("shared");
      li.append(tag);
    }
    // mousedown, not click: the input keeps its focus and caret.
    li.addEventListener("mousedown", (e) => { e.preventDefault(); pick(i); });
    list.append(li);
  });
  list.hidden = false;
  input.setAttribute("aria-expanded", "true");
  highlight(Math.min(selected, Math.max(shown.length - 1, 0)));
}

function update() {
  const caret = input.selectionStart;
  if (caret !== input.selectionEnd) { close(); return; }
  const match = TRIGGER.exec(input.value.slice(0, caret));
  if (!match) { close(); return; }
  const start = caret - match[2].length - 1;
  const opening = range === null;
  range = [start, caret];
  if (opening) {
    selected = 0;
    if (Date.now() - loadedAt > 30_000) refresh();
  }
  render(match[2]);
}

function insert(text, at) {
  const [start, end] = at;
  input.value = input.value.slice(0, start) + text + input.value.slice(end);
  const caret = start + text.length;
  input.focus();
  input.setSelectionRange(caret, caret);
  input.dispatchEvent(new Event("input", { bubbles: true }));
}

function pick(index) {
  const prompt = shown[index];
  const at = range;
  close();
  if (!prompt || !at) return;
  const names = [...new Set([...prompt.text.matchAll(VARIABLE)].map((m) => m[1]))];
  if (!names.length) { insert(prompt.text, at); return; }
  askFor(prompt, names, at);
}

// --- the variables form ------------------------------------------------------------------------------------------
const dialog = $("prompt-fill");
const fields = $("prompt-fill-fields");

function askFor(prompt, names, at) {
  $("prompt-fill-heading").textContent = `/${prompt.name}`;
  fields.replaceChildren();
  names.forEach((name, i) => {
    const label = document.createElement("label");
    label.htmlFor = `prompt-var-${i}`;
    label.textContent = name;
    const field = document.createElement("input");
    field.type = "text";
    field.id = `prompt-var-${i}`;
    field.dataset.variable = name;
    field.autocomplete = "off";
    fields.append(label, field);
  });
  dialog.onclose = () => {
    if (dialog.returnValue === "insert") {
      const values = new Map([...fields.querySelectorAll("input")].map((f) => [f.dataset.variable, f.value]));
      insert(prompt.text.replace(VARIABLE, (whole, name) => (values.has(name) ? values.get(name) : whole)), at);
    } else {
      input.focus(); // cancelled: the "/name" stays as typed
    }
  };
  dialog.returnValue = "";
  dialog.showModal();
  fields.querySelector("input").focus();
}
$("prompt-fill-cancel").addEventListener("click", () => dialog.close("cancel"));
$("prompt-fill-form").addEventListener("submit", (e) => { e.preventDefault(); dialog.close("insert"); });

// --- wiring -------------------------------------------------------------------------------------------------------
input.setAttribute("aria-controls", "prompt-suggestions");
input.setAttribute("aria-autocomplete", "list");
input.setAttribute("aria-expanded", "false");
input.addEventListener("input", update);
input.addEventListener("click", update);
input.addEventListener("blur", () => setTimeout(() => { if (document.activeElement !== input) close(); }, 0));
input.addEventListener("keydown", (e) => {
  if (list.hidden || e.isComposing) return;
  const handled = () => { e.preventDefault(); e.stopImmediatePropagation(); };
  if (e.key === "ArrowDown" && shown.length) { handled(); highlight((selected + 1) % shown.length); }
  else if (e.key === "ArrowUp" && shown.length) { handled(); highlight((selected - 1 + shown.length) % shown.length); }
  else if ((e.key === "Enter" && !e.shiftKey) || e.key === "Tab") {
    if (!shown.length) { close(); return; }
    handled();
    pick(selected);
  } else if (e.key === "Escape") { handled(); close(); }
}, { capture: true });
document.addEventListener("visibilitychange", () => { if (!document.hidden) loadedAt = 0; });
refresh();
