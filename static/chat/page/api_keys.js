// The API keys page: a Copy button for the new key, shown once. The clipboard API where the page may use it;
// otherwise (an insecure origin, no permission) the key's text is selected, for Ctrl+C or the phone's own Copy,
// and the status says so.
const t = (s) => (window.gettext ? window.gettext(s) : s);

const key = document.getElementById("new-key");
const button = document.getElementById("copy-key");
const status = document.getElementById("copy-key-status");

function selectKey() {
  const range = document.createRange();
  range.selectNodeContents(key);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

button.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(key.textContent);
    status.textContent = t("Copied");
  } catch {
    selectKey();
    let copied = false;
    try { copied = document.execCommand("copy"); } catch { copied = false; }
    status.textContent = copied ? t("Copied") : t("Selected: press Ctrl+C (or Copy) to copy it");
  }
});
