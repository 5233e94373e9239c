// Compare: one message answered by two models at once. The two replies stand side by side (stacked at phone
// width) while they stream and until the person picks the better one ("This one is better", once both are done).
// Blind hides which model wrote which until the pick, and shows the two in an order of their own (the first reply
// is always the conversation's model, which the header names). The pick is stored as a preference
// (Comparison.chosen), the picked reply becomes the shown branch, and the other stays reachable with ‹ 1/2 ›.
// thread.js draws the messages; this module keeps the comparisons and lays out their pairs.
import { state, button } from "./state.js";
import { send } from "./socket.js";
import { label } from "./models.js";
import { t, fill } from "./i18n.js";

// reply id -> its comparison: {id, prompt, first, second, blind, chosen} as the server sent it (id and prompt null
// until the compared frame comes), plus `models` (reply id -> model name, kept once a reply leaves the screen) and
// `box` (the pair's element while it is shown).
const comparisons = new Map();
// The client_ids of this tab's blind sends: its replies are hidden from their first frame, before `compared` says.
export const blindSends = new Set();

export const comparisonOf = (id) => comparisons.get(id);
export function forgetAll() { comparisons.clear(); }

/** Record a comparison (from a compared frame or a loaded thread), keeping what the page learnt of it. */
export function register(info) {
  const known = comparisons.get(info.first) || { models: {} };
  const c = Object.assign(known, info);
  delete c.replies;
  for (const r of info.replies || []) c.models[r.id] = r.model;
  comparisons.set(c.first, c);
  comparisons.set(c.second, c);
  return learn(c);
}

// The two replies' models, as far as the page knows them (kept here once a reply leaves the screen).
function learn(c) {
  for (const id of [c.first, c.second]) c.models[id] = state.messages.get(id)?.model || c.models[id];
  return c;
}

/** A comparison still waiting for its pick, laid out as a pair. */
export const unpicked = (id) => { const c = comparisons.get(id); return c && c.chosen === null ? c : null; };

// Blind: which reply is shown first is fixed per comparison (the same after a reload) but not always the first.
const swapped = (c) => c.blind && (Math.imul(c.first, 0x9e3779b1) >>> 31) === 1;
const shownOrder = (c) => (swapped(c) ? [c.second, c.first] : [c.first, c.second]);

/** The name a reply's model goes by on screen: hidden in a blind comparison until the pick. */
export function shownName(m) {
  const c = unpicked(m.id);
  if (c?.blind) return shownOrder(c).indexOf(m.id) === 0 ? t("Reply A") : t("Reply B");
  return label(m.model);
}

/** Lay the two replies of ``c`` out side by side, where the first of them is (both must be on screen). */
export function pairUp(c) {
  const els = shownOrder(c).map((id) => state.elements.get(id));
  if (els.some((el) => !el)) return false;
  learn(c);
  if (!c.box || !c.box.isConnected) {
    c.box = document.createElement("section");
    c.box.className = "compare";
    c.box.innerHTML = '<p class="compare-note"></p><div class="compare-replies"></div>';
    state.elements.get(c.first).before(c.box); // where the first reply stood, right below the message
  }
  c.box.setAttribute("aria-label", c.blind ? t("Two replies to compare, names hidden") : t("Two replies to compare"));
  c.box.querySelector(".compare-note").textContent = c.blind
    ? t("Blind comparison: the models' names show once you pick the better reply.")
    : fill(t("%(first)s and %(second)s answered: pick the better reply once both are done."), { first: label(c.models[c.first]), second: label(c.models[c.second]) });
  c.box.querySelector(".compare-replies").append(...els); // (again, in blind order, once `compared` says blind)
  return true;
}

/** The pick is in: the pair gives way to the picked reply, on the branch; the other leaves the screen (it stays
 * an alternative, behind ‹ ›). Nothing to do where no pair is shown (another tab already showed the pick). */
export function settle(c) {
  if (!c.box?.isConnected) return;
  const chosen = state.elements.get(c.chosen);
  if (chosen) c.box.before(chosen);
  c.box.remove();
  c.box = null;
  const other = c.chosen === c.first ? c.second : c.first;
  state.elements.delete(other);
  state.messages.delete(other);
}

const ACTIVE = ["queued", "streaming"];
const status = (id) => state.messages.get(id)?.status;

/** What a compared reply adds to its meta line: the pick button (both done, no pick yet), or whose pick it was. */
export function metaParts(m) {
  const c = comparisons.get(m.id);
  if (!c) return [];
  learn(c);
  if (c.chosen === null) {
    const ends = [status(c.first), status(c.second)];
    if (ends.some((s) => !s || ACTIVE.includes(s))) return []; // the buttons come once both are done
    if (ends.some((s) => s !== "complete")) return [note(t("no pick: only two complete replies can be compared"))];
    const pick = button(t("This one is better"), "pick primary", () => {
      if (send({ type: "pick", message: m.id })) c.box?.querySelectorAll(".pick").forEach((b) => { b.disabled = true; });
    });
    return [pick];
  }
  const other = m.id === c.first ? c.second : c.first;
  return [note(c.chosen === m.id ? fill(t("★ your pick over %(model)s"), { model: label(c.models[other]) })
                                 : fill(t("not your pick (you picked %(model)s)"), { model: label(c.models[c.chosen]) }), "picked")];
}

function note(text, className = "compare-info") {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = text;
  return span;
}

/** The other reply of a pair still on screen (its pick button depends on this one being done). */
export function partner(id) {
  const c = unpicked(id);
  const other = c && (id === c.first ? c.second : c.first);
  return other && state.elements.has(other) ? other : null;
}
