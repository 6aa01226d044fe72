// The jobs list: status, base model, suffix, created, progress and best validation reward,
// filtered by status (here) and metadata (by the API's metadata[key]=value filter).
import { request } from "../api.js";
import { h, replace, field, alertBox, formatTime, formatNumber, statusBadge, progressBar } from "../dom.js";
import { STATUSES, TERMINAL, jobSummary } from "../jobinfo.js";

const POLL_MS = 4000;

export async function jobsView(main, _params, query) {
  const statusSelect = h("select", { name: "status" }, h("option", { value: "" }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: query.get("status") === s }, s.replace("_", " "))));
  const metadataInput = h("input", { type: "text", name: "metadata", placeholder: "key=value", value: query.get("metadata") || "" });
  const body = h("div", { "aria-live": "polite" });
  const summaries = new Map();
  let jobs = [];
  let hasMore = false;
  let timer = null;

  function metadataFilter() {
    const text = metadataInput.value.trim();
    if (!text) return "";
    return text.split(",").map((pair) => {
      const [key, ...rest] = pair.split("=");
      return `&metadata[${encodeURIComponent(key.trim())}]=${encodeURIComponent(rest.join("=").trim())}`;
    }).join("");
  }

  async function load(more = false) {
    const after = more && jobs.length ? `&after=${encodeURIComponent(jobs[jobs.length - 1].id)}` : "";
    const page = await request(`/fine_tuning/jobs?limit=20${after}${metadataFilter()}`);
    jobs = more ? jobs.concat(page.data) : page.data;
    hasMore = page.has_more;
    await Promise.all(jobs.map(async (job) => {
      const known = summaries.get(job.id);
      if (known && known.status === job.status && TERMINAL.has(job.status)) return;
      try {
        summaries.set(job.id, { status: job.status, ...(await jobSummary(job)) });
      } catch { /* the row shows dashes */ }
    }));
    render();
  }

  function render() {
    const wanted = statusSelect.value;
    const shown = jobs.filter((job) => !wanted || job.status === wanted);
    if (shown.length === 0) {
      replace(body, h("p", { class: "empty" }, jobs.length ? "No job matches these filters." : "No jobs yet. ", jobs.length ? null : h("a", { href: "#/jobs/new" }, "Create one")));
      return;
    }
    replace(body, h("div", { class: "table-scroll" }, h("table", { class: "jobs" },
      h("thead", {}, h("tr", {}, ["Job", "Status", "Base model", "Suffix", "Created", "Progress", "Best validation reward"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, shown.map((job) => {
        const summary = summaries.get(job.id) || {};
        const progress = summary.progress;
        return h("tr", { dataset: { jobId: job.id } },
          h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id)),
          h("td", {}, statusBadge(job.status)),
          h("td", {}, job.model),
          h("td", {}, job.user_provided_suffix || "—"),
          h("td", {}, formatTime(job.created_at)),
          h("td", {}, progress ? progressBar(progress.step, progress.total, `progress of ${job.id}`) : "—"),
          h("td", { class: "num" }, formatNumber(summary.best)));
      })))),
    hasMore ? h("button", { type: "button", onclick: () => load(true) }, "Load more") : null);
  }

  function poll() {
    timer = setTimeout(async () => {
      try { await load(); } catch { /* keep the last table */ }
      poll();
    }, POLL_MS);
  }

  const filters = h("form", { class: "filters", role: "search", onsubmit: (event) => { event.preventDefault(); load().catch((e) => replace(body, alertBox(e.message))); } },
    field("Status", statusSelect), field("Metadata", metadataInput, "key=value, several separated by commas"),
    h("button", { type: "submit" }, "Filter"));
  statusSelect.addEventListener("change", render);
  replace(main, h("div", { class: "heading" }, h("h1", {}, "Fine-tuning jobs"), h("a", { class: "button primary", href: "#/jobs/new" }, "New job")), filters, body);
  try {
    await load();
  } catch (error) {
    replace(body, alertBox(error.message));
  }
  poll();
  return () => clearTimeout(timer);
}
