// Hindsight's browser UI: a hash router over five pages. Each page module
// exports render(container, route, signal); a navigation aborts the previous
// page's requests through its signal.

import { currentRoute, el, errorBox } from "./util.js";
import * as overview from "./overview.js";
import * as explorer from "./explorer.js";
import * as eventPage from "./event.js";
import * as sqlConsole from "./sql.js";
import * as replay from "./replay.js";

const PAGES = [
  { prefix: "/explorer", page: explorer, nav: "explorer", title: "Explorer" },
  { prefix: "/event/", page: eventPage, nav: "explorer", title: "Event" },
  { prefix: "/sql", page: sqlConsole, nav: "sql", title: "SQL" },
  { prefix: "/replay", page: replay, nav: "replay", title: "Replay" },
  { prefix: "/", page: overview, nav: "overview", title: "Overview", exact: true },
];

let controller = null;

function pageFor(path) {
  return PAGES.find((entry) => (entry.exact ? path === entry.prefix : path.startsWith(entry.prefix)));
}

async function show() {
  if (controller) controller.abort();
  controller = new AbortController();
  const route = currentRoute();
  const entry = pageFor(route.path);
  const main = document.getElementById("view");
  for (const link of document.querySelectorAll("nav a[data-nav]")) {
    if (entry && link.dataset.nav === entry.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.replaceChildren();
  if (!entry) {
    document.title = "Not found · Hindsight";
    main.append(el("h1", {}, "Not found"), el("p", {}, "There is no page at ", el("code", {}, route.path), ". ", el("a", { href: "#/" }, "Go to the overview"), "."));
    return;
  }
  document.title = `${entry.title} · Hindsight`;
  const signal = controller.signal;
  try {
    await entry.page.render(main, route, signal);
  } catch (error) {
    if (error && error.name === "AbortError") return;
    main.append(errorBox(error));
  }
}

window.addEventListener("hashchange", show);
window.addEventListener("unhandledrejection", (event) => {
  // Aborted requests of a page we left are expected, not errors.
  if (event.reason && event.reason.name === "AbortError") event.preventDefault();
});
document.addEventListener("keydown", (event) => {
  const target = event.target;
  const typing = target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey) {
    const search = document.querySelector("[data-search]");
    if (search) {
      event.preventDefault();
      search.focus();
    }
  }
});
document.querySelector(".skip").addEventListener("click", (event) => {
  // The hash is the router's; move focus without touching it.
  event.preventDefault();
  document.getElementById("view").focus();
});
show();
