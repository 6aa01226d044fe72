// Grader templates offered by the job form and the playground: a starting point to edit.
export const GRADER_TEMPLATES = {
  "Exact match (string_check eq)": {
    type: "string_check", name: "exact", input: "{{ sample.output_text }}", reference: "{{ item.answer }}", operation: "eq",
  },
  "Contains the answer, any case (string_check ilike)": {
    type: "string_check", name: "contains", input: "{{ sample.output_text }}", reference: "{{ item.answer }}", operation: "ilike",
  },
  "Close to the answer (text_similarity fuzzy_match)": {
    type: "text_similarity", name: "close", input: "{{ sample.output_text }}", reference: "{{ item.answer }}", evaluation_metric: "fuzzy_match",
  },
  "Partial credit (multi: contains + fuzzy)": {
    type: "multi",
    name: "answer",
    graders: {
      contains: { type: "string_check", name: "contains", input: "{{ sample.output_text }}", reference: "{{ item.answer }}", operation: "ilike" },
      close: { type: "text_similarity", name: "close", input: "{{ sample.output_text }}", reference: "{{ item.answer }}", evaluation_metric: "fuzzy_match" },
    },
    calculate_output: "0.5 * contains + 0.5 * close",
  },
  "Python (def grade)": {
    type: "python", name: "python",
    source: "def grade(sample, item):\n    return 1.0 if item[\"answer\"] in sample[\"output_text\"] else 0.0\n",
  },
};

export function templateSelect(textarea, { label = "Template" } = {}) {
  const select = document.createElement("select");
  select.append(new Option(`${label}…`, ""));
  for (const name of Object.keys(GRADER_TEMPLATES)) select.append(new Option(name, name));
  select.addEventListener("change", () => {
    if (!select.value) return;
    textarea.value = JSON.stringify(GRADER_TEMPLATES[select.value], null, 2);
    textarea.dispatchEvent(new Event("input"));
  });
  return select;
}

/** JSON.parse with a message that names the field. */
export function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${what} is not valid JSON: ${error.message}`);
  }
}
