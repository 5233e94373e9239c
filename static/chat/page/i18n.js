// The page's words in the person's language. Django's JavaScriptCatalog (/jsi18n/, loaded by the template before
// the modules) defines window.gettext and window.ngettext from locale/*/djangojs.po; without it the English shows.
// `manage.py makemessages -d djangojs` finds t("…") and tn("…", "…", n) (chat/management/commands/makemessages.py
// adds them to xgettext's keywords). Put variables in with fill(): never build the text given to t() at run time,
// or the extraction cannot see it.
export const t = (s) => (window.gettext ? window.gettext(s) : s);
export const tn = (one, many, n) => (window.ngettext ? window.ngettext(one, many, n) : n === 1 ? one : many);

/** Put values into a translated text: fill(t("%(n)s tokens"), { n: 5 }). */
export function fill(text, values) {
  return text.replace(/%\((\w+)\)s/g, (whole, key) => (key in values ? String(values[key]) : whole));
}

/** The page's language (the <html lang> Django set), for numbers and dates. */
export const language = document.documentElement.lang || "en";
