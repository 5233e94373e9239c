// The review panel's live generations page: reload every few seconds, but not while the reviewer is choosing
// rows or an action (a reload would drop the selection), nor while the tab is hidden. A file, not inline
// script: the site's Content-Security-Policy forbids inline script.
(function () {
  "use strict";
  var script = document.currentScript;
  var seconds = Number(script && script.dataset.refreshSeconds) || 5;

  function choosing() {
    if (document.querySelector("#changelist-form input.action-select:checked, #action-toggle:checked")) {
      return true;
    }
    var focused = document.activeElement;
    return Boolean(focused && focused.closest && focused.closest("#changelist-form .actions"));
  }

  setInterval(function () {
    if (!document.hidden && !choosing()) {
      window.location.replace(window.location.pathname + window.location.search);
    }
  }, seconds * 1000);
})();
