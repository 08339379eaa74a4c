// The console's pages: the mesh (live over SSE), tasks (A2A ListTasks/GetTask/SendMessage), graphs (live runs, replays), traces.
import { GraphView } from "/static/graph.js";

const $ = sel => document.querySelector(sel);
const h = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) k === "class" ? node.className = v : node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
};
const ms = v => v === null || v === undefined ? "–" : `${v} ms`;
const STATES = s => (s || "").replace("TASK_STATE_", "").toLowerCase();
const state = { mesh: null, graph: null, replay: null };

async function api(path, options) {
  const response = await fetch(path, options);
  if (response.status === 401) { location.href = "/"; throw new Error("unauthorized"); }
  return response.json();
}

async function a2a(agent, method, params) {
  const answer = await api(`/api/a2a/${agent}`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                  body: JSON.stringify({ method, params }) });
  if (answer.error) throw new Error(answer.error.message || answer.error);
  return answer.result;
}

// An A2A streaming call: each SSE event's JSON-RPC result handed to `onEvent` as it arrives.
async function a2aStream(agent, method, params, onEvent) {
  const response = await fetch(`/api/a2a/${agent}`, { method: "POST", headers: { "Content-Type": "application/json" },
                                                      body: JSON.stringify({ method, params }) });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter(l => l.startsWith("data:")).map(l => l.slice(5).trim()).join("\n");
      if (!data) continue;
      const message = JSON.parse(data);
      onEvent(message.result, message.error);
      await new Promise(r => setTimeout(r, 0)); // let the page paint each event
    }
  }
}

// -- navigation --------------------------------------------------------------------------------------
function show() {
  const page = (location.hash || "#mesh").slice(1).split("/")[0];
  for (const s of document.querySelectorAll(".page")) s.hidden = s.id !== `page-${page}`;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("current", a.dataset.page === page);
  if (page === "tasks") loadTasks();
  if (page === "traces") loadTraces();
  if (page === "graphs") loadRuns();
}

// -- the mesh ------------------------------------------------------------------------------------------
function renderStatus(status) {
  $("#live").textContent = `live · ${new Date(status.at * 1000).toLocaleTimeString()}`;
  const agents = $("#agents tbody"), tools = $("#tools tbody");
  agents.replaceChildren(); tools.replaceChildren();
  for (const p of status.processes) {
    const m = p.metrics || {};
    const proc = p.process ? p.process.state : null;
    const health = p.healthy ? h("span", { class: "ok" }, proc === "restarting" ? "restarting" : "up")
                             : h("span", { class: proc === "restarting" ? "warn" : "bad" }, proc === "restarting" ? "restarting" : "down");
    if (p.process && p.process.restarts) health.append(` (${p.process.restarts} restarts)`);
    const blocks = Object.entries(m.guard_blocks || {}).map(([k, v]) => `${k} ${v}`).join(", ");
    const common = [h("td", {}, p.rate ?? "–"), h("td", {}, m.requests ?? "–"), h("td", {}, ms(m.p50_ms)), h("td", {}, ms(m.p99_ms)),
                    h("td", { class: m.errors ? "bad" : "" }, m.errors ?? "–")];
    if (p.kind === "agent") {
      const tasks = Object.entries(m.tasks || {}).map(([k, v]) => `${k} ${v}`).join(", ");
      const row = h("tr", { "data-agent": p.name }, h("td", {}, h("b", {}, p.name), h("br"), h("span", { class: "muted" }, p.url)),
                    h("td", {}, health), h("td", {}, (p.card?.protocols || []).join(", ")),
                    h("td", {}, (p.card?.skills || []).map(s => s.id).join(", ")), ...common,
                    h("td", {}, tasks || "–"), h("td", {}, blocks || "–"));
      row.onclick = () => { $("#card").textContent = JSON.stringify(p.card || p.error, null, 2); $("#card").classList.remove("muted"); };
      agents.append(row);
      if (state.mesh && p.name === state.mesh.guard) {
        const verdicts = Object.entries(m.guard_verdicts || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
        $("#guard").textContent = `${p.name} is ${p.healthy ? "up" : "down"}; verdicts by category: ${verdicts || "none yet"}`;
      }
    } else {
      const calls = Object.entries(m.tool_calls || {}).map(([k, v]) => `${k} ${v}`).join(", ");
      tools.append(h("tr", { "data-tool": p.name }, h("td", {}, h("b", {}, p.name), h("br"), h("span", { class: "muted" }, p.url)),
                     h("td", {}, "streamable HTTP"), h("td", {}, health), ...common, h("td", {}, calls || "–")));
    }
  }
  for (const t of state.mesh.tools.filter(t => t.transport === "stdio"))
    tools.append(h("tr", {}, h("td", {}, h("b", {}, t.name)), h("td", {}, "stdio (started by its clients)"), h("td", { class: "muted" }, "–")));
}

function watchStatus() {
  const source = new EventSource("/api/status/stream");
  source.addEventListener("status", e => renderStatus(JSON.parse(e.data)));
  source.onerror = () => { $("#live").textContent = "reconnecting…"; };
}

// -- tasks -------------------------------------------------------------------------------------------
function partText(part) {
  if (part.text !== undefined) return part.text;
  if (part.data !== undefined) return JSON.stringify(part.data, null, 1);
  if (part.url) return part.url;
  return JSON.stringify(part);
}

async function loadTasks() {
  const agent = $("#task-agent").value;
  if (!agent) return;
  const body = $("#tasks tbody");
  try {
    const result = await a2a(agent, "ListTasks", { pageSize: 50, includeArtifacts: true, historyLength: 0 });
    body.replaceChildren(...(result.tasks || []).map(task => {
      const row = h("tr", { "data-task": task.id }, h("td", {}, task.id), h("td", {}, STATES(task.status?.state)),
                    h("td", {}, task.status?.timestamp || ""), h("td", {}, String((task.artifacts || []).length)));
      row.onclick = () => openTask(agent, task.id);
      return row;
    }));
    if (!(result.tasks || []).length) body.replaceChildren(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "no tasks")));
  } catch (error) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 4, class: "error" }, String(error.message || error))));
  }
}

async function openTask(agent, id) {
  const detail = $("#task-detail");
  detail.classList.remove("muted");
  const task = await a2a(agent, "GetTask", { id, historyLength: 100 });
  const parts = [h("h3", {}, `task ${task.id}: ${STATES(task.status?.state)}`)];
  for (const message of task.history || [])
    parts.push(h("div", { class: "message " + (message.role === "ROLE_AGENT" ? "agent" : "user") },
                 h("b", {}, message.role === "ROLE_AGENT" ? "agent: " : "user: "), (message.parts || []).map(partText).join("\n")));
  if (task.status?.message) parts.push(h("div", { class: "message agent" }, h("b", {}, "status: "), (task.status.message.parts || []).map(partText).join("\n")));
  parts.push(h("h3", {}, "artifacts"));
  for (const artifact of task.artifacts || [])
    parts.push(h("div", { class: "message" }, h("b", {}, `${artifact.name || artifact.artifactId}: `), (artifact.parts || []).map(partText).join("\n")));
  detail.replaceChildren(...parts);
}

async function sendMessage() {
  const agent = $("#task-agent").value, text = $("#send-text").value;
  if (!agent || !text) return;
  const result = await a2a(agent, "SendMessage", { message: { messageId: crypto.randomUUID(), role: "ROLE_USER", parts: [{ text }] } });
  await loadTasks();
  if (result.task) await openTask(agent, result.task.id);
  else $("#task-detail").textContent = (result.message?.parts || []).map(partText).join("\n");
}

// -- graphs --------------------------------------------------------------------------------------------
let view;

function selectGraph() {
  const graph = state.mesh.graphs.find(g => g.name === $("#graph-name").value);
  state.graph = graph;
  $("#graph-description").textContent = graph ? graph.spec.description : "";
  if (graph) view.reset(graph.spec);
  $("#replay-bar").hidden = true;
}

function logStep(event) {
  const line = `${event.active.length} active (${event.active.join(", ")}), ${event.messages_sent} sent` +
    (event.mutations_applied?.length ? `, +${event.mutations_applied.filter(m => m.op === "add_vertex").map(m => m.vertex.id).join(" +") || event.mutations_applied.length + " changes"}` : "") +
    (event.errors?.length ? `, ${event.errors.length} errors` : "");
  $("#run-log").append(h("li", {}, line));
}

function showOutput(name, text) {
  const outputs = $("#run-outputs");
  if (outputs.classList.contains("muted")) { outputs.replaceChildren(); outputs.classList.remove("muted"); }
  outputs.append(h("div", { class: "message", "data-output": name }, h("b", {}, `${name}: `), text));
}

function clearRun() {
  state.watching = null;
  $("#run-log").replaceChildren(); $("#run-outputs").replaceChildren("none yet"); $("#run-outputs").classList.add("muted");
  $("#replay-bar").hidden = true;
}

// One event of a coordinator's A2A stream (SendStreamingMessage or SubscribeToTask) drawn on the graph.
function follow(result, error) {
  if (error) { $("#run-status").textContent = `error: ${error.message}`; return; }
  const update = result.statusUpdate, artifact = result.artifactUpdate, task = result.task;
  // A run started elsewhere keeps saying so while its events arrive.
  const step = text => { $("#run-step").textContent = state.watching ? `watching run ${state.watching.slice(0, 8)}: ${text}` : text; };
  if (task) { $("#run-status").textContent = STATES(task.status?.state); step(`task ${task.id}`); }
  if (update) {
    $("#run-status").textContent = STATES(update.status?.state);
    for (const part of update.status?.message?.parts || [])
      if (part.data && part.data.superstep !== undefined && part.data.active) {
        view.step(part.data); logStep(part.data);
        step(`superstep ${part.data.superstep}`);
      }
  }
  if (artifact) showOutput(artifact.artifact.name, (artifact.artifact.parts || []).map(partText).join("\n"));
}

async function startRun() {
  const graph = state.graph, coordinator = state.mesh.coordinator;
  if (!graph || !coordinator) return;
  selectGraph();
  clearRun();
  $("#run-status").textContent = "starting";
  const message = { messageId: crypto.randomUUID(), role: "ROLE_USER", parts: [{ text: $("#run-input").value }],
                    metadata: { graph: graph.name } };
  await a2aStream(coordinator, "SendStreamingMessage", { message }, follow);
  view.finish();
  loadRuns();
}

// A run started elsewhere (`mesh run`, another page): its supersteps so far from the checkpoints, then live.
async function watchRun(runId, graphName) {
  $("#graph-name").value = graphName;
  selectGraph();
  clearRun();
  const sofar = await api(`/api/runs/${runId}`);
  view.reset(sofar.graph);
  for (const { event } of sofar.supersteps) { view.step(event); logStep(event); }
  $("#run-status").textContent = "working";
  state.watching = runId;
  $("#run-step").textContent = `watching run ${runId.slice(0, 8)}`;
  await a2aStream(state.mesh.coordinator, "SubscribeToTask", { id: runId }, follow);
  view.finish();
  loadRuns();
}

async function loadRuns() {
  const rows = await api("/api/runs");
  $("#runs tbody").replaceChildren(...rows.map(run => {
    const row = h("tr", { "data-run": run.run_id }, h("td", {}, run.run_id.slice(0, 8)), h("td", {}, run.graph), h("td", {}, run.status),
                  h("td", {}, String(run.supersteps)));
    // A run that cannot be opened says why where its progress would be (an error in a click handler is otherwise silent).
    row.onclick = () => (run.status === "running" ? watchRun(run.run_id, run.graph) : openReplay(run.run_id)).catch(error => {
      $("#run-status").textContent = "error";
      $("#run-step").textContent = `run ${run.run_id.slice(0, 8)} could not be opened: ${error.message || error}`;
    });
    if (run.status === "running") row.children[2].append(" (watch live)");
    return row;
  }));
}

async function openReplay(runId) {
  state.replay = { data: await api(`/api/runs/${runId}`), at: -1 };
  $("#replay-bar").hidden = false;
  replayTo(-1);
}

function replayTo(at) {
  const replay = state.replay, steps = replay.data.supersteps;
  replay.at = Math.max(-1, Math.min(at, steps.length - 1));
  view.reset(replay.data.graph);
  $("#run-log").replaceChildren();
  for (let i = 0; i <= replay.at; i++) {
    const { event, calls } = steps[i];
    const edges = [];
    for (const c of calls) for (const e of view.edges.values()) if (e.from === c.vertex) edges.push({ from: e.from, to: e.to, latency_ms: c.latency_ms });
    view.mutate(event.mutations_applied);
    view.step({ ...event, mutations_applied: [], edges: edges.filter(e => event.active.includes(e.from)) });
    logStep(event);
  }
  $("#replay-at").textContent = ` run ${replay.data.run_id.slice(0, 8)} (${replay.data.status}): superstep ${replay.at} of ${steps.length - 1} `;
  $("#run-status").textContent = `replay ${replay.data.status}`;
}

// -- traces ----------------------------------------------------------------------------------------------
async function loadTraces() {
  const rows = await api("/api/traces");
  $("#traces tbody").replaceChildren(...rows.map(t => {
    const row = h("tr", { "data-trace": t.trace_id }, h("td", {}, t.trace_id.slice(0, 12)), h("td", {}, t.name), h("td", {}, t.services.join(", ")),
                  h("td", {}, String(t.spans)), h("td", {}, ms(t.duration_ms)), h("td", {}, new Date(t.start_ns / 1e6).toLocaleTimeString()));
    row.onclick = () => openTrace(t.trace_id);
    return row;
  }));
}

async function openTrace(id) {
  const spans = await api(`/api/traces/${id}`);
  const start = Math.min(...spans.map(s => s.start_ns)), end = Math.max(...spans.map(s => s.end_ns || s.start_ns));
  const total = Math.max(end - start, 1);
  const byId = new Map(spans.map(s => [s.span_id, s]));
  const depth = s => { let d = 0, p = s; while (p.parent_span_id && byId.has(p.parent_span_id) && d < 30) { p = byId.get(p.parent_span_id); d++; } return d; };
  // parents before children, siblings by start
  const children = new Map();
  for (const s of spans) { const p = byId.has(s.parent_span_id) ? s.parent_span_id : null; if (!children.has(p)) children.set(p, []); children.get(p).push(s); }
  const ordered = [];
  const walk = p => { for (const s of (children.get(p) || []).sort((a, b) => a.start_ns - b.start_ns)) { ordered.push(s); walk(s.span_id); } };
  walk(null);
  const rows = ordered.map(s => {
    const bar = h("div", { class: `span-bar ${s.status}`,
                           style: `left:${((s.start_ns - start) / total) * 100}%;width:${(((s.end_ns || s.start_ns) - s.start_ns) / total) * 100}%` });
    const row = h("div", { class: "span-row", "data-span": s.span_id, title: JSON.stringify(s.attributes, null, 1) },
                  h("div", { class: "span-name", style: `padding-left:${depth(s) * 12}px` }, `${s.service}: ${s.name} (${((s.end_ns - s.start_ns) / 1e6).toFixed(2)} ms)`),
                  h("div", { class: "bar-area" }, bar));
    return row;
  });
  $("#waterfall").replaceChildren(h("h3", {}, `trace ${id}: ${spans.length} spans, ${(total / 1e6).toFixed(1)} ms`), ...rows);
}

// -- start ---------------------------------------------------------------------------------------------
async function start() {
  state.mesh = await api("/api/mesh");
  document.title = `mesh ${state.mesh.mesh}`;
  $("#mesh-name").textContent = `mesh ${state.mesh.mesh}`;
  view = new GraphView($("#graph"));
  $("#task-agent").replaceChildren(...state.mesh.agents.map(a => h("option", { value: a.name }, a.name)));
  $("#graph-name").replaceChildren(...state.mesh.graphs.map(g => h("option", { value: g.name }, g.name)));
  $("#graph-name").onchange = selectGraph;
  $("#task-agent").onchange = loadTasks;
  $("#task-refresh").onclick = loadTasks;
  $("#send-button").onclick = sendMessage;
  $("#run-button").onclick = startRun;
  $("#trace-refresh").onclick = loadTraces;
  $("#runs-refresh").onclick = loadRuns;
  $("#replay-prev").onclick = () => replayTo(state.replay.at - 1);
  $("#replay-next").onclick = () => replayTo(state.replay.at + 1);
  selectGraph();
  renderStatus(await api("/api/status"));
  watchStatus();
  window.addEventListener("hashchange", show);
  show();
  document.body.dataset.ready = "true";
}

start();
