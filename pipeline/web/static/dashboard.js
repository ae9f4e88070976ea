// berth dashboard: follows /events (server-sent events) and swaps in the sections the
// server sends. The server renders and escapes every fragment; this script only places
// them, so it needs no templates and no build step.
(function () {
  "use strict";

  var live = document.getElementById("live");
  var updated = document.getElementById("updated");
  var source = null;

  function show(state, text) {
    if (!live) return;
    live.setAttribute("data-state", state);
    live.textContent = text;
  }

  function apply(data) {
    var names = Object.keys(data.sections || {});
    for (var i = 0; i < names.length; i++) {
      var body = document.querySelector('[data-section="' + names[i] + '"]');
      if (body) body.innerHTML = data.sections[names[i]];
    }
    if (updated && data.updated) updated.innerHTML = data.updated;
    var main = document.querySelector("main");
    if (main) main.setAttribute("data-event-id", String(data.event_id));
    show(data.rolling ? "rolling" : "live", data.rolling ? "live \u00b7 rollout in progress" : "live");
  }

  // A closed stream is either a lost session (sign in again) or a refused or broken
  // connection (try again later). GET /login redirects signed-in readers to "/".
  function recover() {
    fetch("/login", { credentials: "same-origin", redirect: "manual" }).then(
      function (response) {
        if (response.type === "opaqueredirect") {
          window.setTimeout(connect, 5000);
        } else {
          window.location.assign("/login");
        }
      },
      function () { window.setTimeout(connect, 5000); }
    );
  }

  function connect() {
    if (!window.EventSource) {
      show("off", "no live updates in this browser");
      return;
    }
    source = new EventSource("/events");
    source.addEventListener("open", function () { show("live", "live"); });
    source.addEventListener("snapshot", function (event) {
      try {
        apply(JSON.parse(event.data));
      } catch (err) {
        show("off", "bad update from the server");
      }
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        show("off", "disconnected");
        source.close();
        recover();
      } else {
        show("connecting", "reconnecting");
      }
    });
  }

  connect();
})();
