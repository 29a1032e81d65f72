// SQL console: an editor with the schema beside it, a results table that
// fills as NDJSON streams in, plain errors, and export to CSV or JSON.

import { download, el, errorBox, formatNumber, routeHref, sqlRequest, sqlRows, statusLine, streamNdjson } from "./util.js";

const TABLES = ["events", "events_dedup", "events_raw", "segments"];
const SHOWN_ROWS = 5000;
const DEFAULT_SQL = "SELECT topic, count(*) AS events, min(event_time) AS first, max(event_time) AS last\nFROM events\nGROUP BY topic\nORDER BY topic";
const FUNCTIONS = [
  ["utf8_or_null(bytes)", "bytes as text, NULL when not UTF-8"],
  ["header_text(headers, 'name')", "first value of a header, as text"],
  ["has_header(headers, 'name' [, 'value'])", "header present (with that value)"],
  ["json_get_str(payload_text, 'field')", "a JSON string field"],
  ["json_get_float / json_get_int", "a JSON number field"],
  ["json_as_text(payload_text, 'a', 'b')", "any JSON value as text"],
  ["(payload_text ->> 'field') = 'x'", "JSON operator; parenthesise it"],
  ["payload IS NULL", "Kafka tombstones (an empty payload is X'')"],
];
const HISTORY_KEY = "hindsight.sql.history";

function history() {
  try {
    return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
  } catch {
    return [];
  }
}

function remember(sql) {
  try {
    const list = [sql, ...history().filter((q) => q !== sql)].slice(0, 20);
    localStorage.setItem(HISTORY_KEY, JSON.stringify(list));
  } catch {
    // Storage may be disabled; history is a convenience.
  }
}

export async function render(main, route, signal) {
  const initial = route.params.get("q") || history()[0] || DEFAULT_SQL;
  const editor = el("textarea", { id: "sql-editor", class: "editor", spellcheck: "false", "aria-label": "SQL statement", rows: "8", "data-search": true });
  editor.value = initial;
  const runButton = el("button", { type: "submit", class: "primary", id: "run-sql" }, "Run");
  const stopButton = el("button", { type: "button", disabled: true }, "Stop");
  const csvButton = el("button", { type: "button", id: "export-csv" }, "Export CSV");
  const jsonButton = el("button", { type: "button", id: "export-json" }, "Export JSON");
  const status = statusLine("Ctrl+Enter runs the statement. Only reading statements are allowed.");
  const output = el("div", { class: "sql-output", id: "sql-output" });
  const historyList = el("select", { "aria-label": "Earlier statements" }, el("option", { value: "" }, "History…"), history().map((q) => el("option", { value: q }, q.replace(/\s+/g, " ").slice(0, 80))));
  historyList.addEventListener("change", () => {
    if (historyList.value) editor.value = historyList.value;
    editor.focus();
  });
  const replayLink = el("a", { class: "button", href: "#/replay", title: "replay the events whose event_id this query returns" }, "Replay these events…");
  replayLink.addEventListener("click", () => {
    replayLink.href = routeHref("/replay", { sql: editor.value.trim() });
  });
  const form = el("form", { class: "sql-form" }, editor, el("div", { class: "buttons" }, runButton, stopButton, csvButton, jsonButton, replayLink, historyList));
  const schema = el("aside", { class: "schema", "aria-label": "Schema" }, el("h2", {}, "Schema"));
  main.append(el("h1", {}, "SQL console"), el("div", { class: "sql-layout" }, el("div", { class: "sql-main" }, form, status, output), schema));

  let running = null;
  const run = async () => {
    const sql = editor.value.trim();
    if (!sql) {
      output.replaceChildren(errorBox({ message: "the SQL statement is empty" }));
      return;
    }
    if (running) running.abort();
    const controller = new AbortController();
    signal.addEventListener("abort", () => controller.abort());
    running = controller;
    remember(sql);
    const url = routeHref("/sql", { q: sql });
    if (location.hash !== url) window.history.replaceState(null, "", url);
    runButton.disabled = true;
    stopButton.disabled = false;
    output.replaceChildren();
    const started = performance.now();
    status.textContent = "Running…";
    delete status.dataset.rows;
    let count = 0;
    let thead = null;
    let tbody = null;
    let columns = [];
    let table = null;
    const addRows = (rows) => {
      if (!table) {
        columns = Object.keys(rows[0]);
        thead = el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c))));
        tbody = el("tbody");
        table = el("table", { class: "results-table", id: "sql-results" }, thead, tbody);
        output.append(el("div", { class: "table-wrap" }, table));
      }
      const fragment = document.createDocumentFragment();
      for (const row of rows) {
        count += 1;
        if (count > SHOWN_ROWS) continue;
        for (const key of Object.keys(row)) {
          if (!columns.includes(key)) {
            columns.push(key);
            thead.firstChild.append(el("th", { scope: "col" }, key));
          }
        }
        fragment.append(el("tr", {}, columns.map((c) => el("td", {}, cellText(row[c])))));
      }
      tbody.append(fragment);
      status.textContent = `${formatNumber(count)} rows so far… (${((performance.now() - started) / 1000).toFixed(2)} s)`;
    };
    try {
      const response = await sqlRequest(sql, "application/x-ndjson", controller.signal);
      const scanned = response.headers.get("x-hindsight-segments-scanned");
      const total = response.headers.get("x-hindsight-segments-from-catalog");
      await streamNdjson(response, addRows);
      const seconds = ((performance.now() - started) / 1000).toFixed(2);
      const segments = scanned !== null ? `, ${scanned} of ${total} segments opened` : "";
      status.textContent = `${formatNumber(count)} rows in ${seconds} s${segments}${count > SHOWN_ROWS ? `; the first ${formatNumber(SHOWN_ROWS)} are shown, export for all` : ""}.`;
      status.dataset.rows = String(count);
      if (count === 0) output.append(el("p", { class: "muted" }, "The query returned no rows."));
    } catch (error) {
      if (error.name === "AbortError") {
        status.textContent = `Stopped after ${formatNumber(count)} rows.`;
      } else if (error instanceof TypeError || error instanceof SyntaxError) {
        status.textContent = "";
        output.append(errorBox({ message: `the result was cut short after ${formatNumber(count)} rows: ${error.message}` }));
      } else {
        status.textContent = "";
        output.prepend(errorBox(error));
      }
    } finally {
      runButton.disabled = false;
      stopButton.disabled = true;
      running = null;
    }
  };

  const exportAs = async (accept, extension) => {
    const sql = editor.value.trim();
    status.textContent = `Exporting ${extension.toUpperCase()}…`;
    try {
      const response = await sqlRequest(sql, accept, signal);
      const blob = await response.blob();
      download(blob, `hindsight-query.${extension}`);
      status.textContent = `Exported ${extension.toUpperCase()} (${formatNumber(blob.size)} bytes).`;
    } catch (error) {
      if (error.name === "AbortError") return;
      status.textContent = "";
      output.replaceChildren(errorBox(error));
    }
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run();
    }
  });
  stopButton.addEventListener("click", () => running && running.abort());
  csvButton.addEventListener("click", () => exportAs("text/csv", "csv"));
  jsonButton.addEventListener("click", () => exportAs("application/json", "json"));

  const schemaDone = renderSchema(schema, editor, signal);
  if (route.params.get("q") && route.params.get("run") !== "0") await Promise.all([run(), schemaDone]);
  else await schemaDone;
}

function cellText(value) {
  if (value === null || value === undefined) return "NULL";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

async function renderSchema(aside, editor, signal) {
  const insert = (text) => {
    const start = editor.selectionStart;
    const end = editor.selectionEnd;
    editor.setRangeText(text, start, end, "end");
    editor.focus();
  };
  for (const name of TABLES) {
    const details = el("details", { open: name === "events" }, el("summary", {}, name));
    aside.append(details);
    try {
      const rows = await sqlRows(`DESCRIBE ${name}`, signal);
      details.append(
        el(
          "ul",
          { class: "columns" },
          rows.map((row) =>
            el("li", {}, el("button", { type: "button", class: "link", title: `insert ${row.column_name}`, onclick: () => insert(/^[a-z_]+$/.test(row.column_name) && !["offset", "partition"].includes(row.column_name) ? row.column_name : `"${row.column_name}"`) }, row.column_name), " ", el("span", { class: "muted" }, row.data_type)),
          ),
        ),
      );
    } catch (error) {
      if (error.name === "AbortError") return;
      details.append(errorBox(error));
    }
  }
  aside.append(el("h3", {}, "Functions"), el("ul", { class: "functions" }, FUNCTIONS.map(([call, what]) => el("li", {}, el("code", {}, call), el("br"), el("span", { class: "muted" }, what)))));
}
