// Continue: a reply that ended on its length bound says so, and the last reply of the conversation offers Continue,
// which asks the server to extend that same reply (the `continue` frame, docs/protocol.md). It then streams into
// the same bubble: the server announces it queued again with its text, and its deltas start from that text.
import { newClientId } from "./state.js";
import { send } from "./socket.js";

const t = (s) => (window.gettext ? window.gettext(s) : s);

export function continueParts(el, m, paired) {
  if (m.role !== "assistant" || m.status !== "complete" || m.finish_reason !== "length") return [];
  const marker = document.createElement("span");
  marker.className = "cut-off";
  marker.textContent = t("Cut off at the length limit");
  if (paired) return [marker];
  const go = document.createElement("button");
  go.type = "button";
  go.className = "continue needs-idle";
  go.textContent = t("Continue");
  go.title = t("Write more of this reply, from where it was cut off");
  go.addEventListener("click", () => {
    if (!send({ type: "continue", message: m.id, client_id: newClientId() })) return;
    // The button goes with the re-drawn meta line: keep focus on the reply being extended, not on the page.
    el.tabIndex = -1;
    el.focus({ preventScroll: true });
  });
  return [marker, go];
}
