// Playground: chat with a base model, a fine-tuned model or any checkpoint, one or two side by
// side on the same prompt, with the generation settings; and run a grader on a pasted sample.
import { request, listAll } from "../api.js";
import { h, replace, field, alertBox, formatNumber } from "../dom.js";
import { GRADER_TEMPLATES, templateSelect, parseJson } from "../graders.js";

async function modelNames() {
  const models = (await request("/models")).data.map((m) => m.id);
  // checkpoints are chat-able models too: offer those of the latest jobs
  try {
    const jobs = (await request("/fine_tuning/jobs?limit=10")).data;
    const lists = await Promise.all(jobs.map((job) => listAll(`/fine_tuning/jobs/${encodeURIComponent(job.id)}/checkpoints`, 100)));
    for (const list of lists) for (const c of list) models.push(c.fine_tuned_model_checkpoint);
  } catch { /* base and fine-tuned models are enough */ }
  return [...new Set(models)];
}

function chatPane(index, names, initial) {
  const model = h("input", { type: "text", name: `model-${index}`, list: "model-names", value: initial || names[0] || "", required: true, spellcheck: "false" });
  const transcript = h("div", { class: "transcript", "aria-live": "polite", dataset: { pane: index } });
  const pane = h("section", { class: "card pane", "aria-label": `Conversation with model ${index}` }, field(`Model ${index}`, model), transcript);
  const messages = [];
  return {
    element: pane,
    model,
    messages,
    clear() { messages.length = 0; replace(transcript); },
    add(role, text, meta) {
      transcript.append(h("div", { class: `message ${role}` }, h("span", { class: "role" }, role), h("p", {}, text), meta ? h("small", { class: "hint" }, meta) : null));
      transcript.scrollTop = transcript.scrollHeight;
    },
    error(message) { transcript.append(alertBox(message)); },
  };
}

export async function playgroundView(main, _params, query) {
  const names = await modelNames();
  const datalist = h("datalist", { id: "model-names" }, names.map((n) => h("option", { value: n })));
  const base = names.find((n) => !n.startsWith("ft:")) || names[0];
  const asked = query.get("model");
  const panes = [chatPane(1, names, base), chatPane(2, names, asked || names.find((n) => n.startsWith("ft:")) || base)];
  const compare = h("input", { type: "checkbox", name: "compare", checked: true });
  const system = h("textarea", { name: "system", rows: "2", placeholder: "optional" });
  const prompt = h("textarea", { name: "prompt", rows: "3", required: true });
  const temperature = h("input", { type: "number", name: "temperature", min: "0", max: "2", step: "0.1", value: "1" });
  const topP = h("input", { type: "number", name: "top_p", min: "0", max: "1", step: "0.05", value: "1" });
  const maxTokens = h("input", { type: "number", name: "max_tokens", min: "1", max: "4096", value: "64" });
  const seed = h("input", { type: "number", name: "seed", placeholder: "random" });
  const send = h("button", { type: "submit", class: "primary" }, "Send");
  const panesBox = h("div", { class: "panes" }, panes.map((p) => p.element));
  const syncCompare = () => { panes[1].element.hidden = !compare.checked; panesBox.classList.toggle("single", !compare.checked); };
  compare.addEventListener("change", syncCompare);
  syncCompare();

  async function ask(pane, text) {
    const messages = [];
    if (system.value.trim()) messages.push({ role: "system", content: system.value.trim() });
    messages.push(...pane.messages, { role: "user", content: text });
    const body = { model: pane.model.value.trim(), messages, temperature: Number(temperature.value), top_p: Number(topP.value), max_tokens: Number(maxTokens.value) };
    if (seed.value.trim()) body.seed = Number(seed.value);
    pane.add("user", text);
    const started = performance.now();
    try {
      const reply = await request("/chat/completions", { method: "POST", body });
      const content = reply.choices[0].message.content ?? "";
      pane.messages.push({ role: "user", content: text }, { role: "assistant", content });
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      pane.add("assistant", content === "" ? "(empty reply)" : content,
        `${reply.model} · ${reply.usage ? reply.usage.completion_tokens : "?"} tokens · ${seconds} s · finish: ${reply.choices[0].finish_reason}`);
    } catch (error) {
      pane.error(error.message);
    }
  }

  const chatForm = h("form", {
    class: "card",
    onsubmit: async (event) => {
      event.preventDefault();
      const text = prompt.value.trim();
      if (!text) return;
      send.disabled = true;
      await Promise.all(panes.filter((p) => !p.element.hidden).map((p) => ask(p, text)));
      send.disabled = false;
      prompt.value = "";
      prompt.focus();
    },
  },
  h("h2", {}, "Chat"),
  h("label", { class: "inline" }, compare, " Compare two models side by side"),
  h("details", { class: "settings", open: true }, h("summary", {}, "Generation settings"),
    h("div", { class: "grid-fields" }, field("Temperature", temperature), field("Top p", topP), field("Max tokens", maxTokens), field("Seed", seed))),
  field("System message", system),
  field("Prompt", prompt, "Sent to every model shown, each with its own conversation so far."),
  h("div", { class: "toolbar" }, send, h("button", { type: "button", onclick: () => panes.forEach((p) => p.clear()) }, "Clear conversations")));

  // grader runner
  const grader = h("textarea", { name: "grader", rows: "10", class: "code", spellcheck: "false" });
  grader.value = JSON.stringify(GRADER_TEMPLATES["Partial credit (multi: contains + fuzzy)"], null, 2);
  const sample = h("textarea", { name: "sample", rows: "3", placeholder: "The model's answer" });
  const item = h("textarea", { name: "item", rows: "3", class: "code", spellcheck: "false" });
  item.value = '{"answer": "Paris"}';
  const result = h("div", { "aria-live": "polite", class: "grader-result" });
  const run = h("button", { type: "submit", class: "primary" }, "Run grader");
  const graderForm = h("form", {
    class: "card",
    onsubmit: async (event) => {
      event.preventDefault();
      run.disabled = true;
      replace(result);
      try {
        const body = { grader: parseJson(grader.value, "The grader"), model_sample: sample.value };
        if (item.value.trim()) body.item = parseJson(item.value, "The item");
        const answer = await request("/fine_tuning/alpha/graders/run", { method: "POST", body });
        const errors = Object.entries(answer.metadata.errors || {}).filter(([, v]) => v === true).map(([k]) => k.replaceAll("_", " "));
        const subs = Object.entries(answer.sub_rewards || {});
        replace(result,
          h("p", { class: "score" }, "Score ", h("strong", { class: "reward" }, formatNumber(answer.reward, 4))),
          subs.length ? h("table", { class: "kv sub-rewards" }, h("caption", {}, "Sub-scores"), h("tbody", {}, subs.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", { class: "num" }, formatNumber(v, 4)))))) : null,
          errors.length ? alertBox(`Grader errors: ${errors.join(", ")}`) : null,
          h("p", { class: "hint" }, `${answer.metadata.type} grader “${answer.metadata.name}” in ${formatNumber(answer.metadata.execution_time, 3)} s`));
      } catch (error) {
        replace(result, alertBox(error.message));
      } finally {
        run.disabled = false;
      }
    },
  },
  h("h2", {}, "Try a grader"),
  field("Start from a template", templateSelect(grader)),
  field("Grader JSON", grader),
  h("div", { class: "grid-fields two" }, field("Sample (model output)", sample), field("Item (dataset row, JSON)", item, "Its fields are {{ item.<field> }} in the grader.")),
  run, result);

  replace(main, h("h1", {}, "Playground"), datalist, chatForm, panesBox, graderForm);
}
