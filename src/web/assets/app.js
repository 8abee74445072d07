// emailin's own script: the live board, auto-submitting selects, and
// @mention chips. Everything works without it; it only saves clicks.
(function () {
  "use strict";

  // Live board: the server says "board" when records change; the board's
  // columns (hx-trigger="board-changed from:body") then reload in place.
  function listen() {
    if (!document.getElementById("board") || !window.EventSource) return;
    var source = new EventSource("/events");
    source.addEventListener("board", function () {
      document.body.dispatchEvent(new CustomEvent("board-changed"));
    });
    source.onopen = function () {
      document.body.setAttribute("data-live", "on");
    };
    source.onerror = function () {
      document.body.setAttribute("data-live", "reconnecting");
    };
  }

  // A select marked data-autosubmit sends its form when it changes; its
  // button stays for keyboards and for pages without this script.
  function autosubmit(event) {
    var el = event.target;
    if (el.matches && el.matches("select[data-autosubmit]") && el.form) {
      el.form.requestSubmit ? el.form.requestSubmit() : el.form.submit();
    }
  }

  // A mention chip puts "@address " into its form's textarea.
  function mention(event) {
    var chip = event.target.closest && event.target.closest("[data-mention]");
    if (!chip) return;
    var box = chip.form && chip.form.querySelector("textarea");
    if (!box) return;
    var add = "@" + chip.getAttribute("data-mention") + " ";
    var at = box.selectionStart || box.value.length;
    var before = box.value.slice(0, at);
    if (before && !/\s$/.test(before)) add = " " + add;
    box.value = before + add + box.value.slice(at);
    box.focus();
    box.selectionStart = box.selectionEnd = at + add.length;
  }

  // Times are written in UTC; show them in the reader's own time zone
  // (the UTC time stays in the tooltip).
  function localTimes(root) {
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    var els = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      if (el.getAttribute("data-local")) continue;
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) continue;
      el.title = el.textContent;
      el.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) +
        " " + pad(d.getHours()) + ":" + pad(d.getMinutes());
      el.setAttribute("data-local", "1");
    }
  }

  document.addEventListener("change", autosubmit);
  document.addEventListener("DOMContentLoaded", function () { localTimes(); });
  document.addEventListener("htmx:afterSettle", function (e) { localTimes(e.target); });
  document.addEventListener("click", mention);
  document.addEventListener("DOMContentLoaded", listen);
})();
