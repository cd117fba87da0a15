// The run page: one channel to the hub, and the views it feeds.
import { credentials, setUser, h, fmt, ago, clock } from "./common.js";
import { Channel } from "./channel.js";
import { Charts, markersFrom } from "./charts.js";
import { DatasetBrowser } from "./dataset.js";

const $ = (id) => document.getElementById(id);
const runName = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
document.title = `${runName} — convergent`;
$("run-name").textContent = runName;
let { token, user } = credentials();
const params = new URLSearchParams(location.search);
let view = params.get("view") || "charts";

// Page timings the benchmark reads: navigation start -> chart drawn / grid shown.
window.convergent = { marks: { script: performance.now() } };

const app = {
  canEdit: false,
  session: null,
  /** Other people looking at ``detail`` (a config key, a sample id) in ``inView``. */
  others(inView, detail) {
    return (app.state.presence || []).filter((p) => p.session !== app.session && p.view === inView && p.detail === detail);
  },
  look(detail) {
    if (detail === app.lookingAt) return;
    app.lookingAt = detail;
    channel.tell({ type: "look", view, detail });
  },
  role: null,
  state: {},
  request: (msg) => channel.request(msg),
  mark(name) {
    if (window.convergent.marks[name] === undefined) {
      window.convergent.marks[name] = performance.now();
      performance.mark("convergent:" + name);
    }
  },
  toast(text) {
    const t = $("toast");
    t.textContent = text;
    t.classList.remove("hidden");
    clearTimeout(app.toastTimer);
    app.toastTimer = setTimeout(() => t.classList.add("hidden"), 6000);
  },
};
window.convergent.app = app;

const charts = new Charts($("charts"), { onFirstDraw: () => app.mark("chart") });
window.convergent.charts = charts;
const dataset = new DatasetBrowser($("view-dataset"), app);

// -- tabs ------------------------------------------------------------------------------------
function show(name, tell = true) {
  view = name;
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.dataset.view === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $("view-" + tab.dataset.view).hidden = !on;
  }
  const url = new URL(location.href);
  url.searchParams.set("view", name);
  history.replaceState(null, "", url);
  if (name === "charts") charts.resize();
  if (name === "history") renderHistory();
  if (tell) { app.lookingAt = ""; channel.tell({ type: "look", view: name }); }
}
for (const tab of document.querySelectorAll("[role=tab]")) {
  tab.addEventListener("click", () => show(tab.dataset.view));
  tab.addEventListener("keydown", (e) => {
    const tabs = [...document.querySelectorAll("[role=tab]")];
    const i = tabs.indexOf(tab);
    const j = e.key === "ArrowRight" ? i + 1 : e.key === "ArrowLeft" ? i - 1 : null;
    if (j === null) return;
    const next = tabs[(j + tabs.length) % tabs.length];
    next.focus();
    show(next.dataset.view);
  });
}

// -- the channel -------------------------------------------------------------------------------
let holding = false;
const held = [];
const channel = new Channel(runName, () => ({ token, user, view }), {
  onWelcome(msg) {
    app.mark("welcome");
    app.session = msg.session;
    app.role = msg.role;
    app.canEdit = msg.can_edit;
    document.body.classList.toggle("readonly", !msg.can_edit);
    document.body.classList.remove("loading");
    $("me").textContent = `${msg.user} (${msg.role})`;
    $("banner").classList.add("hidden");
    apply(msg.view, true);
    app.mark("applied");
    // Pushes that arrive meanwhile (the full metric series after their previews) wait
    // until this view has been painted.
    holding = true;
    requestAnimationFrame(() => setTimeout(() => {
      holding = false;
      for (const m of held.splice(0)) apply(m, false);
    }, 0));
  },
  onUpdate(msg) {
    if (holding) held.push(msg);
    else apply(msg, false);
  },
  onStatus(status, wait) {
    if (status === "open") { app.mark("open"); return; }
    const el = $("conn");
    el.className = "conn " + status;
    el.textContent = status === "live" ? "live" : status === "connecting" ? "connecting…" : `offline — retrying in ${Math.round(wait / 1000)} s`;
    if (status === "offline") {
      const b = $("banner");
      b.textContent = "Connection to the hub lost. Edits are not sent while offline; reconnecting…";
      b.classList.remove("hidden");
    }
  },
  onFatal(message, fatal = true) {
    if (!fatal) { app.toast(message); return; }
    const b = $("banner");
    b.replaceChildren(message + " ", h("button", { type: "button", onclick: askToken }, "Enter a token"));
    b.classList.remove("hidden");
    $("conn").className = "conn offline";
    $("conn").textContent = "refused";
  },
});

function askToken() {
  const t = prompt("Access token for this run");
  if (t) {
    token = t.trim();
    localStorage.setItem("convergent.token", token);
    channel.reconnect();
  }
}

$("me").addEventListener("click", () => {
  const name = prompt("Your name (shown to others and in the history)", user);
  if (name && name.trim()) {
    user = name.trim();
    setUser(user);
    channel.reconnect();
  }
});

function apply(v, full) {
  const s = app.state;
  if (v.metrics) charts.update(v.metrics);
  if (v.history) { s.history = v.history; renderHistory(); charts.setMarkers(markersFrom(v.history)); }
  if (v.config) { s.config = v.config; renderConfig(); }
  if (v.dataset) dataset.update(v.dataset);
  if (v.notes) { s.notes = v.notes; renderNotes(); }
  if (v.control) { s.control = v.control; renderControl(); }
  if (v.checkpoints) { s.checkpoints = v.checkpoints; renderCheckpoints(); }
  if (v.presence) { s.presence = v.presence; renderPresence(); }
  if (v.workers) { s.workers = v.workers; renderWorkers(); }
  if (full && !Object.keys(v.metrics || {}).length) app.mark("chart");
  if (window.convergent.onApply) window.convergent.onApply(v); // benchmarks hook here
}

// -- config ------------------------------------------------------------------------------------
function input(p) {
  const id = "cfg-" + p.key;
  const common = { id, name: p.key, disabled: !app.canEdit, "aria-describedby": id + "-msg" };
  if (p.kind === "bool") return h("input", { ...common, type: "checkbox", checked: p.value === true });
  if (p.kind === "choice") {
    return h("select", common, p.choices.map((c, i) => h("option", { value: String(i), selected: JSON.stringify(c) === JSON.stringify(p.value) }, fmt(c))));
  }
  if (p.kind === "int" || p.kind === "float") {
    return h("input", { ...common, type: "number", step: p.kind === "int" ? "1" : "any",
      min: p.min ?? undefined, max: p.max ?? undefined, value: String(p.value), size: 10 });
  }
  const value = p.kind === "list" ? p.value.join(", ") : p.value;
  return h("input", { ...common, type: "text", value, size: 16, maxLength: p.max_len ?? undefined });
}

function readInput(p, el) {
  if (p.kind === "bool") return el.checked;
  if (p.kind === "choice") return p.choices[+el.value];
  if (p.kind === "int" || p.kind === "float") {
    if (el.value.trim() === "" || !Number.isFinite(Number(el.value))) throw new Error(`${p.key}: a number is needed`);
    const n = Number(el.value);
    if (p.kind === "int" && !Number.isInteger(n)) throw new Error(`config key '${p.key}': expected an int, got ${el.value}`);
    return n;
  }
  if (p.kind === "list") {
    const items = el.value.split(",").map((x) => x.trim()).filter(Boolean);
    return p.item === "str" ? items : p.item === "bool" ? items.map((x) => x === "true") : items.map(Number);
  }
  return el.value;
}

/** The schema's rule in words: shown next to the input and checked before sending. */
function rule(p) {
  const parts = [p.kind];
  if (p.min !== null && p.max !== null) parts.push(`${fmt(p.min)} … ${fmt(p.max)}`);
  else if (p.min !== null) parts.push(`≥ ${fmt(p.min)}`);
  else if (p.max !== null) parts.push(`≤ ${fmt(p.max)}`);
  parts.push(`default ${fmt(p.default)}`);
  return parts.join(", ");
}

function localCheck(p, v) {
  if ((p.kind === "int" || p.kind === "float") && p.min !== null && v < p.min) return `config key '${p.key}': ${v} is below the minimum ${p.min}`;
  if ((p.kind === "int" || p.kind === "float") && p.max !== null && v > p.max) return `config key '${p.key}': ${v} is above the maximum ${p.max}`;
  return null;
}

const configStatus = {}; // key -> {text, kind}: saving / saved / error, kept across renders
// key -> the writes on screen when the user started typing: the edit replaces only those,
// so a write that arrived meanwhile stays visible as a conflict instead of being overwritten.
const editBase = {};

async function setConfig(p, value, seen) {
  configStatus[p.key] = { text: "saving…", kind: "pending" };
  delete editBase[p.key];
  renderConfig();
  try {
    await app.request({ type: "set_config", key: p.key, value, seen: seen ?? p.written.map((w) => w.dot) });
    configStatus[p.key] = { text: "saved", kind: "ok" };
  } catch (err) {
    configStatus[p.key] = { text: err.message, kind: "error" };
  }
  renderConfig();
}

function renderConfig() {
  const rows = $("config-rows");
  const conflicts = $("conflicts");
  const config = app.state.config || [];
  const focused = document.activeElement && document.activeElement.id.startsWith("cfg-") ? document.activeElement.id : null;
  const conflictCards = [];
  const trs = config.map((p) => {
    const id = "cfg-" + p.key;
    const keep = focused === id ? document.activeElement : null;
    const el = keep || input(p);
    const status = configStatus[p.key];
    const msg = h("div.msg" + (status ? "." + status.kind : ""), { id: id + "-msg", role: "status" }, status ? status.text : "");
    const form = h("form.cfg", {
      onsubmit: (e) => {
        e.preventDefault();
        let v;
        try { v = readInput(p, el); } catch (err) { configStatus[p.key] = { text: err.message, kind: "error" }; renderConfig(); return; }
        const problem = localCheck(p, v);
        if (problem) { configStatus[p.key] = { text: problem, kind: "error" }; renderConfig(); return; }
        setConfig(p, v, editBase[p.key]);
      },
    }, el, h("button.edit", { type: "submit" }, "Set"), h("button.link.edit", {
      type: "button", title: "Forget the written values: read the default again",
      onclick: async () => { try { await app.request({ type: "reset_config", key: p.key }); } catch (err) { app.toast(err.message); } },
    }, "reset"));
    if (p.kind === "bool" || p.kind === "choice") el.onchange = () => form.requestSubmit();
    el.oninput = () => { if (!(p.key in editBase)) editBase[p.key] = p.written.map((w) => w.dot); };
    el.onfocus = () => app.look(p.key);
    el.onblur = () => setTimeout(() => { if (!document.activeElement?.id?.startsWith("cfg-")) app.look(""); }, 0);
    const editing = app.others("config", p.key);
    const w = p.written[p.written.length - 1];
    const eff = p.in_effect;
    const differs = eff && JSON.stringify(eff.value) !== JSON.stringify(p.value);
    if (p.written.length > 1) {
      conflictCards.push(h("div.card.conflict", { "data-key": p.key, role: "group", "aria-label": `conflict on ${p.key}` },
        h("strong", {}, `Conflict on ${p.key}: `), `${p.written.length} concurrent values. Every replica reads ${fmt(p.value)} until someone picks one.`,
        h("ul", {}, p.written.map((x) => h("li", {},
          h("strong", {}, fmt(x.value)), ` by ${x.by} at ${clock(x.time)} `,
          h("button.edit.resolve", { type: "button", "data-value": JSON.stringify(x.value),
            onclick: () => setConfig(p, x.value, p.written.map((w) => w.dot)) }, `Keep ${fmt(x.value)}`)))),
      ));
    }
    return h("tr", { "data-key": p.key, class: p.written.length > 1 ? "in-conflict" : "" },
      h("th", { scope: "row" }, h("label", { for: id }, p.key),
        editing.map((o) => h("span.editing", { style: `background:${o.color}`, title: `${o.user} is on this key` }, o.user)),
        h("div.small.muted", {}, p.help), h("div.small.muted", {}, rule(p))),
      h("td", {}, form, msg),
      h("td.in-effect" + (differs ? ".stale" : ""), {},
        eff ? [fmt(eff.value), h("div.small.muted", {}, `since step ${fmt(eff.step)}`)] : h("span.muted", {}, "not reported yet"),
        differs ? h("div.small", {}, "requested value not applied yet") : null),
      h("td.small", {}, w ? [`${fmt(w.value)} by ${w.by}`, h("div.muted", {}, ago(w.time))] : h("span.muted", {}, "default")),
    );
  });
  conflicts.replaceChildren(...conflictCards);
  rows.replaceChildren(...trs);
  if (focused) $(focused)?.focus();
}

// -- notes, history, checkpoints ------------------------------------------------------------
function renderNotes() {
  const n = app.state.notes;
  const d = $("description");
  if (document.activeElement !== d) d.value = n.description;
  d.readOnly = !app.canEdit;
  $("comments").replaceChildren(...n.comments.slice().reverse().map((c) =>
    h("li.card.comment" + (c.resolved ? ".resolved" : ""), { "data-id": c.id },
      h("div.small.muted", {}, `${c.author || "someone"} · ${clock(c.created)}` + (c.edited_by && c.edited !== c.created ? ` · edited by ${c.edited_by}` : "") + (c.resolved ? " · resolved" : "")),
      h("p", {}, c.text),
      h("div.edit", {},
        h("button", { type: "button", onclick: () => act({ type: "comment_resolve", comment: c.id, resolved: !c.resolved }) }, c.resolved ? "Reopen" : "Resolve"),
        h("button", { type: "button", onclick: () => { const t = prompt("Edit comment", c.text); if (t !== null) act({ type: "comment_edit", comment: c.id, text: t }); } }, "Edit"),
        h("button.danger", { type: "button", onclick: () => act({ type: "comment_delete", comment: c.id }) }, "Delete")),
    )));
}

async function act(msg) {
  try {
    return await app.request(msg);
  } catch (err) {
    app.toast(err.message);
    return null;
  }
}

$("description-save").addEventListener("click", () => act({ type: "description", text: $("description").value }));
$("comment-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("comment-text").value.trim();
  if (!text) return;
  if (await act({ type: "comment_add", text })) $("comment-text").value = "";
});

function renderHistory() {
  if (view !== "history") return; // drawn when shown: a busy run changes it often
  const part = $("h-part").value;
  const entries = (app.state.history || []).filter((e) => !part || e.part === part).slice().reverse();
  $("history").replaceChildren(...entries.map((e) =>
    h("li", {}, h("time", { datetime: e.time }, clock(e.time)), " ", h("strong", {}, e.user), " ",
      h("span", {}, e.what), e.step !== null ? h("span.step", {}, ` in effect at step ${fmt(e.step)}`) : null)));
}
$("h-part").addEventListener("change", renderHistory);

function renderCheckpoints() {
  $("checkpoints").replaceChildren(...app.state.checkpoints.slice().reverse().map((c) =>
    h("tr", {}, h("td", {}, fmt(c.step)), h("td", {}, h("code", {}, c.id)), h("td", {}, `${fmt(Math.round(c.size / 1024))} KB`),
      h("td.small", {}, Object.entries(c.metrics).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")),
      h("td", {}, c.by), h("td", {}, clock(c.time)))));
  if (!app.state.checkpoints.length) $("checkpoints").replaceChildren(h("tr", {}, h("td.muted", { colSpan: 6 }, "No checkpoints yet: “Checkpoint now” asks the trainer for one.")));
}

// -- control, presence, workers ------------------------------------------------------------
function renderControl() {
  const c = app.state.control;
  for (const el of [$("run-state")]) { el.textContent = c.state; el.className = "badge state-" + c.state; }
  $("state-text").textContent = c.state + (c.conflict.length ? ` (concurrent: ${c.conflict.join(" / ")})` : "");
  $("btn-pause").disabled = c.state !== "running";
  $("btn-resume").disabled = c.state === "running";
  $("btn-stop").disabled = c.state === "stopped";
  $("pending").replaceChildren(...c.pending.map((p) => h("li", {}, `${p.name} requested by ${p.by}, waiting for a trainer`)));
}
for (const [btn, action] of [["btn-pause", "pause"], ["btn-resume", "resume"], ["btn-stop", "stop"], ["btn-checkpoint", "checkpoint"]]) {
  $(btn).addEventListener("click", async () => {
    if (action === "stop" && !confirm("Stop training? A stopped run can be resumed.")) return;
    $(btn).classList.add("pending");
    await act({ type: "control", action });
    $(btn).classList.remove("pending");
  });
}

function initials(name) {
  return name.replace(/[^A-Za-z0-9]/g, "").slice(0, 2).toUpperCase() || "?";
}

function renderPresence() {
  const people = app.state.presence || [];
  // Redraw a view only when who is on what in it changed: a redraw under a click eats it.
  const spots = JSON.stringify(people.filter((p) => p.session !== app.session && p.detail).map((p) => [p.user, p.view, p.detail, p.color]));
  if (spots !== app.spots) {
    app.spots = spots;
    if (view === "config") renderConfig();
    if (view === "dataset") dataset.render();
  }
  $("presence").replaceChildren(...people.map((p) =>
    h("span.avatar", { style: `background:${p.color}`, title: `${p.user} (${p.role}) — looking at ${p.view}` }, initials(p.user))));
  $("people").replaceChildren(...people.map((p) =>
    h("li", { "data-user": p.user }, h("span.dot", { style: `background:${p.color}` }), h("strong", {}, p.user),
      ` ${p.role} · looking at `, h("em", {}, p.view + (p.detail ? ` · ${p.detail}` : "")))));
}

function renderWorkers() {
  const ws = app.state.workers || [];
  $("workers").replaceChildren(...(ws.length ? ws.map((w) =>
    h("li", { "data-user": w.user }, h("strong", {}, w.user), ` ${w.role}`,
      w.last_step !== null ? h("div.small.muted", {}, `step ${fmt(w.last_step)} · ${ago(w.last_time)}`) : null)) :
    [h("li.muted", {}, "No trainer or client connected.")]));
}
setInterval(renderWorkers, 5000);

$("smoothing").addEventListener("input", (e) => {
  $("smoothing-value").textContent = (+e.target.value).toFixed(2);
  charts.setSmoothing(+e.target.value);
});
$("zoom-reset").addEventListener("click", () => charts.resetZoom());
$("log-y").addEventListener("change", (e) => charts.setLog(e.target.checked));

show(["charts", "config", "dataset", "notes", "history", "checkpoints"].includes(view) ? view : "charts", false);
