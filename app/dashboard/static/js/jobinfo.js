// Facts about a job the views share: the legal actions (the API's state machine, app/jobs/states.py),
// its metrics events, progress and best validation reward.
import { listAll, request } from "./api.js";

export const STATUSES = ["validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"];
export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

// action -> statuses in which the API accepts it
export const LEGAL_ACTIONS = {
  pause: new Set(["validating_files", "queued", "running"]),
  resume: new Set(["paused"]),
  cancel: new Set(["validating_files", "queued", "running", "paused"]),
};

export function methodOf(job) {
  return (job.method && job.method.type) || "supervised";
}

export function resolvedHyperparameters(job) {
  const type = methodOf(job);
  return (job.method && job.method[type] && job.method[type].hyperparameters) || job.hyperparameters || {};
}

/** Events oldest first. */
export async function jobEvents(jobId) {
  const events = await listAll(`/fine_tuning/jobs/${encodeURIComponent(jobId)}/events`, 1000);
  return events.reverse();
}

export function metricsOf(events) {
  return events.filter((event) => event.type === "metrics" && event.data && typeof event.data.step === "number").map((event) => event.data);
}

/** The validation figures before training (the trainer's step 0), or null. */
export function baselineOf(events) {
  const event = events.find((e) => e.type !== "metrics" && e.data && e.data.step === 0 && typeof e.data.valid_reward_mean === "number");
  return event ? event.data : null;
}

/** {step, total} from the newest metrics event among `events` (newest first), or null. */
export function progressFrom(eventsNewestFirst) {
  const metrics = eventsNewestFirst.find((event) => event.type === "metrics" && event.data);
  return metrics ? { step: metrics.data.step, total: metrics.data.total_steps } : null;
}

export function bestValidReward(checkpoints) {
  const values = checkpoints.map((c) => c.metrics && c.metrics.valid_reward_mean).filter((v) => typeof v === "number");
  return values.length ? Math.max(...values) : null;
}

/** Progress and best validation reward for the jobs list (two small requests per job). */
export async function jobSummary(job) {
  const id = encodeURIComponent(job.id);
  const [events, checkpoints] = await Promise.all([
    request(`/fine_tuning/jobs/${id}/events?limit=20`),
    request(`/fine_tuning/jobs/${id}/checkpoints?limit=100`),
  ]);
  return { progress: progressFrom(events.data), best: bestValidReward(checkpoints.data) };
}

/** Numeric leaves of a metrics event, keyed by "/"-joined paths (as the metrics CSV names them). */
export function flatMetrics(data, prefix = "", out = {}) {
  for (const [key, value] of Object.entries(data)) {
    const path = prefix + key;
    if (typeof value === "number") out[path] = value;
    else if (Array.isArray(value)) {
      for (const entry of value) {
        if (entry && typeof entry === "object") {
          const rest = Object.fromEntries(Object.entries(entry).filter(([k]) => !["name", "type", "model"].includes(k)));
          flatMetrics(rest, `${path}/${entry.name || entry.type || ""}/`, out);
        }
      }
    } else if (value && typeof value === "object") flatMetrics(value, `${path}/`, out);
  }
  return out;
}
