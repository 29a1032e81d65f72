// End-to-end browser tests of the Hindsight web UI in real headless Chromium
// (Debian's /usr/bin/chromium, driven by playwright-core). Run by tests/web.rs:
//
//   node tests/web/e2e.mjs flows BASE_URL SCREENSHOT_DIR KAFKA_BROKERS KAFKA_TOPIC
//       overview, search by key, event detail, SQL (stream, error, export),
//       histogram brush, keyboard, several topics (list, histogram, "Open as
//       SQL"), phone width, dry-run then run a replay to Kafka with pause
//       and resume; prints RESULT {json} for the Rust side. The server has
//       the named connections local-kafka (at KAFKA_BROKERS) and local-rabbit
//   node tests/web/e2e.mjs first-render BASE_URL SCREENSHOT_DIR
//       prints the explorer's first render time (not asserted)
//   node tests/web/e2e.mjs token BASE_URL SCREENSHOT_DIR TOKEN
//       a server with http.auth_token: the UI asks for the token, then works
//   node tests/web/e2e.mjs tombstone BASE_URL SCREENSHOT_DIR TOPIC TOMBSTONE_ID EMPTY_ID
//       a Kafka tombstone and an empty value look different on the event
//       page and in the explorer (run by tests/tombstone.rs)
//
// playwright-core is installed by scripts/services.sh into
// $HINDSIGHT_WEB_TEST_DIR (default ~/.cache/hindsight/web-tests).
// Exits non-zero with the reason on the first failed check, and whenever
// the browser console logged an error.

import { createRequire } from "node:module";
import { mkdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

const modules = process.env.HINDSIGHT_WEB_TEST_DIR || join(homedir(), ".cache", "hindsight", "web-tests");
const require = createRequire(join(modules, "package.json"));
const { chromium } = require("playwright-core");

const [mode, base, screenshots, brokers, kafkaTopic, extra] = process.argv.slice(2);
if (!mode || !base || !screenshots) {
  console.error("usage: e2e.mjs flows|first-render BASE_URL SCREENSHOT_DIR [KAFKA_BROKERS KAFKA_TOPIC]");
  process.exit(2);
}
mkdirSync(screenshots, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

async function apiJson(path) {
  const response = await fetch(`${base}${path}`);
  check(response.ok, `${path} answered ${response.status}`);
  return response.json();
}

const consoleErrors = [];
// Chrome logs every non-2xx response as a console error. While a step sends
// a statement that must fail, its 400 answers are expected and counted apart.
let expectedFailure = null;
const expectedErrors = [];

async function openBrowser() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    // Root in a container has no user namespaces for Chromium's sandbox.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const text = `${message.text()} (${JSON.stringify(message.location())})`;
    if (expectedFailure && expectedFailure.test(text)) expectedErrors.push(text);
    else consoleErrors.push(text);
  });
  page.on("pageerror", (error) => consoleErrors.push(`uncaught: ${error.message}`));
  page.on("request", () => {
    inflight += 1;
  });
  const done = () => {
    inflight -= 1;
  };
  page.on("requestfinished", done);
  page.on("requestfailed", done);
  page.setDefaultTimeout(30000);
  return { browser, context, page };
}

// Requests the page has sent and not yet finished.
let inflight = 0;

/** Waits until no request has been in flight for half a second, so every
 * answer the page asked for, and the console line Chrome logs for a refused
 * one, has arrived. */
async function settled(page) {
  let quietSince = Date.now();
  const deadline = Date.now() + 30000;
  while (Date.now() - quietSince < 500) {
    check(Date.now() < deadline, `requests still in flight after 30 s: ${inflight}`);
    if (inflight > 0) quietSince = Date.now();
    await page.waitForTimeout(50);
  }
}

async function shot(page, name) {
  const path = join(screenshots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot ${path}`);
}

async function step(name, body) {
  const started = Date.now();
  await body();
  console.log(`ok   ${name} (${Date.now() - started} ms)`);
}

async function flows() {
  const topics = await apiJson("/api/v1/topics");
  check(topics.length > 0, "the demo archive has topics");
  const total = topics.reduce((sum, t) => sum + t.events, 0);
  const newest = (await apiJson("/api/v1/events?limit=1")).events[0];
  const key = newest.key;
  const byKey = await apiJson(`/api/v1/events?key=${encodeURIComponent(key)}&limit=1000`);
  const { browser, page } = await openBrowser();
  const result = {};
  try {
    await step("overview lists every topic with its count", async () => {
      await page.goto(`${base}/#/`);
      await page.waitForSelector("table.topics tbody tr");
      const rows = await page.locator("table.topics tbody tr").count();
      check(rows === topics.length, `overview shows ${rows} topics, the API ${topics.length}`);
      const shown = (await page.locator("#overview-events").textContent()).replace(/,/g, "");
      check(Number(shown) === total, `overview total ${shown} != ${total}`);
      const lag = await page.locator("table.sources tbody tr td").last().textContent();
      check(lag.length > 0, "ingester lag cell is filled");
      const policy = await page.locator("#maintenance-policy").textContent();
      check(/compaction/i.test(policy) && /Retention/.test(policy), `the overview states the compaction and retention policy: ${policy}`);
      await shot(page, "01-overview");
    });

    await step("explorer searches by key from the keyboard", async () => {
      await page.goto(`${base}/#/explorer`);
      await page.waitForSelector("table.events tbody tr");
      await page.waitForSelector("svg.chart rect.bar", { state: "attached" });
      await page.locator("main h1").click();
      await page.keyboard.press("/");
      const focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
      check(focused === "filter-key", `"/" focuses the key filter, not ${focused}`);
      await page.keyboard.type(key);
      await page.keyboard.press("Enter");
      await page.waitForFunction((k) => location.hash.includes(`key=${encodeURIComponent(k)}`), key);
      await page.waitForSelector("table.events tbody tr");
      await page.waitForSelector("svg.chart rect.bar", { state: "attached" });
      const keys = await page.locator("table.events tbody td.key").allTextContents();
      check(keys.length === byKey.events.length, `explorer shows ${keys.length} events for key ${key}, the API ${byKey.events.length}`);
      check(keys.every((k) => k === key), `every row has key ${key}: ${keys}`);
      result.key = key;
      result.key_events = keys.length;
      await shot(page, "02-explorer-key");
    });

    await step("a reload keeps the explorer state (URL holds it)", async () => {
      await page.reload();
      await page.waitForSelector("table.events tbody tr");
      check((await page.inputValue("#filter-key")) === key, "key filter survives a reload");
    });

    let eventId;
    await step("open an event: metadata, headers, payload views, related events", async () => {
      const first = page.locator("table.events tbody tr").first();
      eventId = await first.getAttribute("data-event-id");
      await first.locator("a").click();
      await page.waitForSelector("#payload");
      check((await page.locator("#event-id").textContent()) === eventId, "event page shows the clicked event");
      const detail = await apiJson(`/api/v1/events/${eventId}`);
      const json = await page.locator("#payload").textContent();
      check(json === JSON.stringify(JSON.parse(detail.payload_text), null, 2), "payload shown as pretty JSON");
      const headerCells = await page.locator("table.headers tbody tr").count();
      check(headerCells === detail.headers.length, `${headerCells} header rows for ${detail.headers.length} headers`);
      await page.locator("#tab-hex").focus();
      await page.keyboard.press("Enter");
      const hex = await page.locator("#payload").textContent();
      check(/^00000000 {2}[0-9a-f]{2} /.test(hex), `hex view starts with an offset: ${hex.slice(0, 30)}`);
      await page.keyboard.press("ArrowLeft");
      check((await page.locator("#payload").getAttribute("data-format")) === "text", "arrow keys move between payload tabs");
      // Each related list counts the *other* events, and lists them (with
      // this one, marked) only when there are some.
      await page.waitForSelector("#same-key[data-others]");
      await page.waitForSelector("#same-correlation[data-others]");
      const sameKey = await page.locator("#same-key table tbody tr").count();
      const otherKeys = byKey.events.filter((e) => e.event_id !== eventId).length;
      const sameKeyStatus = await page.locator("#same-key .status").textContent();
      if (otherKeys === 0) check(sameKey === 0 && sameKeyStatus === "No other event has this key.", `no other event with this key, yet: "${sameKeyStatus}", ${sameKey} rows`);
      else check(sameKey === byKey.events.length && sameKeyStatus.startsWith(`${otherKeys} other event`), `same-key list: "${sameKeyStatus}" over ${sameKey} rows, the API has ${otherKeys} others`);
      const correlationSql = `SELECT count(*) AS n FROM events WHERE correlation_id = '${detail.correlation_id}' AND event_id <> '${eventId}'`;
      const otherCorrelated = Number((await (await fetch(`${base}/api/v1/sql`, { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify({ sql: correlationSql }) })).json())[0].n);
      const correlated = await page.locator("#same-correlation table tbody tr").count();
      const correlatedStatus = await page.locator("#same-correlation .status").textContent();
      check(otherCorrelated > 0, "the demo's orders have several events per correlation id");
      check(correlated === otherCorrelated + 1 && correlatedStatus.startsWith(`${otherCorrelated} other event${otherCorrelated === 1 ? "" : "s"}, listed with this one`), `correlation list: "${correlatedStatus}" over ${correlated} rows, SQL counts ${otherCorrelated} others`);
      await page.getByRole("button", { name: "Copy id" }).click();
      await page.waitForFunction(() => [...document.querySelectorAll("button")].some((b) => /Copied|Copy failed/.test(b.textContent)));
      await shot(page, "03-event");
    });

    await step("SQL console streams rows, shows errors plainly, exports CSV and JSON", async () => {
      await page.goto(`${base}/#/sql`);
      await page.waitForSelector(".schema ul.columns li");
      await page.fill("#sql-editor", "SELECT topic, count(*) AS n FROM events GROUP BY topic ORDER BY topic");
      await page.locator("#sql-editor").press("Control+Enter");
      await page.waitForSelector(".status[data-rows]");
      const rows = await page.locator("#sql-results tbody tr").allTextContents();
      check(rows.length === topics.length, `SQL returned ${rows.length} rows, expected ${topics.length}`);
      const expected = [...topics].sort((a, b) => a.topic.localeCompare(b.topic)).map((t) => `${t.topic}${t.events}`);
      check(JSON.stringify(rows) === JSON.stringify(expected), `SQL rows ${JSON.stringify(rows)} != ${JSON.stringify(expected)}`);
      await shot(page, "04-sql");
      const csvDownload = page.waitForEvent("download");
      await page.click("#export-csv");
      const csv = readFileSync(await (await csvDownload).path(), "utf8");
      check(csv.startsWith("topic,n\n") && csv.trim().split("\n").length === topics.length + 1, `CSV export: ${csv}`);
      const jsonDownload = page.waitForEvent("download");
      await page.click("#export-json");
      const exported = JSON.parse(readFileSync(await (await jsonDownload).path(), "utf8"));
      check(exported.length === topics.length && exported[0].topic === expected[0].replace(/\d+$/, ""), "JSON export");
      // A long result fills in while it streams; the final count is exact.
      await page.fill("#sql-editor", "SELECT event_id, topic, event_time FROM events");
      await page.click("#run-sql");
      await page.waitForSelector(".status[data-rows]");
      const streamed = Number(await page.locator(".status").first().getAttribute("data-rows"));
      check(streamed === total, `streamed ${streamed} rows, expected ${total}`);
      expectedFailure = /status of 400 .*\/api\/v1\/sql/;
      await page.fill("#sql-editor", "SELEC nonsense");
      await page.click("#run-sql");
      const alert = page.locator("#sql-output [role=alert]");
      await alert.waitFor();
      check(/SQL error/.test(await alert.textContent()), "the parser error is shown");
      await page.fill("#sql-editor", "DROP TABLE events");
      await page.click("#run-sql");
      await page.waitForFunction(() => /read_only|only reading/i.test(document.querySelector("#sql-output [role=alert]")?.textContent || ""));
      expectedFailure = null;
      check(expectedErrors.length === 2, `the two refused statements logged ${expectedErrors.length} failed requests`);
      await shot(page, "05-sql-error");
    });

    await step("histogram brush zooms into a time range", async () => {
      await page.goto(`${base}/#/explorer`);
      await page.waitForSelector("svg.chart rect.bar", { state: "attached" });
      const box = await page.locator("svg.chart").boundingBox();
      await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2, { steps: 5 });
      await page.mouse.up();
      await page.waitForFunction(() => location.hash.includes("from=") && location.hash.includes("to="));
      await page.waitForSelector("svg.chart rect.bar", { state: "attached" });
      const params = new URLSearchParams((await page.evaluate(() => location.hash)).split("?")[1]);
      const span = new Date(params.get("to")) - new Date(params.get("from"));
      check(span > 0, "the brushed range is not empty");
      const from = new Date(params.get("from")).getTime();
      const to = new Date(params.get("to")).getTime();
      // The table of the unzoomed view stays on screen until the zoomed
      // results arrive: wait for rows inside the range rather than reading
      // whatever table is there first. The brushed range holds demo events.
      const inRange = (texts) => texts.every((time) => {
        const ms = new Date(`${time.replace(" ", "T")}Z`).getTime();
        return ms >= from - 1 && ms < to + 1;
      });
      let times = [];
      for (const deadline = Date.now() + 10_000; Date.now() < deadline; await page.waitForTimeout(100)) {
        times = await page.locator("table.events tbody tr td:first-child").allTextContents();
        if (times.length > 0 && inRange(times)) break;
      }
      check(times.length > 0, "the zoomed view shows events");
      for (const time of times) {
        const ms = new Date(`${time.replace(" ", "T")}Z`).getTime();
        check(ms >= from - 1 && ms < to + 1, `row time ${time} outside the brushed range`);
      }
      await shot(page, "06-explorer-zoomed");
      // The same from the keyboard: focus the chart, pick the last bar, Enter.
      await page.goto(`${base}/#/explorer`);
      await page.waitForSelector("svg.chart rect.bar", { state: "attached" });
      await page.focus("svg.chart");
      await page.keyboard.press("ArrowLeft");
      await page.keyboard.press("Enter");
      await page.waitForFunction(() => location.hash.includes("from="));
      await page.waitForSelector("table.events tbody tr");
    });

    await step("a sub-second range spreads over many sub-second bars", async () => {
      // 800 ms around the newest event: once a single full-width bar.
      const end = new Date(newest.event_time).getTime() + 1;
      const from = new Date(end - 800).toISOString();
      const to = new Date(end).toISOString();
      await page.goto(`${base}/#/explorer?${new URLSearchParams({ from, to })}`);
      await page.waitForSelector("svg.chart rect.bar", { state: "attached" });
      const bars = await page.locator("svg.chart rect.bar title").allTextContents();
      const stepMs = Number(await page.locator("section.histogram").getAttribute("data-step-ms"));
      check(bars.length > 10 && stepMs < 1000, `an 800 ms range has ${bars.length} bars of ${stepMs} ms`);
      const counted = bars.reduce((sum, title) => sum + Number(title.split(": ").pop().replace(/[^0-9]/g, "")), 0);
      const listed = (await apiJson(`/api/v1/events?${new URLSearchParams({ from, to, limit: "1000" })}`)).events.length;
      check(counted === listed && counted > 0, `the bars count ${counted} events, the API lists ${listed}`);
      await shot(page, "06b-explorer-sub-second");
    });

    await step("several topics: one newest-first list, a histogram and SQL, all from the server", async () => {
      const names = [...new Set(topics.map((t) => t.topic))].sort().slice(0, 2);
      const expected = topics.filter((t) => names.includes(t.topic)).reduce((sum, t) => sum + t.events, 0);
      const query = new URLSearchParams(names.map((name) => ["topic", name]));
      const firstPage = (await apiJson(`/api/v1/events?${query}&limit=50`)).events.map((e) => e.event_id);
      await page.goto(`${base}/#/explorer?${query}`);
      await page.waitForSelector("table.events tbody tr");
      await page.waitForSelector("svg.chart rect.bar", { state: "attached" });
      const ids = await page.locator("table.events tbody tr").evaluateAll((rows) => rows.map((row) => row.dataset.eventId));
      check(JSON.stringify(ids) === JSON.stringify(firstPage), `the explorer's first page over ${names} is not the API's: ${ids.length} rows, the API ${firstPage.length}`);
      const bars = await page.locator("svg.chart rect.bar title").allTextContents();
      const counted = bars.reduce((sum, title) => sum + Number(title.split(": ").pop().replace(/[^0-9]/g, "")), 0);
      check(counted === expected, `the bars over ${names} count ${counted} events, the topics hold ${expected}`);
      await page.getByRole("link", { name: "Open as SQL" }).click();
      await page.waitForFunction(() => location.hash.startsWith("#/sql?"));
      await page.waitForSelector(".status[data-rows]");
      const rows = Number(await page.locator(".status").first().getAttribute("data-rows"));
      check(rows === Math.min(expected, 100), `"Open as SQL" over ${names} returned ${rows} rows, expected ${Math.min(expected, 100)}`);
    });

    await step("phone width: no horizontal scrolling of the page", async () => {
      await page.setViewportSize({ width: 390, height: 844 });
      for (const [route, selector, name] of [
        ["#/", "table.topics", "07-phone-overview"],
        ["#/explorer", "table.events tbody tr", "08-phone-explorer"],
        [`#/event/${eventId}`, "#payload", "09-phone-event"],
        ["#/replay", ".replay-form", "10-phone-replay"],
      ]) {
        await page.goto(`${base}/${route}`);
        await page.waitForSelector(selector);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        check(overflow <= 1, `${route} is ${overflow}px wider than a 390px screen`);
        await shot(page, name);
      }
      await page.setViewportSize({ width: 1280, height: 900 });
    });

    if (brokers && kafkaTopic) {
      await step("replay: dry-run, then run to Kafka with pause and resume, and watch it finish", async () => {
        const orders = topics.find((t) => t.topic === "orders");
        await page.goto(`${base}/#/explorer?topic=orders`);
        await page.waitForSelector("table.events tbody tr");
        await page.getByRole("link", { name: "Replay this selection…" }).click();
        await page.waitForSelector(".replay-form");
        // Targets are the server's named connections: listed with their
        // address, never with credentials.
        await page.waitForSelector("#replay-connection");
        const connections = await page.locator("#replay-connection option").evaluateAll((options) => options.map((o) => ({ value: o.value, label: o.textContent })));
        check(connections.length > 0, "the connections select lists the server's connections");
        const localKafka = connections.find((o) => o.value === "local-kafka");
        check(localKafka && localKafka.label.includes(brokers), `the connections list local-kafka with its address ${brokers}: ${JSON.stringify(connections)}`);
        const leaked = connections.filter((o) => /:guest@|password/i.test(`${o.value} ${o.label}`));
        check(leaked.length === 0, `a connection option shows credentials: ${JSON.stringify(leaked)}`);
        const inputs = await page.locator(".replay-form input").evaluateAll((all) => all.map((i) => `${i.value} ${i.placeholder}`));
        check(!inputs.some((text) => /:guest@|password/i.test(text)), `a replay form input holds credentials: ${JSON.stringify(inputs)}`);
        await page.selectOption("#replay-connection", "local-kafka");
        await page.fill("input[name=to_topic]", kafkaTopic);
        await page.fill("input[name=rate]", "2000");
        check(await page.locator("#run-replay").isDisabled(), "run is disabled before a dry run");
        await page.click("#dry-run");
        await page.waitForSelector("#dry-run-events");
        const planned = Number((await page.locator("#dry-run-events").textContent()).replace(/,/g, ""));
        check(planned === orders.events, `dry run counts ${planned}, orders holds ${orders.events}`);
        await page.waitForSelector("#run-replay:not([disabled])");
        await shot(page, "11-replay-dry-run");
        await page.click("#run-replay");
        await page.waitForFunction(() => /^#\/replay\/[^/]+$/.test(location.hash));
        const id = decodeURIComponent((await page.evaluate(() => location.hash)).slice("#/replay/".length));
        await page.waitForSelector("#replay-status[data-status=running]");
        await page.waitForFunction(() => /[1-9]/.test(document.querySelector("#replay-rate")?.textContent || ""));
        await shot(page, "12-replay-running");
        await page.click("#replay-pause");
        await page.waitForSelector("#replay-status[data-status=paused]", { timeout: 20000 });
        const pausedAt = (await page.locator("#replay-done").textContent()).split(" of ")[0];
        await page.waitForTimeout(1500);
        const stillAt = (await page.locator("#replay-done").textContent()).split(" of ")[0];
        check(pausedAt === stillAt, `paused replay moved from ${pausedAt} to ${stillAt}`);
        await shot(page, "13-replay-paused");
        await page.click("#replay-resume");
        await page.waitForSelector("#replay-status[data-status=completed]", { timeout: 120000 });
        const done = await page.locator("#replay-done").textContent();
        check(done === `${orders.events.toLocaleString("en-US")} of ${orders.events.toLocaleString("en-US")}`, `finished with "${done}"`);
        await shot(page, "14-replay-completed");
        await page.goto(`${base}/#/replay`);
        await page.waitForSelector("table.replays tbody tr");
        const history = await page.locator("table.replays tbody tr").first().textContent();
        check(history.includes("completed") && history.includes(id.slice(0, 12)), `history lists the replay: ${history}`);
        check(history.includes(`Kafka via local-kafka → ${kafkaTopic}`), `history names the connection: ${history}`);
        await shot(page, "15-replay-history");
        // The same selection to RabbitMQ: the wizard builds an AMQP target and
        // the dry run names the exchange (nothing is published).
        await page.goto(`${base}/#/replay?topic=orders`);
        await page.waitForSelector(".replay-form");
        await page.waitForSelector("#replay-connection");
        const rabbit = (await page.locator("#replay-connection option").allTextContents()).find((label) => label.startsWith("local-rabbit — RabbitMQ "));
        check(rabbit, "the connections list local-rabbit (RabbitMQ)");
        await page.selectOption("#replay-connection", "local-rabbit");
        check(await page.locator("input[name=to_topic]").isHidden(), "Kafka fields hide for RabbitMQ");
        await page.fill("input[name=to_exchange]", `${kafkaTopic}.exchange`);
        await page.click("#dry-run");
        await page.waitForSelector("#dry-run-events");
        const amqpTargets = await page.locator("#dry-run-summary table").first().locator("tbody td").first().textContent();
        check(amqpTargets === `${kafkaTopic}.exchange`, `AMQP dry run targets ${amqpTargets}`);
        await shot(page, "16-replay-dry-run-amqp");
        result.replay_id = id;
        result.replayed = orders.events;
        result.paused_at = Number(pausedAt.replace(/,/g, ""));
      });
    }
    check(consoleErrors.length === 0, `browser console errors:\n${consoleErrors.join("\n")}`);
    console.log("ok   no browser console errors");
    console.log(`RESULT ${JSON.stringify(result)}`);
  } finally {
    await browser.close();
  }
}

async function firstRender() {
  const topics = await apiJson("/api/v1/topics");
  const total = topics.reduce((sum, t) => sum + t.events, 0);
  const { browser, page } = await openBrowser();
  try {
    const measurements = [];
    for (let run = 1; run <= 3; run += 1) {
      await page.goto("about:blank");
      const started = Date.now();
      await page.goto(`${base}/#/explorer`);
      await page.waitForSelector("table.events tbody tr");
      const list = Date.now() - started;
      await page.waitForSelector("svg.chart rect.bar", { state: "attached" });
      const histogram = Date.now() - started;
      measurements.push({ run, list, histogram });
      console.log(`explorer first render over ${total.toLocaleString("en-US")} events, run ${run}: first page of events after ${list} ms, histogram after ${histogram} ms`);
    }
    await shot(page, "20-explorer-1m");
    check(consoleErrors.length === 0, `browser console errors:\n${consoleErrors.join("\n")}`);
    console.log(`RESULT ${JSON.stringify({ events: total, measurements })}`);
  } finally {
    await browser.close();
  }
}

async function tokenFlow(token) {
  const { browser, page } = await openBrowser();
  try {
    // Every request before the token is entered is refused: expected.
    expectedFailure = /status of 401/;
    await page.goto(`${base}/#/`);
    const alert = page.locator("[role=alert]");
    await alert.waitFor();
    check(/unauthorized|token/i.test(await alert.textContent()), "the overview says a token is needed");
    await shot(page, "30-token-asked");
    await page.fill("input[name=token]", "wrong");
    await page.press("input[name=token]", "Enter");
    await page.waitForSelector("[role=alert] input[name=token]");
    check(/not valid/.test(await page.locator("[role=alert]").first().textContent()), "a wrong token is refused");
    // The overview shows the first refusal while its other requests, sent
    // with the same wrong token, may still be answered 401 after it.
    await settled(page);
    const refused = expectedErrors.length;
    check(refused >= 2, `the refused requests were seen (${refused})`);
    expectedFailure = null;
    await page.fill("input[name=token]", token);
    await page.press("input[name=token]", "Enter");
    await page.waitForSelector("table.topics tbody tr");
    await page.goto(`${base}/#/explorer`);
    await page.waitForSelector("table.events tbody tr");
    await page.waitForSelector("svg.chart rect.bar", { state: "attached" });
    await shot(page, "31-token-accepted");
    check(consoleErrors.length === 0, `browser console errors:\n${consoleErrors.join("\n")}`);
    console.log(`RESULT ${JSON.stringify({ refused })}`);
  } finally {
    await browser.close();
  }
}

/** Arguments: the topic, a tombstone's event id, an empty value's event id. */
async function tombstoneFlow(topic, tombstoneId, emptyId) {
  const { browser, page } = await openBrowser();
  try {
    const result = {};
    await step("a tombstone's event page says tombstone, not empty", async () => {
      await page.goto(`${base}/#/event/${tombstoneId}`);
      await page.waitForSelector("#payload");
      check((await page.locator("#payload").getAttribute("data-format")) === "tombstone", "the payload is shown as a tombstone");
      check(/Tombstone/.test(await page.locator("#payload").textContent()), "the payload says Tombstone");
      check((await page.locator("#payload-empty").count()) === 0, "a tombstone is not called empty");
      const size = await page.evaluate(() => [...document.querySelectorAll("dl.props dt")].find((dt) => dt.textContent === "Payload size")?.nextElementSibling?.textContent || "");
      check(/tombstone/.test(size), `payload size of a tombstone: ${size}`);
      await shot(page, "40-event-tombstone");
    });
    await step("an empty value's event page says empty, not tombstone", async () => {
      await page.goto(`${base}/#/event/${emptyId}`);
      await page.waitForSelector("#payload");
      check((await page.locator("#payload").getAttribute("data-format")) !== "tombstone", "an empty value is not a tombstone");
      check((await page.locator("#payload-empty").count()) === 1, "the empty payload is named");
      const size = await page.evaluate(() => [...document.querySelectorAll("dl.props dt")].find((dt) => dt.textContent === "Payload size")?.nextElementSibling?.textContent || "");
      check(/^0 B/.test(size), `payload size of an empty value: ${size}`);
    });
    await step("the explorer previews tombstones and empty values apart", async () => {
      const events = (await apiJson(`/api/v1/events?${new URLSearchParams({ topic, limit: "1000" })}`)).events;
      await page.goto(`${base}/#/explorer?${new URLSearchParams({ topic })}`);
      await page.waitForSelector("table.events tbody tr");
      const previews = await page.locator("table.events tbody td.payload").allTextContents();
      const tombstones = previews.filter((p) => p === "(tombstone)").length;
      const empty = previews.filter((p) => p === "(empty)").length;
      const expectedTombstones = events.filter((e) => e.tombstone).length;
      const expectedEmpty = events.filter((e) => !e.tombstone && e.payload_size === 0).length;
      check(previews.length === events.length, `${previews.length} rows for ${events.length} events`);
      check(tombstones === expectedTombstones && empty === expectedEmpty, `previews: ${tombstones} tombstones, ${empty} empty; the API: ${expectedTombstones}, ${expectedEmpty}`);
      result.tombstones_listed = tombstones;
      await shot(page, "41-explorer-tombstones");
    });
    check(consoleErrors.length === 0, `browser console errors:\n${consoleErrors.join("\n")}`);
    console.log(`RESULT ${JSON.stringify(result)}`);
  } finally {
    await browser.close();
  }
}

try {
  if (mode === "token") await tokenFlow(brokers);
  else if (mode === "tombstone") await tombstoneFlow(brokers, kafkaTopic, extra);
  else if (mode === "flows") await flows();
  else if (mode === "first-render") await firstRender();
  else throw new Error(`unknown mode ${mode}`);
} catch (error) {
  console.error(`FAILED: ${error.stack || error}`);
  if (consoleErrors.length) console.error(`browser console errors:\n${consoleErrors.join("\n")}`);
  process.exit(1);
}
