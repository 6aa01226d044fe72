// One job, live: status and progress, reward curves (training mean with its min–max band,
// validation), any other logged metric, checkpoints marked on the curve and downloadable, the
// resolved hyperparameters, the events log, and pause/resume/cancel when the API allows them.
import { request, download } from "../api.js";
import { h, replace, field, alertBox, formatTime, formatNumber, statusBadge, progressBar } from "../dom.js";
import { lineChart } from "../chart.js";
import { LEGAL_ACTIONS, TERMINAL, baselineOf, jobEvents, metricsOf, methodOf, resolvedHyperparameters, flatMetrics } from "../jobinfo.js";

const POLL_MS = 1500;
const COLORS = { train: "#1f5fbf", valid: "#c2410c", metric: "#15803d" };
// shown first in the metric selector, when logged
const PREFERRED_METRICS = ["kl", "entropy", "frac_reward_zero_std", "clip_ratio/region_mean", "clip_ratio/low_mean", "clip_ratio/high_mean",
  "timing/step/sampling", "timing/step/grading", "timing/step/training", "step_time", "train_tokens_per_second", "loss", "grad_norm",
  "completions/mean_length", "reward_std"];
const REWARD_KEYS = new Set(["step", "total_steps", "train_reward_mean", "valid_reward_mean"]);

const ACTION_LABELS = { pause: "Pause", resume: "Resume", cancel: "Cancel" };

function plainError(job) {
  const error = job.error || {};
  const file = { training_file: "training file", validation_file: "validation file" }[error.param] || "data file";
  const words = {
    invalid_file: `The ${file} is not usable`,
    invalid_training_file: "The training file is not usable",
    invalid_validation_file: "The validation file is not usable",
    file_not_found: `The ${file} no longer exists`,
    grader_error_rate_exceeded: "The grader failed on too many samples",
    out_of_memory: "Training ran out of memory",
    training_error: "Training stopped with an error",
    internal_error: "The service had an internal error",
  };
  const lead = words[error.code] || "The job failed";
  return `${lead}: ${error.message || "no reason was given."}`;
}

export async function jobView(main, [jobId], query) {
  const path = `/fine_tuning/jobs/${encodeURIComponent(jobId)}`;
  const title = h("h1", {}, "Job ", h("code", {}, jobId));
  const statusLine = h("div", { class: "job-status", "aria-live": "polite" });
  const buttons = {};
  const actionStatus = h("div", { "aria-live": "polite" });
  for (const action of ["pause", "resume", "cancel"]) {
    buttons[action] = h("button", { type: "button", disabled: true, class: action === "cancel" ? "danger" : "", onclick: () => act(action) }, ACTION_LABELS[action]);
  }
  const errorBox = h("div");
  const facts = h("dl", { class: "facts" });
  const rewardBox = h("div");
  const metricSelect = h("select", { name: "metric" });
  const metricBox = h("div");
  const checkpointsBox = h("div");
  const samplesBox = h("div");
  const hyperBox = h("div");
  const eventsBox = h("div", { class: "events" });
  let job = null;
  let events = [];
  let checkpoints = [];
  let sampleSteps = null;
  let timer = null;
  let stopped = false;
  let lastDrawn = "";
  metricSelect.addEventListener("change", () => { drawMetric(); });

  async function act(action) {
    replace(actionStatus);
    buttons[action].disabled = true;
    try {
      job = await request(`${path}/${action}`, { method: "POST" });
      replace(actionStatus, alertBox(`${ACTION_LABELS[action]} requested.`, "ok"));
      await refresh();
    } catch (error) {
      replace(actionStatus, alertBox(error.message));
      updateButtons();
    }
  }

  function updateButtons() {
    for (const [action, button] of Object.entries(buttons)) button.disabled = !job || !LEGAL_ACTIONS[action].has(job.status);
  }

  async function loadSampleSteps() {
    try {
      return (await request(`${path}/sample_steps`)).data;
    } catch {
      return null;  // a server without the samples extension
    }
  }

  async function refresh() {
    const [fresh, freshEvents, freshCheckpoints, steps] = await Promise.all([
      request(path), jobEvents(jobId), request(`${path}/checkpoints?limit=100`), loadSampleSteps(),
    ]);
    job = fresh;
    events = freshEvents;
    checkpoints = freshCheckpoints.data.slice().sort((a, b) => a.step_number - b.step_number);
    sampleSteps = steps;
    render();
  }

  let shownStatus = null;
  function render() {
    if (shownStatus !== null && shownStatus !== job.status) replace(actionStatus);  // the request was answered
    shownStatus = job.status;
    const metrics = metricsOf(events);
    const last = metrics[metrics.length - 1];
    replace(statusLine, statusBadge(job.status),
      last ? h("span", { class: "step-progress" }, " step ", progressBar(last.step, last.total_steps, "training progress")) : null,
      job.estimated_finish && !TERMINAL.has(job.status) ? h("span", { class: "hint" }, ` estimated finish ${formatTime(job.estimated_finish)}`) : null);
    updateButtons();
    replace(errorBox, job.status === "failed" ? alertBox(plainError(job)) : null);
    replace(facts, ...[
      ["Base model", job.model], ["Method", methodOf(job)], ["Suffix", job.user_provided_suffix || "—"],
      ["Fine-tuned model", job.fine_tuned_model || "—"], ["Created", formatTime(job.created_at)],
      ["Finished", formatTime(job.finished_at)], ["Training file", job.training_file], ["Validation file", job.validation_file || "—"],
      ["Trained tokens", job.trained_tokens ?? "—"], ["Seed", job.seed],
      ["Metadata", job.metadata && Object.keys(job.metadata).length ? Object.entries(job.metadata).map(([k, v]) => `${k}=${v}`).join(", ") : "—"],
    ].map(([term, value]) => [h("dt", {}, term), h("dd", {}, String(value))]).flat());

    const drawnKey = JSON.stringify([events.length, checkpoints.map((c) => c.id)]);
    if (drawnKey !== lastDrawn) {
      lastDrawn = drawnKey;
      const baseline = baselineOf(events);
      drawRewards(baseline ? [baseline, ...metrics] : metrics);
      updateMetricOptions(metrics);
      drawMetric();
      drawCheckpoints();
    }
    drawSamples();
    const hyper = resolvedHyperparameters(job);
    replace(hyperBox, h("table", { class: "kv" }, h("tbody", {}, Object.entries(hyper).map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, String(v)))))));
    replace(eventsBox, h("ol", { class: "event-log", reversed: true }, events.slice().reverse().map((event) =>
      h("li", { class: `level-${event.level}` }, h("time", { datetime: new Date(event.created_at * 1000).toISOString() }, new Date(event.created_at * 1000).toLocaleTimeString()),
        h("span", { class: "level" }, event.level), event.message))));
  }

  function drawRewards(metrics) {
    const band = (prefix) => {
      const rows = metrics.filter((m) => typeof m[`${prefix}_reward_min`] === "number");
      return rows.length ? rows.map((m) => ({ x: m.step, low: m[`${prefix}_reward_min`], high: m[`${prefix}_reward_max`] })) : null;
    };
    const series = [{ key: "train", name: "training reward (mean)", color: COLORS.train, points: metrics.filter((m) => typeof m.train_reward_mean === "number").map((m) => ({ x: m.step, y: m.train_reward_mean })), band: band("train") }];
    const valid = metrics.filter((m) => typeof m.valid_reward_mean === "number");
    if (valid.length) series.push({ key: "valid", name: "validation reward (mean)", color: COLORS.valid, points: valid.map((m) => ({ x: m.step, y: m.valid_reward_mean })), band: band("valid") });
    if (!series[0].points.length && metrics.some((m) => typeof m.train_loss === "number")) {
      series[0] = { key: "train", name: "training loss", color: COLORS.train, points: metrics.map((m) => ({ x: m.step, y: m.train_loss })), band: null };
    }
    const markers = checkpoints.map((c) => ({ x: c.step_number, label: `checkpoint at step ${c.step_number}: ${c.fine_tuned_model_checkpoint}` }));
    replace(rewardBox, lineChart({ id: "reward", title: "Reward", series, markers, fixedY: series[0].key === "train" && series[0].name.includes("reward") ? [0, 1] : null }));
  }

  function updateMetricOptions(metrics) {
    const names = new Set();
    for (const m of metrics) for (const key of Object.keys(flatMetrics(m))) if (!REWARD_KEYS.has(key)) names.add(key);
    const ordered = [...PREFERRED_METRICS.filter((n) => names.has(n)), ...[...names].filter((n) => !PREFERRED_METRICS.includes(n)).sort()];
    const current = metricSelect.value || query.get("metric") || ordered[0] || "";
    if (ordered.join("|") !== [...metricSelect.options].map((o) => o.value).join("|")) {
      replace(metricSelect, ordered.map((name) => h("option", { value: name }, name)));
    }
    if (ordered.includes(current)) metricSelect.value = current;
  }

  function drawMetric() {
    const name = metricSelect.value;
    if (!name) { replace(metricBox, h("p", { class: "empty" }, "No other metric logged yet.")); return; }
    const points = metricsOf(events).map((m) => ({ x: m.step, y: flatMetrics(m)[name] })).filter((p) => typeof p.y === "number");
    const markers = checkpoints.map((c) => ({ x: c.step_number, label: `checkpoint at step ${c.step_number}` }));
    replace(metricBox, lineChart({ id: "metric", title: name, series: [{ key: "metric", name, color: COLORS.metric, points, band: null }], markers }));
  }

  function drawCheckpoints() {
    if (!checkpoints.length) { replace(checkpointsBox, h("p", { class: "empty" }, "No checkpoints yet: one is saved at each evaluation.")); return; }
    const downloadStatus = h("div", { "aria-live": "polite" });
    const save = async (button, checkpoint, format) => {
      button.disabled = true;
      replace(downloadStatus, alertBox(`Preparing the ${format} download of step ${checkpoint.step_number}…`, "info"));
      try {
        const { name, bytes } = await download(`${path}/checkpoints/${encodeURIComponent(checkpoint.id)}/content?format=${format}`, `${checkpoint.id}-${format}.tar.gz`);
        replace(downloadStatus, alertBox(`Downloaded ${name} (${bytes.toLocaleString()} bytes).`, "ok"));
      } catch (error) {
        replace(downloadStatus, alertBox(`Download failed: ${error.message}`));
      } finally {
        button.disabled = false;
      }
    };
    const rows = checkpoints.slice().reverse().map((c) => {
      const adapter = h("button", { type: "button", "aria-label": `Download adapter of step ${c.step_number}` }, "Adapter");
      const merged = h("button", { type: "button", "aria-label": `Download merged model of step ${c.step_number}` }, "Merged");
      adapter.addEventListener("click", () => save(adapter, c, "adapter"));
      merged.addEventListener("click", () => save(merged, c, "merged"));
      return h("tr", { dataset: { step: c.step_number } },
        h("td", { class: "num" }, c.step_number),
        h("td", {}, h("code", {}, c.fine_tuned_model_checkpoint)),
        h("td", { class: "num" }, formatNumber(c.metrics.valid_reward_mean)),
        h("td", { class: "actions" }, h("div", { class: "buttons" }, adapter, merged,
          h("a", { class: "button", href: `#/playground?model=${encodeURIComponent(c.fine_tuned_model_checkpoint)}`, "aria-label": `Chat with the checkpoint of step ${c.step_number}` }, "Chat"))));
    });
    replace(checkpointsBox, h("div", { class: "table-scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Step", "Model", "Validation reward", "Download"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows))), downloadStatus);
  }

  function drawSamples() {
    if (sampleSteps === null) { replace(samplesBox, h("p", { class: "empty" }, "This server does not store samples.")); return; }
    if (!sampleSteps.length) { replace(samplesBox, h("p", { class: "empty" }, "No samples stored yet.")); return; }
    const link = (s) => h("li", {}, h("a", { href: `#/jobs/${encodeURIComponent(jobId)}/samples?step=${s.step}&split=${s.split}` },
      `${s.split === "validation" ? "validation at " : ""}step ${s.step}`, h("span", { class: "hint" }, ` (${s.count})`)));
    const train = sampleSteps.filter((s) => s.split === "train");
    const valid = sampleSteps.filter((s) => s.split === "validation");
    replace(samplesBox,
      train.length ? h("div", {}, h("h3", {}, "Training steps"), h("ul", { class: "step-links" }, train.map(link))) : null,
      valid.length ? h("div", {}, h("h3", {}, "Validation runs"), h("ul", { class: "step-links" }, valid.map(link))) : null);
  }

  function poll() {
    timer = setTimeout(async () => {
      if (stopped) return;
      const wasTerminal = job && TERMINAL.has(job.status);
      try { await refresh(); } catch (error) { replace(actionStatus, alertBox(`Could not refresh: ${error.message}`)); }
      if (!stopped && !(wasTerminal && TERMINAL.has(job.status))) poll();
    }, POLL_MS);
  }

  replace(main,
    h("p", { class: "crumbs" }, h("a", { href: "#/jobs" }, "Jobs"), " / ", jobId),
    title, statusLine,
    h("div", { class: "toolbar", role: "group", "aria-label": "Job actions" }, buttons.pause, buttons.resume, buttons.cancel),
    actionStatus, errorBox,
    h("section", { class: "card", "aria-labelledby": "curves-h" }, h("h2", { id: "curves-h" }, "Reward curves"), rewardBox,
      field("Other metric", metricSelect), metricBox),
    h("section", { class: "card", "aria-labelledby": "ckpt-h" }, h("h2", { id: "ckpt-h" }, "Checkpoints"), checkpointsBox),
    h("div", { class: "two-columns" },
      h("div", {},
        h("section", { class: "card", "aria-labelledby": "samples-h" }, h("h2", { id: "samples-h" }, "Samples"), samplesBox),
        h("section", { class: "card", "aria-labelledby": "facts-h" }, h("h2", { id: "facts-h" }, "Details"), facts)),
      h("section", { class: "card", "aria-labelledby": "hp-h" }, h("h2", { id: "hp-h" }, "Hyperparameters (resolved)"), hyperBox)),
    h("section", { class: "card", "aria-labelledby": "events-h" }, h("h2", { id: "events-h" }, "Events"), eventsBox));
  await refresh();
  poll();
  // charts are drawn for the window's width: draw them again when it changes
  let resizeTimer = null;
  const onResize = () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => { lastDrawn = ""; if (job) render(); }, 150); };
  window.addEventListener("resize", onResize);
  return () => { stopped = true; clearTimeout(timer); clearTimeout(resizeTimer); window.removeEventListener("resize", onResize); };
}
