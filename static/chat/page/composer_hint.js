// The message box's placeholder: on a desktop it teaches the keys (Enter, Shift+Enter, ↑, Esc); on a phone or
// any touch-first or narrow screen there are no such keys to press, so it says only what the box is for. It
// follows the device as it changes (a rotated tablet, a window narrowed, a keyboard attached).
const t = (s) => (window.gettext ? window.gettext(s) : s);

const input = document.getElementById("input");
const keysHint = input.getAttribute("placeholder"); // the template's, already translated there
const touchFirst = window.matchMedia("(pointer: coarse), (hover: none), (max-width: 700px)");

function showHint() {
  input.placeholder = touchFirst.matches ? t("Message") : keysHint;
}

touchFirst.addEventListener("change", showHint);
showHint();
