// Files: upload by drag and drop or a file picker, with a progress bar; a line-by-line check of
// JSONL datasets that names the first bad line (the job's own validation says the same when it
// starts); a preview of the first rows; the project's files.
import { request, uploadFile, fileText, apiKey } from "../api.js";
import { h, replace, field, alertBox, formatBytes, formatTime } from "../dom.js";

const PREVIEW_ROWS = 5;

/** The first problem in a JSONL dataset as "Line N: ...", with the rows read and a preview. */
export function checkJsonl(text, complete = true) {
  const lines = text.split("\n");
  if (!complete) lines.pop();  // a cut-off last line is not checked
  const rows = [];
  let count = 0;
  for (let index = 0; index < lines.length; index++) {
    const line = index === 0 ? lines[index].replace(/^\uFEFF/, "") : lines[index];
    if (!line.trim()) continue;
    const where = `Line ${index + 1}`;
    let value;
    try {
      value = JSON.parse(line);
    } catch (error) {
      return { error: `${where}: invalid JSON (${error.message}).`, count, rows };
    }
    if (!value || typeof value !== "object" || Array.isArray(value)) return { error: `${where}: expected a JSON object.`, count, rows };
    if (!Array.isArray(value.messages) || value.messages.length === 0) return { error: `${where}: "messages" must be a non-empty list of messages.`, count, rows };
    const bad = value.messages.findIndex((m) => !m || typeof m !== "object" || typeof m.role !== "string");
    if (bad >= 0) return { error: `${where}: messages[${bad}] must be an object with a "role".`, count, rows };
    count += 1;
    if (rows.length < PREVIEW_ROWS) rows.push(value);
  }
  return { error: count ? null : "The file has no examples.", count, rows };
}

function previewTable(rows) {
  if (!rows.length) return null;
  const extra = [...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => k !== "messages")))];
  return h("div", { class: "table-scroll" }, h("table", { class: "preview" },
    h("caption", {}, `First ${rows.length} rows`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "messages"), extra.map((k) => h("th", { scope: "col" }, k)))),
    h("tbody", {}, rows.map((row) => h("tr", {},
      h("td", {}, row.messages.map((m) => `${m.role}: ${typeof m.content === "string" ? m.content : JSON.stringify(m.content)}`).join("\n")),
      extra.map((k) => h("td", {}, row[k] === undefined ? "" : typeof row[k] === "string" ? row[k] : JSON.stringify(row[k]))))))));
}

function checkResult(result, complete) {
  if (result.error) return alertBox(`Not a valid dataset: ${result.error}`);
  return alertBox(`Valid JSONL: ${result.count} example${result.count === 1 ? "" : "s"}${complete ? "" : " in the first part read"}.`, "ok");
}

export async function filesView(main) {
  const input = h("input", { type: "file", name: "file", multiple: true, accept: ".jsonl,.json,.txt,application/jsonl" });
  const purpose = h("select", { name: "purpose" }, ["fine-tune", "user_data", "evals", "batch"].map((p) => h("option", { value: p }, p)));
  const uploads = h("ul", { class: "uploads", "aria-live": "polite" });
  const listBox = h("div");
  const previewBox = h("div", { "aria-live": "polite" });
  const drop = h("div", { class: "drop-zone", tabindex: "0", role: "button", "aria-label": "Drop files here, or press Enter to choose files" },
    h("p", {}, "Drop JSONL files here"), h("p", { class: "hint" }, "or press Enter / click to choose"));
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); } });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    uploadAll([...event.dataTransfer.files]);
  });
  input.addEventListener("change", () => { uploadAll([...input.files]); input.value = ""; });

  async function uploadAll(files) {
    for (const file of files) await uploadOne(file);
    await loadList();
  }

  async function uploadOne(file) {
    const bar = h("progress", { max: "1", value: "0", "aria-label": `Upload of ${file.name}` });
    const percent = h("span", { class: "progress-text" }, "0%");
    const result = h("div");
    uploads.prepend(h("li", { class: "upload card", dataset: { name: file.name } }, h("strong", {}, file.name), ` ${formatBytes(file.size)} `, h("span", { class: "progress" }, bar, percent), result));
    const sliceBytes = 1024 * 1024;
    const complete = file.size <= sliceBytes;
    const checking = file.name.endsWith(".jsonl") ? file.slice(0, sliceBytes).text().then((text) => checkJsonl(text, complete)) : null;
    try {
      const uploaded = await uploadFile(file, purpose.value, (fraction) => { bar.value = fraction; percent.textContent = `${Math.round(fraction * 100)}%`; });
      const check = checking ? await checking : null;
      replace(result, alertBox(`Uploaded as ${uploaded.id} (status: ${uploaded.status}).`, "ok"),
        check ? checkResult(check, complete) : null, check ? previewTable(check.rows) : null);
    } catch (error) {
      replace(result, alertBox(`Upload failed: ${error.message}`));
    }
  }

  async function preview(file) {
    replace(previewBox, alertBox(`Reading ${file.filename}…`, "info"));
    try {
      const limit = 256 * 1024;
      const text = await fileText(file.id, limit);
      const complete = file.bytes <= limit;
      const check = checkJsonl(text, complete);
      replace(previewBox, h("h3", {}, `${file.filename} (${file.id})`), checkResult(check, complete), previewTable(check.rows));
    } catch (error) {
      replace(previewBox, alertBox(error.message));
    }
  }

  async function remove(file, button) {
    button.disabled = true;
    try {
      await request(`/files/${encodeURIComponent(file.id)}`, { method: "DELETE" });
      await loadList();
    } catch (error) {
      replace(previewBox, alertBox(error.message));
      button.disabled = false;
    }
  }

  async function loadList() {
    if (!apiKey.get()) return;
    const files = (await request("/files?limit=1000")).data;
    if (!files.length) { replace(listBox, h("p", { class: "empty" }, "No files yet.")); return; }
    replace(listBox, h("div", { class: "table-scroll" }, h("table", { class: "files" },
      h("thead", {}, h("tr", {}, ["File", "Name", "Purpose", "Size", "Created", "Status", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, files.map((f) => {
        const del = h("button", { type: "button", class: "danger", "aria-label": `Delete ${f.filename}` }, "Delete");
        del.addEventListener("click", () => remove(f, del));
        return h("tr", { dataset: { fileId: f.id } },
          h("td", {}, h("code", {}, f.id)), h("td", {}, f.filename), h("td", {}, f.purpose), h("td", { class: "num" }, formatBytes(f.bytes)),
          h("td", {}, formatTime(f.created_at)), h("td", {}, f.status),
          h("td", { class: "actions" }, h("div", { class: "buttons" }, h("button", { type: "button", onclick: () => preview(f), "aria-label": `Preview ${f.filename}` }, "Preview"), del)));
      })))));
  }

  replace(main, h("h1", {}, "Files"),
    h("section", { class: "card", "aria-labelledby": "upload-h" }, h("h2", { id: "upload-h" }, "Upload"),
      h("div", { class: "grid-fields" }, field("Purpose", purpose), field("Choose files", input)), drop, uploads),
    h("section", { class: "card", "aria-labelledby": "list-h" }, h("h2", { id: "list-h" }, "Your files"), listBox, previewBox));
  await loadList();
}
