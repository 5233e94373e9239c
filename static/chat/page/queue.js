// A waiting reply's place: the worker's "queued" frames (docs/protocol.md) say how many replies its batch will
// take before this one, and the page shows it under the reply ("3 replies ahead of yours") until its first text
// (main.js's delta handler calls placeEnded) or its end (the finished classes hide it: chat.css).
import { state } from "./state.js";
import { on } from "./socket.js";
import { t, tn, fill } from "./i18n.js";

function words(ahead) {
  if (ahead === 0) return t("Your reply is next.");
  return fill(tn("%(n)s reply ahead of yours", "%(n)s replies ahead of yours", ahead), { n: ahead });
}

export function placeArrived(f) {
  const el = state.elements.get(f.message);
  if (!el) return; // a reply this tab does not show
  let note = el.querySelector(".queue-place");
  if (!note) {
    note = document.createElement("div");
    note.className = "queue-place";
    note.setAttribute("role", "status"); // read out when it changes, without taking the focus
    el.querySelector(".meta").after(note); // under "waiting for the model…"
  }
  note.textContent = words(f.ahead);
}

export function placeEnded(id) {
  state.elements.get(id)?.querySelector(".queue-place")?.remove();
}

on("queued", placeArrived);
