// Replay wizard: selection (the explorer's, or SQL), target and mapping,
// options, a dry-run summary, then a run with live progress (rate, done of
// total, ETA) and pause, resume and cancel; and the history of replays.

import { api, el, errorBox, formatBytes, formatDuration, formatNumber, formatTime, navigate, routeHref, statusLine, table } from "./util.js";
import { describeSelection, replaySelection, selectionFromParams, selectionSql, selectionToParams } from "./selection.js";

const FINAL = ["completed", "failed", "cancelled", "dry_run", "interrupted"];
const BUS_LABELS = { kafka: "Kafka", amqp: "RabbitMQ" };
// The connection select's value for "Other address…" (a name is never empty).
const ADHOC = "";

export async function render(main, route, signal) {
  const id = route.path.startsWith("/replay/") ? decodeURIComponent(route.path.slice("/replay/".length)) : "";
  if (id) return renderProgress(main, id, signal);
  main.append(el("h1", {}, "Replay"));
  const [topics, targets] = await Promise.all([api("/api/v1/topics", { signal }), api("/api/v1/connections", { signal })]);
  const wizard = el("div", { class: "wizard" });
  const historySection = el("section", { class: "history", "aria-label": "Replay history" });
  main.append(wizard, historySection);
  const showHistory = () => {
    historySection.replaceChildren();
    return renderHistory(historySection, signal);
  };
  renderWizard(wizard, route, topics, targets, showHistory, signal);
  await showHistory();
}

// ------------------------------------------------------------------ wizard --

/** "local-kafka — Kafka 127.0.0.1:9092 (plaintext)": a named connection, as the target select lists it. */
function connectionLabel(connection) {
  return `${connection.name} — ${BUS_LABELS[connection.bus] || connection.bus} ${connection.addresses} (${connection.security})`;
}

/**
 * The target step: the server's named connections (GET /api/v1/connections)
 * in #replay-connection, then "Other address…" when the server allows ad-hoc
 * targets (with the bus choice and the address, never credentials). Null
 * when there is nothing to replay to: the caller says so instead.
 */
function targetRows(targets, radio, input) {
  const connections = targets.connections || [];
  const adhoc = Boolean(targets.allow_adhoc_targets);
  if (!connections.length && !adhoc) return null;
  const select = el(
    "select",
    { name: "connection", id: "replay-connection" },
    connections.map((c) => el("option", { value: c.name }, connectionLabel(c))),
    adhoc ? el("option", { value: ADHOC }, "Other address…") : null,
  );
  return [
    el("div", { class: "field-row" }, el("label", { class: "field wide" }, el("span", {}, "Connection"), select)),
    adhoc
      ? [
          el("div", { class: "field-row", role: "radiogroup", "aria-label": "Bus at that address", dataset: { adhoc: "" } }, radio("bus", "kafka", "Kafka", true), radio("bus", "amqp", "RabbitMQ", false)),
          el("div", { class: "field-row", dataset: { adhoc: "", bus: "kafka" } }, input("Brokers", "brokers", "", { placeholder: "127.0.0.1:9092" })),
          el("div", { class: "field-row", dataset: { adhoc: "", bus: "amqp" } }, input("AMQP URL", "amqp_url", "", { placeholder: "amqp://127.0.0.1:5672/%2f" })),
          el("p", { class: "muted", id: "replay-adhoc-hint", dataset: { adhoc: "" } }, "An address only, without user name or password: credentials go in a named connection ([connections.NAME]) in the server's configuration."),
        ]
      : null,
  ];
}

function renderWizard(container, route, topics, targets, onReplay, signal) {
  const selection = selectionFromParams(route.params);
  const fromSql = route.params.get("sql");
  const hasSelection = route.params.toString() !== "" && !fromSql;
  // Without SQL of its own, the SQL field starts as the server's translation of the selection.
  const sqlArea = el("textarea", { name: "sql", rows: "3", spellcheck: "false", placeholder: fromSql ? null : "Loading the selection as SQL…" }, fromSql || "");
  const sourceTopics = selection.topics.length ? selection.topics : [...new Set(topics.map((t) => t.topic))].sort();

  const radio = (name, value, label, checked) => el("label", { class: "check" }, el("input", { type: "radio", name, value, checked }), label);
  const input = (label, name, value, extra = {}) => el("label", { class: "field" }, el("span", {}, label), el("input", { name, value, autocomplete: "off", spellcheck: "false", ...extra }));
  const form = el("form", { class: "replay-form", "aria-label": "New replay" });
  const connectionBus = new Map((targets.connections || []).map((c) => [c.name, c.bus]));
  const targetChoice = targetRows(targets, radio, input);
  form.append(
    el(
      "fieldset",
      {},
      el("legend", {}, "1. Events"),
      radio("mode", "selection", ["Explorer selection: ", el("strong", {}, describeSelection(selection)), " ", el("a", { href: routeHref("/explorer", selectionToParams(selection)) }, "edit")], !fromSql),
      radio("mode", "sql", "SQL (any query returning event_id)", Boolean(fromSql) || false),
      el("label", { class: "field wide", dataset: { mode: "sql" }, hidden: !fromSql }, el("span", {}, "SQL selection"), sqlArea),
      !hasSelection && !fromSql ? el("p", { class: "muted" }, "No selection yet: this replays every archived event. Narrow it in the explorer first, or write SQL.") : null,
    ),
    el(
      "fieldset",
      {},
      el("legend", {}, "2. Target"),
      targetChoice || el("p", { class: "error", role: "alert", id: "replay-no-targets" }, "No replay targets are configured: add a [connections.NAME] section to the server's configuration."),
      el("div", { class: "field-row", dataset: { bus: "kafka" } }, input("To topic (all events)", "to_topic", "", { placeholder: "orders.replay" }), el("label", { class: "field" }, el("span", {}, "Partitioning"), el("select", { name: "partitioning" }, ["preserve", "same", "key"].map((p) => el("option", { value: p }, p)))), el("label", { class: "check" }, el("input", { type: "checkbox", name: "keep_timestamp" }), "Keep original timestamps")),
      el("div", { class: "field-row", dataset: { bus: "amqp" }, hidden: true }, input("To exchange (all events)", "to_exchange", "", { placeholder: "orders.replay" }), input("Routing key (override)", "routing_key", "")),
      el("details", {}, el("summary", {}, "Mapping per source topic (wins over the single target)"), el("div", { class: "mapping" }, sourceTopics.map((topic) => input(`${topic} →`, `map:${topic}`, "", { placeholder: "unchanged" })))),
    ),
    el(
      "fieldset",
      {},
      el("legend", {}, "3. Options"),
      el("div", { class: "field-row" }, input("Rate (events/s)", "rate", "", { inputmode: "decimal", placeholder: "unlimited" }), input("Pace (× original speed)", "pace", "", { inputmode: "decimal", placeholder: "off" }), input("Set headers", "set_headers", "", { placeholder: "x-replayed=1" }), input("Strip headers", "strip_headers", "", { placeholder: "traceparent, x-*" })),
      el("div", { class: "field-row" }, el("label", { class: "check" }, el("input", { type: "checkbox", name: "provenance", checked: true }), "Add hindsight-* provenance headers"), el("label", { class: "check" }, el("input", { type: "checkbox", name: "allow_loop" }), "Allow replaying into archived topics")),
    ),
  );
  const dryRunButton = el("button", { type: "submit", class: "primary", id: "dry-run", disabled: !targetChoice }, "Dry run");
  const runButton = el("button", { type: "button", id: "run-replay", disabled: true }, "Run replay");
  const summary = el("div", { class: "dry-run", id: "dry-run-summary", "aria-live": "polite" });
  form.append(el("div", { class: "buttons" }, dryRunButton, runButton, el("span", { class: "muted" }, "A dry run publishes nothing; run is enabled after a dry run without problems.")));
  container.append(form, summary);
  if (!fromSql) {
    selectionSql(selection, signal).then(
      ({ sql }) => {
        sqlArea.placeholder = "";
        if (!sqlArea.value) sqlArea.value = sql;
      },
      (error) => {
        sqlArea.placeholder = "";
        if (error.name === "AbortError") return;
        const box = errorBox(error);
        box.dataset.mode = "sql";
        box.hidden = new FormData(form).get("mode") !== "sql";
        sqlArea.closest("label").after(box);
      },
    );
  }

  // The bus-specific rows follow the selected connection's bus (or, for
  // "Other address…", the bus chosen next to it); the ad-hoc rows show only then.
  const showBus = () => {
    const data = new FormData(form);
    const { bus, adhoc } = targetOf(data, connectionBus);
    for (const row of form.querySelectorAll("[data-bus]")) row.hidden = row.dataset.bus !== bus || ("adhoc" in row.dataset && !adhoc);
    for (const row of form.querySelectorAll("[data-adhoc]:not([data-bus])")) row.hidden = !adhoc;
    for (const row of form.querySelectorAll("[data-mode]")) row.hidden = row.dataset.mode !== data.get("mode");
  };
  showBus();
  let checked = null;
  form.addEventListener("change", () => {
    showBus();
    checked = null;
    runButton.disabled = true;
  });
  form.addEventListener("input", () => {
    checked = null;
    runButton.disabled = true;
  });
  const spec = () => buildSpec(new FormData(form), selection, sourceTopics, connectionBus);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!targetChoice) return;
    let body;
    try {
      body = spec();
    } catch (error) {
      summary.replaceChildren(errorBox(error));
      return;
    }
    dryRunButton.disabled = true;
    summary.replaceChildren(statusLine("Counting what would be replayed…"));
    try {
      const report = await api("/api/v1/replays", { method: "POST", body: { ...body, dry_run: true } });
      summary.replaceChildren(dryRunReport(report));
      onReplay();
      checked = report.problems.length === 0 && report.totals.events > 0 ? JSON.stringify(body) : null;
      runButton.disabled = checked === null;
    } catch (error) {
      summary.replaceChildren(errorBox(error));
    } finally {
      dryRunButton.disabled = false;
    }
  });
  runButton.addEventListener("click", async () => {
    const body = spec();
    if (JSON.stringify(body) !== checked) {
      runButton.disabled = true;
      return;
    }
    runButton.disabled = true;
    try {
      const view = await api("/api/v1/replays", { method: "POST", body });
      navigate(`#/replay/${view.id}`);
    } catch (error) {
      summary.append(errorBox(error));
      runButton.disabled = false;
    }
  });
}

function list(text) {
  return String(text || "")
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean);
}

function positive(name, text) {
  if (!String(text || "").trim()) return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
  return value;
}

/**
 * The target the form names: `{bus, connection}` for a named connection,
 * `{bus, adhoc: true}` for "Other address…", `{}` when there is none.
 */
function targetOf(data, connectionBus) {
  const connection = data.get("connection");
  if (connection === null) return {};
  if (connection === ADHOC) return { bus: data.get("bus"), adhoc: true };
  return { bus: connectionBus.get(connection), connection };
}

/** True when an amqp:// URL carries a password (the server refuses it). */
function hasPassword(url) {
  try {
    return new URL(url).password !== "";
  } catch {
    return /^amqps?:\/\/[^/@]*:[^/@]*@/i.test(url);
  }
}

/** The body of POST /api/v1/replays from the form. */
function buildSpec(data, selection, sourceTopics, connectionBus) {
  const mode = data.get("mode");
  const sql = String(data.get("sql") || "").trim();
  if (mode === "sql" && !sql) throw new Error("the SQL selection is empty");
  const map = {};
  for (const topic of sourceTopics) {
    const target = String(data.get(`map:${topic}`) || "").trim();
    if (target) map[topic] = target;
  }
  const chosen = targetOf(data, connectionBus);
  if (!chosen.bus) throw new Error("no replay target: add a [connections.NAME] section to the server's configuration");
  let target;
  if (chosen.bus === "kafka") {
    target = { type: "kafka", partitioning: data.get("partitioning"), keep_timestamp: data.get("keep_timestamp") === "on" };
    if (chosen.adhoc) {
      target.brokers = String(data.get("brokers") || "").trim();
      if (!target.brokers) throw new Error("give the Kafka brokers, like 127.0.0.1:9092");
    } else {
      target.connection = chosen.connection;
    }
    const topic = String(data.get("to_topic") || "").trim();
    if (topic) target.topic = topic;
    if (Object.keys(map).length) target.topic_map = map;
  } else {
    target = { type: "amqp" };
    if (chosen.adhoc) {
      target.url = String(data.get("amqp_url") || "").trim();
      if (!target.url) throw new Error("give the AMQP URL, like amqp://127.0.0.1:5672/%2f");
      if (hasPassword(target.url)) throw new Error("the AMQP URL holds a password: credentials go in a named connection ([connections.NAME]) in the server's configuration, not in a replay");
    } else {
      target.connection = chosen.connection;
    }
    const exchange = String(data.get("to_exchange") || "").trim();
    if (exchange) target.exchange = exchange;
    const routingKey = String(data.get("routing_key") || "");
    if (routingKey) target.routing_key = routingKey;
    if (Object.keys(map).length) target.exchange_map = map;
  }
  const options = { provenance: data.get("provenance") === "on", allow_loop: data.get("allow_loop") === "on" };
  const rate = positive("rate", data.get("rate"));
  if (rate) options.rate = rate;
  const pace = positive("pace", data.get("pace"));
  if (pace) options.pace = pace;
  const setHeaders = list(data.get("set_headers"));
  if (setHeaders.some((h) => !/^[^=]+=/.test(h))) throw new Error("set headers must look like name=value");
  if (setHeaders.length) options.set_headers = setHeaders;
  const strip = list(data.get("strip_headers"));
  if (strip.length) options.strip_headers = strip;
  return { selection: mode === "sql" ? { type: "sql", sql } : replaySelection(selection), target, options };
}

function dryRunReport(report) {
  const totals = report.totals;
  const box = el("section", { class: "report", "aria-label": "Dry-run summary" }, el("h2", {}, "Dry run"));
  box.append(
    el(
      "div",
      { class: "cards" },
      card("Events", formatNumber(totals.events), "dry-run-events"),
      card("Payload bytes", formatBytes(totals.bytes)),
      card("Segments read", formatNumber(report.segments)),
      card("Duplicates skipped", formatNumber(report.duplicates_skipped)),
    ),
    el("p", {}, totals.first_event_time ? `Events from ${formatTime(totals.first_event_time)} to ${formatTime(totals.last_event_time)} UTC.` : "No events match this selection."),
  );
  if (report.problems.length) box.append(el("div", { class: "error", role: "alert" }, el("strong", {}, "A run would be refused:"), el("ul", {}, report.problems.map((p) => el("li", {}, p)))));
  const targets = Object.entries(report.by_target);
  if (targets.length) box.append(table(["Target", "Events#", "Bytes#", "First", "Last"], targets.map(([name, t]) => [name, el("td", { class: "num" }, formatNumber(t.events)), el("td", { class: "num" }, formatBytes(t.bytes)), formatTime(t.first_event_time), formatTime(t.last_event_time)]), { caption: "Per target" }));
  if (report.sample.length)
    box.append(
      table(
        ["Destination", "Event time", "Topic", "Key"],
        report.sample.map((s) => [s.destination || el("span", { class: "muted" }, "none"), el("a", { href: `#/event/${s.event.event_id}` }, formatTime(s.event.event_time)), s.event.topic, s.event.key || ""]),
        { caption: "Sample" },
      ),
    );
  return box;
}

function card(label, value, id) {
  return el("div", { class: "card" }, el("div", { class: "card-label" }, label), el("div", { class: "card-value", id }, value));
}

/** For a finished replay: its average rate over its whole life (pauses included). */
function averageRate(view, done) {
  if (!view.finished_at || !view.created_at) return "—";
  const seconds = (new Date(view.finished_at) - new Date(view.created_at)) / 1000;
  return seconds > 0 ? `${formatNumber(Math.round(done / seconds))} events/s on average` : "—";
}

/** "Kafka via local-kafka → orders.replay"; ad-hoc Kafka targets name their brokers. */
function describeTarget(target) {
  if (!target) return "";
  const via = target.connection ? ` via ${target.connection}` : "";
  if (target.type === "kafka") return `Kafka${via || (target.brokers ? ` ${target.brokers}` : "")} → ${target.topic || (target.topic_map ? "mapped topics" : "original topics")}`;
  return `RabbitMQ${via} → ${target.exchange || (target.exchange_map ? "mapped exchanges" : "original exchanges")}`;
}

// ----------------------------------------------------------------- history --

async function renderHistory(section, signal) {
  section.append(el("h2", {}, "History"));
  const status = statusLine("Loading replays…");
  section.append(status);
  try {
    const replays = await api("/api/v1/replays?limit=50", { signal });
    status.textContent = replays.length ? "" : "No replays yet.";
    if (replays.length)
      section.append(
        table(
          ["Started (UTC)", "Status", "Target", "Published#", "Planned#", "Id"],
          replays.map((r) => [formatTime(r.created_at), statusBadge(r.status), describeTarget(r.target), el("td", { class: "num" }, formatNumber(r.progress.published)), el("td", { class: "num" }, formatNumber(r.planned)), el("a", { href: `#/replay/${r.id}` }, r.id.slice(0, 12))]),
          { className: "replays" },
        ),
      );
  } catch (error) {
    if (error.name === "AbortError") return;
    status.replaceWith(errorBox(error));
  }
}

function statusBadge(status) {
  return el("span", { class: `badge status-${status}` }, status.replace("_", " "));
}

// ---------------------------------------------------------------- progress --

async function renderProgress(main, id, signal) {
  main.append(el("p", { class: "crumbs" }, el("a", { href: "#/replay" }, "Replay"), " / ", id));
  main.append(el("h1", {}, "Replay ", el("span", { id: "replay-status" }, "…")));
  const bar = el("progress", { id: "replay-progress", max: "1", value: "0" });
  const figures = el("div", { class: "cards" });
  const controls = el("div", { class: "buttons" });
  const details = el("div", { class: "replay-details" });
  const message = el("div", { "aria-live": "polite" });
  main.append(el("div", { class: "progress-wrap" }, bar), figures, controls, message, el("h2", {}, "Details"), details);
  const samples = [];
  const pause = el("button", { type: "button", id: "replay-pause" }, "Pause");
  const resume = el("button", { type: "button", id: "replay-resume" }, "Resume");
  const cancel = el("button", { type: "button", id: "replay-cancel", class: "danger" }, "Cancel");
  controls.append(pause, resume, cancel);
  const act = async (action) => {
    message.replaceChildren();
    try {
      await api(`/api/v1/replays/${encodeURIComponent(id)}/${action}`, { method: "POST", signal });
      await refresh();
    } catch (error) {
      if (error.name !== "AbortError") message.replaceChildren(errorBox(error));
    }
  };
  pause.addEventListener("click", () => act("pause"));
  resume.addEventListener("click", () => act("resume"));
  cancel.addEventListener("click", () => act("cancel"));

  let view = null;
  const refresh = async () => {
    view = await api(`/api/v1/replays/${encodeURIComponent(id)}`, { signal });
    const now = performance.now();
    const done = view.progress.published + view.progress.failed;
    samples.push({ now, done });
    while (samples.length > 2 && now - samples[0].now > 5000) samples.shift();
    const first = samples[0];
    const rate = now > first.now ? ((done - first.done) * 1000) / (now - first.now) : 0;
    const total = view.planned || 0;
    const remaining = Math.max(total - done, 0);
    const statusText = view.requested !== "run" && view.status === "running" ? `${view.status} (${view.requested} requested)` : view.status.replace("_", " ");
    document.getElementById("replay-status").replaceChildren(statusBadge(view.status));
    document.getElementById("replay-status").dataset.status = view.status;
    bar.max = Math.max(total, 1);
    bar.value = Math.min(done, bar.max);
    bar.textContent = `${done} of ${total}`;
    figures.replaceChildren(
      card("Status", statusText, "replay-status-text"),
      card("Done", `${formatNumber(done)} of ${total ? formatNumber(total) : "?"}`, "replay-done"),
      card("Rate", view.status === "running" ? `${formatNumber(Math.round(rate))} events/s` : averageRate(view, done), "replay-rate"),
      card("ETA", view.status === "running" && rate > 0 ? formatDuration(remaining / rate) : view.status === "completed" ? "done" : "—", "replay-eta"),
      card("Failed", formatNumber(view.progress.failed), "replay-failed"),
      card("Published bytes", formatBytes(view.progress.bytes)),
    );
    const running = view.status === "running" && view.requested === "run";
    pause.disabled = !running;
    resume.disabled = !(view.status === "paused" || view.status === "interrupted" || view.status === "failed" || (view.status === "running" && view.requested === "pause"));
    cancel.disabled = FINAL.includes(view.status);
    details.replaceChildren(
      el(
        "dl",
        { class: "props" },
        [
          ["Created", formatTime(view.created_at)],
          ["Updated", formatTime(view.updated_at)],
          ["Finished", formatTime(view.finished_at)],
          ["Snapshot", formatTime(view.snapshot_at)],
          ["Target", describeTarget(view.target)],
        ]
          .filter(([, v]) => v)
          .map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]),
      ),
      ...(view.error ? [errorBox({ message: view.error })] : []),
      el("details", {}, el("summary", {}, "Selection, target and options"), el("pre", { class: "code" }, JSON.stringify({ selection: view.selection, target: view.target, options: view.options }, null, 2))),
    );
  };
  const status = statusLine("");
  main.append(status);
  for (;;) {
    try {
      await refresh();
    } catch (error) {
      if (error.name === "AbortError") return;
      status.replaceWith(errorBox(error));
      return;
    }
    // Finished replays can still be resumed (interrupted, failed): keep watching, slowly.
    await new Promise((resolve) => setTimeout(resolve, FINAL.includes(view.status) ? 3000 : 500));
    if (signal.aborted) return;
  }
}
