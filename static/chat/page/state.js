// What the chat page's modules share: the page's state, element lookup, the error line next to the input.
export const $ = (id) => document.getElementById(id);

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
  config: JSON.parse(document.getElementById("thread").dataset.config),
};

export function showError(text) {
  const box = $("error");
  box.textContent = text || "";
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
