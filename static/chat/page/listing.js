// What the sidebar's modules share (sidebar.js, folders.js, rows.js, menu.js, bulk.js): which view of the list is
// on show, the person's folders, and the hooks that redraw or reload the list, so no module imports its caller.
export { t } from "./i18n.js";

// The API toggle is remembered per browser (localStorage), not per person: it is a way of looking, like the
// width of a window, and needs no server round trip; a second browser starts from the default (hidden).
const SHOW_API = "chat.showApi";
function stored(key) {
  try { return localStorage.getItem(key); } catch { return null; } // storage off (private mode): the default
}
export function store(key, value) {
  try { localStorage.setItem(key, value); } catch { /* not remembered; the page still works */ }
}

export const listing = {
  view: "list",                          // "list", or "archived": the archived conversations only
  withApi: stored(SHOW_API) === "1",     // the OpenAI-compatible API's conversations shown too
  query: "",                             // the search words (a search lists every conversation, flat)
  folders: [],                           // [{id, name, count}] by name, from the list's first page
  stored,
};

export function setWithApi(on) {
  listing.withApi = on;
  store(SHOW_API, on ? "1" : "0");
}

// The query string of a list request for this view; `extra` adds a folder or a cursor.
export function listParams(extra = {}) {
  const params = new URLSearchParams();
  if (listing.query) params.set("q", listing.query);
  if (listing.view === "archived" && !listing.query) params.set("archived", "1");
  if (listing.withApi) params.set("api", "1");
  for (const [k, v] of Object.entries(extra)) if (v !== null && v !== undefined) params.set(k, v);
  return params;
}

const hooks = { render: () => {}, reload: () => {}, open: () => {} };
export function setHooks(given) { Object.assign(hooks, given); }
export const redraw = () => hooks.render();
export const reloadList = () => hooks.reload();
export const openChat = (id) => hooks.open(id);
