// The samples a job stored for one step (or one validation run): the prompt, the sampled
// completion, its reward and each sub-grader's score, and the reference fields the grader saw;
// sortable by reward or any sub-score.
import { request } from "../api.js";
import { h, replace, field, alertBox, formatNumber } from "../dom.js";

function promptText(messages) {
  return (messages || []).map((m) => `${m.role}: ${typeof m.content === "string" ? m.content : JSON.stringify(m.content)}`).join("\n");
}

export async function samplesView(main, [jobId], query) {
  const path = `/fine_tuning/jobs/${encodeURIComponent(jobId)}`;
  const split = query.get("split") === "validation" ? "validation" : "train";
  const stepQuery = query.get("step");
  const [steps, page] = await Promise.all([
    request(`${path}/sample_steps?split=${split}`),
    request(`${path}/samples?split=${split}${stepQuery ? `&step=${encodeURIComponent(stepQuery)}` : ""}`),
  ]);
  const samples = page.data;
  const subNames = [...new Set(samples.flatMap((s) => Object.keys(s.sub_rewards || {})))];
  const refNames = [...new Set(samples.flatMap((s) => Object.keys(s.reference || {})))];
  let sort = { key: query.get("sort") || "group", descending: true };

  const go = (step, newSplit) => { location.hash = `#/jobs/${encodeURIComponent(jobId)}/samples?step=${step}&split=${newSplit}`; };
  const stepSelect = h("select", { name: "step" }, steps.data.map((s) => h("option", { value: s.step, selected: s.step === page.step }, `step ${s.step} (${s.count})`)));
  stepSelect.addEventListener("change", () => go(stepSelect.value, split));
  const splitSelect = h("select", { name: "split" }, ["train", "validation"].map((s) => h("option", { value: s, selected: s === split }, s === "train" ? "training" : "validation")));
  splitSelect.addEventListener("change", () => { location.hash = `#/jobs/${encodeURIComponent(jobId)}/samples?split=${splitSelect.value}`; });

  const tableBox = h("div", { class: "table-scroll" });
  const valueFor = (sample, key) => key === "reward" ? sample.reward : key === "group" ? -sample.group : (sample.sub_rewards || {})[key] ?? -Infinity;

  function sortButton(key, label) {
    const active = sort.key === key;
    return h("button", { type: "button", class: "sort", "aria-label": `Sort by ${label}`, onclick: () => { sort = { key, descending: active ? !sort.descending : true }; render(); } },
      label, active && key !== "group" ? (sort.descending ? " ▼" : " ▲") : "");
  }

  function render() {
    const ordered = samples.slice().sort((a, b) => (sort.descending ? 1 : -1) * (valueFor(b, sort.key) - valueFor(a, sort.key)) || a.group - b.group || b.reward - a.reward);
    const ariaSort = (key) => sort.key === key ? (sort.descending ? "descending" : "ascending") : "none";
    replace(tableBox, h("table", { class: "samples" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", "aria-sort": ariaSort("group") }, sortButton("group", "Prompt #")),
        h("th", { scope: "col" }, "Prompt"),
        h("th", { scope: "col" }, "Completion"),
        h("th", { scope: "col", "aria-sort": ariaSort("reward") }, sortButton("reward", "Reward")),
        subNames.map((name) => h("th", { scope: "col", "aria-sort": ariaSort(name) }, sortButton(name, name))),
        h("th", { scope: "col" }, "Reference"))),
      h("tbody", {}, ordered.map((s) => h("tr", { class: "sample" },
        h("td", { class: "num" }, s.group),
        h("td", {}, h("pre", { class: "text" }, promptText(s.prompt))),
        h("td", {}, h("pre", { class: "text completion" }, s.completion === "" ? "(empty)" : s.completion)),
        h("td", { class: "num reward" }, formatNumber(s.reward)),
        subNames.map((name) => h("td", { class: "num sub-reward", dataset: { grader: name } }, formatNumber((s.sub_rewards || {})[name]))),
        h("td", {}, refNames.length ? h("dl", { class: "reference" }, refNames.map((k) => [h("dt", {}, k), h("dd", {}, JSON.stringify((s.reference || {})[k]))]).flat()) : "—"))))));
  }

  const mean = samples.length ? samples.reduce((t, s) => t + s.reward, 0) / samples.length : null;
  replace(main,
    h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / ", h("a", { href: `#/jobs/${encodeURIComponent(jobId)}` }, jobId), " / samples"),
    h("h1", {}, page.step === null ? "Samples" : `Samples of ${split === "validation" ? "the validation run at " : ""}step ${page.step}`),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, field("Split", splitSelect), steps.data.length ? field("Step", stepSelect) : null),
    samples.length
      ? h("p", { class: "summary" }, `${samples.length} completions of ${new Set(samples.map((s) => s.group)).size} prompts, mean reward ${formatNumber(mean)}.`)
      : alertBox(`No ${split === "validation" ? "validation" : "training"} samples stored for this job yet.`, "info"),
    samples.length ? tableBox : null);
  render();
}
