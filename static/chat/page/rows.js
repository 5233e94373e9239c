// One conversation's row in the sidebar (the plain list, a folder, the Archived view, search results): its link,
// its marks (pinned, API, imported, archived), its ⋯ menu, and in select mode its checkbox.
import { state } from "./state.js";
import { listing, openChat, t } from "./listing.js";
import { selection, choose } from "./bulk.js";
import { conversationMenu } from "./menu.js";

function mark(className, text, title) {
  const span = document.createElement("span");
  span.className = `mark ${className}`;
  span.textContent = text;
  if (title) { span.title = title; }
  return span;
}

// `label`: the title as a node (search highlights it); `snippet`: a node under it, or null.
export function rowFor(c, label, snippet = null) {
  const li = document.createElement("li");
  li.dataset.id = c.id;
  li.className = "row";
  const title = c.title || t("Conversation %s").replace("%s", () => c.id);
  if (selection.active) {
    const box = document.createElement("input");
    box.type = "checkbox";
    box.className = "pick";
    box.checked = selection.ids.has(c.id);
    box.setAttribute("aria-label", t("Select %s").replace("%s", () => title));
    box.addEventListener("change", () => choose(c.id, box.checked));
    li.append(box);
  }
  const a = document.createElement("a");
  a.href = `#${c.id}`;
  if (c.pinned) a.append(mark("pin", "📌", t("Pinned")), " ");
  a.append(label);
  a.classList.toggle("current", c.id === state.conversation);
  if (c.id === state.conversation) a.setAttribute("aria-current", "page");
  a.addEventListener("click", (e) => {
    e.preventDefault();
    if (selection.active) { // in select mode a click on the row selects it, as on its checkbox
      const box = li.querySelector("input.pick");
      box.checked = !box.checked;
      choose(c.id, box.checked);
    } else openChat(c.id);
  });
  li.append(a);
  if (c.source === "api") li.append(mark("api", t("API"), t("Made through the API")));
  if (c.source === "import") li.append(mark("imported", t("Imported"), t("Imported from an export file")));
  if (c.archived && listing.view !== "archived") li.append(mark("archived", t("Archived"))); // a search's result
  if (!selection.active) {
    const more = document.createElement("button");
    more.type = "button";
    more.className = "more-actions";
    more.textContent = "⋯";
    more.setAttribute("aria-label", t("Actions for %s").replace("%s", () => title));
    more.setAttribute("aria-haspopup", "menu");
    more.setAttribute("aria-expanded", "false");
    more.addEventListener("click", () => conversationMenu(more, c));
    li.append(more);
  }
  if (snippet) li.append(snippet);
  return li;
}
