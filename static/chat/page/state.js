// What the chat page's modules share: the page's state and URLs, element lookup, the error line next to the input.
import { t } from "./i18n.js";

export const $ = (id) => document.getElementById(id);

// Every URL the page uses, rendered by the template with {% url %} into the thread's data attributes: no path is
// written in the script, so the server may move its endpoints as long as their names stay.
const config = document.getElementById("thread").dataset;
export const urls = {
  conversations: config.conversationsUrl,  // chat:conversation-list
  conversation: config.conversationUrl,    // chat:conversation-detail, for the placeholder id 0
  exportMd: config.exportMdUrl,            // chat:conversation-export, id 0, .md
  exportJson: config.exportJsonUrl,        // chat:conversation-export, id 0, .json
  quota: config.quotaUrl,                  // chat:quota
  login: config.loginUrl,                  // login, back to this page after
  socket: config.socketUrl,                // the websocket's path
};
for (const [name, url] of Object.entries(urls)) {
  if (!url) throw new Error(`chat page: the template gives no ${name} URL`); // fail at load, not at first use
}

// A conversation's URL from its template: the template renders it for the placeholder id 0
// ({% url 'chat:conversation-detail' 0 %}); the last path segment that is that 0 becomes the id.
export function conversationUrl(template, id) {
  const placeholder = [...template.matchAll(/\/0(?=[/.?]|$)/g)].pop();
  if (!placeholder) throw new Error(`chat page: no placeholder id 0 in ${template}`);
  const at = placeholder.index + 1;
  return template.slice(0, at) + encodeURIComponent(id) + template.slice(at + 1);
}

export const state = {
  socket: null,
  conversation: null,    // id of the conversation on screen (null: a new chat)
  // This tab's newest send or edit until the server takes it ({id: its client_id, content, edit: message id or
  // null}): adopts the conversation a first send starts, and gives the text back if the send is refused.
  pending: null,
  active: null,          // id of the assistant message being written in the shown conversation
  elements: new Map(),   // message id -> element
  messages: new Map(),   // message id -> what the page knows of it (role, content, status, siblings, feedback…)
  settings: null,        // the shown conversation's {system_prompt, params}
  // Bounds of the settings, the person's defaults, the model: rendered into the page as JSON in an attribute.
  config: JSON.parse(config.config),
};

export function showError(text) {
  const box = $("error");
  box.replaceChildren();
  if (text) {
    const words = document.createElement("span");
    words.textContent = text;
    // A refusal stays until it is dismissed or the next thing succeeds: one that no longer applies (a name
    // taken by a folder deleted since) need not sit there. The × is drawn by CSS, so the box's text is the
    // sentence alone.
    const dismiss = document.createElement("button");
    dismiss.type = "button";
    dismiss.className = "dismiss";
    const label = t("Dismiss");
    dismiss.title = label;
    dismiss.setAttribute("aria-label", label);
    dismiss.addEventListener("click", () => showError(""));
    box.append(words, dismiss);
  }
  box.hidden = !text;
}

export function button(label, className, onClick, title) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = label;
  if (title) { b.title = title; b.setAttribute("aria-label", title); }
  b.addEventListener("click", onClick);
  return b;
}

export function newClientId() {
  return (crypto.randomUUID && crypto.randomUUID()) || String(Math.random()).slice(2);
}
