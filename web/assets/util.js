// Shared helpers: DOM building, the API client, formatting, SQL quoting and
// the hash router's URL state.

/** el("a", {href: "#/", class: "x"}, "text", child): builds an element. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.className = value;
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An error the API answered with: `{"error": kind, "message": text}`. */
export class ApiError extends Error {
  constructor(status, kind, message) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

async function errorOf(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    return new ApiError(response.status, body.error || "error", body.message || text);
  } catch {
    return new ApiError(response.status, "error", text || `${response.status} ${response.statusText}`);
  }
}

const TOKEN_KEY = "hindsight.token";

/** Request headers plus the bearer token the user saved, when there is one. */
export function withToken(headers = {}) {
  let token = null;
  try {
    token = localStorage.getItem(TOKEN_KEY);
  } catch {
    token = null;
  }
  return token ? { ...headers, Authorization: `Bearer ${token}` } : headers;
}

/**
 * GET or POST JSON; throws ApiError with the server's message. Every request
 * but GET says Content-Type: application/json, even without a body: the
 * server refuses state-changing requests without it (other sites' forms).
 */
export async function api(path, { method = "GET", body, signal } = {}) {
  const options = { method, signal, headers: withToken({ Accept: "application/json" }) };
  if (method !== "GET") options.headers["Content-Type"] = "application/json";
  if (body !== undefined) options.body = JSON.stringify(body);
  const response = await fetch(path, options);
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** POST /api/v1/sql; returns the Response (not yet read), or throws ApiError. */
export async function sqlRequest(sql, accept, signal) {
  const response = await fetch("/api/v1/sql", {
    method: "POST",
    headers: withToken({ "Content-Type": "application/json", Accept: accept }),
    body: JSON.stringify({ sql }),
    signal,
  });
  if (!response.ok) throw await errorOf(response);
  return response;
}

/** Calls onRows(array of row objects) as NDJSON lines arrive. */
export async function streamNdjson(response, onRows) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop();
    const rows = [];
    for (const line of lines) if (line.trim()) rows.push(JSON.parse(line));
    if (rows.length) onRows(rows);
  }
  pending += decoder.decode();
  if (pending.trim()) onRows([JSON.parse(pending)]);
}

/** Runs SQL and returns every row (for small answers). */
export async function sqlRows(sql, signal) {
  const rows = [];
  const response = await sqlRequest(sql, "application/x-ndjson", signal);
  await streamNdjson(response, (batch) => rows.push(...batch));
  return rows;
}

/** A SQL string literal. */
export function sqlString(text) {
  return `'${String(text).replaceAll("'", "''")}'`;
}

/** An SQL identifier in double quotes. */
export function sqlIdentifier(name) {
  return `"${String(name).replaceAll('"', '""')}"`;
}

export function formatBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function formatNumber(value) {
  return Number(value || 0).toLocaleString("en-US");
}

/** "2026-01-31 12:00:00.123" in UTC. */
export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toISOString().replace("T", " ").replace("Z", "");
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "unknown";
  if (seconds < 1) return "< 1 s";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

export function ago(iso) {
  if (!iso) return "";
  return `${formatDuration((Date.now() - new Date(iso).getTime()) / 1000)} ago`;
}

/** The hash route: {path: "/explorer", params: URLSearchParams}. */
export function currentRoute() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  return { path: path || "/", params: new URLSearchParams(query) };
}

/** "#/explorer?topic=orders" from a path and params (empty values dropped). */
export function routeHref(path, params) {
  const clean = new URLSearchParams();
  for (const [name, value] of params instanceof URLSearchParams ? params : Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") clean.append(name, value);
  }
  const query = clean.toString();
  return `#${path}${query ? `?${query}` : ""}`;
}

/** Copies text; falls back to a hidden textarea when the Clipboard API is unavailable. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = el("textarea", { class: "offscreen", "aria-hidden": "true" });
    area.value = text;
    document.body.append(area);
    area.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
    area.remove();
    return copied;
  }
}

/** A button that copies `text()` and says so. */
export function copyButton(label, text) {
  const button = el("button", { type: "button", class: "small" }, label);
  button.addEventListener("click", async () => {
    const copied = await copyText(typeof text === "function" ? text() : text);
    const before = label;
    button.textContent = copied ? "Copied" : "Copy failed";
    setTimeout(() => {
      button.textContent = before;
    }, 1500);
  });
  return button;
}

/** Status text for screen readers and people. */
export function statusLine(text = "") {
  return el("p", { class: "status", role: "status" }, text);
}

export function errorBox(error) {
  const kind = error && error.kind ? `${error.kind}: ` : "";
  const box = el("div", { class: "error", role: "alert" }, `${kind}${error && error.message ? error.message : error}`);
  if (error && error.status === 401) box.append(tokenForm());
  return box;
}

/** Asks for the API's bearer token (http.auth_token) and keeps it in this browser. */
function tokenForm() {
  const input = el("input", { type: "password", name: "token", autocomplete: "off", "aria-label": "API token" });
  const form = el("form", { class: "buttons token-form" }, el("span", {}, "This server needs a token:"), input, el("button", { type: "submit", class: "primary" }, "Use token"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      localStorage.setItem(TOKEN_KEY, input.value.trim());
    } catch {
      // Without storage the token cannot be kept; the next request says so again.
    }
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  });
  return form;
}

/** Base64 to bytes. */
export function base64Bytes(text) {
  const binary = atob(text || "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** A classic hex dump: offset, 16 hex bytes, ASCII. */
export function hexDump(bytes, limit = 65536) {
  const lines = [];
  const end = Math.min(bytes.length, limit);
  for (let offset = 0; offset < end; offset += 16) {
    const slice = bytes.subarray(offset, Math.min(offset + 16, end));
    const hex = Array.from(slice, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = Array.from(slice, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${offset.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${ascii}`);
  }
  if (bytes.length > end) lines.push(`… ${formatNumber(bytes.length - end)} more bytes`);
  return lines.join("\n");
}

/** Offers `blob` as a download named `name`. */
export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name, class: "offscreen" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** A table with a header row; rows is an array of arrays of cells. */
export function table(headings, rows, { caption, className } = {}) {
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: className },
      caption ? el("caption", {}, caption) : null,
      el("thead", {}, el("tr", {}, headings.map((h) => el("th", { scope: "col", class: h.endsWith("#") ? "num" : null }, h.replace(/#$/, ""))))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((cell) => (cell instanceof Node && cell.tagName === "TD" ? cell : el("td", {}, cell)))))),
    ),
  );
}

export function numberCell(value) {
  return el("td", { class: "num" }, formatNumber(value));
}

/** Goes to a hash route; `replace` updates the URL without a history entry. */
export function navigate(href, { replace = false } = {}) {
  if (replace) {
    history.replaceState(null, "", href);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else {
    location.hash = href.replace(/^#/, "");
  }
}
