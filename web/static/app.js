// socketd's dashboard: shows whether the page follows the daemon's events,
// sends a page whose login has ended to the login page, and paces the
// live parts' refreshes.
(function () {
  "use strict";
  function live(state, text) {
    var el = document.getElementById("live");
    if (!el) return;
    el.dataset.state = state;
    el.querySelector(".live-text").textContent = text;
  }
  document.addEventListener("htmx:sseOpen", function () { live("open", "live"); });
  document.addEventListener("htmx:sseError", function () {
    live("error", "reconnecting");
    // The stream refuses a login that has ended: so would the page.
    fetch("/ui/session", { credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) window.location.assign("/ui/login");
    });
  });

  // A live part (data-refresh="MS") is fetched again at most once every MS
  // milliseconds however fast events come: a refresh asked for sooner
  // waits for the end of the interval, and only one waits, so that the
  // last change is always shown and a busy socket cannot make the page
  // flood the daemon with requests. Nor is it replaced while it holds the
  // keyboard's focus (a kill button, say): it waits for the focus to go.
  function focused(el) {
    return el.contains(document.activeElement) && document.activeElement !== document.body;
  }
  document.addEventListener("htmx:confirm", function (e) {
    var el = e.detail.elt, gap = parseInt(el.dataset.refresh, 10);
    if (!gap) return;
    var wait = (el.socketdLast || 0) + gap - Date.now();
    if (wait <= 0 && !focused(el)) {
      el.socketdLast = Date.now();
      return;
    }
    e.preventDefault();
    if (el.socketdPending) return;
    var later = function () {
      if (focused(el)) {
        el.socketdPending = setTimeout(later, gap);
        return;
      }
      el.socketdPending = null;
      el.socketdLast = Date.now();
      e.detail.issueRequest(true);
    };
    el.socketdPending = setTimeout(later, Math.max(wait, 0));
  });
})();
