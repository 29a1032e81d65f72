// The explorer's selection (topics, time range, filters), as it lives in the
// URL, and its translations: the filter parameters of the event routes
// (search, histogram, SQL text), and a replay selection. The server turns
// filters into SQL; nothing here writes any.

import { api } from "./util.js";

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

/**
 * A time for the API: RFC 3339 as typed, other forms the browser reads as a
 * time in UTC ISO form, and anything else as is, for the server to refuse.
 */
function rfc3339(text) {
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i.test(text)) return text;
  const time = new Date(text);
  return Number.isNaN(time.getTime()) ? text : time.toISOString();
}

/** The filter parameters of /api/v1/events and its histogram and sql routes (each topic repeated). */
export function filterParams(selection) {
  const params = new URLSearchParams();
  if (selection.source) params.set("source", selection.source);
  for (const topic of selection.topics) params.append("topic", topic);
  if (selection.from) params.set("from", rfc3339(selection.from));
  if (selection.to) params.set("to", rfc3339(selection.to));
  if (selection.key) params.set("key", selection.key);
  for (const header of selection.headers) params.append("header", header);
  if (selection.contains) params.set("contains", selection.contains);
  for (const field of selection.json) params.append("json", field);
  return params;
}

/** Parameters of GET /api/v1/events: the filter, a page size and the cursor. */
export function searchParams(selection, limit, cursor) {
  const params = filterParams(selection);
  params.set("limit", String(limit));
  if (cursor) params.set("cursor", cursor);
  return params;
}

/**
 * The server's translation of the selection to SQL:
 * `{where: "<condition over events>", sql: "SELECT event_id, source, topic FROM events WHERE …"}`.
 */
export async function selectionSql(selection, signal) {
  return api(`/api/v1/events/sql?${filterParams(selection)}`, { signal });
}

/** The replay API's filter selection (`topics` for several). */
export function replaySelection(selection) {
  const filter = { type: "filter" };
  if (selection.source) filter.source = selection.source;
  if (selection.topics.length === 1) filter.topic = selection.topics[0];
  if (selection.topics.length > 1) filter.topics = selection.topics;
  if (selection.from) filter.from = rfc3339(selection.from);
  if (selection.to) filter.to = rfc3339(selection.to);
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
 * Newest-first events of the selection, a page at a time: the server orders
 * every topic together by (event_time, event_id) under one cursor.
 */
export class PagedSearch {
  constructor(selection, pageSize) {
    this.selection = selection;
    this.pageSize = pageSize;
    this.cursor = null;
    this.exhausted = false;
    this.segmentsScanned = 0;
  }

  /** The next page of events, newest first (empty once exhausted). */
  async next(signal) {
    if (this.exhausted) return [];
    const page = await api(`/api/v1/events?${searchParams(this.selection, this.pageSize, this.cursor)}`, { signal });
    this.cursor = page.next_cursor || null;
    this.exhausted = !page.next_cursor;
    this.segmentsScanned += page.segments_scanned || 0;
    return page.events;
  }
}
