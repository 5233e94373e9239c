// The sidebar's small dialogs: a name (rename a conversation, make or rename a folder), the folder to move a
// conversation to, and a confirmation before deleting. Native <dialog>s: focus moves in, Escape cancels, and
// focus goes back to what opened them.
import { $ } from "./state.js";
import { listing, t } from "./listing.js";

function ask(dialog, onClose) {
  return new Promise((resolve) => {
    const back = document.activeElement;
    dialog.returnValue = "";
    dialog.addEventListener("close", () => {
      resolve(onClose(dialog.returnValue));
      if (back && back.isConnected) back.focus();
    }, { once: true });
    dialog.showModal();
  });
}

// Resolves to the trimmed name, or null when cancelled. ``refusal(name)``: why a name cannot be saved ("" when it
// can), said beside the field as it is typed; the dialog stays open on Save until it is fixed, with what was typed.
let refusal = () => "";
$("name-input").addEventListener("input", (e) => e.target.setCustomValidity(refusal(e.target.value.trim())));
export function askName(heading, value = "", label = t("Name"), refuse = () => "") {
  $("name-heading").textContent = heading;
  $("name-label").textContent = label;
  $("name-input").value = value;
  refusal = refuse;
  $("name-input").setCustomValidity("");
  const p = ask($("name-dialog"), (how) => (how === "save" ? $("name-input").value.trim() || null : null));
  $("name-input").select();
  return p;
}

// A folder's name is the person's own once, whatever its case (the server refuses it too, from another tab).
export function folderNameTaken(except = null) {
  return (name) => {
    const taken = listing.folders.some((f) => f.id !== except && f.name.toLowerCase() === name.toLowerCase());
    return taken ? t("You have a folder called “%s” already.").replace("%s", () => name) : "";
  };
}
// Each dialog's Cancel is a plain button (its one submit button is the default, so Enter saves).
for (const b of document.querySelectorAll("dialog [data-cancel]")) {
  b.addEventListener("click", () => b.closest("dialog").close(""));
}

// Resolves to a folder id, "" for no folder, or undefined when cancelled.
export function askFolder(title, current) {
  const select = $("move-select");
  select.replaceChildren(new Option(t("No folder"), ""));
  for (const f of listing.folders) select.append(new Option(f.name, String(f.id)));
  select.value = current ? String(current) : "";
  $("move-title").textContent = title;
  const p = ask($("move-dialog"), (how) => (how === "move" ? select.value : undefined));
  select.focus();
  return p;
}

// Resolves true when the person confirmed.
export function confirmDelete(heading, text) {
  $("forget-heading").textContent = heading;
  $("forget-text").textContent = text;
  const p = ask($("forget-dialog"), (how) => how === "delete");
  $("forget-cancel").focus();
  return p;
}
