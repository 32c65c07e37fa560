// The status page's live refresh: every data-refresh-ms milliseconds it
// fetches the page again and swaps in the new #content (the page is
// rendered by the server; without JavaScript a <noscript> meta refresh
// reloads it instead). The fetched HTML is parsed by DOMParser, which runs
// no scripts.
(function () {
  "use strict";
  var body = document.body;
  var every = parseInt(body.getAttribute("data-refresh-ms"), 10) || 5000;
  var live = document.getElementById("live");
  var refreshes = 0;
  function show(ok, text) {
    if (live) {
      live.textContent = text;
      live.className = ok ? "live ok" : "live bad";
    }
  }
  function tick() {
    fetch(window.location.href, { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (!r.ok) {
          throw new Error("HTTP " + r.status);
        }
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var next = doc.getElementById("content");
        var cur = document.getElementById("content");
        if (!next || !cur) {
          throw new Error("unexpected page");
        }
        cur.replaceWith(document.importNode(next, true));
        document.title = doc.title;
        refreshes++;
        body.setAttribute("data-refreshes", String(refreshes));
        show(true, "live \u00b7 updated " + new Date().toLocaleTimeString());
      })
      .catch(function (e) {
        show(false, "disconnected (" + e.message + "); retrying");
      })
      .finally(function () {
        setTimeout(tick, every);
      });
  }
  show(true, "live \u00b7 refreshing every " + Math.round(every / 1000) + " s");
  setTimeout(tick, every);
})();
