// The dashboard in a real headless Chromium, against a running server.
//
// tests/api/dashboard.rs starts the server and runs this script; it prints
// "ok <step>" for each step that passed and exits non-zero at the first
// that did not. Halfway through it asks its parent to restart the server
// ("restart-server" on stdout, answered by "restarted" on stdin), to see
// the event stream resume from its last id.
//
// Environment: SB_URL (the server), SB_ADMIN_KEY, CHROMIUM (the browser
// binary), SB_SHOTS (where screenshots go).
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const BASE = need("SB_URL");
const ADMIN_KEY = need("SB_ADMIN_KEY");
const SHOTS = need("SB_SHOTS");
const EXECUTABLE = need("CHROMIUM");
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
// Generous: CI machines run this beside other tests on two busy cores.
const WAIT = 45_000;

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set: run this through tests/api/dashboard.rs (scripts/test.sh)`);
    process.exit(2);
  }
  return value;
}

const lines = createInterface({ input: process.stdin });
const inbox = [];
const waiting = [];
lines.on("line", (line) => (waiting.length ? waiting.shift()(line) : inbox.push(line)));
const nextLine = () => (inbox.length ? Promise.resolve(inbox.shift()) : new Promise((r) => waiting.push(r)));

let step = "start";
const ok = (name) => console.log(`ok ${name}`);

// --- the server's REST API, for setting the scene and checking results ---
async function rest(method, path, body, key = ADMIN_KEY) {
  const response = await fetch(BASE + path, {
    method,
    headers: { apikey: key, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json().catch(() => null);
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

async function readLog(query) {
  const events = [];
  let since = 0;
  for (;;) {
    const page = await rest("GET", `/events?since=${since}&limit=1000${query}`);
    events.push(...page.events);
    since = page.next;
    if (!page.more) return events;
  }
}

async function until(what, condition, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await condition();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// --- the browser ---
const profile = mkdtempSync(join(tmpdir(), "switchboard-e2e-"));
mkdirSync(SHOTS, { recursive: true });
const context = await chromium.launchPersistentContext(profile, {
  executablePath: EXECUTABLE,
  headless: true,
  chromiumSandbox: false,
  viewport: DESKTOP,
  args: [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
  ],
});

context.setDefaultTimeout(WAIT);

/** What the pages said that a test should hear about. */
const problems = [];
/** Console errors that an expected answer causes (a refused key, a route
 * this server does not have, the stream while the server restarts). */
let tolerated = [];
function watch(page) {
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const text = message.text();
    if (!tolerated.some((t) => t.test(text))) problems.push(`console error: ${text}`);
  });
}

/** Text whose contrast with its background is below WCAG AA. */
async function contrastProblems(page) {
  return page.evaluate(() => {
    const parse = (c) => {
      const m = c.match(/rgba?\(([\d.]+),\s*([\d.]+),\s*([\d.]+)(?:,\s*([\d.]+))?\)/);
      return m ? [Number(m[1]), Number(m[2]), Number(m[3]), m[4] === undefined ? 1 : Number(m[4])] : null;
    };
    const luminance = ([r, g, b]) => {
      const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c && c[3] > 0.5) return c;
      }
      return [255, 255, 255, 1];
    };
    const out = [];
    for (const el of document.querySelectorAll("body *")) {
      const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!own || el.closest("[disabled]") || el.closest("svg")) continue;
      const rect = el.getBoundingClientRect();
      const style = getComputedStyle(el);
      if (!rect.width || !rect.height || style.visibility === "hidden" || rect.left < -1000) continue;
      const fg = parse(style.color);
      const bg = background(el);
      const [a, b] = [luminance(fg), luminance(bg)].sort((x, y) => y - x);
      const ratio = (a + 0.05) / (b + 0.05);
      const large = parseFloat(style.fontSize) >= 24 || (parseFloat(style.fontSize) >= 18.6 && Number(style.fontWeight) >= 700);
      if (ratio < (large ? 3 : 4.5)) out.push(`${el.tagName.toLowerCase()} "${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}:1`);
    }
    return out;
  });
}

/** Screenshots of the screen at desktop and phone width, after checking
 * its contrast at both. */
async function shot(page, name) {
  for (const [size, viewport] of [
    ["desktop", DESKTOP],
    ["phone", PHONE],
  ]) {
    await page.setViewportSize(viewport);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const low = await contrastProblems(page);
    assert.deepEqual(low, [], `${name} at ${size} width: text below the contrast minimum`);
    if (size === "phone") {
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `${name} is wider than a phone (${overflow}px too wide)`);
    }
    await page.screenshot({ path: join(SHOTS, `${size}-${name}.png`), fullPage: true });
  }
  await page.setViewportSize(DESKTOP);
}

const go = async (page, route) => {
  await page.evaluate((r) => (location.hash = r), route);
};
const heading = (page, name) => page.getByRole("heading", { level: 1, name }).waitFor({ timeout: WAIT });

async function signIn(page, key) {
  await page.goto(BASE + "/");
  const field = page.getByLabel("Key");
  await field.waitFor();
  // The key field has the focus: a person can type and press Enter.
  assert.equal(await page.evaluate(() => document.activeElement?.id), "key");
  await page.keyboard.type(key);
  await page.keyboard.press("Enter");
}

async function rowsOf(page) {
  return page.$$eval("tbody tr[data-id]", (rows) => rows.map((r) => ({ id: Number(r.dataset.id), kind: r.dataset.kind, instance: r.dataset.instance })));
}

try {
  const page = await context.newPage();
  watch(page);

  step = "a wrong key shows a clear message";
  tolerated = [/status of 401/];
  await signIn(page, "not-the-key");
  await page.getByRole("alert").filter({ hasText: "This key was not accepted" }).waitFor({ timeout: WAIT });
  assert.ok(!page.url().includes("not-the-key"), "the key is not in the URL");
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "a refused key is not kept");
  await shot(page, "sign-in-refused");
  ok(step);

  step = "the admin signs in with the keyboard";
  tolerated = [];
  await page.getByLabel("Key").fill("");
  await page.getByLabel("Key").focus();
  await page.keyboard.type(ADMIN_KEY);
  await page.keyboard.press("Enter");
  await heading(page, "Instances");
  assert.equal(await page.getByTestId("role").textContent(), "admin");
  assert.ok(!page.url().includes(ADMIN_KEY), "the key is not in the URL");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("switchboard.key")), ADMIN_KEY, "kept in the tab");
  // The screen's heading has the focus, so the next Tab is on the screen.
  assert.equal(await page.evaluate(() => document.activeElement?.tagName), "H1");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "New instance");
  // Backwards from the heading: the screens' links, then the skip link,
  // which takes the focus back to the heading.
  const backTo = async (label) => {
    let at = "";
    for (let i = 0; i < 20 && at !== label; i++) {
      await page.keyboard.press("Shift+Tab");
      at = await page.evaluate(() => document.activeElement?.textContent ?? "");
    }
    assert.equal(at, label, `${label} is reachable with the keyboard`);
  };
  await backTo("Skip to content");
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => document.activeElement?.tagName), "H1");
  await page.keyboard.press("Shift+Tab");
  await backTo("Events");
  await page.keyboard.press("Enter");
  await heading(page, "Events");
  ok(step);

  step = "the create form explains what to fix";
  await go(page, "#/create");
  await heading(page, "New instance");
  await page.getByRole("button", { name: "Create instance" }).click();
  await page.getByText("Give the instance a name.").waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.id), "create-name", "the first bad field gets the focus");
  await page.getByLabel("Name").fill("bad name!");
  await page.getByText("Use only letters, digits, '_' and '-'.").waitFor();
  await page.getByLabel("Serial port", { exact: true }).check();
  await page.getByText("Enter the serial port, for example /dev/ttyUSB2.").waitFor();
  await page.getByLabel("Baud rate").fill("12");
  await page.getByText("Between 300 and 4000000.").waitFor();
  await page.getByLabel("TCP bridge (ser2net)").check();
  await page.getByLabel("Bridge address").fill("nope");
  await page.getByText("Use host:port, for example 10.0.0.5:7001.").waitFor();
  await shot(page, "create-validation");
  ok(step);

  step = "the admin creates simulator instances";
  const create = async (name, extra = async () => {}) => {
    await page.getByLabel("Name").fill(name);
    await page.getByLabel("Simulator").check();
    await extra();
    await page.getByRole("button", { name: "Create instance" }).click();
    await page.getByText(`${name} was created`).waitFor({ timeout: WAIT });
    return page.getByLabel("Instance key").inputValue();
  };
  const alphaKey = await create("alpha", async () => {
    await page.getByLabel("Sent after (ms)").fill("20");
    await page.getByLabel("Delivered after (ms)").fill("20");
  });
  assert.match(alphaKey, /\S{16,}/, "the new instance's key is shown once");
  await shot(page, "create-done");
  await create("beta");
  await create("gamma");
  // The server's own refusal shows the same way.
  tolerated = [/status of 409/];
  await page.getByLabel("Name").fill("alpha");
  await page.getByRole("button", { name: "Create instance" }).click();
  await page.getByRole("alert").filter({ hasText: "The server refused" }).waitFor();
  tolerated = [];
  ok(step);

  step = "instances show state, driver, signal and operator";
  await go(page, "#/instances");
  await heading(page, "Instances");
  const alphaRow = page.locator('tr[data-instance="alpha"]');
  await until("alpha to be open with its operator", async () =>
    (await alphaRow.locator(".badge").textContent()) === "open" && (await alphaRow.getByTestId("operator").textContent()).includes("Simulated Network"),
  );
  assert.match(await alphaRow.getByTestId("signal").textContent(), /-?\d+ dBm/);
  assert.equal(await page.locator("tbody tr[data-instance]").count(), 3);
  await shot(page, "instances");
  ok(step);

  step = "the event stream shows alpha's events live";
  await go(page, "#/events");
  await heading(page, "Events");
  await page.locator('[data-status="live"]').waitFor({ timeout: WAIT });
  await until("alpha's connection events", async () => (await rowsOf(page)).some((r) => r.instance === "alpha" && r.kind === "connection"));
  const before = (await rowsOf(page)).length;
  await rest("POST", "/message/sendText/alpha", { number: "+15550001234", text: "live one" });
  await until("the live text's events", async () => (await rowsOf(page)).length >= before + 5);
  await shot(page, "events");
  ok(step);

  step = "a text is sent and its delivery shows";
  await go(page, "#/send/alpha");
  await heading(page, "Send a text");
  await page.getByRole("button", { name: "Send" }).click();
  await page.getByText("Enter a phone number.").waitFor();
  await page.getByText("Write the text.").waitFor();
  await page.getByLabel("Number", { exact: true }).fill("+1 555 000 1111");
  await page.getByLabel("Text", { exact: true }).fill("hello from the dashboard");
  await page.getByRole("button", { name: "Send" }).click();
  const tracked = page.locator("li.tracked").first();
  await until("the text to be delivered", async () => (await tracked.getAttribute("data-status")) === "delivered");
  const steps = await tracked.locator(".steps li").allTextContents();
  assert.ok(steps.some((s) => s.startsWith("sent")) && steps.some((s) => s.startsWith("delivered")), `steps: ${steps}`);
  const messageId = await tracked.getAttribute("data-message");
  const logged = await readLog("&events=delivery&instance=alpha");
  assert.ok(logged.some((e) => e.data.id === messageId && e.data.status === "delivered"), "the log agrees");
  ok(step);

  step = "a text to a group is tracked per member";
  const group = await rest("POST", "/group/create/alpha", { subject: "Team", participants: ["+15551110001", "+15551110002"] });
  assert.ok(group);
  await go(page, "#/instances");
  await go(page, "#/send/alpha");
  await heading(page, "Send a text");
  await page.getByLabel("a group").check();
  await until("the group list", async () => (await page.locator("#send-group option").count()) > 1);
  await page.getByLabel("Group", { exact: true }).selectOption({ index: 1 });
  await page.getByLabel("Text", { exact: true }).fill("hello team");
  await page.getByRole("button", { name: "Send" }).click();
  await until("both members' texts to be delivered", async () =>
    (await page.locator('li.tracked[data-status="delivered"]').count()) >= 3,
  );
  await shot(page, "send");
  ok(step);

  step = "filters, pause and resume from the last id";
  await go(page, "#/events/alpha");
  await heading(page, "Events");
  for (const kind of ["message", "connection", "presence", "group", "call", "status", "location", "instance"]) {
    await page.getByLabel(kind, { exact: true }).uncheck();
  }
  await page.locator('[data-status="live"]').waitFor({ timeout: WAIT });
  await rest("POST", "/message/sendText/gamma", { number: "+15550002222", text: "not for this filter" });
  await rest("POST", "/message/sendText/alpha", { number: "+15550002222", text: "before the pause" });
  await until("alpha's delivered", async () => (await rowsOf(page)).filter((r) => r.kind === "delivery").length >= 3);
  let rows = await rowsOf(page);
  assert.ok(rows.length > 0 && rows.every((r) => r.instance === "alpha" && r.kind === "delivery"), `filtered: ${JSON.stringify(rows)}`);
  await page.getByRole("button", { name: "Pause" }).click();
  await page.locator('[data-status="paused"]').waitFor();
  const pausedAt = Math.max(...(await rowsOf(page)).map((r) => r.id));
  const whilePaused = (await rest("POST", "/message/sendText/alpha", { number: "+15550003333", text: "while paused" })).id;
  await until("the paused text's delivery in the log", async () =>
    (await readLog("&events=delivery&instance=alpha")).some((e) => e.data.id === whilePaused && e.data.status === "delivered"),
  );
  assert.equal(Math.max(...(await rowsOf(page)).map((r) => r.id)), pausedAt, "nothing arrives while paused");
  await page.getByRole("button", { name: "Resume" }).click();
  const expected = (await readLog("&events=delivery&instance=alpha")).filter((e) => e.id > pausedAt).map((e) => e.id);
  await until("what came while paused", async () => (await rowsOf(page)).filter((r) => r.id > pausedAt).length >= expected.length);
  rows = await rowsOf(page);
  assert.deepEqual(
    rows.filter((r) => r.id > pausedAt).map((r) => r.id).reverse(),
    expected,
    "resumed with since: every event after the pause, in order, once",
  );
  assert.equal(new Set(rows.map((r) => r.id)).size, rows.length, "no event twice");
  await shot(page, "events-filtered");
  ok(step);

  step = "webhook status and retention per instance";
  await rest("POST", "/webhook/set/alpha", { webhook: { enabled: true, url: "http://127.0.0.1:9/hook", events: ["MESSAGES_UPDATE"] } });
  await rest("POST", "/message/sendText/alpha", { number: "+15550004444", text: "for the webhook" });
  await go(page, "#/instance/alpha");
  await heading(page, /alpha/);
  await page.getByTestId("webhook").getByText("http://127.0.0.1:9/hook").waitFor({ timeout: WAIT });
  await page.getByTestId("webhook").getByText(/failing: \d+ attempts? in a row/).waitFor({ timeout: WAIT });
  await page.getByLabel("Keep for (seconds)").fill("soon");
  await page.getByRole("button", { name: "Save retention" }).click();
  await page.getByText("A number of seconds must be a whole number.").waitFor();
  await page.getByLabel("Keep for (seconds)").fill("86400");
  await page.getByLabel("Keep at most (events)").fill("1000");
  await page.getByRole("button", { name: "Save retention" }).click();
  await page.getByText("Retention saved.").waitFor();
  assert.match(await page.getByTestId("retention").textContent(), /Keeps events for 1 day, at most 1000 events/);
  const retention = await rest("GET", "/retention/find/alpha");
  assert.equal(retention.retention.maxAgeSecs, 86400);
  await shot(page, "instance");
  ok(step);

  step = "log out, connect and restart an instance";
  const badge = page.getByRole("heading", { level: 1 }).locator(".badge");
  await page.getByRole("button", { name: "Log out" }).click();
  await until("alpha closed", async () => (await badge.textContent()) === "closed");
  await page.getByRole("button", { name: "Connect" }).click();
  await until("alpha open", async () => (await badge.textContent()) === "open");
  await page.getByRole("button", { name: "Restart" }).click();
  await page.getByText("alpha: restart done").waitFor();
  await until("alpha open again", async () => (await badge.textContent()) === "open");
  ok(step);

  step = "metrics as charts";
  await go(page, "#/metrics");
  await heading(page, "Metrics");
  await until("three samples", async () => (await page.locator(".chart polyline").count()) >= 3 && (await page.getByTestId("chart-Open streams").textContent()) !== "–");
  // At least the dashboard's own feed is open right now.
  assert.match(await page.getByTestId("chart-Open streams").textContent(), /^[1-9]/);
  await shot(page, "metrics");
  ok(step);

  step = "the cluster's nodes, and a pool created and sent through";
  await go(page, "#/cluster");
  await heading(page, "Cluster");
  const nodeRow = page.locator("tr[data-node]");
  await until("this node's row", async () => (await nodeRow.count()) === 1);
  assert.match(await nodeRow.textContent(), /alive/);
  await until("alpha on this node", async () => (await nodeRow.getByRole("link", { name: "alpha", exact: true }).count()) === 1);
  await shot(page, "cluster");
  await go(page, "#/pools");
  await heading(page, "Pools");
  await page.getByTestId("no-pools").waitFor({ timeout: WAIT });
  await page.getByLabel("Name", { exact: true }).fill("everyone");
  await page.getByRole("button", { name: "Create pool" }).click();
  await page.getByText("Choose at least one instance.").waitFor();
  await page.getByRole("checkbox", { name: "alpha" }).check();
  await page.getByRole("checkbox", { name: "gamma" }).check();
  await page.getByLabel("Strategy").selectOption("failover");
  await page.getByLabel("Texts per day (optional)").fill("100");
  await page.getByRole("button", { name: "Create pool" }).click();
  await page.getByText("Pool everyone was created.").waitFor({ timeout: WAIT });
  const poolCard = page.locator('section[data-pool="everyone"]');
  await poolCard.waitFor();
  const pooled = await rest("POST", "/message/sendText/everyone", { number: "+15550009999", text: "through the pool" });
  assert.equal(pooled.pool, "everyone");
  // Failover: alpha, the first member, sends it; the card shows it sent.
  await until("alpha's send for the pool on the card", async () => (await poolCard.locator('tr[data-member="alpha"] td').last().textContent()) === "1");
  assert.match(await poolCard.textContent(), /1 \/ 100/, "the day's quota use");
  const delivered = await until("the pool's text delivered", async () =>
    (await readLog("&events=delivery")).find((e) => e.data.pool === "everyone" && e.data.status === "delivered"),
  );
  assert.equal(delivered.instance, "alpha", "tagged with the member that sent it");
  await shot(page, "pools");
  ok(step);

  step = "message history: the list, its filters and one message";
  await go(page, `#/message/alpha/${messageId}`);
  await heading(page, "Message history");
  await until("its status", async () => (await page.getByTestId("message-status").textContent()) === "delivered");
  assert.match(await page.locator("main").textContent(), /hello from the dashboard/);
  await shot(page, "message-history");
  await go(page, "#/messages/alpha");
  await heading(page, "Messages");
  const listed = page.locator(`tr[data-message="${messageId}"]`);
  await listed.waitFor({ timeout: WAIT });
  assert.equal(await listed.getAttribute("data-status"), "delivered");
  await page.getByLabel("Direction").selectOption("incoming");
  await page.getByRole("button", { name: "Show" }).click();
  await until("only incoming messages", async () => {
    const statuses = await page.locator("tbody tr[data-message]").evaluateAll((rows) => rows.map((r) => r.getAttribute("data-status")));
    return statuses.length > 0 && statuses.every((s) => s === "received");
  });
  await shot(page, "messages");
  await listed.waitFor({ state: "detached" });
  ok(step);

  step = "delete asks first";
  await go(page, "#/instances");
  await heading(page, "Instances");
  const betaRow = page.locator('tr[data-instance="beta"]');
  await betaRow.getByRole("button", { name: "Delete" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.waitFor();
  await dialog.getByText("This cannot be undone.").waitFor();
  await shot(page, "delete-confirm");
  await page.keyboard.press("Escape");
  await dialog.waitFor({ state: "hidden" });
  assert.equal(await betaRow.count(), 1, "Escape keeps it");
  await betaRow.getByRole("button", { name: "Delete" }).click();
  await dialog.getByRole("button", { name: "Delete beta" }).click();
  await until("beta gone", async () => (await betaRow.count()) === 0);
  await until("the server agrees", async () => !(await rest("GET", "/instance/fetchInstances")).some((i) => i.instance.instanceName === "beta"));
  ok(step);

  step = "after a server restart the stream resumes from its last id";
  await go(page, "#/events");
  await heading(page, "Events");
  await page.locator('[data-status="live"]').waitFor({ timeout: WAIT });
  // The backfill is drawn a frame at a time: wait for it to reach the
  // log's end instead of reading the first frame's rows.
  const logEnd = (await readLog("")).at(-1).id;
  await until("the screen to reach the log's end", async () => {
    const shown = (await rowsOf(page)).map((r) => r.id);
    return shown.length > 0 && Math.max(...shown) >= logEnd;
  });
  const lastBefore = Math.max(...(await rowsOf(page)).map((r) => r.id));
  tolerated = [/WebSocket/, /ERR_CONNECTION_REFUSED/, /status of 40[14]/];
  console.log("restart-server");
  assert.equal(await nextLine(), "restarted");
  await until("the stream to be live again", async () => (await page.locator('[data-status="live"]').count()) === 1, 60_000);
  const after = (await rest("POST", "/message/sendText/alpha", { number: "+15550005555", text: "after the restart" })).id;
  await until("the text after the restart", async () =>
    (await readLog("&events=delivery")).some((e) => e.data.id === after && e.data.status === "delivered"),
  );
  const sinceRestart = (await readLog("")).filter((e) => e.id > lastBefore).map((e) => e.id);
  assert.ok(sinceRestart.length >= 5, "the restart's own events and the text");
  await until("every event since the restart on screen", async () => (await rowsOf(page)).filter((r) => r.id > lastBefore).length >= sinceRestart.length);
  rows = await rowsOf(page);
  assert.deepEqual(rows.filter((r) => r.id > lastBefore).map((r) => r.id).reverse(), sinceRestart, "no gap, no duplicate, in order");
  assert.equal(new Set(rows.map((r) => r.id)).size, rows.length, "no event twice");
  tolerated = [];
  ok(step);

  step = "signing out forgets the key";
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("Key").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  ok(step);

  step = "an instance key sees only its instance";
  await rest("POST", "/message/sendText/gamma", { number: "+15550006666", text: "gamma's secret" });
  const own = await context.newPage();
  watch(own);
  await signIn(own, alphaKey);
  await heading(own, "Instances");
  assert.equal(await own.getByTestId("role").textContent(), "instance alpha");
  await until("alpha's row", async () => (await own.locator("tbody tr[data-instance]").count()) === 1);
  assert.equal(await own.locator('tr[data-instance="alpha"]').count(), 1);
  assert.equal(await own.getByRole("link", { name: "New instance" }).count(), 0, "no create for an instance key");
  assert.equal(await own.getByRole("link", { name: "Metrics" }).count(), 0, "no server metrics");
  assert.equal(await own.locator('tr[data-instance="alpha"]').getByRole("button", { name: "Delete" }).count(), 0);
  await shot(own, "instance-key-instances");
  await go(own, "#/events");
  await heading(own, "Events");
  await own.locator('[data-status="live"]').waitFor({ timeout: WAIT });
  await rest("POST", "/message/sendText/alpha", { number: "+15550007777", text: "for alpha's key" });
  await until("alpha's text on the instance key's screen", async () => (await rowsOf(own)).some((r) => r.kind === "delivery"));
  const seen = await rowsOf(own);
  assert.ok(seen.every((r) => r.instance === "alpha"), `only alpha: ${JSON.stringify(seen.filter((r) => r.instance !== "alpha"))}`);
  await shot(own, "instance-key-events");
  await go(own, "#/send");
  await heading(own, "Send a text");
  assert.deepEqual(await own.locator("#send-instance option").allTextContents(), ["alpha"]);
  await own.getByLabel("Number", { exact: true }).fill("+15550008888");
  await own.getByLabel("Text", { exact: true }).fill("sent with the instance key");
  await own.getByRole("button", { name: "Send" }).click();
  await until("delivered", async () => (await own.locator("li.tracked").first().getAttribute("data-status")) === "delivered");
  await shot(own, "instance-key-send");
  await go(own, "#/instance/alpha");
  await heading(own, /alpha/);
  await own.getByTestId("retention").waitFor();
  await go(own, "#/messages");
  await heading(own, "Messages");
  await own.locator('tr[data-status="delivered"]').first().waitFor({ timeout: WAIT });
  assert.equal(await own.locator("#history-instance").count(), 0, "one instance: nothing to choose");
  await shot(own, "instance-key-messages");
  await go(own, "#/cluster");
  await heading(own, "Cluster");
  await until("the node row", async () => (await own.locator("tr[data-node]").count()) === 1);
  const ownLinks = await own.locator("tr[data-node] a").allTextContents();
  assert.deepEqual(ownLinks, ["alpha"], "only its own instance on the node");
  await shot(own, "instance-key-cluster");
  await go(own, "#/pools");
  await heading(own, "Pools");
  await own.locator('section[data-pool="everyone"]').waitFor({ timeout: WAIT });
  assert.deepEqual(await own.locator("tr[data-member]").evaluateAll((rows) => rows.map((r) => r.dataset.member)), ["alpha"], "only its own member");
  assert.equal(await own.getByRole("button", { name: "Delete" }).count(), 0, "no delete for an instance key");
  assert.equal(await own.getByRole("button", { name: "Create pool" }).count(), 0, "no create for an instance key");
  await shot(own, "instance-key-pools");
  ok(step);

  assert.deepEqual(problems, [], "the pages logged no errors");
  ok("no console errors");
  console.log("all steps passed");
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(0);
} catch (err) {
  console.error(`FAILED at step "${step}": ${err.stack ?? err}`);
  if (problems.length) console.error(`page problems:\n  ${problems.join("\n  ")}`);
  for (const page of context.pages()) {
    await page.screenshot({ path: join(SHOTS, `failure-${context.pages().indexOf(page)}.png`), fullPage: true }).catch(() => {});
  }
  await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  process.exit(1);
}
