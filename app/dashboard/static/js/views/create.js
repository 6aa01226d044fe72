// Create a job: pick uploaded files and a base model, paste or pick a grader, set the
// hyperparameters ("auto" lets the trainer choose from the dataset size; the job page shows
// what each resolved to).
import { request } from "../api.js";
import { h, replace, field, alertBox } from "../dom.js";
import { GRADER_TEMPLATES, templateSelect, parseJson } from "../graders.js";

// OpenAI's hyperparameters per method, in the order the job echoes them
const OPENAI_HYPERPARAMETERS = {
  reinforcement: ["n_epochs", "batch_size", "learning_rate_multiplier", "compute_multiplier", "eval_interval", "eval_samples", "reasoning_effort"],
  supervised: ["n_epochs", "batch_size", "learning_rate_multiplier"],
};

function parseValue(text) {
  const trimmed = text.trim();
  if (trimmed === "" || trimmed === "auto") return "auto";
  const number = Number(trimmed);
  return Number.isFinite(number) ? number : trimmed;
}

export async function createJobView(main) {
  const [files, models] = await Promise.all([
    request("/files?purpose=fine-tune&limit=1000"),
    request("/models"),
  ]);
  const fileOptions = (blank) => [h("option", { value: "" }, blank), files.data.map((f) => h("option", { value: f.id }, `${f.filename} (${f.id})`))];
  const training = h("select", { name: "training_file", required: true }, fileOptions("choose a file"));
  const validation = h("select", { name: "validation_file" }, fileOptions("none"));
  const model = h("select", { name: "model", required: true }, models.data.map((m) => h("option", { value: m.id }, m.id)));
  const method = h("select", { name: "method" }, h("option", { value: "reinforcement" }, "reinforcement"), h("option", { value: "supervised" }, "supervised"));
  const suffix = h("input", { type: "text", name: "suffix", maxlength: "64" });
  const seed = h("input", { type: "number", name: "seed", placeholder: "random" });
  const metadata = h("textarea", { name: "metadata", rows: "2", placeholder: "team=search\nrun=baseline" });
  const grader = h("textarea", { name: "grader", rows: "10", class: "code", spellcheck: "false" });
  grader.value = JSON.stringify(Object.values(GRADER_TEMPLATES)[0], null, 2);
  const graderStatus = h("div", { "aria-live": "polite" });
  const extra = h("textarea", { name: "extra", rows: "3", class: "code", spellcheck: "false", placeholder: '{"group_size": 4, "max_completion_tokens": 32}' });
  const hyperBox = h("div", { class: "grid-fields" });
  const inputs = {};
  const status = h("div", { "aria-live": "polite" });

  function renderHyperparameters() {
    replace(hyperBox);
    for (const name of OPENAI_HYPERPARAMETERS[method.value]) {
      inputs[name] = inputs[name] || (name === "reasoning_effort"
        ? h("select", { name }, ["default", "low", "medium", "high"].map((v) => h("option", { value: v }, v)))
        : h("input", { type: "text", name, value: "auto", inputmode: "decimal" }));
      hyperBox.append(field(name.replaceAll("_", " "), inputs[name]));
    }
  }
  renderHyperparameters();
  const graderSection = h("fieldset", {}, h("legend", {}, "Grader"),
    field("Start from a template", templateSelect(grader)),
    field("Grader JSON", grader, "Scores a sample from 0 to 1; {{ item.<field> }} reads the dataset row, {{ sample.output_text }} the answer."),
    h("button", { type: "button", onclick: validateGrader }, "Check grader"), graderStatus);
  method.addEventListener("change", () => {
    renderHyperparameters();
    graderSection.hidden = method.value !== "reinforcement";
  });

  async function validateGrader() {
    replace(graderStatus);
    try {
      await request("/fine_tuning/alpha/graders/validate", { method: "POST", body: { grader: parseJson(grader.value, "The grader") } });
      replace(graderStatus, alertBox("The grader is valid.", "ok"));
    } catch (error) {
      replace(graderStatus, alertBox(error.message));
    }
  }

  function body() {
    const hyperparameters = {};
    for (const name of OPENAI_HYPERPARAMETERS[method.value]) hyperparameters[name] = parseValue(inputs[name].value);
    if (extra.value.trim()) Object.assign(hyperparameters, parseJson(extra.value, "Extra hyperparameters"));
    const type = method.value;
    const settings = { hyperparameters };
    if (type === "reinforcement") settings.grader = parseJson(grader.value, "The grader");
    const request = { model: model.value, training_file: training.value, method: { type, [type]: settings } };
    if (validation.value) request.validation_file = validation.value;
    if (suffix.value.trim()) request.suffix = suffix.value.trim();
    if (seed.value.trim()) request.seed = Number(seed.value);
    const pairs = metadata.value.split("\n").map((line) => line.trim()).filter(Boolean);
    if (pairs.length) request.metadata = Object.fromEntries(pairs.map((line) => { const [k, ...v] = line.split("="); return [k.trim(), v.join("=").trim()]; }));
    return request;
  }

  const submit = h("button", { type: "submit", class: "primary" }, "Create job");
  const form = h("form", {
    class: "card",
    onsubmit: async (event) => {
      event.preventDefault();
      replace(status);
      submit.disabled = true;
      try {
        const job = await request("/fine_tuning/jobs", { method: "POST", body: body() });
        location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
      } catch (error) {
        replace(status, alertBox(`The job was not created: ${error.message}`));
      } finally {
        submit.disabled = false;
      }
    },
  },
  h("fieldset", {}, h("legend", {}, "Data and model"),
    h("div", { class: "grid-fields" },
      field("Base model", model), field("Method", method),
      field("Training file", training), field("Validation file", validation))),
  files.data.length ? null : alertBox(["No uploaded files yet: ", h("a", { href: "#/files" }, "upload a training file"), " first."], "info"),
  graderSection,
  h("fieldset", {}, h("legend", {}, "Hyperparameters"),
    h("p", { class: "hint" }, "\u201Cauto\u201D lets the trainer choose from the dataset size; the job page shows the values it resolved to."),
    hyperBox,
    field("Extra hyperparameters (JSON)", extra, "group_size, max_completion_tokens, lora_rank, beta, temperature, loss_type, …")),
  h("fieldset", {}, h("legend", {}, "Name and labels"),
    h("div", { class: "grid-fields" }, field("Suffix", suffix), field("Seed", seed)),
    field("Metadata", metadata, "one key=value a line")),
  submit, status);
  replace(main, h("h1", {}, "New fine-tuning job"), form);
}
