// Overview: sources and topics with counts, segments, bytes, time span, ingest
// rate and last event; ingester lag from /metrics when an ingester runs in
// this process; compaction and retention policy and their latest runs.

import { ago, api, withToken, el, errorBox, formatBytes, formatDuration, formatNumber, formatTime, numberCell, routeHref, statusLine, table } from "./util.js";

/** Per-source lag from Prometheus text: {source: {lag, partitions}}; null when absent. */
async function ingesterLag(signal) {
  let text;
  try {
    const response = await fetch("/metrics", { signal, headers: withToken() });
    if (!response.ok) return null;
    text = await response.text();
  } catch (error) {
    if (error.name === "AbortError") throw error;
    return null;
  }
  const lag = {};
  for (const line of text.split("\n")) {
    const match = /^hindsight_consumer_lag\{([^}]*)\}\s+(\S+)/.exec(line);
    if (!match) continue;
    const source = /source="([^"]*)"/.exec(match[1]);
    const name = source ? source[1] : "";
    lag[name] = lag[name] || { lag: 0, partitions: 0 };
    lag[name].lag += Number(match[2]) || 0;
    lag[name].partitions += 1;
  }
  return lag;
}

function rate(topic) {
  if (!topic.first_event_time || !topic.last_event_time) return "";
  const seconds = (new Date(topic.last_event_time) - new Date(topic.first_event_time)) / 1000;
  if (seconds <= 0) return "";
  const perSecond = topic.events / seconds;
  return perSecond >= 1 ? `${perSecond.toFixed(1)}/s` : `${(perSecond * 3600).toFixed(1)}/h`;
}

export async function render(main, _route, signal) {
  const status = statusLine("Loading…");
  main.append(el("h1", {}, "Overview"), status);
  let topics;
  let sources;
  let lag;
  let maintenance;
  try {
    [topics, sources, lag, maintenance] = await Promise.all([
      api("/api/v1/topics", { signal }),
      api("/api/v1/sources", { signal }),
      ingesterLag(signal),
      api("/api/v1/maintenance", { signal }),
    ]);
  } catch (error) {
    if (error.name === "AbortError") return;
    status.replaceWith(errorBox(error));
    return;
  }
  const totalEvents = topics.reduce((sum, t) => sum + t.events, 0);
  const totalBytes = topics.reduce((sum, t) => sum + t.bytes, 0);
  const lastEvent = topics.map((t) => t.last_event_time).filter(Boolean).sort().pop();
  status.textContent = topics.length === 0 ? "The archive is empty: run hindsight archive or hindsight demo." : "";
  main.append(
    el(
      "div",
      { class: "cards", "aria-label": "Archive totals" },
      card("Events", formatNumber(totalEvents), "overview-events"),
      card("Stored", formatBytes(totalBytes)),
      card("Topics", formatNumber(topics.length)),
      card("Last event", lastEvent ? ago(lastEvent) : "none", null, lastEvent ? formatTime(lastEvent) : null),
    ),
  );

  main.append(el("h2", {}, "Sources"));
  main.append(
    table(
      ["Source", "Bus", "Topics#", "Events#", "Size#", "Last event", "Ingester lag"],
      sources.map((source) => {
        const own = topics.filter((t) => t.source === source.name);
        const last = own.map((t) => t.last_event_time).filter(Boolean).sort().pop();
        const sourceLag = lag && lag[source.name];
        return [
          source.name,
          source.bus,
          numberCell(own.length),
          numberCell(own.reduce((sum, t) => sum + t.events, 0)),
          el("td", { class: "num" }, formatBytes(own.reduce((sum, t) => sum + t.bytes, 0))),
          last ? el("time", { datetime: last, title: formatTime(last) }, ago(last)) : "",
          sourceLag
            ? `${formatNumber(sourceLag.lag)} events behind (${sourceLag.partitions} partitions)`
            : el("span", { class: "muted", title: "lag is known only when an ingester runs in this process (hindsight archive --metrics-listen)" }, "unknown"),
        ];
      }),
      { className: "sources" },
    ),
  );

  main.append(el("h2", {}, "Topics"));
  main.append(
    table(
      ["Source", "Topic", "Events#", "Segments#", "Size#", "First event", "Last event", "Avg rate#", ""],
      topics.map((topic) => [
        topic.source,
        el("a", { href: routeHref("/explorer", { source: topic.source, topic: topic.topic }) }, topic.topic),
        numberCell(topic.events),
        numberCell(topic.segments),
        el("td", { class: "num" }, formatBytes(topic.bytes)),
        formatTime(topic.first_event_time),
        topic.last_event_time ? el("time", { datetime: topic.last_event_time, title: ago(topic.last_event_time) }, formatTime(topic.last_event_time)) : "",
        el("td", { class: "num" }, rate(topic)),
        el("a", { href: routeHref("/sql", { q: `SELECT * FROM events WHERE topic = '${topic.topic.replaceAll("'", "''")}' ORDER BY event_time DESC LIMIT 100` }) }, "SQL"),
      ]),
      { className: "topics" },
    ),
  );
  main.append(el("p", { class: "muted" }, "Times are UTC. Rates are averages over each topic's time span."));
  renderMaintenance(main, maintenance);
}

/** Compaction and retention: the policy, and the latest runs of each kind. */
function renderMaintenance(main, maintenance) {
  const policy = maintenance.policy;
  main.append(el("h2", {}, "Compaction and retention"));
  const retention = policy.retention.length
    ? policy.retention.map((rule) => `${rule.source}${rule.topic ? "/" + rule.topic : ""}: ${formatDuration(rule.keep_seconds)}`).join(", ")
    : "none (events are kept forever)";
  main.append(
    el(
      "p",
      { id: "maintenance-policy" },
      policy.compaction_enabled
        ? `Background compaction every ${formatDuration(policy.interval_seconds)} (by hindsight archive), into segments of up to ${formatBytes(policy.target_bytes)} at zstd level ${policy.zstd_level}. `
        : "Background compaction is off (hindsight compact runs it by hand). ",
      `Retired segments are deleted after ${formatDuration(policy.grace_seconds)}; ${formatNumber(maintenance.retired_objects_waiting)} are waiting. Retention: ${retention}.`,
    ),
  );
  const latest = ["compaction", "retention", "erasure"].map((kind) => maintenance.runs.find((run) => run.kind === kind && !run.dry_run)).filter(Boolean);
  if (latest.length === 0) {
    main.append(el("p", { class: "muted" }, "No compaction, retention or erasure has run yet."));
    return;
  }
  main.append(
    table(
      ["Last", "Finished", "Status", "Segments in#", "Segments out#", "Events#", "Read#", "Written#", "By"],
      latest.map((run) => [
        run.kind,
        run.finished_at ? el("time", { datetime: run.finished_at, title: formatTime(run.finished_at) }, ago(run.finished_at)) : "running",
        run.status,
        numberCell(run.segments_in),
        numberCell(run.segments_out),
        numberCell(run.rows_in),
        el("td", { class: "num" }, formatBytes(run.bytes_in)),
        el("td", { class: "num" }, formatBytes(run.bytes_out)),
        run.actor || "",
      ]),
      { className: "maintenance" },
    ),
  );
}

function card(label, value, id, title) {
  return el("div", { class: "card", title }, el("div", { class: "card-label" }, label), el("div", { class: "card-value", id }, value));
}
