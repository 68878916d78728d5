// socketd's dashboard: shows whether the page follows the daemon's events,
// and sends a page whose login has ended to the login page.
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
})();
