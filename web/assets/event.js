// Event detail: metadata, headers, AMQP properties, the payload as pretty
// JSON, text or hex with copy buttons, and related events by key and by
// correlation id.

import { api, base64Bytes, copyButton, el, errorBox, formatBytes, formatNumber, formatTime, hexDump, routeHref, statusLine, table } from "./util.js";

export async function render(main, route, signal) {
  const id = decodeURIComponent(route.path.slice("/event/".length));
  main.append(el("p", { class: "crumbs" }, el("a", { href: "#/explorer" }, "Explorer"), " / event"));
  const status = statusLine("Loading the event…");
  main.append(status);
  let event;
  try {
    event = await api(`/api/v1/events/${encodeURIComponent(id)}`, { signal });
  } catch (error) {
    if (error.name === "AbortError") return;
    status.replaceWith(errorBox(error));
    return;
  }
  status.remove();
  main.append(
    el("h1", { class: "event-title" }, `${event.topic} `, el("span", { class: "muted" }, event.partition === null ? "" : `partition ${event.partition}, offset ${event.offset}`)),
    el("p", { class: "buttons" }, el("code", { id: "event-id" }, event.event_id), copyButton("Copy id", event.event_id), copyButton("Copy as JSON", () => JSON.stringify(event, null, 2)), el("a", { class: "button", href: routeHref("/replay", { sql: `SELECT event_id FROM events WHERE event_id = '${event.event_id}'` }) }, "Replay this event…")),
  );
  const layout = el("div", { class: "detail" });
  main.append(layout);
  layout.append(metadata(event), payloadSection(event));
  const related = el("section", { class: "related", "aria-label": "Related events" });
  main.append(related);
  await Promise.all([
    relatedByKey(related, event, signal),
    relatedByCorrelation(related, event, signal),
  ]);
}

function metadata(event) {
  const rows = [
    ["Event id", event.event_id],
    ["Source", `${event.source} (${event.bus})`],
    ["Topic", event.topic],
    ["Partition", event.partition],
    ["Offset", event.offset],
    ["Routing key", event.routing_key],
    ["Key", event.key ?? (event.key_base64 ? `base64 ${event.key_base64}` : null)],
    ["Event time (UTC)", formatTime(event.event_time)],
    ["Ingest time (UTC)", formatTime(event.ingest_time)],
    ["Timestamp type", event.timestamp_type],
    ["Content type", event.content_type],
    ["Message id", event.message_id],
    ["Correlation id", event.correlation_id],
    ["Payload size", event.tombstone ? "none: a tombstone (null value)" : `${formatBytes(event.payload_size)} (${formatNumber(event.payload_size)} bytes)${event.payload_truncated ? ", truncated in the archive" : ""}`],
    ["Redelivered", event.redelivered === null ? null : String(event.redelivered)],
    ["Archived copies", event.copies],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  const section = el("section", { class: "meta", "aria-label": "Metadata" }, el("h2", {}, "Metadata"));
  section.append(el("dl", { class: "props" }, rows.map(([name, value]) => [el("dt", {}, name), el("dd", {}, String(value))])));
  section.append(el("h2", {}, `Headers (${event.headers.length})`));
  if (event.headers.length === 0) section.append(el("p", { class: "muted" }, "No headers."));
  else
    section.append(
      table(
        ["Name", "Value"],
        event.headers.map((h) => [h.name, h.value ?? (h.value_base64 === null ? el("span", { class: "muted" }, "null") : `base64 ${h.value_base64}`)]),
        { className: "headers" },
      ),
    );
  if (event.amqp) {
    const amqp = event.amqp;
    const props = [
      ["Exchange", amqp.exchange === "" ? "(default exchange)" : amqp.exchange],
      ["Type", amqp.type],
      ["App id", amqp.app_id],
      ["User id", amqp.user_id],
      ["Delivery mode", amqp.delivery_mode],
      ["Priority", amqp.priority],
      ["Expiration", amqp.expiration],
      ["Reply to", amqp.reply_to],
      ["Content encoding", amqp.content_encoding],
    ].filter(([, value]) => value !== null && value !== undefined);
    section.append(el("h2", {}, "AMQP properties"), el("dl", { class: "props" }, props.map(([name, value]) => [el("dt", {}, name), el("dd", {}, String(value))])));
    if (amqp.headers_table) section.append(el("h3", {}, "Headers table (typed)"), el("pre", { class: "code" }, JSON.stringify(amqp.headers_table, null, 2)));
  }
  return section;
}

/** A tombstone has no payload at all (null), which is not an empty one. */
function tombstoneSection() {
  return el(
    "section",
    { class: "payload-view", "aria-label": "Payload" },
    el("h2", {}, "Payload"),
    el("p", { class: "tombstone", id: "payload", "data-format": "tombstone" }, "Tombstone: this Kafka record has a null value, not an empty one."),
    el("p", { class: "muted" }, "In a compacted topic it deletes its key. A replay to Kafka sends it as a tombstone again; to RabbitMQ, as an empty body with the header hindsight-tombstone = true. SQL: payload IS NULL."),
  );
}

const FORMAT_NAMES = { avro: "Avro", protobuf: "Protobuf", json_schema: "JSON Schema", json: "JSON" };

function formatName(format) {
  return FORMAT_NAMES[format] || format;
}

/** Where the decoded value's schema came from, in one line. */
function schemaLine(decoded) {
  const parts = [formatName(decoded.format)];
  if (decoded.schema_name) parts.push(decoded.schema_name);
  if (decoded.schema_id !== undefined) parts.push(`schema id ${decoded.schema_id}`);
  if (decoded.subject) parts.push(`subject ${decoded.subject}`);
  if (decoded.version !== undefined) parts.push(`version ${decoded.version}`);
  if (decoded.registry) parts.push(`from ${decoded.registry}`);
  return `Decoded with: ${parts.join(", ")}. Replay sends the original bytes.`;
}

/** A viewer's token sees metadata only: the server sends no payload. */
function hiddenPayloadSection() {
  return el(
    "section",
    { class: "payload-view", "aria-label": "Payload" },
    el("h2", {}, "Payload"),
    el("p", { class: "muted", id: "payload", "data-format": "hidden" }, "Hidden: the viewer role sees metadata, counts and search, not payloads. An analyst token shows them."),
  );
}

function payloadSection(event) {
  if (event.tombstone) return tombstoneSection();
  if (event.payload_redacted) return hiddenPayloadSection();
  const bytes = base64Bytes(event.payload_base64);
  let pretty = null;
  if (event.payload_text !== null && event.payload_text !== undefined) {
    try {
      pretty = JSON.stringify(JSON.parse(event.payload_text), null, 2);
    } catch {
      pretty = null;
    }
  }
  const views = [];
  const decoded = event.decoded;
  if (decoded && decoded.format !== "json") views.push(["decoded", `Decoded (${formatName(decoded.format)})`, JSON.stringify(decoded.value, null, 2)]);
  if (pretty !== null) views.push(["json", "JSON", pretty]);
  if (event.payload_text !== null && event.payload_text !== undefined) views.push(["text", "Text", event.payload_text]);
  views.push(["hex", "Hex", hexDump(bytes)]);
  const section = el("section", { class: "payload-view", "aria-label": "Payload" }, el("h2", {}, "Payload"));
  const tabs = el("div", { class: "tabs", role: "tablist", "aria-label": "Payload format" });
  const pre = el("pre", { class: "code", id: "payload", role: "tabpanel", tabindex: "0" });
  let current = views[0];
  const buttons = views.map((view) => {
    const button = el("button", { type: "button", role: "tab", id: `tab-${view[0]}`, "aria-controls": "payload" }, view[1]);
    button.addEventListener("click", () => select(view));
    button.addEventListener("keydown", (key) => {
      const index = views.indexOf(view);
      let next = null;
      if (key.key === "ArrowRight") next = views[(index + 1) % views.length];
      if (key.key === "ArrowLeft") next = views[(index - 1 + views.length) % views.length];
      if (next) {
        select(next);
        document.getElementById(`tab-${next[0]}`).focus();
      }
    });
    return button;
  });
  const select = (view) => {
    current = view;
    pre.textContent = view[2];
    pre.dataset.format = view[0];
    pre.setAttribute("aria-labelledby", `tab-${view[0]}`);
    buttons.forEach((button, index) => {
      const selected = views[index] === view;
      button.setAttribute("aria-selected", String(selected));
      button.tabIndex = selected ? 0 : -1;
    });
  };
  tabs.append(...buttons);
  section.append(
    el("div", { class: "payload-bar" }, tabs, el("span", { class: "buttons" }, copyButton("Copy", () => current[2]), copyButton("Copy base64", event.payload_base64))),
    pre,
  );
  if (decoded && decoded.format !== "json") section.append(el("p", { class: "muted", id: "payload-schema" }, schemaLine(decoded)));
  else if (event.decode_error && !(pretty !== null)) section.append(el("p", { class: "muted", id: "payload-decode-error" }, `Not decoded: ${event.decode_error}`));
  if (bytes.length === 0 && !event.payload_truncated) section.append(el("p", { class: "muted", id: "payload-empty" }, "Empty payload (0 bytes), not a tombstone."));
  if (event.payload_truncated) section.append(el("p", { class: "muted" }, `The archive holds the first ${formatNumber(bytes.length)} of ${formatNumber(event.payload_size)} bytes.`));
  select(current);
  return section;
}

/**
 * What a related list shows: a count of the *other* events (the list may
 * hold this one too, marked), and the table only when there are others.
 * `more` names where the rest is when the list was cut short.
 */
function relatedList(box, status, events, currentId, { none, more }) {
  const others = events.filter((e) => e.event_id !== currentId).length;
  box.dataset.others = String(others);
  if (others === 0) {
    status.textContent = none;
    return;
  }
  const withThis = others < events.length ? ", listed with this one" : "";
  status.textContent = `${formatNumber(others)} other event${others === 1 ? "" : "s"}${withThis}${more ? `; more in ${more}` : ""}.`;
  box.append(relatedTable(events, currentId));
}

function relatedTable(events, currentId) {
  return table(
    ["Event time (UTC)", "Topic", "Part:offset#", "Type"],
    events.map((e) => [
      e.event_id === currentId ? el("span", {}, formatTime(e.event_time), " (this event)") : el("a", { href: `#/event/${e.event_id}` }, formatTime(e.event_time)),
      e.topic,
      el("td", { class: "num" }, e.partition === null ? "" : `${e.partition}:${e.offset}`),
      e.type || "",
    ]),
    { className: "related-events" },
  );
}

async function relatedByKey(section, event, signal) {
  const box = el("div", { class: "related-box", id: "same-key" }, el("h2", {}, "Other events with this key"));
  section.append(box);
  if (event.key === null || event.key === undefined) {
    box.append(el("p", { class: "muted" }, event.key_base64 ? "The key is binary; search it with SQL." : "This event has no key."));
    return;
  }
  const status = statusLine("Searching…");
  box.append(status);
  try {
    const page = await api(`/api/v1/events?${new URLSearchParams({ key: event.key, limit: "21" })}`, { signal });
    const events = page.events.map((e) => ({ ...e, type: (e.headers.find((h) => h.name === "event-type") || {}).value }));
    relatedList(box, status, events, event.event_id, { none: "No other event has this key.", more: page.next_cursor ? "the explorer" : "" });
    box.append(el("a", { href: routeHref("/explorer", { key: event.key }) }, "All events with this key in the explorer"));
  } catch (error) {
    if (error.name === "AbortError") return;
    status.replaceWith(errorBox(error));
  }
}

async function relatedByCorrelation(section, event, signal) {
  const box = el("div", { class: "related-box", id: "same-correlation" }, el("h2", {}, "Other events with this correlation id"));
  section.append(box);
  if (!event.correlation_id) {
    box.append(el("p", { class: "muted" }, "This event has no correlation id."));
    return;
  }
  const status = statusLine("Searching…");
  box.append(status);
  const filter = new URLSearchParams({ correlation_id: event.correlation_id });
  try {
    // Newest first from the API; a flow reads oldest first.
    const page = await api(`/api/v1/events?${filter}&limit=50`, { signal });
    const events = page.events.reverse().map((e) => ({ ...e, type: (e.headers.find((h) => h.name === "event-type") || {}).value }));
    relatedList(box, status, events, event.event_id, { none: "No other event has this correlation id.", more: page.next_cursor ? "the SQL console" : "" });
    const { where } = await api(`/api/v1/events/sql?${filter}`, { signal });
    const sql = `SELECT event_id, topic, "partition", "offset", event_time, header_text(headers, 'event-type') AS type FROM events WHERE ${where} ORDER BY event_time, event_id`;
    box.append(el("a", { href: routeHref("/sql", { q: sql }) }, "Open this query in the SQL console"));
  } catch (error) {
    if (error.name === "AbortError") return;
    status.replaceWith(errorBox(error));
  }
}
