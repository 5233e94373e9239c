// Replies as Markdown, rendered here in the browser: deltas stream to the browser, so rendering on the server
// would mean sending HTML per delta. marked parses, highlight.js colours code, DOMPurify sanitises with a tight
// allow-list before anything reaches the page. Raw HTML in Markdown is shown as text, never parsed; images are
// shown as links, never loaded (a reply must not make the browser fetch a URL it chose: that leaks the
// conversation through the query string). While a reply streams, blocks that can no longer change are rendered
// once and kept; each frame re-renders only the open block at the end (see Live).
// An ES module like the rest of the page; marked, DOMPurify and hljs are the vendored libraries' globals (classic
// scripts loaded before any module runs). LaTeX math is found by marked extensions and typeset by KaTeX after
// sanitising (math.js).
import { t } from "./i18n.js";
import { extensions as mathExtensions, typeset } from "./math.js";

export const stats = {
  appends: 0,       // deltas handed to append()
  frameRenders: 0,  // streaming renders (at most one per message per animation frame)
  fullRenders: 0,   // whole-message renders: loaded messages, a resumed reply, a finished reply
  renderMs: 0,      // time spent in both kinds
  maxFrameMs: 0,    // the longest streaming render: what one frame of a streaming reply may cost the page
  maxLiveChars: 0,  // longest open tail parsed in one streaming render: bounded by a block, not by the reply
};

const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);

function highlighted(text, lang, autoDetect) {
  const language = (lang || "").trim().split(/\s+/)[0].toLowerCase();
  if (language && hljs.getLanguage(language)) {
    return { html: hljs.highlight(text, { language, ignoreIllegals: true }).value, language };
  }
  // Auto-detection tries every language: done once for a finished block, not every frame of an open one.
  if (!autoDetect || text.length > 50_000) return { html: escapeHtml(text), language };
  const auto = hljs.highlightAuto(text);
  return { html: auto.value, language: auto.language || language };
}

function parser(autoDetect) {
  return new marked.Marked({
    gfm: true,
    breaks: true, // a model's single newlines are line breaks, as they were when replies were plain text
    renderer: {
      html({ text, block }) { return block ? `<p>${escapeHtml(text)}</p>` : escapeHtml(text); },
      image({ href, text }) { return `<a href="${escapeHtml(href)}">🖼 ${escapeHtml(text || t("image"))}</a>`; },
      checkbox({ checked }) { return checked ? "☑ " : "☐ "; },
      code({ text, lang }) {
        const code = highlighted(text, lang, autoDetect);
        const cls = code.language ? ` language-${escapeHtml(code.language)}` : "";
        return `<pre><code class="hljs${cls}">${code.html}</code></pre>\n`;
      },
    },
  }, { extensions: mathExtensions });
}
const complete = parser(true);
const open = parser(false);

// --- sanitising -------------------------------------------------------------------------------------
const PURIFY = {
  ALLOWED_TAGS: ["a", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li",
                 "ol", "p", "pre", "s", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul"],
  ALLOWED_ATTR: ["href", "title", "class", "align", "start"],
  ADD_URI_SAFE_ATTR: ["align", "start"], // plain values, not URLs: exempt from the URL rule below
  ALLOWED_URI_REGEXP: /^(?:https?|mailto):/i, // no javascript:, data:, vbscript:, nor relative links
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};
// Classes come only from our code renderer (language-x) and highlight.js (hljs-x, "function_"); anything
// else could borrow the page's own classes.
const SAFE_CLASS = /^(?:hljs(?:-[\w-]+)?|language-[\w.+#-]+|[a-z]+_+|math-(?:inline|display))$/;
DOMPurify.addHook("uponSanitizeAttribute", (node, data) => {
  if (data.attrName !== "class") return;
  data.attrValue = data.attrValue.split(/\s+/).filter((c) => SAFE_CLASS.test(c)).join(" ");
  if (!data.attrValue) data.keepAttr = false;
});
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

function toFragment(source, md) {
  const fragment = DOMPurify.sanitize(md.parse(source), PURIFY);
  // A link whose address was refused keeps its words, not a dead anchor.
  fragment.querySelectorAll("a:not([href])").forEach((a) => a.replaceWith(...a.childNodes));
  fragment.querySelectorAll("pre").forEach(decorateCode);
  typeset(fragment); // after sanitising: KaTeX's DOM is its own, checked in math.js
  fragment.querySelectorAll("table").forEach((table) => {
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    table.replaceWith(wrap);
    wrap.appendChild(table);
  });
  return fragment;
}

function decorateCode(pre) {
  const block = document.createElement("div");
  block.className = "code-block";
  const head = document.createElement("div");
  head.className = "code-head";
  const label = document.createElement("span");
  const language = [...(pre.querySelector("code")?.classList || [])].find((c) => c.startsWith("language-"));
  label.textContent = language ? language.slice("language-".length) : t("code");
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy-code";
  copy.textContent = t("Copy");
  head.append(label, copy);
  pre.replaceWith(block);
  block.append(head, pre);
}

// --- copying --------------------------------------------------------------------------------------------
export async function copyText(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // No clipboard API (an insecure origin) or no permission: the old selection route.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    try { ok = document.execCommand("copy"); } catch { ok = false; }
    area.remove();
  }
  if (button) {
    const label = button.textContent;
    button.textContent = ok ? t("Copied") : t("Copy failed");
    setTimeout(() => { button.textContent = label; }, 1500);
  }
  return ok;
}

document.addEventListener("click", (e) => {
  const button = e.target.closest?.(".copy-code");
  if (!button) return;
  copyText(button.closest(".code-block").querySelector("pre code").textContent, button);
});

// --- rendering --------------------------------------------------------------------------------------------
const bodies = new WeakMap(); // body element -> { source, live }
let pending = new Set();      // lives to render at the next animation frame
let frameRequested = false;
let afterRender = null;

function entry(body) {
  let e = bodies.get(body);
  if (!e) { e = { source: "", live: null }; bodies.set(body, e); }
  return e;
}

function timed(work) {
  const start = performance.now();
  work();
  const ms = performance.now() - start;
  stats.renderMs += ms;
  return ms;
}

/** Called after each render (whole or streaming): thread.js follows the reply and records the stats. One
 * callback: a second would replace the first, so it throws instead. */
export function whenRendered(callback) {
  if (afterRender) throw new Error("markdown.js: whenRendered() already has a callback");
  afterRender = callback;
}

/** Render a whole message at once (a loaded or resumed message, a finished reply). */
export function render(body, source) {
  const e = entry(body);
  if (e.live) pending.delete(e.live);
  e.source = source;
  e.live = null;
  timed(() => body.replaceChildren(toFragment(source, complete)));
  stats.fullRenders++;
  afterRender?.();
}

/** Add streamed text to a message; it is rendered at the next animation frame, once however many came. */
export function append(body, text) {
  const e = entry(body);
  e.source += text;
  stats.appends++;
  if (!e.live) e.live = new Live(body, e);
  pending.add(e.live);
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(flush);
  }
}

/** The Markdown source of a message, for its Copy button. */
export function source(body) { return bodies.get(body)?.source ?? ""; }

function flush() {
  frameRequested = false;
  const lives = pending;
  pending = new Set();
  lives.forEach((live) => { stats.maxFrameMs = Math.max(stats.maxFrameMs, timed(() => live.render())); });
  if (lives.size) afterRender?.();
}

// A streaming message: settled blocks live in `done` and are never parsed again; `tail`, the open block
// at the end, is re-parsed each frame. A block is settled once a blank line (outside a code fence) is
// followed by a line that starts a new top-level block. Rare constructs that span such a break (a loose
// list, a reference link defined later) may look slightly different until the reply ends and is rendered
// whole once.
class Live {
  constructor(body, e) {
    this.body = body;
    this.e = e;
    this.settled = 0;                                  // source offset up to which blocks are in `done`
    this.scan = { pos: 0, fence: null, blank: true };  // how far lines were scanned, and the fence state
    this.done = document.createElement("div");
    this.done.className = "md-done";
    this.tail = document.createElement("div");
    this.tail.className = "md-live";
  }

  render() {
    if (this.body.firstChild !== this.done) this.body.replaceChildren(this.done, this.tail);
    const source = this.e.source;
    const boundary = settledBoundary(source, this.scan);
    if (boundary > this.settled) {
      this.done.append(toFragment(source.slice(this.settled, boundary), complete));
      this.settled = boundary;
    }
    const tail = source.slice(this.settled);
    stats.maxLiveChars = Math.max(stats.maxLiveChars, tail.length);
    this.tail.replaceChildren(toFragment(tail, open));
    stats.frameRenders++;
  }
}

const FENCE = /^ {0,3}(`{3,}|~{3,})/;

/** Scan the complete lines not yet scanned; the offset of the last line that starts a settled block. */
function settledBoundary(source, scan) {
  let boundary = -1;
  for (let nl = source.indexOf("\n", scan.pos); nl >= 0; nl = source.indexOf("\n", scan.pos)) {
    const line = source.slice(scan.pos, nl);
    const fence = FENCE.exec(line);
    if (scan.fence) {
      const closes = fence && fence[1][0] === scan.fence[0] && fence[1].length >= scan.fence.length
        && !line.slice(fence[0].length).trim();
      if (closes) scan.fence = null;
    } else {
      if (scan.blank && /^\S/.test(line)) boundary = scan.pos;
      if (fence) scan.fence = fence[1];
    }
    scan.blank = !scan.fence && !line.trim();
    scan.pos = nl + 1;
  }
  return boundary;
}
