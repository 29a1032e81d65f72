// Explorer: topics and a time range, a histogram you can brush to zoom, key,
// header, text and JSON filters, and a newest-first list paged by cursor.
// Everything lives in the URL (#/explorer?topic=…&from=…), so links share.

import { api, el, errorBox, formatBytes, formatNumber, formatTime, navigate, routeHref, statusLine, table } from "./util.js";
import { PagedSearch, describeSelection, filterParams, selectionFromParams, selectionProblem, selectionSql, selectionToParams } from "./selection.js";

const PAGE_SIZE = 50;
const MAX_BUCKETS = 120;
// The most buckets the histogram route answers for one request.
const SERVER_MAX_BUCKETS = 10000;
// Bar widths in milliseconds: sub-second ones too, so that a zoom into less
// than a second still spreads over many bars.
const STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, ...[1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 10800, 21600, 43200, 86400, 604800].map((s) => s * 1000)];
const PRESETS = [
  ["15 min", 900],
  ["1 h", 3600],
  ["6 h", 21600],
  ["24 h", 86400],
  ["7 d", 604800],
];

export async function render(main, route, signal) {
  const started = performance.now();
  const selection = selectionFromParams(route.params);
  const topics = await api("/api/v1/topics", { signal });
  main.append(el("h1", {}, "Explorer"));
  main.append(filterForm(selection, topics));
  const problem = selectionProblem(selection);
  if (problem) {
    main.append(errorBox({ message: problem }));
    return;
  }
  const histogramSection = el("section", { class: "histogram", "aria-label": "Events over time" });
  const results = el("section", { class: "results", "aria-label": "Matching events" });
  main.append(actions(selection, signal), histogramSection, results);
  const listDone = renderList(results, selection, signal).then(() => {
    const elapsed = performance.now() - started;
    main.dataset.firstRenderMs = elapsed.toFixed(0);
    performance.mark("hindsight-explorer-first-render");
  });
  const histogramDone = renderHistogram(histogramSection, selection, topics, signal);
  await Promise.all([listDone, histogramDone]);
}

function filterForm(selection, topics) {
  const form = el("form", { class: "filters", "aria-label": "Selection" });
  const names = [...new Set(topics.map((t) => t.topic))].sort();
  const topicBoxes = names.map((name) =>
    el("label", { class: "check" }, el("input", { type: "checkbox", name: "topic", value: name, checked: selection.topics.includes(name) }), name),
  );
  const field = (label, name, value, placeholder, extra = {}) =>
    el("label", { class: "field" }, el("span", {}, label), el("input", { name, value, placeholder, autocomplete: "off", spellcheck: "false", ...extra }));
  form.append(
    el("fieldset", { class: "topics-pick" }, el("legend", {}, "Topics (none ticked: all)"), topicBoxes),
    el(
      "div",
      { class: "field-row" },
      field("From (UTC)", "from", selection.from, "2026-01-31T00:00:00Z"),
      field("To (UTC)", "to", selection.to, "now"),
      el("div", { class: "presets", role: "group", "aria-label": "Time presets" }, PRESETS.map(([label, seconds]) => el("button", { type: "button", class: "small", dataset: { seconds } }, `Last ${label}`)), el("button", { type: "button", class: "small", dataset: { seconds: "all" } }, "All time")),
    ),
    el(
      "div",
      { class: "field-row" },
      field("Key", "key", selection.key, "cust-00042", { "data-search": true, id: "filter-key" }),
      field("Header", "header", selection.headers.join(", "), "event-type=order.created"),
      field("Text contains", "contains", selection.contains, "dhl"),
      field("JSON field", "json", selection.json.join(", "), "country=NL"),
    ),
    el("div", { class: "buttons" }, el("button", { type: "submit", class: "primary" }, "Search"), el("button", { type: "button", dataset: { clear: "" } }, "Clear filters")),
  );
  if (selection.source) form.append(el("input", { type: "hidden", name: "source", value: selection.source }));
  const apply = (change) => {
    const data = new FormData(form);
    const next = {
      source: data.get("source") || "",
      topics: data.getAll("topic"),
      from: String(data.get("from") || "").trim(),
      to: String(data.get("to") || "").trim(),
      key: String(data.get("key") || ""),
      contains: String(data.get("contains") || ""),
      headers: splitList(data.get("header")),
      json: splitList(data.get("json")),
    };
    Object.assign(next, change || {});
    navigate(routeHref("/explorer", selectionToParams(next)));
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  form.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.dataset.seconds === "all") apply({ from: "", to: "" });
    else if (button.dataset.seconds) apply({ from: new Date(Date.now() - Number(button.dataset.seconds) * 1000).toISOString(), to: "" });
    else if (button.dataset.clear !== undefined) apply({ key: "", contains: "", headers: [], json: [] });
  });
  return form;
}

/** "a=b, c=d" to ["a=b", "c=d"]. */
function splitList(value) {
  return String(value || "")
    .split(/,\s*(?=[^,=]+=)/)
    .map((part) => part.trim())
    .filter(Boolean);
}

function actions(selection, signal) {
  const params = selectionToParams(selection);
  const sqlLink = el("a", { class: "button", href: routeHref("/sql", {}) }, "Open as SQL");
  const box = el(
    "div",
    { class: "actions" },
    el("p", { class: "muted selection-line" }, describeSelection(selection)),
    el("a", { class: "button", href: routeHref("/replay", params) }, "Replay this selection…"),
    sqlLink,
  );
  // The server writes the selection's condition: the link points at the
  // query once it has answered, and a click before that waits for it.
  const href = selectionSql(selection, signal).then(({ where }) => routeHref("/sql", { q: `SELECT event_time, topic, "partition", "offset", utf8_or_null(key) AS key, payload_text\nFROM events\nWHERE ${where}\nORDER BY event_time DESC\nLIMIT 100` }));
  let ready = false;
  href.then(
    (target) => {
      sqlLink.href = target;
      ready = true;
    },
    () => {},
  );
  sqlLink.addEventListener("click", (event) => {
    if (ready) return;
    event.preventDefault();
    href.then(navigate, (error) => {
      if (error.name !== "AbortError") box.append(errorBox(error));
    });
  });
  return box;
}

// ---------------------------------------------------------------- histogram --

function timeSpan(selection, topics) {
  const chosen = topics.filter((t) => (selection.topics.length === 0 || selection.topics.includes(t.topic)) && (!selection.source || t.source === selection.source));
  const firsts = chosen.map((t) => t.first_event_time).filter(Boolean).map((t) => new Date(t).getTime());
  const lasts = chosen.map((t) => t.last_event_time).filter(Boolean).map((t) => new Date(t).getTime());
  let low = selection.from ? new Date(selection.from).getTime() : Math.min(...firsts);
  let high = selection.to ? new Date(selection.to).getTime() : Math.max(...lasts) + 1;
  if (!Number.isFinite(low) || !Number.isFinite(high)) return null;
  if (!selection.from && firsts.length) low = Math.max(low, Math.min(...firsts));
  if (!selection.to && lasts.length) high = Math.min(high, Math.max(...lasts) + 1);
  if (high <= low) high = low + 1000;
  return { low, high };
}

async function renderHistogram(section, selection, topics, signal) {
  const status = statusLine("Counting events over time…");
  section.append(el("h2", { class: "sr-only" }, "Events over time"), status);
  const span = timeSpan(selection, topics);
  if (!span) {
    status.textContent = "No events in the archive for these topics.";
    return;
  }
  let step = STEPS.find((s) => (span.high - span.low) / s <= MAX_BUCKETS) || STEPS[STEPS.length - 1];
  // Past about 190 years, weekly bars are more than the server counts in one request: several weeks a bar.
  if ((span.high - span.low) / step > SERVER_MAX_BUCKETS - 2) step *= Math.ceil((span.high - span.low) / step / (SERVER_MAX_BUCKETS - 2));
  const low = Math.floor(span.low / step) * step;
  const high = span.high;
  const params = filterParams({ ...selection, from: new Date(low).toISOString(), to: new Date(high).toISOString() });
  params.set("step_ms", String(step));
  let histogram;
  try {
    histogram = await api(`/api/v1/events/histogram?${params}`, { signal });
  } catch (error) {
    if (error.name === "AbortError") return;
    status.replaceWith(errorBox(error));
    return;
  }
  // Only non-empty buckets come back; the others are drawn as zero below.
  const counts = new Map(histogram.buckets.map((bucket) => [new Date(bucket.start).getTime(), Number(bucket.count)]));
  const buckets = [];
  for (let start = low; start < high; start += step) buckets.push({ start, end: start + step, count: counts.get(start) || 0 });
  const total = buckets.reduce((sum, b) => sum + b.count, 0);
  status.textContent = `${formatNumber(total)} events from ${formatTime(new Date(low).toISOString())} to ${formatTime(new Date(high).toISOString())} UTC, ${formatStep(step)} per bar. Drag across the chart to zoom in (or focus it, pick a bar with the arrow keys, Enter).`;
  section.dataset.stepMs = String(step);
  section.append(chart(buckets, selection, low, high));
}

function formatStep(milliseconds) {
  if (milliseconds < 1000) return `${milliseconds} ms`;
  const seconds = milliseconds / 1000;
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${seconds / 60} min`;
  if (seconds < 86400) return `${seconds / 3600} h`;
  return `${seconds / 86400} d`;
}

function chart(buckets, selection, low, high) {
  const ns = "http://www.w3.org/2000/svg";
  const width = 1000;
  const height = 120;
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Histogram of event counts; drag to zoom into a time range");
  const barWidth = width / buckets.length;
  buckets.forEach((bucket, index) => {
    const barHeight = (bucket.count / max) * (height - 4);
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", String(index * barWidth + 0.5));
    rect.setAttribute("y", String(height - barHeight));
    rect.setAttribute("width", String(Math.max(barWidth - 1, 0.5)));
    rect.setAttribute("height", String(barHeight));
    rect.setAttribute("class", "bar");
    const title = document.createElementNS(ns, "title");
    title.textContent = `${formatTime(new Date(bucket.start).toISOString())}: ${formatNumber(bucket.count)} events`;
    rect.append(title);
    svg.append(rect);
  });
  const brush = document.createElementNS(ns, "rect");
  brush.setAttribute("class", "brush");
  brush.setAttribute("y", "0");
  brush.setAttribute("height", String(height));
  brush.setAttribute("width", "0");
  svg.append(brush);

  const timeAt = (clientX) => {
    const box = svg.getBoundingClientRect();
    const fraction = Math.min(Math.max((clientX - box.left) / box.width, 0), 1);
    return { fraction, time: low + fraction * (high - low) };
  };
  let origin = null;
  svg.addEventListener("pointerdown", (event) => {
    origin = timeAt(event.clientX);
    svg.setPointerCapture(event.pointerId);
    brush.setAttribute("x", String(origin.fraction * width));
    brush.setAttribute("width", "0");
  });
  svg.addEventListener("pointermove", (event) => {
    if (!origin) return;
    const now = timeAt(event.clientX);
    brush.setAttribute("x", String(Math.min(origin.fraction, now.fraction) * width));
    brush.setAttribute("width", String(Math.abs(now.fraction - origin.fraction) * width));
  });
  svg.addEventListener("pointerup", (event) => {
    if (!origin) return;
    const end = timeAt(event.clientX);
    const start = origin;
    origin = null;
    let from = Math.min(start.time, end.time);
    let to = Math.max(start.time, end.time);
    if (Math.abs(end.fraction - start.fraction) < 0.004) {
      // A click: zoom into the bar under the pointer.
      const index = Math.min(Math.floor(start.fraction * buckets.length), buckets.length - 1);
      from = buckets[index].start;
      to = buckets[index].end;
    }
    zoom(selection, from, to);
  });

  // Keyboard: arrows pick a bar, Enter zooms into it.
  svg.setAttribute("tabindex", "0");
  svg.setAttribute("aria-keyshortcuts", "ArrowLeft ArrowRight Enter");
  const bars = [...svg.querySelectorAll("rect.bar")];
  let picked = -1;
  const live = el("span", { class: "sr-only", "aria-live": "polite" });
  svg.addEventListener("keydown", (event) => {
    if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      event.preventDefault();
      const step = event.key === "ArrowRight" ? 1 : -1;
      picked = picked < 0 ? (step > 0 ? 0 : bars.length - 1) : Math.min(Math.max(picked + step, 0), bars.length - 1);
      bars.forEach((bar, index) => bar.classList.toggle("picked", index === picked));
      live.textContent = bars[picked].textContent;
    } else if (event.key === "Enter" && picked >= 0) {
      event.preventDefault();
      zoom(selection, buckets[picked].start, buckets[picked].end);
    }
  });

  const zoomOut = () => {
    const middle = (low + high) / 2;
    const half = high - low;
    zoom(selection, middle - half, Math.min(middle + half, Date.now()));
  };
  return el(
    "div",
    { class: "chart-wrap" },
    svg,
    live,
    el(
      "div",
      { class: "axis" },
      el("span", {}, formatTime(new Date(low).toISOString())),
      el("span", { class: "buttons" }, el("button", { type: "button", class: "small", onclick: zoomOut }, "Zoom out"), el("button", { type: "button", class: "small", onclick: () => zoom(selection, null, null) }, "Whole range")),
      el("span", {}, formatTime(new Date(high).toISOString())),
    ),
  );
}

function zoom(selection, from, to) {
  const iso = (ms) => (ms === null ? "" : new Date(Math.round(ms)).toISOString());
  navigate(routeHref("/explorer", selectionToParams({ ...selection, from: iso(from), to: iso(to) })));
}

// --------------------------------------------------------------------- list --

function headerValue(event, name) {
  const header = event.headers.find((h) => h.name === name);
  return header ? header.value || "" : "";
}

function preview(event) {
  if (event.tombstone) return "(tombstone)";
  if (event.payload_redacted) return "(hidden for your role)";
  if (event.payload_size === 0 && !event.payload_truncated) return "(empty)";
  if (event.decoded_preview) return event.decoded_preview;
  if (event.payload_text === null || event.payload_text === undefined) return `(binary, ${formatBytes(event.payload_size)})`;
  return event.payload_text.length > 160 ? `${event.payload_text.slice(0, 160)}…` : event.payload_text;
}

function eventRow(event) {
  const href = `#/event/${event.event_id}`;
  const position = event.partition === null ? event.routing_key || "" : `${event.partition}:${event.offset}`;
  const row = el(
    "tr",
    { class: "event-row", dataset: { eventId: event.event_id } },
    el("td", { class: "nowrap" }, el("a", { href }, formatTime(event.event_time))),
    el("td", {}, event.topic),
    el("td", { class: "num" }, position),
    el("td", { class: "key" }, event.key ?? (event.key_base64 ? "(binary)" : "")),
    el("td", {}, headerValue(event, "event-type") || event.amqp?.type || ""),
    el("td", { class: "payload" }, preview(event)),
  );
  row.addEventListener("click", (click) => {
    if (click.target.closest("a")) return;
    navigate(href);
  });
  return row;
}

async function renderList(section, selection, signal) {
  const status = statusLine("Searching…");
  section.append(el("h2", { class: "sr-only" }, "Events"), status);
  const search = new PagedSearch(selection, PAGE_SIZE);
  const wrap = table(["Event time (UTC)", "Topic", "Part:offset#", "Key", "Type", "Payload"], [], { className: "events" });
  const body = wrap.querySelector("tbody");
  const more = el("button", { type: "button", class: "load-more" }, "Load more");
  let loaded = 0;
  const loadPage = async () => {
    more.disabled = true;
    status.textContent = "Searching…";
    const page = await search.next(signal);
    loaded += page.length;
    for (const event of page) body.append(eventRow(event));
    const end = search.exhausted;
    status.textContent = loaded === 0 ? "No events match." : `${formatNumber(loaded)} events shown, newest first${end ? ", no more" : ""}.`;
    more.hidden = end;
    more.disabled = false;
  };
  more.addEventListener("click", () => {
    loadPage().catch((error) => {
      if (error.name !== "AbortError") section.append(errorBox(error));
    });
  });
  try {
    await loadPage();
  } catch (error) {
    if (error.name === "AbortError") return;
    status.replaceWith(errorBox(error));
    return;
  }
  section.append(wrap, more);
}
