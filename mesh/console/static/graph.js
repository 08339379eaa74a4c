// Drawing a graph of mesh.yaml as SVG (layers by longest path from the entry), and its run state on top.
const SVG = "http://www.w3.org/2000/svg";
const W = 130, H = 44, GAP_X = 90, GAP_Y = 26;

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function edgeEnds(edge) {
  if (typeof edge === "string") { const [a, b] = edge.split("->").map(s => s.trim()); return [a, b]; }
  return [edge.from, edge.to];
}

function joinLabel(join) {
  if (!join || join === "all") return "join all";
  if (typeof join === "string") return `join ${join}`;
  return "join " + Object.entries(join).map(([k, v]) => `${k} ${v}`).join(", ");
}

export class GraphView {
  constructor(container) { this.container = container; this.reset({ vertices: [], edges: [], entry: [] }); }

  // A fresh drawing of `spec` (a GraphSpec as JSON): no run state.
  reset(spec) {
    this.vertices = new Map(spec.vertices.map(v => [v.id, { spec: v, added: false, removed: false }]));
    this.edges = new Map();
    for (const e of spec.edges || []) { const [a, b] = edgeEnds(e); this.edges.set(`${a}->${b}`, { from: a, to: b, label: "" }); }
    this.entry = spec.entry || [];
    this.outputs = new Set(spec.outputs || []);
    this.active = new Set(); this.produced = new Set(); this.failed = new Set();
    this.draw();
  }

  // Topology changes applied at a barrier (the `mutations_applied` of a superstep event).
  mutate(mutations) {
    for (const m of mutations || []) {
      if (m.op === "add_vertex") this.vertices.set(m.vertex.id, { spec: m.vertex, added: true, removed: false });
      else if (m.op === "remove_vertex" && this.vertices.has(m.id)) this.vertices.get(m.id).removed = true;
      else if (m.op === "add_edge") this.edges.set(`${m.from}->${m.to}`, { from: m.from, to: m.to, label: "", added: true });
      else if (m.op === "remove_edge") this.edges.delete(`${m.from}->${m.to}`);
    }
  }

  // One superstep's event: its active vertices, the vertices with output, errors, and per-edge figures.
  step(event) {
    this.mutate(event.mutations_applied);
    this.active = new Set(event.active || []);
    for (const v of event.outputs || []) this.produced.add(v);
    for (const e of event.errors || []) if (e.vertex) this.failed.add(e.vertex);
    for (const f of event.edges || []) {
      const key = `${f.from}->${f.to}`;
      if (!this.edges.has(key)) this.edges.set(key, { from: f.from, to: f.to, label: "" });
      const parts = [`${f.latency_ms.toFixed(f.latency_ms < 10 ? 1 : 0)} ms`];
      if (f.tokens) parts.push(`${f.tokens} tok`);
      if (f.cost) parts.push(`$${Number(f.cost).toFixed(4)}`);
      Object.assign(this.edges.get(key), { label: parts.join(" · "), hot: true });
    }
    this.draw();
    for (const edge of this.edges.values()) edge.hot = false;
  }

  finish() { this.active = new Set(); this.draw(); }

  layers() {
    const ids = [...this.vertices.keys()];
    const layer = new Map(ids.map(id => [id, this.entry.includes(id) ? 0 : -1]));
    for (let round = 0; round < ids.length; round++) {
      let moved = false;
      for (const { from, to } of this.edges.values()) {
        const a = layer.get(from), b = layer.get(to);
        if (a === undefined || b === undefined || a < 0) continue;
        if (b < a + 1 && !this.entry.includes(to)) { layer.set(to, a + 1); moved = true; }
      }
      if (!moved) break;
    }
    const deepest = Math.max(0, ...layer.values());
    for (const id of ids) if (layer.get(id) < 0) layer.set(id, deepest + 1);
    return layer;
  }

  draw() {
    const layer = this.layers();
    const columns = new Map();
    for (const [id, l] of layer) { if (!columns.has(l)) columns.set(l, []); columns.get(l).push(id); }
    const pos = new Map();
    const tallest = Math.max(1, ...[...columns.values()].map(c => c.length));
    const height = tallest * (H + GAP_Y) + 40;
    for (const [l, ids] of columns) {
      const offset = (height - ids.length * (H + GAP_Y)) / 2;
      ids.forEach((id, i) => pos.set(id, { x: 20 + l * (W + GAP_X), y: offset + i * (H + GAP_Y) }));
    }
    const width = 40 + (Math.max(0, ...columns.keys()) + 1) * (W + GAP_X);
    const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, id: "graph-svg" });
    const defs = el("defs");
    const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
    marker.append(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#94a3b8" }));
    defs.append(marker); svg.append(defs);
    for (const edge of this.edges.values()) {
      const a = pos.get(edge.from), b = pos.get(edge.to);
      if (!a || !b) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      const back = x2 <= x1;
      const d = back ? `M${x1 - W / 2},${a.y + H} C${x1 - W / 2},${a.y + H + 60} ${x2 + W / 2},${b.y + H + 60} ${x2 + W / 2},${b.y + H}`
                     : `M${x1},${y1} C${x1 + GAP_X / 2},${y1} ${x2 - GAP_X / 2},${y2} ${x2},${y2}`;
      const g = el("g", { class: "edge-group", "data-edge": `${edge.from}->${edge.to}` });
      g.append(el("path", { d, class: "edge" + (edge.hot ? " hot" : ""), "marker-end": "url(#arrow)" }));
      if (edge.label) g.append(el("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 6, class: "edge-label", "text-anchor": "middle" }, edge.label));
      svg.append(g);
    }
    for (const [id, v] of this.vertices) {
      const p = pos.get(id);
      const classes = ["vertex"];
      if (v.added) classes.push("added");
      if (v.removed) classes.push("removed");
      if (this.active.has(id)) classes.push("active");
      if (this.produced.has(id) && (this.outputs.size === 0 || this.outputs.has(id))) classes.push("output");
      if (this.failed.has(id)) classes.push("failed");
      const g = el("g", { class: classes.join(" "), "data-id": id, transform: `translate(${p.x},${p.y})` });
      g.append(el("rect", { width: W, height: H }));
      g.append(el("text", { x: W / 2, y: 15 }, id));
      const what = v.spec.agent ? `${v.spec.kind} ${v.spec.agent}` : v.spec.kind;
      g.append(el("text", { x: W / 2, y: 31, class: "sub" }, `${what} · ${joinLabel(v.spec.join)}`));
      const title = el("title", {}, JSON.stringify(v.spec, null, 1));
      g.append(title);
      svg.append(g);
    }
    this.container.replaceChildren(svg);
  }
}
