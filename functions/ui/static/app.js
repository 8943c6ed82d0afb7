// hexq dashboard: the one ES module every page loads. No build step, no dependency.
// It calls the same /v1 API as any client, with the API key kept in sessionStorage. Data from the API is
// put in the page with textContent and createElement only, never innerHTML: payloads are the submitter's.
"use strict";

const body = document.body;
const ROOT = body.dataset.root || "";
const KEY = "hexq.apiKey";
const FINISHED = new Set(["succeeded", "dead", "cancelled"]);
const CANCELLABLE = new Set(["scheduled", "queued", "running"]);
const LEVELS = ["critical", "high", "normal", "low"];
const $ = (selector) => document.querySelector(selector);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- DOM ----------------------------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined).map((c) => (c instanceof Node ? c : String(c))));
  return node;
}

const link = (href, text) => el("a", { href: ROOT + href }, text);
const taskLink = (id) => link(`/ui/tasks/${encodeURIComponent(id)}`, id);
const fill = (node, ...children) => node.replaceChildren(...children);

// A datetime-local value (the browser's local time, no offset) as epoch seconds for the API; what is not one
// goes as it is, so that the API's 422 says what is wrong with it.
function epochOf(local) {
  if (!local) return null;
  const ms = new Date(local).getTime();
  return Number.isFinite(ms) ? String(ms / 1000) : local;
}

function when(epoch) {
  if (epoch === null || epoch === undefined) return "–";
  return new Date(epoch * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function age(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

const count = (n) => Number(n).toLocaleString("en-US");

// Live countdowns: an element with data-deadline (a performance.now() time, in ms) shows the time left and one
// with data-since the time since, both ticking here. The server sends seconds left on its own clock; counting
// from when the answer came keeps a browser whose clock is off out of it.
function deadlineIn(seconds) { return String(performance.now() + seconds * 1000); }

function tick() {
  const at = performance.now();
  for (const node of document.querySelectorAll("[data-deadline]")) {
    const left = (Number(node.dataset.deadline) - at) / 1000;
    node.dataset.state = left <= 0 ? "expired" : left <= Number(node.dataset.near || 0) ? "near" : "ok";
    fill(node, left > 0 ? `${left.toFixed(1)} s` : `expired ${(-left).toFixed(1)} s ago`);
  }
  for (const node of document.querySelectorAll("[data-since]")) {
    fill(node, `${age((at - Number(node.dataset.since)) / 1000)} ago`);
  }
}

function startTicking() {
  if (!startTicking.timer) startTicking.timer = setInterval(tick, 200);
  tick();
}

function notice(text, kind = "info") {
  const box = $("#notice");
  box.className = `notice ${kind}`;
  fill(box, text);
  box.hidden = false;
}

function showError(error) {
  if (!(error instanceof ApiError)) console.error(error);
  if (error instanceof ApiError && error.status === 401) return; // the key form says it
  notice(error.message || String(error), "error");
}

// A typed confirmation: the action runs only once the user has typed `word`.
function confirmTyped(text, word) {
  const dialog = $("#confirm");
  const input = $("#confirm-input");
  const ok = $("#confirm-ok");
  fill($("#confirm-text"), text);
  fill($("#confirm-word"), word);
  input.value = "";
  ok.disabled = true;
  return new Promise((resolve) => {
    const check = () => { ok.disabled = input.value.trim() !== word; };
    const done = (answer) => {
      input.removeEventListener("input", check);
      dialog.close();
      resolve(answer);
    };
    input.addEventListener("input", check);
    $("#confirm-cancel").onclick = () => done(false);
    $("#confirm-form").onsubmit = (event) => { event.preventDefault(); if (!ok.disabled) done(true); };
    dialog.showModal();
    input.focus();
  });
}

// -- the API ------------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, data) {
    super(data && data.message ? `${status}: ${data.message}` : `HTTP ${status}`);
    this.status = status;
    this.data = data;
  }
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(method, path, payload) {
  const headers = { Accept: "application/json", ...authHeaders() };
  const init = { method, headers };
  if (payload !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(payload);
  }
  const response = await fetch(ROOT + path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text.slice(0, 200) }; }
  if (response.status === 401) showLogin(Boolean(sessionStorage.getItem(KEY)));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) search.set(name, value);
  const text = search.toString();
  return text ? `?${text}` : "";
}

// Runs `each(item)` over `items`, a few at a time; returns how many succeeded and the failures.
async function forEachLimited(items, each, limit = 4) {
  const failures = [];
  let done = 0;
  const queue = [...items];
  await Promise.all(Array.from({ length: Math.min(limit, queue.length) }, async () => {
    while (queue.length) {
      const item = queue.shift();
      try { await each(item); done += 1; } catch (error) { failures.push([item, error]); }
    }
  }));
  return { done, failures };
}

async function replay(ids) {
  let replayed = 0;
  for (let i = 0; i < ids.length; i += 1000) { // the API takes up to 1000 ids a call
    replayed += (await api("POST", "/v1/dead:replay", { ids: ids.slice(i, i + 1000) })).replayed.length;
  }
  return replayed;
}

// A bulk action on everything that matches a filter (POST /v1/tasks:cancel, /v1/dead:replay), in chunks of
// BULK_CHUNK so that each request stays short (API Gateway ends a Lambda request at 29 s). The dry run's count
// is confirmed once; each chunk sends what is left of it as `confirm`, so the whole run acts on at most that
// many, and the server refuses (409) a last chunk that finds more. Stoppable between chunks.
const BULK_CHUNK = 500;
const BULK_PAUSE_MS = 250; // between chunks: at most about 2,000 a second, as the server paces one request

async function chunkedBulk(path, filter, verb, past) {
  const dry = await api("POST", `${path}?dry_run=1`, { filter, limit: 10000 });
  const total = dry.matched;
  if (!total) { notice(`nothing matches: nothing to ${verb}`); return; }
  const more = dry.complete ? "" : " More may match past what one count examines; run it again afterwards for the rest.";
  if (!(await confirmTyped(`${verb} ${count(total)} matching task(s), ${BULK_CHUNK} at a time?${more}`, `${verb} ${total}`))) return;
  const box = $("#bulk-run");
  const bar = $("#bulk-run-bar");
  const text = $("#bulk-run-text");
  let stopped = false;
  let left = total;
  let acted = 0;
  let note = "";
  bar.max = total;
  bar.value = 0;
  box.hidden = false;
  box.dataset.state = "running";
  $("#bulk-run-stop").hidden = false;
  $("#bulk-run-close").hidden = true;
  $("#bulk-run-stop").onclick = () => { stopped = true; };
  $("#bulk-run-close").onclick = () => location.reload();
  const show = (tail = "") => fill(text, `${past} ${count(acted)} of ${count(total)}${tail}`);
  show("…");
  while (left > 0 && !stopped) {
    let r;
    try {
      r = await api("POST", path, { filter, limit: BULK_CHUNK, confirm: left });
    } catch (error) {
      note = error instanceof ApiError && error.status === 409
        ? ` — stopped: more tasks match now than the ${count(left)} left of the ${count(total)} confirmed; nothing more was changed`
        : ` — stopped: ${error.message}`;
      break;
    }
    const step = r.done + r.pending + r.skipped;
    acted += step;
    left -= step;
    bar.value = acted;
    show(left > 0 && !stopped ? "…" : "");
    if (step === 0 || r.complete) break;
    await sleep(BULK_PAUSE_MS);
  }
  box.dataset.state = "done";
  show(stopped ? " — stopped" : note);
  $("#bulk-run-stop").hidden = true;
  $("#bulk-run-close").hidden = false;
}

// -- who is asking ------------------------------------------------------------------------------------
let me; // the caller's key {name, tenant, scopes}, or null for an API without keys

function can(scope) {
  if (me === null) return true;
  if (!me) return false;
  return me.scopes.includes(scope) || me.scopes.includes("admin");
}

function showLogin(refused) {
  $("#login").hidden = false;
  $("#login-error").hidden = !refused;
  fill($("#login-error"), refused ? "That key was refused (401). Paste another." : "");
  if (refused) sessionStorage.removeItem(KEY);
}

async function identify() {
  try {
    me = await api("GET", "/v1/whoami");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return false;
    throw error;
  }
  for (const node of document.querySelectorAll("[data-needs]")) node.hidden = !can(node.dataset.needs);
  if (me) {
    fill($("#who"), `${me.name} · ${me.tenant} · ${me.scopes.join(", ")}`);
    $("#logout").hidden = false;
  }
  return true;
}

function wireChrome() {
  document.addEventListener("securitypolicyviolation", (event) => {
    console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`);
  });
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("#login-key").value.trim());
    location.reload();
  });
  $("#logout").addEventListener("click", () => { sessionStorage.removeItem(KEY); location.reload(); });
}

// -- live figures: the /v1/events stream, or polling ----------------------------------------------------
function streamWanted() {
  return body.dataset.stream !== "0" && new URLSearchParams(location.search).get("stream") !== "0"
    && typeof ReadableStream !== "undefined" && typeof TextDecoderStream !== "undefined";
}

function live(onSnapshot) {
  const mode = $("#live-mode");
  const setMode = (name, text) => { mode.dataset.mode = name; fill(mode, text); };
  const poll = async () => {
    setMode("poll", "live · polling every 1.5 s");
    for (;;) {
      try {
        const [stats, workers, histograms] = await Promise.all([api("GET", "/v1/stats"), api("GET", "/v1/workers"),
          api("GET", "/v1/histograms").catch(() => null)]); // an older server has none
        onSnapshot({ at: Date.now() / 1000, stats, workers: workers.workers, histograms });
      } catch (error) { showError(error); }
      await sleep(1500); // so that a change shows within 2 s, as over the stream
    }
  };
  const stream = async () => {
    const response = await fetch(`${ROOT}/v1/events`, { headers: { Accept: "text/event-stream", ...authHeaders() } });
    if (!response.ok || !response.body) throw new ApiError(response.status, null);
    setMode("stream", "live · stream");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let seen = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event.name === "snapshot") { seen += 1; onSnapshot(event.data); }
        else if (event.name === "error") notice(`live figures: ${event.data.message}`, "error");
      }
    }
    if (seen <= 1) return poll(); // a buffering server (Lambda) sends one snapshot and ends: poll it instead
    await sleep(1000);
    return stream().catch(poll);
  };
  if (streamWanted()) stream().catch(poll);
  else poll();
}

function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  return { name, data: JSON.parse(data.join("\n") || "null") };
}

// Per-second rates from successive snapshots (counts by status; tasks past retention make a count drop).
function rates() {
  let previous = null;
  return (snapshot) => {
    const counts = snapshot.stats.by_status;
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    const finished = (counts.succeeded || 0) + (counts.dead || 0) + (counts.cancelled || 0);
    const now = { at: snapshot.at, total, finished };
    let result = null;
    if (previous && now.at > previous.at) {
      const seconds = now.at - previous.at;
      result = { submitted: Math.max(0, now.total - previous.total) / seconds,
        processed: Math.max(0, now.finished - previous.finished) / seconds };
    }
    if (!previous || now.at > previous.at) previous = now;
    return result;
  };
}

function workerRows(workers, at) {
  fill($("#workers tbody"), ...workers.map((w) => el("tr", {},
    el("td", {}, el("code", {}, w.id)), el("td", {}, w.host), el("td", {}, w.pid), el("td", {}, w.queues.join(", ")),
    el("td", {}, w.running), el("td", {}, age(at - w.started_at)), el("td", {}, `${age(at - w.last_seen)} ago`))));
  $("#workers-empty").hidden = workers.length > 0;
}

// -- pages ----------------------------------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";

function sparkline(history) {
  const svg = $("#spark");
  const peak = Math.max(1, ...history.flatMap((p) => [p.submitted, p.processed]));
  const line = (key) => {
    // The newest point at the right edge, one every 10 px: a 60 s window that scrolls left.
    const points = history.map((p, i) => `${600 - (history.length - 1 - i) * 10},${78 - (p[key] / peak) * 74}`).join(" ");
    const node = document.createElementNS(SVG, "polyline");
    node.setAttribute("points", points);
    node.setAttribute("class", key);
    return node;
  };
  svg.replaceChildren(line("submitted"), line("processed"));
}

// Queue-wait and duration histograms (GET /v1/histograms, or the snapshot's `histograms`): one small bar chart
// per series, a bar per bucket. Bar heights are set through the CSSOM (element.style), which the CSP's
// style-src 'self' allows; a style="" attribute would be refused.
function histograms(figures) {
  const note = $("#hist-note");
  if (!figures || figures.metrics === false) {
    fill($("#hist-wait"));
    fill($("#hist-duration"));
    fill(note, figures ? "metrics off (HEXQ_METRICS=off): no histograms" : "this server has no histograms");
    note.hidden = false;
    return;
  }
  note.hidden = true;
  const order = (by) => (a, b) => (by === "priority" ? LEVELS.indexOf(a) - LEVELS.indexOf(b) : a.localeCompare(b));
  for (const [selector, hist] of [["#hist-wait", figures.queue_wait], ["#hist-duration", figures.duration]]) {
    const names = Object.keys(hist.series).sort(order(hist.by));
    fill($(selector), ...(names.length ? names.map((name) => histogram(name, hist.series[name]))
      : [el("p", { class: "empty" }, "nothing observed yet")]));
  }
}

function histogram(name, series) {
  const peak = Math.max(1, ...series.counts);
  // Only the buckets from the first to the last that holds something, so a chart is not mostly empty.
  const used = series.counts.map((c, i) => (c > 0 ? i : -1)).filter((i) => i >= 0);
  const from = Math.max(0, used[0] - 1);
  const to = Math.min(series.counts.length - 1, used[used.length - 1] + 1);
  const bound = (i) => (i < series.bounds.length ? `≤ ${age(series.bounds[i])}` : `> ${age(series.bounds[series.bounds.length - 1])}`);
  const bars = [];
  for (let i = from; i <= to; i += 1) {
    const bar = el("span", { class: "bar", title: `${bound(i)}: ${series.counts[i]}` });
    bar.style.height = `${Math.max(series.counts[i] ? 4 : 0, (series.counts[i] / peak) * 100)}%`;
    bars.push(bar);
  }
  const q = (label, value) => el("span", { class: "q", "data-q": label }, `${label} ${value === null ? "–" : age(value)}`);
  return el("div", { class: "hist", "data-series": name },
    el("div", { class: "hist-head" }, el("strong", {}, name), el("span", { class: "hint" }, ` ${series.count} observed`)),
    el("div", { class: "bars" }, ...bars),
    el("div", { class: "axis" }, el("span", {}, bound(from)), el("span", {}, bound(to))),
    el("div", { class: "quantiles" }, q("p50", series.p50), q("p95", series.p95), q("p99", series.p99)));
}

async function queueControls() {
  // Pause and resume arrive with their own API (GET /v1/queues, POST /v1/queues/{queue}:pause|:resume); the
  // buttons show only once the server's OpenAPI document has them, so an older server sees no dead button.
  // Whether a queue is paused is read from each snapshot (stats.paused), so every viewer sees the same.
  if (!can("admin")) return null;
  try {
    const doc = await (await fetch(`${ROOT}/openapi.json`)).json();
    if (!Object.keys(doc.paths || {}).some((p) => p.startsWith("/v1/queues"))) return null;
    return { paused: new Set(), pending: new Set() };
  } catch { return null; }
}

function pauseButton(controls, queue) {
  if (!controls) return "";
  const paused = controls.paused.has(queue);
  return el("button", { type: "button", class: "small pause", "data-queue": queue, disabled: controls.pending.has(queue),
    onclick: async () => {
      controls.pending.add(queue);
      try {
        await api("POST", `/v1/queues/${encodeURIComponent(queue)}:${paused ? "resume" : "pause"}`);
        if (paused) controls.paused.delete(queue); else controls.paused.add(queue);
        notice(`queue ${queue} ${paused ? "resumed" : "paused"}`);
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) notice("this server cannot pause queues", "error");
        else showError(error);
      } finally { controls.pending.delete(queue); }
    } }, paused ? "Resume" : "Pause");
}

async function overview() {
  const rate = rates();
  const history = [];
  const controls = await queueControls();
  live(async (snapshot) => {
    const { stats, workers, at } = snapshot;
    const counts = stats.by_status;
    const r = rate(snapshot);
    if (r) {
      fill($("#rate-submitted"), r.submitted.toFixed(1));
      fill($("#rate-processed"), r.processed.toFixed(1));
      history.push(r);
      if (history.length > 60) history.shift();
      sparkline(history);
    }
    fill($("#fig-backlog"), stats.backlog);
    fill($("#fig-running"), counts.running || 0);
    fill($("#fig-total"), Object.values(counts).reduce((a, b) => a + b, 0));
    fill($("#fig-dead"), counts.dead || 0);
    fill($("#fig-workers"), workers.length);
    fill($("#fig-oldest"), stats.oldest_age.length ? age(Math.max(...stats.oldest_age.map((o) => o.seconds))) : "–");
    const names = Object.keys(counts);
    fill($("#status-head"), ...names.map((n) => el("th", {}, n)));
    fill($("#status-row"), ...names.map((n) => el("td", { "data-status": n }, counts[n])));
    if (controls && stats.paused) controls.paused = new Set(stats.paused);
    histograms(snapshot.histograms);
    depthRows(stats, workers, controls);
    workerRows(workers, at);
  });
}

// One row per queue × priority that holds tasks, plus one for each queue that is paused or that a live worker
// serves while it holds none (so that an empty queue can be paused before its tasks arrive).
function depthRows(stats, workers, controls) {
  const cells = new Map();
  const empty = new Set([...(stats.paused || []), ...workers.flatMap((w) => w.queues)]);
  for (const d of stats.depth) {
    const key = `${d.queue}\u0000${d.priority}`;
    if (!cells.has(key)) cells.set(key, { queue: d.queue, priority: d.priority });
    cells.get(key)[d.state] = d.count;
    empty.delete(d.queue);
  }
  for (const queue of empty) cells.set(`${queue}\u0000`, { queue, priority: "" });
  for (const o of stats.oldest_age) {
    const key = `${o.queue}\u0000${o.priority}`;
    if (cells.has(key)) cells.get(key).oldest = o.seconds;
  }
  const rows = [...cells.values()].sort((a, b) => a.queue.localeCompare(b.queue)
    || LEVELS.indexOf(a.priority) - LEVELS.indexOf(b.priority));
  const paused = new Set(stats.paused || []);
  const shown = new Set();
  const trs = [];
  for (const row of rows) {
    const first = !shown.has(row.queue);
    shown.add(row.queue);
    const name = first ? [row.queue, paused.has(row.queue) ? el("span", { class: "badge paused" }, "paused") : ""] : [""];
    trs.push(el("tr", { "data-queue": row.queue, "data-priority": row.priority }, el("td", {}, ...name), el("td", {}, row.priority || "–"),
      ...["queued", "running", "scheduled", "dead"].map((s) => el("td", { class: "num" }, row[s] || 0)),
      el("td", {}, age(row.oldest)), el("td", {}, first ? pauseButton(controls, row.queue) : "")));
  }
  fill($("#depth tbody"), ...trs);
  $("#depth-empty").hidden = rows.length > 0;
}

// Leases near expiry: the soonest 50, those within half their length shown (a worker renews every third of it,
// so a healthy lease never gets there). Polled: the lease is not in the live snapshot.
async function leasesNearExpiry() {
  for (;;) {
    try {
      const answer = await api("GET", "/v1/leases?limit=50");
      const near = answer.leases.filter((l) => l.seconds_left <= l.lease_seconds / 2);
      fill($("#leases tbody"), ...near.map((l) => el("tr", { "data-id": l.task_id },
        el("td", {}, taskLink(l.task_id)), el("td", {}, l.type), el("td", {}, l.queue),
        el("td", {}, el("code", {}, l.worker_id ?? "–")), el("td", {}, el("code", {}, l.token)),
        el("td", { class: "countdown", "data-deadline": deadlineIn(l.seconds_left), "data-near": l.lease_seconds / 3 }),
        el("td", { "data-since": deadlineIn(l.last_heartbeat - answer.now) }))));
      $("#leases-empty").hidden = near.length > 0;
      startTicking();
    } catch (e) { showError(e); }
    await sleep(2000);
  }
}

// Circuit breakers (GET /v1/breakers): state and counts; an admin key may force one open or close it.
async function breakersTable() {
  const { breakers } = await api("GET", "/v1/breakers");
  const rows = breakers.map((b) => {
    const action = b.state === "closed" ? "open" : "close";
    const button = can("admin") ? el("button", { type: "button", class: `small ${action === "open" ? "danger" : ""}`,
      "data-breaker": b.name, onclick: async () => {
        try { await api("POST", `/v1/breakers/${encodeURIComponent(b.name)}:${action}`); await breakersTable(); } catch (e) { showError(e); }
      } }, action === "open" ? "Force open" : "Close") : "";
    return el("tr", { "data-name": b.name }, el("td", {}, b.name), el("td", { class: `state-${b.state}` }, b.forced ? `${b.state} (forced)` : b.state),
      el("td", { class: "num" }, b.failures), el("td", { class: "num" }, `${b.recent_failures}/${b.recent}`),
      el("td", {}, b.reopens_at && !b.forced ? when(b.reopens_at) : "–"), el("td", {}, b.types.join(", ") || "–"), el("td", {}, button));
  });
  fill($("#breakers tbody"), ...rows);
  $("#breakers-empty").hidden = rows.length > 0;
}

function workersPage() {
  leasesNearExpiry();
  breakersTable().catch(showError);
  live((snapshot) => {
    workerRows(snapshot.workers, snapshot.at);
    fill($("#fig-workers"), snapshot.workers.length);
    fill($("#fig-running"), snapshot.workers.reduce((n, w) => n + w.running, 0));
    const counted = snapshot.histograms;
    const on = counted && counted.metrics !== false;
    fill($("#fig-recoveries"), on ? counted.lease_recoveries : "–");
    fill($("#fig-fencing"), on ? counted.fencing_rejections : "–");
    if (counted && !on) fill($("#counted-note"), "metrics off (HEXQ_METRICS=off): recoveries and fencing rejections are not counted.");
  });
}

async function tasksPage() {
  const params = new URLSearchParams(location.search);
  const form = $("#filters");
  const names = ["status", "type", "queue", "priority", "search", "created_from", "created_to"];
  for (const name of names) form.elements[name].value = params.get(name) || "";
  typeNames().catch(() => {});
  // The same filter lists the page (server-side, every filter) and drives "cancel all matching".
  const filter = { status: params.get("status") || null, type: params.get("type") || null,
    queue: params.get("queue") || null, search: params.get("search") || null, priority: params.get("priority") || null,
    created_after: epochOf(params.get("created_from")), created_before: epochOf(params.get("created_to")) };
  $("#cancel-matching").addEventListener("click", () => {
    if (filter.status && !CANCELLABLE.has(filter.status)) { notice(`${filter.status} tasks cannot be cancelled`); return; }
    chunkedBulk("/v1/tasks:cancel", filter, "cancel", "cancelled or asked to stop").catch(showError);
  });
  const page = await api("GET", `/v1/tasks${query({ ...filter, cursor: params.get("cursor"), limit: "100" })}`);
  const tasks = page.tasks;
  const selectable = can("submit");
  fill($("#tasks tbody"), ...tasks.map((t) => el("tr", { "data-id": t.id, "data-status": t.status },
    el("td", {}, selectable ? el("input", { type: "checkbox", class: "pick", value: t.id, "aria-label": `select ${t.id}` }) : ""),
    el("td", {}, taskLink(t.id)), el("td", {}, t.type), el("td", {}, el("span", { class: `status ${t.status}` }, t.status)),
    el("td", {}, t.queue), el("td", {}, t.priority), el("td", { class: "num" }, `${t.attempts ?? "–"}/${t.max_attempts ?? "–"}`),
    el("td", {}, when(t.created_at)), el("td", { class: "clip" }, (t.error || "").split("\n")[0]))));
  $("#tasks-empty").hidden = tasks.length > 0;
  fill($("#tasks-note"), !page.complete && tasks.length < 100
    ? `${count(tasks.length)} match(es) in the ${count(page.scanned)} task(s) this page examined; the next page goes on` : "");
  if (page.next_cursor) {
    const more = $("#more");
    more.hidden = false;
    more.onclick = () => { params.set("cursor", page.next_cursor); location.search = params.toString(); };
  }
  const picked = () => [...document.querySelectorAll("input.pick:checked")].map((box) => box.value);
  const count = () => fill($("#selected-count"), `${picked().length} selected`);
  $("#tasks").addEventListener("change", count);
  $("#select-all").addEventListener("change", (event) => {
    for (const box of document.querySelectorAll("input.pick")) box.checked = event.target.checked;
    count();
  });
  const statusOf = new Map(tasks.map((t) => [t.id, t.status]));
  $("#bulk-cancel").addEventListener("click", () => bulk(picked().filter((id) => CANCELLABLE.has(statusOf.get(id))),
    "cancel", (ids) => forEachLimited(ids, (id) => api("POST", `/v1/tasks/${encodeURIComponent(id)}:cancel`))));
  $("#bulk-replay").addEventListener("click", () => bulk(picked().filter((id) => statusOf.get(id) === "dead"),
    "replay", async (ids) => ({ done: await replay(ids), failures: [] })));
}

async function bulk(ids, verb, act) {
  if (!ids.length) { notice(`nothing selected that can be ${verb === "cancel" ? "cancelled" : "replayed"}`); return; }
  const word = `${verb} ${ids.length}`;
  if (!(await confirmTyped(`${verb} ${ids.length} task(s)? This cannot be undone.`, word))) return;
  try {
    const { done, failures } = await act(ids);
    sessionStorage.setItem("hexq.notice", `${verb}: ${done} of ${ids.length} done`
      + (failures.length ? `; ${failures.length} refused (${failures[0][1].message})` : ""));
    location.reload();
  } catch (error) { showError(error); }
}

async function typeNames() {
  const { types } = await api("GET", "/v1/types");
  const list = $("#type-names");
  if (list) fill(list, ...types.map((t) => el("option", { value: t.name })));
  return types;
}

async function taskPage() {
  const id = body.dataset.task;
  let task = await api("GET", `/v1/tasks/${encodeURIComponent(id)}`);
  const show = (t) => {
    task = t;
    const fields = ["status", "type", "queue", "priority", "attempts", "max_attempts", "timeout", "tenant", "worker_id",
      "idempotency_key"].map((name) => [name, t[name] ?? "–"]);
    fields.push(["run_at", when(t.run_at)], ["delay", t.delay ?? "–"], ["created_at", when(t.created_at)],
      ["started_at", when(t.started_at)], ["finished_at", when(t.finished_at)]);
    fill($("#fields"), ...fields.flatMap(([name, value]) => [el("dt", {}, name),
      el("dd", { "data-field": name }, name === "status" ? el("span", { class: `status ${value}` }, value) : value)]));
    fill($("#payload"), JSON.stringify(t.payload, null, 2));
    fill($("#result"), t.result === undefined || t.result === null ? "–" : JSON.stringify(t.result, null, 2));
    fill($("#error"), t.error || "–");
    fill($("#traceback"), t.traceback || "–");
    attempts(t.attempts_history, t.lease);
    leasePanel(t);
    whyWaiting(t);
    $("#act-cancel").hidden = !(can("submit") && CANCELLABLE.has(t.status));
    $("#act-replay").hidden = !(can("admin") && t.status === "dead");
    $("#act-edit").hidden = !can("submit");
  };
  show(task);
  $("#act-cancel").addEventListener("click", async () => {
    try { show(await api("POST", `/v1/tasks/${encodeURIComponent(id)}:cancel`)); notice("cancel asked"); } catch (e) { showError(e); }
  });
  $("#act-replay").addEventListener("click", async () => {
    try { await replay([id]); show(await api("GET", `/v1/tasks/${encodeURIComponent(id)}`)); notice("replayed"); } catch (e) { showError(e); }
  });
  $("#act-edit").addEventListener("click", () => {
    $("#edit-payload").value = JSON.stringify(task.payload, null, 2);
    $("#edit").hidden = false;
    $("#edit-payload").focus();
  });
  $("#edit-close").addEventListener("click", () => { $("#edit").hidden = true; });
  $("#edit-submit").addEventListener("click", async () => {
    const error = $("#edit-error");
    error.hidden = true;
    try {
      const payload = parsePayload($("#edit-payload").value);
      const created = await api("POST", "/v1/tasks", { type: task.type, queue: task.queue, priority: task.priority, payload });
      sessionStorage.setItem("hexq.notice", `replayed ${task.id} as a new task with the edited payload`);
      location.assign(`${ROOT}/ui/tasks/${encodeURIComponent(created.id)}`);
    } catch (e) { fill(error, e.message); error.hidden = false; }
  });
  follow(id, show, () => task);
}

// The live lease of a running task (GET /v1/tasks/{id} has `lease` then): a countdown to its expiry and the
// time since the last heartbeat, ticking between the page's reads of the task.
function leasePanel(t) {
  const box = $("#lease");
  const lease = t.lease;
  box.hidden = !lease;
  if (!lease) return;
  const left = $("#lease-left");
  left.dataset.deadline = deadlineIn(lease.seconds_left);
  left.dataset.near = String(lease.lease_seconds / 3);
  $("#lease-beat").dataset.since = deadlineIn(lease.last_heartbeat - (lease.expires_at - lease.seconds_left));
  fill($("#lease-worker"), lease.worker_id ?? "–");
  fill($("#lease-token"), String(lease.token));
  fill($("#lease-expires"), when(lease.expires_at));
  fill($("#lease-note"), (lease.cancel_requested ? "Cancellation asked: the worker stops the task at its next heartbeat. " : "")
    + `Heartbeats renew the lease every third of its ${age(lease.lease_seconds)}; the last one's time is estimated from the expiry.`);
  startTicking();
}

// "Why is it waiting": GET /v1/tasks/{id}/why for a queued or scheduled task (an older server has none: hidden).
async function whyWaiting(t) {
  const box = $("#why");
  if (t.status !== "queued" && t.status !== "scheduled") { box.hidden = true; return; }
  let answer;
  try { answer = await api("GET", `/v1/tasks/${encodeURIComponent(t.id)}/why`); } catch { box.hidden = true; return; }
  fill($("#why-list"), ...answer.reasons.map((r) => el("li", { "data-kind": r.kind }, r.message)));
  box.hidden = answer.reasons.length === 0;
}

// The attempt history as a timeline, when the server gives one (attempts_history).
function attempts(history, lease) {
  const box = $("#attempts");
  if (!Array.isArray(history) || !history.length) { box.hidden = true; return; }
  const item = (a) => el("li", { class: `attempt ${a.outcome || "running"}`, "data-number": a.number },
    el("div", { class: "attempt-head" }, el("strong", {}, `#${a.number}`), " ",
      el("span", { class: `status ${a.outcome || "running"}` }, a.outcome || "running"), " ",
      el("span", { class: "hint" }, `${when(a.started_at)} → ${a.finished_at ? when(a.finished_at) : "…"}`
        + (a.finished_at && a.started_at ? ` (${age(a.finished_at - a.started_at)})` : ""))),
    el("div", { class: "hint" }, "worker ", el("code", {}, a.worker_id ?? "–"), " · token ",
      el("code", {}, a.token ?? (!a.outcome || a.outcome === "running" ? lease?.token : null) ?? "–"),
      a.delay !== null && a.delay !== undefined ? ` · backoff ${age(a.delay)}` : ""),
    a.error ? el("pre", { class: "text" }, a.error) : null,
    a.traceback ? el("details", {}, el("summary", {}, "traceback"), el("pre", { class: "text" }, a.traceback)) : null);
  fill($("#attempts-list"), ...history.map(item));
  box.hidden = false;
}

// Re-reads the task while it may change: every second until it has finished, then every 5 s (a replay may
// bring it back).
async function follow(id, show, current) {
  for (;;) {
    await sleep(FINISHED.has(current().status) ? 5000 : 1000);
    try { show(await api("GET", `/v1/tasks/${encodeURIComponent(id)}`)); } catch (e) { showError(e); }
  }
}

function parsePayload(text) {
  let payload;
  try { payload = JSON.parse(text || "{}"); } catch (e) { throw new Error(`payload is not JSON: ${e.message}`); }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) throw new Error("payload must be a JSON object");
  return payload;
}

async function deadPage() {
  const params = new URLSearchParams(location.search);
  const form = $("#filters");
  for (const name of ["type", "queue", "search"]) form.elements[name].value = params.get(name) || "";
  const tasks = [];
  let cursor = null;
  const filter = { type: params.get("type") || null, queue: params.get("queue") || null, search: params.get("search") || null };
  $("#replay-matching").addEventListener("click", () =>
    chunkedBulk("/v1/dead:replay", filter, "replay", "replayed").catch(showError));
  const load = async () => {
    const page = await api("GET", `/v1/dead${query({ type: params.get("type"), queue: params.get("queue"),
      search: params.get("search"), cursor, limit: "200" })}`);
    tasks.push(...page.tasks);
    cursor = page.next_cursor;
    $("#more").hidden = !cursor;
    render();
  };
  const render = () => {
    const groups = new Map();
    for (const t of tasks) {
      const key = (t.error || "(no error)").split("\n")[0].slice(0, 300);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(t);
    }
    const admin = can("admin");
    const row = (t) => el("tr", { "data-id": t.id },
      el("td", {}, admin ? el("input", { type: "checkbox", class: "pick", value: t.id, "aria-label": `select ${t.id}` }) : ""),
      el("td", {}, taskLink(t.id)), el("td", {}, t.type), el("td", {}, t.queue), el("td", {}, t.priority),
      el("td", { class: "num" }, `${t.attempts ?? "–"}/${t.max_attempts ?? "–"}`), el("td", {}, when(t.finished_at)),
      el("td", {}, admin ? el("button", { type: "button", class: "small replay-one", onclick: () => replayNow([t.id]) }, "Replay") : ""));
    const group = ([error, members]) => el("section", { class: "group" },
      el("h3", {}, el("span", { class: "count" }, `${members.length} ×`), " ", el("span", { class: "err" }, error)),
      admin ? el("button", { type: "button", class: "small replay-group", onclick: () => confirmReplay(members.map((t) => t.id)) },
        `Replay these ${members.length}`) : "",
      el("table", { class: "grid" }, el("tbody", {}, ...members.map(row))));
    fill($("#groups"), ...[...groups.entries()].sort((a, b) => b[1].length - a[1].length).map(group));
    fill($("#dead-count"), `${tasks.length} shown${cursor ? " (more to load)" : ""}`);
    $("#dead-empty").hidden = tasks.length > 0;
  };
  const replayNow = async (ids) => {
    try {
      const n = await replay(ids);
      sessionStorage.setItem("hexq.notice", `replayed ${n} of ${ids.length}`);
      location.reload();
    } catch (e) { showError(e); }
  };
  const confirmReplay = async (ids) => {
    if (ids.length && await confirmTyped(`Replay ${ids.length} dead task(s) with fresh attempts?`, `replay ${ids.length}`)) await replayNow(ids);
  };
  $("#more").addEventListener("click", () => load().catch(showError));
  $("#replay-selected").addEventListener("click", () =>
    confirmReplay([...document.querySelectorAll("input.pick:checked")].map((box) => box.value)));
  $("#replay-all").addEventListener("click", () => confirmReplay(tasks.map((t) => t.id)));
  await load();
}

async function typeSelects(required) {
  const types = await typeNames().catch(() => []);
  for (const select of document.querySelectorAll("select.type-select")) {
    fill(select, ...(required ? [] : [el("option", { value: "" }, "(choose)")]),
      ...types.map((t) => el("option", { value: t.name }, t.name)));
  }
  return types;
}

function formError(box, error, form) {
  for (const node of form.querySelectorAll(".invalid")) node.classList.remove("invalid");
  const field = error instanceof ApiError && error.data && error.data.details ? error.data.details.field : null;
  const name = field ? String(field).split(/[.[]/)[0] : null;
  if (name && form.elements[name]) form.elements[name].classList.add("invalid");
  fill(box, error instanceof ApiError && error.data ? `${error.data.error}: ${error.data.message}` : error.message);
  box.hidden = false;
}

async function schedulesPage() {
  await typeSelects(false);
  const form = $("#schedule-form");
  const { schedules } = await api("GET", "/v1/schedules");
  const put = (s, changes) => api("PUT", `/v1/schedules/${encodeURIComponent(s.name)}`, {
    spec: s.spec, type: s.type, payload: s.payload, queue: s.queue, priority: s.priority, enabled: s.enabled, ...changes });
  const act = (label, cls, action) => el("button", { type: "button", class: `small ${cls}`, onclick: async () => {
    try { await action(); } catch (e) { showError(e); }
  } }, label);
  const edit = (s) => {
    for (const name of ["name", "spec", "queue", "priority", "type"]) form.elements[name].value = s[name];
    form.elements.enabled.checked = s.enabled;
    form.elements.payload.value = JSON.stringify(s.payload, null, 2);
    fill($("#editor-title"), `Edit ${s.name}`);
    form.scrollIntoView();
  };
  const done = (text) => { sessionStorage.setItem("hexq.notice", text); location.reload(); };
  fill($("#schedules tbody"), ...schedules.map((s) => el("tr", { "data-name": s.name },
    el("td", {}, s.name), el("td", {}, el("code", {}, s.spec)), el("td", {}, s.type), el("td", {}, s.queue), el("td", {}, s.priority),
    el("td", {}, when(s.next_run)), el("td", {}, when(s.last_run)), el("td", {}, s.enabled ? "yes" : "no"),
    el("td", { class: "row" },
      can("admin") ? act("Edit", "edit", async () => edit(s)) : "",
      can("admin") ? act(s.enabled ? "Disable" : "Enable", "toggle", async () => { await put(s, { enabled: !s.enabled }); done(`${s.name} ${s.enabled ? "disabled" : "enabled"}`); }) : "",
      can("submit") ? act("Run now", "run", async () => {
        const t = await api("POST", "/v1/tasks", { type: s.type, payload: s.payload, queue: s.queue, priority: s.priority });
        fill($("#notice"), `${s.name} ran now: `, taskLink(t.id));
        $("#notice").hidden = false;
      }) : "",
      can("admin") ? act("Delete", "danger", async () => {
        if (!(await confirmTyped(`Delete schedule ${s.name}?`, s.name))) return;
        await api("DELETE", `/v1/schedules/${encodeURIComponent(s.name)}`);
        done(`${s.name} deleted`);
      }) : ""))));
  $("#schedules-empty").hidden = schedules.length > 0;
  $("#schedule-new").addEventListener("click", () => fill($("#editor-title"), "New schedule"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    try {
      const s = { name: f.name.value.trim(), spec: f.spec.value.trim(), type: f.type.value, queue: f.queue.value.trim() || "default",
        priority: f.priority.value, enabled: f.enabled.checked, payload: parsePayload(f.payload.value) };
      await put(s, {});
      done(`schedule ${s.name} saved`);
    } catch (e) { formError($("#schedule-error"), e, form); }
  });
}

async function submitPage() {
  $("#no-submit").hidden = can("submit");
  const types = await typeSelects(true);
  const form = $("#submit-form");
  const describe = () => {
    const t = types.find((x) => x.name === form.elements.type.value);
    if (!t) return;
    form.elements.queue.placeholder = t.queue;
    fill($("#type-info"), `queue ${t.queue} · up to ${t.max_attempts} attempts · timeout ${t.timeout} s`
      + (t.rate ? ` · ${t.rate}/s` : "") + (t.validates ? " · payload checked at submit" : ""));
  };
  form.elements.type.addEventListener("change", describe);
  describe();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    $("#submit-error").hidden = true;
    try {
      const request = { type: f.type.value, priority: f.priority.value, payload: parsePayload(f.payload.value) };
      if (f.queue.value.trim()) request.queue = f.queue.value.trim();
      if (f.delay.value) request.delay = Number(f.delay.value);
      if (f.max_attempts.value) request.max_attempts = Number(f.max_attempts.value);
      const task = await api("POST", "/v1/tasks", request);
      const a = $("#submitted-link");
      a.href = `${ROOT}/ui/tasks/${encodeURIComponent(task.id)}`;
      fill(a, task.id);
      $("#submitted").hidden = false;
      for (const node of form.querySelectorAll(".invalid")) node.classList.remove("invalid");
    } catch (e) { formError($("#submit-error"), e, form); }
  });
}

// Finished `hexq experiment` runs (GET /v1/experiments). A run's figures and report are fetched with the key
// (an <img src> could not send it) and shown from blob: URLs; the report is text, never HTML.
async function experimentsPage() {
  const answer = await api("GET", "/v1/experiments");
  const rows = answer.runs.map((r) => {
    const headline = Object.entries(r.headline || {}).map(([k, v]) => `${k} ${typeof v === "number" ? v.toLocaleString() : "–"}`).join(", ");
    const open = el("button", { type: "button", class: "link", "data-run": `${r.name}/${r.run}` }, "show");
    open.addEventListener("click", () => showExperiment(r).catch(showError));
    return el("tr", {}, el("td", {}, r.name), el("td", {}, r.started_at || r.run), el("td", {}, r.backend || "–"),
      el("td", {}, r.quick ? "quick" : "full"), el("td", {}, r.complete ? "yes" : "no"), el("td", { class: "headline" }, headline),
      el("td", {}, open));
  });
  fill($("#experiments tbody"), ...rows);
  $("#experiments-empty").hidden = rows.length > 0;
}

async function fetchBlob(path) {
  const response = await fetch(ROOT + path, { headers: authHeaders() });
  if (!response.ok) throw new ApiError(response.status, { message: `${path}: ${response.status}` });
  return response.blob();
}

async function showExperiment(r) {
  fill($("#experiment-title"), `${r.name} · ${r.run}`);
  for (const img of document.querySelectorAll("#experiment-figures img")) URL.revokeObjectURL(img.src);
  const figures = await Promise.all(r.figures.map(async (path) =>
    el("img", { src: URL.createObjectURL(await fetchBlob(path)), alt: path.split("/").pop() })));
  fill($("#experiment-figures"), ...figures);
  fill($("#experiment-report"), r.report ? await (await fetchBlob(r.report)).text() : "(no report)");
  $("#experiment").hidden = false;
}

const PAGES = { overview, tasks: tasksPage, task: taskPage, dead: deadPage, schedules: schedulesPage,
  workers: workersPage, submit: submitPage, experiments: experimentsPage };

async function main() {
  wireChrome();
  const carried = sessionStorage.getItem("hexq.notice"); // a message that outlived a reload
  if (carried) { sessionStorage.removeItem("hexq.notice"); notice(carried); }
  if (!(await identify())) return;
  await PAGES[body.dataset.page]();
  body.dataset.ready = "1";
}

main().catch(showError);
