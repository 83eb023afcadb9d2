// gbg-receiver dashboard: refresh the page's live part in place, never the whole page.
// Every few seconds (data-refresh) while the tab is visible, fetch this same page and
// swap in its live part only if it changed and nothing in it has the keyboard focus or
// is open (a delivery being read). Signed out or offline: the page stays as it is.
"use strict";
(function () {
  const live = document.querySelector("[data-refresh]");
  if (!live) {
    return;
  }
  const stamp = document.getElementById("refreshed");
  const busy = () =>
    live.contains(document.activeElement) || live.querySelector("details[open]") !== null;

  async function refresh() {
    if (document.hidden || busy()) {
      return;
    }
    try {
      const answer = await fetch(location.href, { credentials: "same-origin" });
      if (!answer.ok || answer.redirected) {
        return;
      }
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = page.querySelector("[data-refresh]");
      if (fresh && !busy() && fresh.innerHTML !== live.innerHTML) {
        live.innerHTML = fresh.innerHTML;
      }
      if (stamp) {
        stamp.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
      }
    } catch (error) {
      // The server is out of reach for a moment: try again next time.
    }
  }

  setInterval(refresh, Number(live.dataset.refresh) * 1000);
})();
