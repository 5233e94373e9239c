// The public page of a share link: each reply, sent as its plain Markdown text inside the page (escaped by the
// template), is rendered with the chat page's own renderer (markdown.js: marked, then DOMPurify's allow-list;
// raw HTML shown as text, images as links). What people typed stays text, as on the chat page.
import { render } from "./markdown.js";

document.querySelectorAll(".msg.assistant .body[data-markdown]").forEach((body) => {
  render(body, body.textContent);
  body.classList.add("rendered");
});
