// Handoff console: one small script, no dependencies. Every value from the server is written
// with textContent (never as HTML). Every rule is the server's: this page only shows and asks.
"use strict";

let me = null;
let stream = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function main() { return document.getElementById("main"); }
// What a view leaves out (a `null` in its list) is left out, never written as "null".
function show(...nodes) { main().replaceChildren(...nodes.flat(Infinity).filter(n => n !== null && n !== undefined && n !== false)); }
function say(text) { document.getElementById("live").textContent = text; }

async function api(path, options) {
  const init = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  if (init.body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(init.body);
  }
  if (init.method && init.method !== "GET" && me) init.headers["x-handoff-csrf"] = me.csrf;
  const response = await fetch("/console/api" + path, init);
  let body = {};
  try { body = await response.json(); } catch (_) { body = {}; }
  if (!response.ok) {
    const error = new Error(body.error_description || ("HTTP " + response.status));
    error.code = body.error; error.status = response.status;
    throw error;
  }
  return body;
}

function notice(text, kind) { return el("p", { class: "notice " + (kind || ""), role: kind === "error" ? "alert" : "status" }, text); }

function duration(seconds) {
  if (seconds <= 0) return "now";
  const m = Math.floor(seconds / 60), s = seconds % 60;
  return m >= 60 ? Math.floor(m / 60) + "h " + (m % 60) + "m" : m > 0 ? m + "m " + s + "s" : s + "s";
}

// `payments:create` under the system `payments` reads `create`.
function short(a) { return a.actions.map(x => x.startsWith(a.system + ":") ? x.slice(a.system.length + 1) : x).join(", "); }

function tag(text, cls) { return el("span", { class: "tag " + (cls || "") }, text); }

function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.filter(p => p[1] !== null && p[1] !== undefined && p[1] !== "")
    .map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function details(value) {
  if (!value) return "none";
  return el("pre", { "data-testid": "details" }, JSON.stringify(value, null, 2));
}

function live(approval) {
  if (stream) { stream.close(); stream = null; }
  const query = approval ? "?approval=" + encodeURIComponent(approval) : "";
  stream = new EventSource("/console/api/events" + query);
  let first = true;
  stream.addEventListener("change", () => {
    if (first) { first = false; return; }
    say("This page changed; showing the latest.");
    route(true);
  });
}

async function signIn() {
  try { me = await api("/me"); } catch (error) { me = null; }
  const who = document.getElementById("who");
  const out = document.getElementById("sign-out");
  if (me) {
    who.textContent = me.user + " · " + me.groups.join(", ") + (me.operator ? " · operator" : "");
    out.hidden = false;
    document.getElementById("nav-operator").hidden = !me.operator;
  }
}

async function signedOut(failed) {
  let options = { oidc: false };
  try { options = await api("/sign-in-options"); } catch (_) { /* links only */ }
  show(el("h1", {}, "Sign in"),
    failed ? notice("That sign-in did not work: the link was already used, has expired, or the provider refused.", "error") : null,
    options.oidc ? el("p", {}, el("a", { class: "button", id: "oidc", href: "/console/oidc/start" }, "Sign in with your organisation")) : null,
    el("p", {}, "Ask an operator for a one-time sign-in link:"),
    el("pre", {}, "handoff approver login --user YOU --group YOUR-GROUP"),
    el("p", { class: "muted" }, "The link works once and expires after a few minutes."));
}

async function inbox(quiet) {
  const data = await api("/approvals");
  const list = (items, empty) => items.length === 0 ? el("p", { class: "muted" }, empty) :
    el("ul", { class: "plain", role: "list" }, items.map(a => el("li", { class: "card", "data-approval": a.id },
      el("a", { class: "title", href: "#/approval/" + encodeURIComponent(a.id) },
        a.system + ": " + short(a) + (a.resource ? " on " + a.resource : "")),
      el("div", { class: "row" },
        tag(a.status, "status-" + a.status), tag("risk " + a.risk, "risk-" + a.risk),
        el("span", {}, "agent " + a.agent + " for " + a.user),
        a.status === "pending" ? el("span", {}, "expires in " + duration(a.seconds_to_expiry)) : null,
        a.status === "pending" ? el("span", {}, a.escalated ? "escalated" : "escalates in " + duration(a.seconds_to_escalation)) : null,
        a.decided_by ? el("span", {}, "by " + a.decided_by) : null))));
  show(el("h1", {}, "Approvals waiting for you"),
    list(data.pending, "Nothing is waiting for your groups."),
    el("h2", {}, "Recently closed"),
    list(data.recent, "None yet."));
  if (!quiet) live(null);
}

async function request(id, quiet) {
  const a = await api("/approvals/" + encodeURIComponent(id));
  const ctx = a.task_context || {};
  const chain = [a.agent].concat((a.delegations || []).map(d => d.delegate + " (depth " + d.depth + ")"));
  const history = (ctx.history || []).map(h => el("li", {},
    el("span", { class: "muted" }, h.at + " "), h.kind + " ",
    h.system ? h.system + " " : "", (h.actions || []).join(", ") + " ",
    h.outcome ? el("span", { class: "outcome-" + h.outcome }, h.outcome) : null,
    h.reason ? " (" + h.reason + ")" : ""));
  const result = el("div", { id: "result" });
  const reason = el("textarea", { id: "reason", name: "reason", rows: "3", required: true, maxlength: "1024" });
  async function decide(verb) {
    if (!reason.value.trim()) { result.replaceChildren(notice("A reason is required.", "error")); reason.focus(); return; }
    try {
      const done = await api("/approvals/" + encodeURIComponent(id) + "/" + verb, { method: "POST", body: { reason: reason.value } });
      result.replaceChildren(notice("You " + done.status + " this request.", "ok"));
      say("Decision recorded: " + done.status);
      await request(id, true);
    } catch (error) {
      result.replaceChildren(notice(error.message + (error.code ? " (" + error.code + ")" : ""), "error"));
    }
  }
  const pending = a.status === "pending" && ctx.state === "open";
  show(
    el("p", {}, el("a", { href: "#/" }, "← Inbox")),
    el("h1", {}, a.system + ": " + short(a)),
    el("p", { class: "row" }, tag(a.status, "status-" + a.status), tag("risk " + a.risk, "risk-" + a.risk),
      el("span", { "data-testid": "task-state" }, "task " + ctx.state)),
    el("h2", {}, "The task"),
    facts([["Intent", ctx.intent], ["Purpose", ctx.purpose], ["On behalf of", a.user],
      ["Agent", a.agent], ["Delegation chain", chain.join(" → ")], ["Task", a.task]]),
    el("h2", {}, "The exact request"),
    facts([["System", a.system + (a.system_description ? " — " + a.system_description : "")],
      ["Actions", short(a)], ["Resource", a.resource || "any"],
      ["Details", details(a.authorization_details)], ["Gated by", (a.gating_policies || []).join(", ") || "the system's require_approval"],
      ["Approver group", a.approver_group], ["Requested", a.created_at],
      ["Escalates", a.escalated ? "escalated" : "in " + duration(a.seconds_to_escalation)],
      ["Expires", a.status === "pending" ? "in " + duration(a.seconds_to_expiry) : a.expires_at],
      ["Decided by", a.decided_by], ["Reason", a.reason], ["Request hash", a.request_hash]]),
    el("h2", {}, "The task so far"),
    history.length ? el("ol", { class: "history" }, history) : el("p", { class: "muted" }, "No earlier steps."),
    pending ? el("form", { class: "decide", onsubmit: e => e.preventDefault() },
      el("label", { for: "reason" }, "Reason (recorded with your decision)"), reason,
      el("div", { class: "buttons" },
        el("button", { type: "button", class: "approve", id: "approve", onclick: () => decide("approve") }, "Approve"),
        el("button", { type: "button", class: "deny", id: "deny", onclick: () => decide("deny") }, "Deny"))) : null,
    result);
  if (!quiet) live(id);
}

function describe(e) {
  const parts = [e.kind || "event"];
  if (e.system) parts.push(e.system);
  if (e.actions && e.actions.length) parts.push(e.actions.join(", "));
  if (e.target) parts.push("→ " + e.target);
  if (e.usage) parts.push(e.usage.call + " → " + e.usage.status);
  return parts.join(" · ");
}

function stepItem(step) {
  const e = step.event || {};
  return el("li", { "data-kind": e.kind || "event" },
    el("div", {}, el("span", { class: "muted" }, "#" + step.seq + " " + step.at + " "), el("strong", {}, describe(e)), " ",
      e.outcome ? el("span", { class: "outcome-" + e.outcome }, e.outcome) : null),
    el("div", { class: "muted" }, [e.reason ? "reason: " + e.reason : null,
      e.policies && e.policies.length ? "policies: " + e.policies.join(", ") : null,
      e.actor ? "by " + e.actor : null, e.approval ? "approval " + e.approval : null,
      e.token ? "token " + e.token.jti + " for " + e.token.aud + " (" + e.token.scope + ")" : null,
      e.description ? "“" + e.description + "”" : null]
      .filter(Boolean).join(" · ")),
    e.authorization_details ? details(e.authorization_details) : null,
    step.uses && step.uses.length
      ? el("ul", { class: "uses", "aria-label": "Uses of this token" }, step.uses.map(u =>
        el("li", { "data-kind": "use" }, el("span", { class: "muted" }, "#" + u.seq + " " + u.at + " "), describe(u.event || {}))))
      : null);
}

// A delegation: its delegate's steps and the delegations it made, nested under the one above.
function delegationItem(d) {
  return el("li", { class: "delegation", "data-delegation": d.id },
    el("div", {}, el("strong", {}, "Delegated to " + d.delegate), " ",
      el("span", { class: "muted" }, "depth " + d.depth + " · " + d.actions.join(", ") + " · " + d.id + " · until " + d.expires_at)),
    el("ol", { class: "timeline nested" }, withDelegations(d.steps, d.delegations)));
}

// Steps in order, each delegation right after the step that made it (any other at the end).
function withDelegations(steps, delegations) {
  const byId = new Map(delegations.map(d => [d.id, d]));
  const items = [];
  for (const step of steps) {
    items.push(stepItem(step));
    const made = step.event && step.event.kind === "delegate" && byId.get(step.event.delegation);
    if (made) { items.push(delegationItem(made)); byId.delete(made.id); }
  }
  return items.concat([...byId.values()].map(delegationItem));
}

async function taskView(id) {
  const data = await api("/tasks/" + encodeURIComponent(id));
  const t = data.task;
  const chains = [];
  const walk = ds => ds.forEach(d => { chains.push(d.actors.slice().reverse().join(" → ")); walk(d.delegations); });
  walk(data.delegations);
  show(el("p", {}, el("a", { href: "#/operator" }, "← Operations")),
    el("h1", {}, "Task " + t.id),
    facts([["Intent", t.intent], ["Agent", t.agent], ["On behalf of", t.user], ["Purpose", t.purpose],
      ["Plan", t.plan.join(", ")], ["State", t.state], ["Opened", t.created_at], ["Expires", t.expires_at],
      ["Delegations", chains.join("; ") || "none"]]),
    revokeForm("task", t.id),
    el("h2", {}, "Timeline"),
    data.records_left_out ? el("p", { class: "muted" }, data.records_left_out + " older records are not shown.") : null,
    el("ol", { class: "timeline", "data-testid": "timeline" },
      withDelegations(data.steps, data.delegations)));
}

function revokeForm(kind, id) {
  const result = el("div", {});
  const reason = el("input", { id: "revoke-reason", name: "reason", required: true, maxlength: "1024" });
  let armed = false;
  const button = el("button", { type: "button", class: "danger", id: "revoke" }, "Revoke " + kind);
  button.addEventListener("click", async () => {
    if (!reason.value.trim()) { result.replaceChildren(notice("A reason is required.", "error")); return; }
    if (!armed) { armed = true; button.textContent = "Confirm: revoke " + kind + " " + id; return; }
    try {
      await api("/revoke", { method: "POST", body: { kind: kind, id: id, reason: reason.value } });
      result.replaceChildren(notice("Revoked.", "ok")); say("Revoked");
    } catch (error) { result.replaceChildren(notice(error.message, "error")); }
    armed = false; button.textContent = "Revoke " + kind;
  });
  return el("form", { class: "action", onsubmit: e => e.preventDefault() },
    el("label", { for: "revoke-reason" }, "Reason to revoke"), reason, el("div", { class: "buttons" }, button), result);
}

function liveLists(data) {
  const search = el("input", { id: "search", type: "search", placeholder: "agent, user, task or intent", "aria-label": "Search live tasks and agents" });
  const tasks = el("ul", { role: "list", "data-testid": "live-tasks" });
  const agents = el("ul", { role: "list", "data-testid": "agents" });
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const hit = (...fields) => !q || fields.some(f => String(f || "").toLowerCase().includes(q));
    tasks.replaceChildren(...data.tasks.filter(t => hit(t.id, t.agent, t.user, t.intent, t.purpose)).map(t =>
      el("li", { class: "card" }, el("a", { class: "title", href: "#/task/" + encodeURIComponent(t.id) }, t.intent || t.id),
        el("div", { class: "row" }, el("span", {}, t.agent + " for " + t.user), tag(t.purpose),
          el("span", {}, t.live_tokens + " live token(s)"), el("span", { class: "muted" }, t.id)))));
    agents.replaceChildren(...data.agents.filter(a => hit(a.agent, a.issuer, ...(a.users || []))).map(a =>
      el("li", { class: "card", "data-agent": a.agent }, el("strong", {}, a.agent),
        el("div", { class: "row" }, el("span", {}, "issuer " + a.issuer), el("span", {}, "for " + a.users.join(", ")),
          el("span", {}, a.live_tasks + " live task(s)"), el("span", {}, a.live_tokens + " live token(s)")))));
  };
  search.addEventListener("input", draw);
  draw();
  return [el("h2", {}, "Live tasks and agents"), search,
    data.complete ? null : el("p", { class: "muted" }, "Only tasks opened in the newest audit records are listed."),
    el("h2", {}, "Agents"), agents, el("h2", {}, "Live tasks"), tasks];
}

async function operations() {
  const data = await api("/live");
  const task = el("input", { id: "task-id", name: "task", placeholder: "task_…" });
  const system = el("input", { id: "system-id", name: "system", placeholder: "payments" });
  const reason = el("input", { id: "freeze-reason", name: "reason", maxlength: "1024" });
  const result = el("div", {});
  const act = verb => {
    let armed = false;
    const button = el("button", { type: "button", class: "danger", id: verb }, verb[0].toUpperCase() + verb.slice(1));
    button.addEventListener("click", async () => {
      if (!system.value.trim() || !reason.value.trim()) { result.replaceChildren(notice("A system and a reason are required.", "error")); return; }
      if (!armed) { armed = true; button.textContent = "Confirm: " + verb + " " + system.value; return; }
      armed = false; button.textContent = verb[0].toUpperCase() + verb.slice(1);
      try {
        await api("/" + verb, { method: "POST", body: { system: system.value, reason: reason.value } });
        result.replaceChildren(notice(system.value + ": " + verb + " done.", "ok"));
      } catch (error) { result.replaceChildren(notice(error.message, "error")); }
    });
    return button;
  };
  show(el("h1", {}, "Operations"),
    el("form", { class: "action", onsubmit: e => { e.preventDefault(); location.hash = "#/task/" + encodeURIComponent(task.value.trim()); } },
      el("label", { for: "task-id" }, "Open a task's timeline"), task,
      el("div", { class: "buttons" }, el("button", { type: "submit" }, "Open"))),
    el("form", { class: "action", onsubmit: e => e.preventDefault() },
      el("label", { for: "system-id" }, "Freeze or unfreeze a system"), system,
      el("label", { for: "freeze-reason" }, "Reason"), reason,
      el("div", { class: "buttons" }, act("freeze"), act("unfreeze")), result),
    liveLists(data));
}

async function route(quiet) {
  const hash = location.hash || "#/";
  if (!quiet && stream) { stream.close(); stream = null; }
  if (!me) { await signedOut(hash === "#sign-in-failed"); return; }
  try {
    let m;
    if ((m = hash.match(/^#\/approval\/(.+)$/))) await request(decodeURIComponent(m[1]), quiet);
    else if ((m = hash.match(/^#\/task\/(.+)$/))) await taskView(decodeURIComponent(m[1]));
    else if (hash === "#/operator") await operations();
    else await inbox(quiet);
    if (!quiet) main().focus();
  } catch (error) {
    if (error.status === 401) { me = null; await signedOut(false); return; }
    show(notice(error.message + (error.code ? " (" + error.code + ")" : ""), "error"),
      el("p", {}, el("a", { href: "#/" }, "← Inbox")));
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("sign-out").addEventListener("click", async () => {
    try { await api("/sign-out", { method: "POST" }); } catch (_) { /* signed out either way */ }
    me = null; location.hash = "#/"; location.reload();
  });
  window.addEventListener("hashchange", () => route(false));
  await signIn();
  await route(false);
});
