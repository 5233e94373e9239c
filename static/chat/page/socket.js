// The one websocket (protocol: docs/protocol.md). Reconnects by itself with back-off and says so; after a
// reconnect the page reloads what it shows (it may have missed frames) and resubscribes to the live reply.
import { $, state, showError, urls } from "./state.js";
import { t, fill } from "./i18n.js";

const handlers = new Map(); // frame type -> its one handler
const STABLE_MS = 5000; // a socket that stayed open this long resets the back-off
let retry = 0;
let openedAt = 0;
let connectedBefore = false;
let onOpen = null;

// One handler per frame type, and a second registration throws rather than replace the first. Not a list: the
// handlers of one type are not independent. main.js's message and delta handlers wrap thread.js's: a new chat
// is adopted before its first message is drawn, and a delta of a reply whose earlier frames were lost reloads
// the list instead of being drawn. Run side by side from a list, both would draw each message, and what runs
// first would hang on the order of registration. So a frame type has one owner, which calls whatever else it
// needs; a second on() is a wiring mistake, and it fails loudly when the page loads.
export function on(type, handler) {
  if (handlers.has(type)) throw new Error(`socket.js: the "${type}" frame already has a handler`);
  handlers.set(type, handler);
}
export function whenOpen(callback) { // likewise one callback: the page's reload after a reconnect
  if (onOpen) throw new Error("socket.js: whenOpen() already has a callback");
  onOpen = callback;
}
export const isOpen = () => state.socket?.readyState === WebSocket.OPEN;

export function send(frame) {
  if (!isOpen()) {
    showError(t("Not connected to the server right now; reconnecting… Try again in a moment."));
    return false;
  }
  state.socket.send(JSON.stringify(frame));
  return true;
}

function setStatus(text, online) {
  const el = $("connection");
  el.textContent = text;
  el.className = online ? "connection online" : "connection";
  document.body.classList.toggle("offline", !online);
}

export function connect() {
  const url = new URL(urls.socket, location.href); // the page's path, on this host, over ws: or wss: like the page
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(url);
  state.socket = socket;
  socket.addEventListener("open", () => {
    openedAt = Date.now();
    setStatus(t("connected"), true);
    showError("");
    const reconnect = connectedBefore;
    connectedBefore = true;
    onOpen?.(reconnect);
  });
  socket.addEventListener("message", (e) => {
    const frame = JSON.parse(e.data);
    handlers.get(frame.type)?.(frame);
  });
  socket.addEventListener("close", (e) => {
    if (state.socket !== socket) return;
    if (e.code === 4401) { location.href = urls.login; return; }
    // Only a socket that stayed up starts the back-off again: a server that accepts and drops at once (a Daphne
    // restarting, a proxy with no upstream) is tried less and less often, not every half second.
    if (openedAt && Date.now() - openedAt >= STABLE_MS) retry = 0;
    openedAt = 0;
    if (e.code === 4429) retry = Math.max(retry, 6); // too many tabs: retry slowly
    const delay = Math.min(30000, 500 * 2 ** retry++);
    setStatus(fill(t("reconnecting… (in %(s)s s)"), { s: Math.ceil(delay / 1000) }), false);
    setTimeout(connect, delay);
  });
}

