// The chat page's entry: wires the socket (socket.js), the thread (thread.js, compare.js), the sidebar
// (sidebar.js), the model picker (models.js) and the settings panel (settings.js) together, and owns the composer,
// the keyboard and the phone drawer.
import { $, state, showError, newClientId } from "./state.js";
import { connect, isOpen, on, send, whenOpen } from "./socket.js";
import { clearThread, editLast, giveBack, loadThread, setActive, stopActive, threadHandlers } from "./thread.js";
import * as sidebar from "./sidebar.js";
import { settingsArrived } from "./settings.js";
import * as models from "./models.js";
import { blindSends } from "./compare.js";
import "./share.js"; // the Share button and dialog; window.chatShare.open(id) for the other parts of the page
import "./composer_hint.js";
import { placeEnded } from "./queue.js"; // a waiting reply's place ("queued" frames)
import { t, fill } from "./i18n.js";
import * as attachments from "./attachments.js";
import { refreshQuota } from "./quota.js";

function markCurrent() {
  sidebar.render();
  sidebar.showActions();
}

let loaded = null; // the conversation whose thread has come from the server

async function openConversation(id) {
  state.conversation = id;
  history.replaceState(null, "", `#${id}`);
  markCurrent();
  closeDrawer();
  const data = await loadThread(id);
  if (!data) {
    if (state.conversation === id) showError(t("That conversation could not be opened."));
    return;
  }
  showError("");
  models.showConversation(data.conversation.model);
  loaded = id;
  // Not open yet: the socket's open handler subscribes to the shown conversation.
  if (isOpen()) send({ type: "subscribe", conversation: id });
}

function newChat() {
  state.conversation = null;
  state.pending = null;
  state.settings = null;
  history.replaceState(null, "", location.pathname);
  clearThread();
  models.showNewChat();
  markCurrent();
  closeDrawer();
  // The tab shows no conversation now: the server stops sending it the replies of the one it showed.
  if (isOpen()) send({ type: "subscribe", conversation: null });
  $("input").focus();
}

function adopt(id) {
  state.conversation = id;
  state.pending = null;
  // A new conversation starts from the person's defaults, with the model its first message went to.
  const { system_prompt, params } = structuredClone(state.config.defaults);
  state.settings = { system_prompt, params, model: models.chosen() };
  models.showConversation(models.chosen());
  history.replaceState(null, "", `#${id}`);
  markCurrent();
}

// --- frames -------------------------------------------------------------------------------------------------
// socket.js takes one handler per frame type (a second throws). The message and delta handlers below call
// thread.js's own after what the page must do first, so those two of threadHandlers are not registered alone.
const WRAPPED = new Set(["message", "delta"]);
Object.entries(threadHandlers).forEach(([type, handler]) => { if (!WRAPPED.has(type)) on(type, handler); });
on("message", (f) => {
  const m = f.message;
  const mine = f.client_id && f.client_id === state.pending?.id;
  // A message of a conversation the list does not have (its conversation frame was lost, or the list is a search
  // or has not loaded that far): reload the list. If it is this tab's own new chat, open it whole from the
  // server: the frames before this one may be lost too. Anyone else's stays where it is.
  if (!sidebar.has(m.conversation)) {
    sidebar.reload();
    if (state.conversation === null && mine) {
      state.pending = null;
      openConversation(m.conversation); // the whole thread from the server, then the live reply
      return;
    }
  } else if (m.role === "user") {
    sidebar.touch({ id: m.conversation }, true);
  }
  if (mine && state.conversation === null) adopt(m.conversation);
  if (mine) state.pending = null; // accepted: nothing left to give back
  threadHandlers.message(f);
});
// A delta of a reply this page has never heard of, while its own first send waits for its conversation: the
// conversation and message frames were lost on the way. Reload the list and open the conversation that is new.
let recovering = null;
on("delta", async (f) => {
  if (!state.elements.has(f.message) && state.conversation === null && state.pending
      && recovering !== state.pending.id) {
    recovering = state.pending.id;
    const known = new Set(sidebar.ids());
    await sidebar.reload();
    const fresh = sidebar.ids().find((id) => !known.has(id));
    if (fresh !== undefined && state.conversation === null) openConversation(fresh);
    return;
  }
  placeEnded(f.message);
  threadHandlers.delta(f);
});
on("conversation", (f) => {
  // A conversation this tab just started: the first frame of its send, with our client_id. Any other (a title,
  // a rename, another tab's new chat) only updates the list.
  if (f.client_id && f.client_id === state.pending?.id && state.conversation === null) adopt(f.conversation.id);
  sidebar.touch(f.conversation, false);
  if (f.conversation.id === state.conversation) {
    $("title").textContent = f.conversation.title;
    document.title = fill(t("%(title)s · Chat"), { title: f.conversation.title });
  }
});
// A reply started or ended in a conversation this tab does not show (the one it shows comes as message and done
// frames): its row moves up when one starts, and the quota shown counts what one used when it ends.
on("activity", (f) => {
  if (!sidebar.has(f.conversation)) sidebar.reload();
  else if (f.state === "started") sidebar.touch({ id: f.conversation }, true);
  if (f.state === "ended") refreshQuota();
});
on("thread", (f) => { if (f.conversation === state.conversation) openConversation(f.conversation); });
on("deleted", (f) => {
  sidebar.forget(f.conversation);
  if (f.conversation === state.conversation) newChat();
});
on("settings", settingsArrived);
on("error", (f) => {
  // The refusal of this tab's send or edit: give back what was typed, so nothing is lost.
  if (f.client_id && f.client_id === state.pending?.id) giveBack(state.pending);
  if (f.client_id) attachments.giveBack(f.client_id);
  showError(f.detail);
});

whenOpen(async (reconnect) => {
  // After a drop the page may have missed frames: reload the list and what is shown, then resume the live reply.
  // On the first connect the page is loading them already: it subscribes once the thread is in (a second
  // subscribe would answer with a snapshot that swallows the deltas sent since the first), or here if the
  // thread came before the socket opened.
  if (!reconnect) {
    if (state.conversation !== null && loaded === state.conversation) {
      send({ type: "subscribe", conversation: state.conversation });
    }
    return;
  }
  // A send the server never answered before the drop: its text goes back in the box rather than vanish.
  const lost = state.pending;
  if (lost) giveBack(lost);
  sidebar.reload();
  if (state.conversation !== null) await openConversation(state.conversation);
  if (lost) {
    showError(t("The connection dropped before the server answered your last message. If it is not in the list, "
              + "send it again."));
  }
});
sidebar.whenChosen(openConversation);

// --- composer ------------------------------------------------------------------------------------------------
function submit() {
  const input = $("input");
  const content = input.value;
  if (!content.trim() || state.active !== null) return;
  if (content.length > state.config.max_message_chars) {
    showError(fill(t("The message is too long: at most %(n)s characters."), { n: state.config.max_message_chars }));
    return;
  }
  const files = attachments.forSend(); // null: a file is still on its way up
  if (files === null) return;
  const pending = { id: newClientId(), content, edit: null };
  const frame = { type: "send", conversation: state.conversation, content, client_id: pending.id,
                  ...models.compareChoice(), ...files };
  if (state.conversation === null) frame.model = models.chosen(); // an open conversation keeps its own
  if (frame.blind) blindSends.add(pending.id);
  if (send(frame)) {
    models.sent();
    attachments.sent(pending.id);
    state.pending = pending;
    input.value = "";
    showError("");
  }
}

$("composer").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
// A touch keyboard has no Shift+Enter: there Enter adds a line, and the Send button sends (the placeholder, on a
// touch screen, teaches no keys: composer_hint.js).
const touchKeyboard = window.matchMedia("(pointer: coarse) and (hover: none)");
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !touchKeyboard.matches) { e.preventDefault(); submit(); }
  // Up in an empty box edits the last message, as in chat apps.
  if (e.key === "ArrowUp" && !e.target.value) { e.preventDefault(); editLast(); }
});
$("stop").addEventListener("click", stopActive);
$("new-chat").addEventListener("click", newChat);
document.addEventListener("keydown", (e) => {
  if (e.key !== "Escape" || e.defaultPrevented) return;
  if (document.body.classList.contains("drawer-open")) closeDrawer();
  else if (!document.querySelector("dialog[open]")) stopActive();
});

// --- phone width: the sidebar is a drawer ------------------------------------------------------------------------
function closeDrawer() {
  document.body.classList.remove("drawer-open");
  $("menu").setAttribute("aria-expanded", "false");
}
$("menu").addEventListener("click", () => {
  const open = document.body.classList.toggle("drawer-open");
  $("menu").setAttribute("aria-expanded", String(open));
  if (open) $("search").focus();
});
$("backdrop").addEventListener("click", closeDrawer);

// --- start ----------------------------------------------------------------------------------------------------
clearThread();
setActive(null);
// The conversation in the address is the one a message typed now goes to, even before it has loaded.
const initial = Number(location.hash.slice(1)) || null;
state.conversation = initial;
sidebar.showActions();
connect();
sidebar.reload().then(() => { if (initial) openConversation(initial); });
// Another conversation's address typed or pasted into this tab (or a link to one followed): open it, as a reload
// would. The page's own changes of the address (replaceState) fire no hashchange.
window.addEventListener("hashchange", () => {
  const id = Number(location.hash.slice(1)) || null;
  if (id === state.conversation) return;
  if (id) openConversation(id);
  else newChat();
});
