// LaTeX math in replies, typeset by KaTeX (the vendored library's `katex` global, a classic script loaded before
// the page's modules). markdown.js hands marked the two extensions below: they find the math while marked
// tokenises, so math inside code spans and code blocks is never seen (marked takes the code first), and they emit
// only a placeholder holding the TeX as escaped text. After DOMPurify has sanitised the HTML, typeset() replaces
// each placeholder with KaTeX's own DOM.
//
// Delimiters: $…$ and \(…\) inline; $$…$$ and \[…\] display (on lines of their own, or inside a paragraph). The
// dollar rule is pandoc's, so prices stay prices: an opening $ must be followed by a non-space, a closing $ must
// follow a non-space and not be followed by a digit ("$5 and $6" is text); \$ is a literal dollar. Math never
// spans a blank line, as in TeX, which also keeps a streaming reply's settled blocks whole.
//
// Safety, under a CSP that allows no inline style: katex.render() builds DOM nodes and sets their styles through
// the CSSOM (element.style), which the CSP allows, where renderToString()'s HTML with style="" attributes would
// be refused. trust: false refuses \href, \url, \includegraphics and \html*: they render as red, inert text. The
// few commands whose output KaTeX writes with setAttribute("style") (\pmb, \fcolorbox, and its own error node)
// are redefined or replaced here, so no formula makes the page report a CSP violation. Each typeset formula is
// then checked against an allow-list of the elements and attributes KaTeX makes; anything else and the formula
// is shown as its source text.
const t = (s) => (window.gettext ? window.gettext(s) : s);

const HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);

// Any character but a blank line: math never spans one.
const BODY = String.raw`(?:(?!\n[ \t]*\n)[\s\S])+?`;
const BLOCK = new RegExp(String.raw`^ {0,3}(?:\$\$(${BODY})\$\$|\\\[(${BODY})\\\])[ \t]*(?:\n+|$)`);
const BLOCK_START = /^ {0,3}(?:\$\$|\\\[)/m;
const INLINE_START = /\$|\\[([]/;
const DISPLAY_DOLLARS = new RegExp(String.raw`^\$\$(?!\$)(${BODY})\$\$`);
const DISPLAY_BRACKETS = new RegExp(String.raw`^\\\[(${BODY})\\\]`);
const INLINE_PARENS = new RegExp(String.raw`^\\\((${BODY})\\\)`);
// pandoc's rule: no space after the opening $, none before the closing one, no digit right after it.
const INLINE_DOLLAR = /^\$(?![\s$])((?:\\[^\n]|[^\\$\n]|\n(?![ \t]*\n))*?(?:\\[^\n]|[^\s\\$]))\$(?!\d)/;

function token(type, raw, text, display) {
  return { type, raw, text: text.trim(), display };
}

export const extensions = [
  {
    name: "mathBlock",
    level: "block",
    start(src) { return src.match(BLOCK_START)?.index; },
    tokenizer(src) {
      const m = BLOCK.exec(src);
      if (m && (m[1] ?? m[2]).trim()) return token("mathBlock", m[0], m[1] ?? m[2], true);
      return undefined;
    },
    renderer({ text }) { return `<div class="math-display">${escapeHtml(text)}</div>\n`; },
  },
  {
    name: "mathInline",
    level: "inline",
    start(src) {
      const i = src.search(INLINE_START);
      return i < 0 ? undefined : i;
    },
    tokenizer(src) {
      let m = DISPLAY_DOLLARS.exec(src) || DISPLAY_BRACKETS.exec(src);
      if (m && m[1].trim()) return token("mathInline", m[0], m[1], true);
      m = INLINE_PARENS.exec(src) || INLINE_DOLLAR.exec(src);
      if (m && m[1].trim()) return token("mathInline", m[0], m[1], false);
      return undefined;
    },
    renderer({ text, display }) {
      return `<span class="${display ? "math-display" : "math-inline"}">${escapeHtml(text)}</span>`;
    },
  },
];

// Commands whose KaTeX output sets a style attribute (refused by the CSP): near equivalents that do not.
const MACROS = {
  "\\pmb": "\\boldsymbol{#1}",
  "\\fcolorbox": "\\colorbox{#2}{#3}\\vphantom{#1}", // #1 (the frame's colour) unused, but must be named
};

const OPTIONS = {
  trust: false,        // no \href, \url, \includegraphics, \htmlClass, \htmlId, \htmlStyle, \htmlData
  // A formula KaTeX cannot parse is caught below and shown as its source: KaTeX's own error node (what
  // throwOnError: false draws) sets a style attribute, which the CSP refuses. A bad formula never breaks a reply.
  throwOnError: true,
  strict: "ignore",    // LaTeX-compatibility remarks are not logged to the console
  maxSize: 10,         // em: a hostile \rule or \kern cannot cover the page
  maxExpand: 1000,     // macro expansions per formula: \def loops end
  output: "htmlAndMathml",
};

// What katex.render() makes: its HTML spans and SVG for stretchy symbols, and MathML for screen readers.
const ELEMENTS = new Set(`span svg path line rect g math semantics annotation mrow mi mn mo ms mtext mspace msup
  msub msubsup mfrac msqrt mroot mover munder munderover mtable mtr mtd mlabeledtr mstyle mpadded mphantom menclose
  merror`.split(/\s+/));
const ATTRIBUTES = new Set(`class style aria-hidden xmlns width height viewbox preserveaspectratio d x y x1 x2 y1
  y2 stroke-width fill encoding mathvariant mathcolor mathbackground stretchy fence separator lspace rspace
  columnalign rowalign rowspacing columnspacing columnlines rowlines scriptlevel displaystyle accent accentunder
  linethickness notation depth voffset minsize maxsize movablelimits symmetric display largeop form
  mathsize`.split(/\s+/));

function inert(root) {
  for (const el of root.querySelectorAll("*")) {
    if (!ELEMENTS.has(el.localName)) return false;
    for (const attr of el.attributes) if (!ATTRIBUTES.has(attr.name.toLowerCase())) return false;
  }
  return true;
}

function asSource(el, tex, error) {
  el.replaceChildren(document.createTextNode(tex));
  el.classList.add("math-source");
  if (error) el.title = error;
}

/** Typeset every math placeholder in a sanitised fragment. */
export function typeset(fragment) {
  const placeholders = fragment.querySelectorAll(".math-inline, .math-display");
  if (!placeholders.length) return;
  if (typeof katex === "undefined") {
    placeholders.forEach((el) => el.classList.add("math-source"));
    return;
  }
  placeholders.forEach((el) => {
    const tex = el.textContent;
    const displayMode = el.classList.contains("math-display");
    try {
      // A fresh macros object each time: a \gdef in one formula must not change the next.
      katex.render(tex, el, { ...OPTIONS, displayMode, macros: { ...MACROS } });
      if (!inert(el)) asSource(el, tex, t("This formula could not be shown safely."));
    } catch (error) {
      asSource(el, tex, error instanceof katex.ParseError ? error.message : t("This formula could not be shown."));
    }
  });
}
