// The review panel's live generations page: reload every few seconds, but not while the reviewer is choosing
// rows or an action (a reload would drop the selection), nor while the tab is hidden. A file, not inline
// script: the site's Content-Security-Policy forbids inline script. An ES module: modules have no
// document.currentScript, so the period is read from the script element by its data attribute.
const script = document.querySelector("script[data-refresh-seconds]");
const seconds = Number(script?.dataset.refreshSeconds) || 5;

function choosing() {
  if (document.querySelector("#changelist-form input.action-select:checked, #action-toggle:checked")) {
    return true;
  }
  return Boolean(document.activeElement?.closest?.("#changelist-form .actions"));
}

setInterval(() => {
  if (!document.hidden && !choosing()) {
    window.location.replace(window.location.pathname + window.location.search);
  }
}, seconds * 1000);
