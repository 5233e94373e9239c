// The sidebar's select mode: a checkbox on each conversation, and a bar to archive (or, in the Archived view,
// bring back) or delete the selected ones at once — one frame each way, all or none on the server.
import { $, showError } from "./state.js";
import { send } from "./socket.js";
import { listing, redraw } from "./listing.js";
import { t, tn, fill } from "./i18n.js";
import { confirmDelete } from "./dialogs.js";

export const selection = { active: false, ids: new Set() };

function update() {
  const n = selection.ids.size;
  $("bulk-bar").hidden = !selection.active;
  $("select-mode").setAttribute("aria-pressed", String(selection.active));
  $("bulk-count").textContent = fill(tn("%(n)s selected", "%(n)s selected", n), { n });
  $("bulk-archive").textContent = listing.view === "archived" ? t("Unarchive") : t("Archive");
  $("bulk-archive").disabled = $("bulk-delete").disabled = n === 0;
}

export function setSelecting(on) {
  selection.active = on;
  selection.ids.clear();
  update();
  redraw();
}

// A row's checkbox changed (rows.js).
export function choose(id, on) {
  if (on) selection.ids.add(id); else selection.ids.delete(id);
  update();
}

// The list changed under the selection (a reload, another tab's delete): keep only rows still there.
export function keepOnly(present) {
  for (const id of [...selection.ids]) if (!present.has(id)) selection.ids.delete(id);
  update();
}

$("select-mode").addEventListener("click", () => setSelecting(!selection.active));
$("bulk-cancel").addEventListener("click", () => { setSelecting(false); $("select-mode").focus(); });
$("bulk-archive").addEventListener("click", () => {
  const conversations = [...selection.ids];
  if (!conversations.length) return;
  if (send({ type: "archive", conversations, archived: listing.view !== "archived" })) setSelecting(false);
});
$("bulk-delete").addEventListener("click", async () => {
  const conversations = [...selection.ids];
  if (!conversations.length) return;
  const text = fill(tn("The selected conversation and all its messages will be deleted. This cannot be undone.",
    "The %(n)s selected conversations and all their messages will be deleted. This cannot be undone.",
    conversations.length), { n: conversations.length });
  if (!await confirmDelete(t("Delete the selected conversations?"), text)) return;
  if (send({ type: "delete_many", conversations })) setSelecting(false);
  else showError(t("Not deleted: not connected."));
});
update();
