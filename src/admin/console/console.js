// airlock web console: polls the admin API with the bearer token kept in
// sessionStorage. Data is only ever inserted as text (never as HTML).
"use strict";

const state = { token: null, reviewer: "", approvalKey: "", timers: [] };

function $(id) { return document.getElementById(id); }

// Control characters hide text and bidi controls reorder it (a statement
// waiting for approval could show one thing and run another), so both are
// shown as \u{...} escapes, as `airlock log` and `airlock approvals` show
// them. Newlines and tabs are kept.
// Fillers, variation selectors, separators and tag characters draw
// nothing either (the same list as `printable` in src/audit/format.rs).
const HIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069\u3164\ufe00-\ufe0f\ufeff\uffa0\u{e0000}-\u{e007f}]/gu;
function visible(text) {
  return text.replace(HIDDEN, (c) => "\\u{" + c.codePointAt(0).toString(16) + "}");
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "-" : visible(String(text));
  if (cls) td.className = cls;
  return td;
}

// "2026-05-01T12:00:00.123Z" -> "2026-05-01 12:00:00Z"
function shortTime(t) {
  return typeof t === "string" ? t.replace("T", " ").replace(/\.\d+Z$/, "Z") : t;
}

function setStatus(text) { $("status").textContent = text; }

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (resp.status === 401) { signOut("the admin token was refused"); throw new Error("unauthorized"); }
  if (!resp.ok) throw new Error((data && data.error) || ("HTTP " + resp.status));
  return data;
}

// ---- approvals ----
async function refreshApprovals() {
  const items = await api("GET", "/api/approvals");
  $("approvals-count").textContent = items.length ? "(" + items.length + ")" : "";
  $("approvals-empty").hidden = items.length > 0;
  const key = items.map((i) => i.id).join(",");
  if (key === state.approvalKey) return; // keep what the reviewer is typing
  // A changed list moves rows under the pointer (an agent can withdraw
  // one request and send another in its place): its buttons wait a
  // moment before they take a click.
  const moved = state.approvalKey !== "";
  state.approvalKey = key;
  const body = $("approvals").querySelector("tbody");
  body.replaceChildren();
  for (const i of items) {
    const tr = document.createElement("tr");
    tr.dataset.id = i.id;
    tr.append(cell(i.id), cell(shortTime(i.requested_at), "time"), cell(i.identity + (i.user ? " (" + i.user + ")" : "")),
      cell(i.model), cell(i.rule + ": " + i.message), statementCell(i));
    const td = document.createElement("td");
    td.className = "decide";
    const window = document.createElement("select");
    window.dataset.window = i.id;
    for (const [value, label] of [["", "once"], ["10m", "for 10m (same parsed statement, any literals)"], ["1h", "for 1h (same parsed statement, any literals)"]]) {
      const o = document.createElement("option");
      o.value = value; o.textContent = label; window.append(o);
    }
    const approve = document.createElement("button");
    approve.type = "button"; approve.className = "approve"; approve.textContent = "Approve";
    approve.dataset.approve = i.id;
    if (moved) {
      approve.disabled = true;
      setTimeout(() => { approve.disabled = false; }, 1000);
    }
    approve.addEventListener("click", () => decide(i.id, "approve", { for: window.value || null }));
    const reason = document.createElement("input");
    reason.type = "text"; reason.placeholder = "reason to deny"; reason.dataset.reason = i.id;
    const deny = document.createElement("button");
    deny.type = "button"; deny.className = "deny"; deny.textContent = "Deny";
    deny.dataset.deny = i.id;
    deny.addEventListener("click", () => {
      if (!reason.value.trim()) { reason.focus(); setStatus("give a reason to deny request " + i.id); return; }
      decide(i.id, "deny", { reason: reason.value });
    });
    const once = document.createElement("div");
    once.append(window, approve);
    const no = document.createElement("div");
    no.append(reason, deny);
    td.append(once, no);
    tr.append(td);
    body.append(tr);
  }
}

// What runs, as airlock parsed it (numbers as ?, strings as '?', comments gone, one
// line), above the text the agent wrote: the text can be made to read
// otherwise than it runs, or padded to push the rest out of sight.
function statementCell(i) {
  const td = document.createElement("td");
  td.className = "sql";
  const runs = document.createElement("div");
  runs.className = "parsed";
  runs.title = "what runs, as airlock parsed it (numbers as ?, strings as '?', parameters as $1 or ?param, comments removed)";
  runs.textContent = "runs: " + visible(String(i.parsed == null ? "-" : i.parsed).replace(/\n/g, "\\n"));
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = visible(String(i.statement == null ? "-" : i.statement));
  td.append(runs, text);
  return td;
}

async function decide(id, action, body) {
  body.by = state.reviewer || "console";
  try {
    await api("POST", "/api/approvals/" + id + "/" + action, body);
    setStatus((action === "approve" ? "approved" : "denied") + " request " + id);
  } catch (e) {
    setStatus(action + " " + id + ": " + e.message);
  }
  state.approvalKey = "";
  refreshApprovals().catch(() => {});
}

// ---- audit log ----
async function refreshLog() {
  const form = $("log-filters");
  const params = new URLSearchParams();
  for (const name of ["identity", "user", "model", "rule", "session", "since", "limit"]) {
    const v = form.elements[name].value.trim();
    if (v) params.set(name, v);
  }
  if (!form.elements["all"].checked) params.set("blocked", "true");
  try {
    const records = await api("GET", "/api/audit?" + params.toString());
    $("log-error").textContent = "";
    const body = $("log").querySelector("tbody");
    body.replaceChildren();
    for (const r of records.slice().reverse()) {
      if (r.kind && r.kind !== "statement" && form.elements["all"].checked === false) continue;
      const tr = document.createElement("tr");
      tr.append(cell(shortTime(r.time), "time"), cell(r.session), cell(r.identity + (r.user ? " (" + r.user + ")" : "")), cell(r.model || (r.declared_model ? r.declared_model + "?" : "")),
        cell(r.decision || r.kind, "decision-" + (r.decision || "")), cell(r.rule),
        cell(r.reason, "reason"), cell(r.statement, "sql"));
      body.append(tr);
    }
  } catch (e) {
    $("log-error").textContent = e.message;
  }
}

// ---- sessions ----
async function refreshSessions() {
  const items = await api("GET", "/api/sessions");
  $("sessions-count").textContent = "(" + items.length + ")";
  const body = $("sessions").querySelector("tbody");
  body.replaceChildren();
  for (const s of items) {
    const tr = document.createElement("tr");
    tr.append(cell("s" + s.id), cell(s.protocol), cell(s.identity), cell(s.model), cell(s.client),
      cell(s.target), cell(shortTime(s.started), "time"));
    const td = document.createElement("td");
    const b = document.createElement("button");
    b.type = "button"; b.className = "terminate"; b.textContent = "Terminate"; b.dataset.terminate = s.id;
    b.addEventListener("click", async () => {
      if (!window.confirm("Terminate session s" + s.id + " of " + s.identity + "?")) return;
      try { await api("POST", "/api/sessions/" + s.id + "/terminate"); setStatus("terminated s" + s.id); }
      catch (e) { setStatus("terminate s" + s.id + ": " + e.message); }
      refreshSessions().catch(() => {});
    });
    td.append(b);
    tr.append(td);
    body.append(tr);
  }
}

// ---- start / stop ----
function poll(fn, ms) {
  const run = () => fn().then(() => {}, (e) => setStatus(e.message));
  run();
  state.timers.push(setInterval(run, ms));
}

function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  setStatus("connected" + (state.reviewer ? " as " + state.reviewer : ""));
  poll(refreshApprovals, 1500);
  poll(refreshSessions, 3000);
  poll(refreshLog, 5000);
}

function signOut(message) {
  state.timers.forEach(clearInterval);
  state.timers = [];
  state.token = null;
  state.approvalKey = "";
  sessionStorage.removeItem("airlock-token");
  $("app").hidden = true;
  $("login").hidden = false;
  $("sign-out").hidden = true;
  $("login-error").textContent = message || "";
  setStatus("");
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value;
    state.reviewer = $("reviewer").value.trim();
    sessionStorage.setItem("airlock-token", state.token);
    sessionStorage.setItem("airlock-reviewer", state.reviewer);
    $("token").value = "";
    start();
  });
  $("log-filters").addEventListener("submit", (ev) => { ev.preventDefault(); refreshLog(); });
  $("sign-out").addEventListener("click", () => signOut(""));
  const saved = sessionStorage.getItem("airlock-token");
  if (saved !== null) {
    state.token = saved;
    state.reviewer = sessionStorage.getItem("airlock-reviewer") || "";
    start();
  }
});
