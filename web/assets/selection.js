// The explorer's selection (topics, time range, filters), as it lives in the
// URL, and its three translations: event-search parameters, an SQL WHERE
// clause (for the histogram and multi-topic replays), and a replay selection.

import { ApiError, sqlString, withToken } from "./util.js";

const SINGLE = ["source", "from", "to", "key", "contains"];
const REPEATED = ["topic", "header", "json"];

/** Reads a selection from URL parameters. */
export function selectionFromParams(params) {
  const selection = { topics: [], headers: [], json: [] };
  for (const name of SINGLE) selection[name] = params.get(name) || "";
  selection.topics = params.getAll("topic").filter(Boolean);
  selection.headers = params.getAll("header").filter(Boolean);
  selection.json = params.getAll("json").filter(Boolean);
  return selection;
}

/** The selection as URL parameters (repeats kept). */
export function selectionToParams(selection) {
  const params = new URLSearchParams();
  if (selection.source) params.set("source", selection.source);
  for (const topic of selection.topics) params.append("topic", topic);
  for (const name of ["from", "to", "key", "contains"]) if (selection[name]) params.set(name, selection[name]);
  for (const header of selection.headers) params.append("header", header);
  for (const field of selection.json) params.append("json", field);
  return params;
}

export function isEmptyFilter(selection) {
  return !selection.key && !selection.contains && selection.headers.length === 0 && selection.json.length === 0;
}

/** Checks name=value pairs; returns an error message or "". */
export function selectionProblem(selection) {
  for (const header of selection.headers) {
    if (!/^[^=]+=/.test(header)) return `header filter "${header}" must look like name=value`;
  }
  for (const field of selection.json) {
    if (!/^[^=]+=/.test(field)) return `JSON filter "${field}" must look like path=value, e.g. customer.id=42`;
    const path = field.slice(0, field.indexOf("="));
    if (path.split(".").some((part) => part === "")) return `JSON path "${path}" must be dot-separated names`;
  }
  for (const name of ["from", "to"]) {
    if (selection[name] && Number.isNaN(new Date(selection[name]).getTime())) return `"${name}" is not a valid time`;
  }
  return "";
}

/** Parameters of GET /api/v1/events for one topic (or all when topic is empty). */
export function searchParams(selection, topic, limit, cursor) {
  const params = new URLSearchParams();
  if (selection.source) params.set("source", selection.source);
  if (topic) params.set("topic", topic);
  if (selection.from) params.set("from", selection.from);
  if (selection.to) params.set("to", selection.to);
  if (selection.key) params.set("key", selection.key);
  for (const header of selection.headers) params.append("header", header);
  if (selection.contains) params.set("contains", selection.contains);
  for (const field of selection.json) params.append("json", field);
  params.set("limit", String(limit));
  if (cursor) params.set("cursor", cursor);
  return params;
}

function splitPair(text) {
  const at = text.indexOf("=");
  return [text.slice(0, at), text.slice(at + 1)];
}

/** The selection as SQL conditions over `events`, joined with AND ("TRUE" when empty). */
export function whereClause(selection) {
  const conditions = [];
  if (selection.source) conditions.push(`source = ${sqlString(selection.source)}`);
  if (selection.topics.length === 1) conditions.push(`topic = ${sqlString(selection.topics[0])}`);
  if (selection.topics.length > 1) conditions.push(`topic IN (${selection.topics.map(sqlString).join(", ")})`);
  if (selection.from) conditions.push(`event_time >= TIMESTAMP ${sqlString(new Date(selection.from).toISOString())}`);
  if (selection.to) conditions.push(`event_time < TIMESTAMP ${sqlString(new Date(selection.to).toISOString())}`);
  if (selection.key) conditions.push(`key = CAST(${sqlString(selection.key)} AS BYTEA)`);
  for (const header of selection.headers) {
    const [name, value] = splitPair(header);
    conditions.push(`has_header(headers, ${sqlString(name)}, ${sqlString(value)})`);
  }
  if (selection.contains) conditions.push(`contains(payload_text, ${sqlString(selection.contains)})`);
  for (const field of selection.json) {
    const [path, value] = splitPair(field);
    const parts = path.split(".").map((part) => (/^-?\d+$/.test(part) ? part : sqlString(part)));
    conditions.push(`json_as_text(payload_text, ${parts.join(", ")}) = ${sqlString(value)}`);
  }
  return conditions.length ? conditions.join(" AND ") : "TRUE";
}

/** The replay API's selection: filters for zero or one topic, SQL for several. */
export function replaySelection(selection) {
  if (selection.topics.length > 1) {
    return { type: "sql", sql: `SELECT event_id, source, topic FROM events WHERE ${whereClause(selection)}` };
  }
  const filter = { type: "filter" };
  if (selection.source) filter.source = selection.source;
  if (selection.topics.length === 1) filter.topic = selection.topics[0];
  if (selection.from) filter.from = new Date(selection.from).toISOString();
  if (selection.to) filter.to = new Date(selection.to).toISOString();
  if (selection.key) filter.key = selection.key;
  if (selection.headers.length) filter.headers = selection.headers;
  if (selection.contains) filter.contains = selection.contains;
  if (selection.json.length) filter.json = selection.json;
  return filter;
}

/** One line describing the selection, for people. */
export function describeSelection(selection) {
  const parts = [];
  parts.push(selection.topics.length ? `topics ${selection.topics.join(", ")}` : "all topics");
  if (selection.source) parts.push(`source ${selection.source}`);
  if (selection.from || selection.to) parts.push(`from ${selection.from || "the start"} to ${selection.to || "now"}`);
  if (selection.key) parts.push(`key ${selection.key}`);
  for (const header of selection.headers) parts.push(`header ${header}`);
  if (selection.contains) parts.push(`text contains "${selection.contains}"`);
  for (const field of selection.json) parts.push(`JSON ${field}`);
  return parts.join(" · ");
}

/**
 * Newest-first events over several topics: one cursor per topic, merged by
 * (event_time, event_id) descending, exactly like the API orders one topic.
 */
export class MergedSearch {
  constructor(selection, pageSize) {
    this.selection = selection;
    this.pageSize = pageSize;
    const topics = selection.topics.length ? selection.topics : [""];
    this.streams = topics.map((topic) => ({ topic, buffer: [], cursor: null, done: false, started: false }));
    this.segmentsScanned = 0;
  }

  get exhausted() {
    return this.streams.every((s) => s.done && s.buffer.length === 0);
  }

  async fill(stream, signal) {
    const params = searchParams(this.selection, stream.topic, this.pageSize, stream.cursor);
    const response = await fetch(`/api/v1/events?${params}`, { signal, headers: withToken({ Accept: "application/json" }) });
    const body = await response.json();
    if (!response.ok) throw new ApiError(response.status, body.error || "error", body.message || response.statusText);
    stream.started = true;
    stream.buffer.push(...body.events);
    stream.cursor = body.next_cursor || null;
    stream.done = !body.next_cursor;
    this.segmentsScanned += body.segments_scanned || 0;
  }

  /** The next page of events, newest first. */
  async next(signal) {
    const page = [];
    while (page.length < this.pageSize) {
      const empty = this.streams.filter((s) => s.buffer.length === 0 && !s.done);
      if (empty.length) await Promise.all(empty.map((s) => this.fill(s, signal)));
      let best = null;
      for (const stream of this.streams) {
        const head = stream.buffer[0];
        if (!head) continue;
        if (!best || newer(head, best.buffer[0])) best = stream;
      }
      if (!best) break;
      page.push(best.buffer.shift());
    }
    return page;
  }
}

/** RFC 3339 UTC times with their fraction padded to microseconds, so they sort as text. */
function timeKey(iso) {
  const match = /^(.*?)(?:\.(\d+))?Z$/.exec(iso || "");
  if (!match) return iso || "";
  return `${match[1]}.${(match[2] || "").padEnd(6, "0")}Z`;
}

function newer(a, b) {
  const left = timeKey(a.event_time);
  const right = timeKey(b.event_time);
  if (left !== right) return left > right;
  return a.event_id > b.event_id;
}
