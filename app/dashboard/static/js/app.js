// The dashboard's shell: sign-in, the navigation, and a hash router (#/jobs, #/jobs/ID, ...).
// Each view renders into <main> and may return a function that stops its polling.
import { apiKey, hooks, request } from "./api.js";
import { h, field, alertBox, replace } from "./dom.js";
import { jobsView } from "./views/jobs.js";
import { createJobView } from "./views/create.js";
import { jobView } from "./views/job.js";
import { samplesView } from "./views/samples.js";
import { filesView } from "./views/files.js";
import { playgroundView } from "./views/playground.js";

const ROUTES = [
  [/^\/jobs\/new$/, createJobView],
  [/^\/jobs\/([^/]+)\/samples$/, samplesView],
  [/^\/jobs\/([^/]+)$/, jobView],
  [/^\/jobs$/, jobsView],
  [/^\/files$/, filesView],
  [/^\/playground$/, playgroundView],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let stopView = null;

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/jobs";
  const [path, query = ""] = raw.split("?");
  return { path, query: new URLSearchParams(query) };
}

function signInView(message) {
  nav.hidden = true;
  const input = h("input", { type: "password", name: "api-key", autocomplete: "off", required: true, spellcheck: "false" });
  const status = h("div", { "aria-live": "polite" }, message ? alertBox(message) : null);
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h("form", {
    class: "card sign-in",
    onsubmit: async (event) => {
      event.preventDefault();
      const key = input.value.trim();
      button.disabled = true;
      replace(status);
      try {
        await request("/models", { key });
        apiKey.set(key);
        input.value = "";
        if (!location.hash || location.hash === "#/") location.hash = "#/jobs";
        route();
      } catch (error) {
        replace(status, alertBox(`Sign-in failed: ${error.message}`));
        input.focus();
      } finally {
        button.disabled = false;
      }
    },
  },
  h("h1", {}, "Sign in to OpenRFT"),
  h("p", {}, "Paste an API key of your project. It is kept in this browser tab only, until you sign out or close the tab."),
  field("API key", input, "A key made by `openrft keys create --project NAME`, or printed by `openrft serve`."),
  button, status);
  replace(main, form);
  input.focus();
}

function markCurrentLink(path) {
  for (const link of nav.querySelectorAll("a")) {
    const target = link.getAttribute("href").slice(1);
    const current = target === path || (target === "/jobs" && path.startsWith("/jobs/") && path !== "/jobs/new");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route() {
  if (stopView) { stopView(); stopView = null; }
  if (!apiKey.get()) { signInView(); return; }
  nav.hidden = false;
  const { path, query } = parseHash();
  markCurrentLink(path);
  for (const [pattern, view] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      main.replaceChildren();
      try {
        stopView = (await view(main, match.slice(1).map(decodeURIComponent), query)) || null;
      } catch (error) {
        replace(main, alertBox(error.message));
      }
      return;
    }
  }
  replace(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/jobs" }, "Back to the jobs")));
}

hooks.unauthorized = (error) => {
  apiKey.clear();
  if (stopView) { stopView(); stopView = null; }
  signInView(`Signed out: ${error.message}`);
};

document.getElementById("sign-out").addEventListener("click", () => {
  apiKey.clear();
  if (stopView) { stopView(); stopView = null; }
  signInView();
});

let lastRoute = location.hash;
window.addEventListener("hashchange", () => {
  if (location.hash === "#main") {  // the skip link: focus the content, stay on this view
    history.replaceState(null, "", lastRoute || "#/jobs");
    main.focus();
    return;
  }
  lastRoute = location.hash;
  route();
  main.focus({ preventScroll: true });
});
route();
