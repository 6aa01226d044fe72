// The one place that talks to /v1: the API key lives in this tab's sessionStorage and travels
// only in the Authorization header (never in a URL or a cookie).

const KEY_NAME = "openrft.apiKey";
const BASE = "/v1";

export const apiKey = {
  get: () => sessionStorage.getItem(KEY_NAME),
  set: (key) => sessionStorage.setItem(KEY_NAME, key),
  clear: () => sessionStorage.removeItem(KEY_NAME),
};

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// A listener the app sets: called when the API answers 401 (the key stopped working).
export const hooks = { unauthorized: null };

function headers(extra = {}, key = apiKey.get()) {
  return key ? { Authorization: `Bearer ${key}`, ...extra } : { ...extra };
}

async function errorFrom(response) {
  let body = null;
  let message = `${response.status} ${response.statusText}`;
  try {
    body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(response.status, message, body);
}

/** JSON request to /v1; throws ApiError with the API's own message on failure. */
export async function request(path, { method = "GET", body, key, signal } = {}) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }, key), signal };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(BASE + path, init);
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && key === undefined && hooks.unauthorized) hooks.unauthorized(error);
    throw error;
  }
  return response.json();
}

/** Every page of a list endpoint that pages with `after` (newest first for events). */
export async function listAll(path, limit = 100) {
  const rows = [];
  let after = null;
  for (;;) {
    const sep = path.includes("?") ? "&" : "?";
    const page = await request(`${path}${sep}limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    rows.push(...page.data);
    if (!page.has_more || page.data.length === 0) return rows;
    after = page.data[page.data.length - 1].id;
  }
}

/** Upload a file with progress: XMLHttpRequest is the API that reports upload progress. */
export function uploadFile(file, purpose, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${BASE}/files`);
    xhr.setRequestHeader("Authorization", `Bearer ${apiKey.get()}`);
    xhr.responseType = "json";
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      const body = xhr.response;
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(body);
      } else {
        const message = body && body.error ? body.error.message : `${xhr.status} ${xhr.statusText}`;
        reject(new ApiError(xhr.status, message, body));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, "The upload failed: the server could not be reached."));
    const form = new FormData();
    form.append("purpose", purpose);
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/** Text of a file's content (only the first `maxBytes` are kept). */
export async function fileText(fileId, maxBytes = 256 * 1024) {
  const response = await fetch(`${BASE}/files/${encodeURIComponent(fileId)}/content`, { headers: headers() });
  if (!response.ok) throw await errorFrom(response);
  const reader = response.body.getReader();
  const chunks = [];
  let size = 0;
  while (size < maxBytes) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
  }
  reader.cancel().catch(() => {});
  return new TextDecoder().decode(await new Blob(chunks).arrayBuffer());
}

/** Download with the bearer header: fetch as a blob, then save it under the server's name. */
export async function download(path, fallbackName) {
  const response = await fetch(BASE + path, { headers: headers() });
  if (!response.ok) throw await errorFrom(response);
  const disposition = response.headers.get("content-disposition") || "";
  const match = /filename="?([^";]+)"?/.exec(disposition);
  const name = match ? match[1] : fallbackName;
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return { name, bytes: blob.size };
}
