// pbmaster's pages: relative times, sections read again when the master's event
// stream says they changed, live logs pushed by the master, and the writes (login,
// logout, force, stop) through the JSON API with the session's CSRF token.
"use strict";

let csrf = null;

// Characters of a live log kept in the page.
const LIVE_LIMIT = 2000000;

function ago(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " d ago";
}

function since(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return s < 60 ? s + " s" : Math.floor(s / 60) + " min " + (s % 60) + " s";
}

function times() {
  const now = Date.now() / 1000;
  for (const t of document.querySelectorAll("time[data-t]")) {
    t.title = t.title || t.textContent + " UTC";
    t.textContent = ago(now - Number(t.dataset.t));
  }
  for (const d of document.querySelectorAll("[data-since]")) {
    d.textContent = since(now - Number(d.dataset.since));
  }
}

// Sections marked data-refresh are replaced by the same sections of a fresh copy of
// the page (rendered and escaped by the server). A live log that is still live in the
// fresh copy keeps its element (its text and its stream).
async function refresh() {
  const r = await fetch(location.href, { headers: { Accept: "text/html" } });
  if (!r.ok) return;
  const fresh = new DOMParser().parseFromString(await r.text(), "text/html");
  for (const old of document.querySelectorAll("[data-refresh]")) {
    const next = fresh.querySelector('[data-refresh="' + old.dataset.refresh + '"]');
    if (!next) continue;
    const kept = new Map();
    for (const pre of old.querySelectorAll("pre[data-live]")) kept.set(pre.dataset.live, pre);
    const node = document.importNode(next, true);
    for (const pre of node.querySelectorAll("pre[data-live]")) {
      const mine = kept.get(pre.dataset.live);
      if (mine) {
        pre.replaceWith(mine);
        kept.delete(pre.dataset.live);
      }
    }
    // Logs no longer live are shown in full by the fresh copy.
    for (const pre of kept.values()) unfollow(pre);
    old.replaceWith(node);
  }
  wire();
  times();
  for (const pre of document.querySelectorAll("pre[data-live]")) follow(pre);
  if (!fresh.body.dataset.live) {
    document.body.removeAttribute("data-live");
    if (events) events.close();
  }
}

// Refreshes one at a time; events that arrive meanwhile cause one more.
let refreshing = false;
let again = false;
async function schedule() {
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = true;
  try {
    do {
      again = false;
      await refresh();
    } while (again);
  } finally {
    refreshing = false;
  }
}

// Whether an event concerns a section of this page (names are compared as text).
function concerns(e) {
  for (const section of document.querySelectorAll("[data-watch]")) {
    if (!section.dataset.watch.split(" ").includes(e.kind)) continue;
    if (section.dataset.build && String(e.build) !== section.dataset.build) continue;
    if (section.dataset.builder && e.builder !== section.dataset.builder) continue;
    return true;
  }
  return false;
}

const KINDS = ["build_started", "build_finished", "step_started", "step_finished",
  "request_queued", "worker_attached", "worker_detached", "instance"];

// The master's event stream; polling every 2 s only if it cannot be opened.
let events = null;
let polling = null;
function listen() {
  const build = document.querySelector("[data-watch][data-build]");
  const url = "/api/events" + (build ? "?build=" + encodeURIComponent(build.dataset.build) : "");
  if (!window.EventSource) return poll();
  events = new EventSource(url);
  let opened = false;
  events.addEventListener("open", () => {
    // Events may have been missed while reconnecting.
    if (opened) schedule();
    opened = true;
  });
  for (const kind of KINDS) {
    events.addEventListener(kind, (ev) => {
      window.pbmasterPushes = (window.pbmasterPushes || 0) + 1;
      if (concerns(JSON.parse(ev.data))) schedule();
    });
  }
  events.addEventListener("lagged", () => schedule());
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED) poll();
  };
}

function poll() {
  if (polling) return;
  polling = setInterval(() => { if (document.body.dataset.live) schedule(); }, 2000);
}

// A running step's log, pushed by the master as rendered HTML (escaped by the
// server, colours as spans) as its bytes are recorded.
function follow(pre) {
  if (pre.dataset.following) return;
  pre.dataset.following = "true";
  if (!window.EventSource) return followByFetch(pre);
  const source = new EventSource(pre.dataset.live);
  pre.source = source;
  const add = (ev) => {
    const d = JSON.parse(ev.data);
    if (d.html) {
      const span = document.createElement("span");
      span.innerHTML = d.html;
      pre.append(span);
      trim(pre, span.textContent.length);
      pre.scrollTop = pre.scrollHeight;
    }
    pre.dataset.received = String(Number(pre.dataset.received || 0) + (d.bytes || 0));
  };
  source.addEventListener("log", add);
  source.addEventListener("end", (ev) => {
    add(ev);
    source.close();
    pre.dataset.done = "true";
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED && !pre.dataset.done) followByFetch(pre);
  };
}

function unfollow(pre) {
  if (pre.source) pre.source.close();
}

// A step printing 100 MB: keep the newest text only, so the page keeps up.
function trim(pre, added) {
  let shown = Number(pre.dataset.shown || 0) + added;
  while (shown > LIVE_LIMIT && pre.firstChild) {
    shown -= pre.firstChild.textContent.length;
    pre.firstChild.remove();
    pre.dataset.trimmed = "true";
  }
  pre.dataset.shown = String(shown);
}

// Without a stream: the API's followed raw log. TextDecoder shows invalid UTF-8 as
// U+FFFD and joins characters split across chunks; colour escapes are dropped.
async function followByFetch(pre) {
  pre.dataset.polled = "true";
  const r = await fetch(pre.dataset.follow);
  if (!r.ok || !r.body) return;
  const reader = r.body.getReader();
  const decoder = new TextDecoder("utf-8");
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const text = decoder.decode(value, { stream: true }).replace(/\x1b\[[0-9;?]*[@-~]/g, "");
    pre.append(document.createTextNode(text));
    trim(pre, text.length);
    pre.scrollTop = pre.scrollHeight;
    pre.dataset.received = String(Number(pre.dataset.received || 0) + value.length);
  }
  pre.append(document.createTextNode(decoder.decode()));
  pre.dataset.done = "true";
}

async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (csrf) headers["X-CSRF-Token"] = csrf;
  const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body || {}) });
  let answer = {};
  try { answer = await r.json(); } catch (e) { answer = {}; }
  if (!r.ok) throw new Error(answer.error || r.statusText);
  return answer;
}

function properties(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (!t) continue;
    const i = t.indexOf("=");
    if (i < 1) throw new Error("not NAME=VALUE: " + t);
    out[t.slice(0, i).trim()] = t.slice(i + 1);
  }
  return out;
}

async function force(form, ev) {
  ev.preventDefault();
  const status = form.querySelector(".status");
  try {
    const body = { reason: form.reason.value, properties: properties(form.properties.value) };
    const answer = await post("/api/builders/" + encodeURIComponent(form.dataset.builder) + "/force", body);
    status.textContent = "queued as request " + answer.request_id;
    // Go to the build once it starts.
    for (let i = 0; i < 600; i++) {
      const r = await fetch("/api/buildrequests/" + answer.request_id);
      const req = r.ok ? await r.json() : {};
      if (req.builds && req.builds.length) {
        location.href = "/builds/" + req.builds[req.builds.length - 1].id;
        return;
      }
      await new Promise((done) => setTimeout(done, 500));
    }
  } catch (e) {
    status.textContent = "refused: " + e.message;
  }
}

function wire() {
  const stop = document.getElementById("stop");
  if (stop && !stop.dataset.wired) {
    stop.dataset.wired = "true";
    stop.addEventListener("click", async () => {
      stop.disabled = true;
      try {
        await post("/api/builds/" + stop.dataset.build + "/stop");
        stop.textContent = "Stopping…";
      } catch (e) {
        stop.textContent = "Stop refused: " + e.message;
      }
    });
  }
}

async function session() {
  // Only a credential has a session to ask about (a public read has none).
  if (!document.body.dataset.signedIn) return;
  const r = await fetch("/api/session");
  const login = document.getElementById("login");
  const logout = document.getElementById("logout");
  if (!r.ok) return;
  const s = await r.json();
  csrf = s.csrf_token || null;
  document.getElementById("who").textContent = s.user ? s.user + " (" + (s.roles || []).join(", ") + ")" : "";
  if (s.user) {
    login.hidden = true;
    logout.hidden = false;
  }
}

async function loginForm(form, ev) {
  ev.preventDefault();
  const status = form.querySelector(".status");
  try {
    await post("/api/login", { user: form.user.value, password: form.password.value });
    const next = new URLSearchParams(location.search).get("next") || "/";
    location.href = next.startsWith("/") && !next.startsWith("//") ? next : "/";
  } catch (e) {
    status.textContent = "refused: " + e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  times();
  setInterval(times, 1000);
  wire();
  session();
  document.getElementById("logout").addEventListener("click", async () => {
    try { await post("/api/logout"); } finally { location.href = "/login"; }
  });
  const f = document.getElementById("force");
  if (f) f.addEventListener("submit", (ev) => force(f, ev));
  const l = document.getElementById("login-form");
  if (l) l.addEventListener("submit", (ev) => loginForm(l, ev));
  for (const pre of document.querySelectorAll("pre[data-live]")) follow(pre);
  if (document.body.dataset.live) listen();
});
