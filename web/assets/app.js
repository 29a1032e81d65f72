"use strict";

function formatBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

async function loadTopics() {
  const status = document.getElementById("status");
  const table = document.getElementById("topics");
  try {
    const response = await fetch("/api/v1/topics");
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || response.statusText);
    const rows = table.querySelector("tbody");
    rows.replaceChildren();
    for (const topic of body) {
      const row = document.createElement("tr");
      row.append(
        cell(topic.source), cell(topic.topic),
        cell(topic.events.toLocaleString(), "num"), cell(topic.segments.toLocaleString(), "num"),
        cell(formatBytes(topic.bytes), "num"),
        cell(topic.first_event_time || ""), cell(topic.last_event_time || ""),
      );
      rows.append(row);
    }
    table.hidden = body.length === 0;
    status.textContent = body.length === 0 ? "The archive is empty." : `${body.length} topic(s)`;
  } catch (error) {
    status.textContent = `Cannot load topics: ${error.message}`;
  }
}

loadTopics();
