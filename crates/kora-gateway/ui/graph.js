// A run's graph, laid out left to right and drawn as SVG. The layout is deterministic: the
// same graph always gives the same picture (layers by longest path over the non-cycle
// connections, nodes in the workflow's order, then a few barycentre sweeps whose ties keep
// the previous order).

const SVG = 'http://www.w3.org/2000/svg';
export const NODE_W = 192;
export const NODE_H = 52;
const X_GAP = 252;
const Y_GAP = 76;
const PAD = 24;

// Each state's label and glyph: the colour is never the only signal.
export const STATES = {
  pending: ['pending', '…'],
  running: ['running', '▶'],
  retrying: ['retrying', '↻'],
  succeeded: ['succeeded', '✓'],
  failed: ['failed', '✗'],
  dead_lettered: ['dead-lettered', '✉'],
  skipped: ['skipped', '↷'],
  not_run: ['not run', '∅'],
};

export function stateLabel(state) {
  return (STATES[state] || [state, '?'])[0];
}
export function stateGlyph(state) {
  return (STATES[state] || [state, '?'])[1];
}

/// Each node's layer (longest path from a source over the non-cycle connections), with the
/// successor and predecessor lists it was computed from.
export function layers(nodes, edges) {
  const n = nodes.length;
  const index = new Map(nodes.map((node, i) => [node.id, i]));
  const succ = Array.from({ length: n }, () => []);
  const pred = Array.from({ length: n }, () => []);
  const indeg = new Array(n).fill(0);
  for (const e of edges) {
    const s = index.get(e.source);
    const t = index.get(e.target);
    if (s === undefined || t === undefined || s === t || e.cycle) continue;
    succ[s].push(t);
    pred[t].push(s);
    indeg[t] += 1;
  }
  const layer = new Array(n).fill(0);
  const placed = new Array(n).fill(false);
  const queue = [];
  for (let i = 0; i < n; i++) if (indeg[i] === 0) queue.push(i);
  for (let head = 0; head < queue.length; head++) {
    const i = queue[head];
    placed[i] = true;
    for (const t of succ[i]) {
      layer[t] = Math.max(layer[t], layer[i] + 1);
      indeg[t] -= 1;
      if (indeg[t] === 0) queue.push(t);
    }
  }
  let maxLayer = 0;
  for (let i = 0; i < n; i++) if (placed[i]) maxLayer = Math.max(maxLayer, layer[i]);
  // A cycle whose back edge is not marked: its nodes go after everything else.
  for (let i = 0; i < n; i++) if (!placed[i]) layer[i] = maxLayer + 1;
  return { layer, succ, pred };
}

/// Positions of `nodes` ([{id}]) joined by `edges` ([{source, target, cycle}]).
export function layout(nodes, edges) {
  const n = nodes.length;
  const { layer, succ, pred } = layers(nodes, edges);
  const columns = [];
  for (let i = 0; i < n; i++) (columns[layer[i]] ||= []).push(i);
  for (let c = 0; c < columns.length; c++) columns[c] ||= [];
  const pos = new Array(n).fill(0);
  const renumber = (col) => col.forEach((i, k) => (pos[i] = k));
  columns.forEach(renumber);
  const sweep = (col, neighbours) => {
    const key = new Map();
    for (const i of col) {
      const ns = neighbours[i];
      key.set(i, ns.length ? ns.reduce((a, j) => a + pos[j], 0) / ns.length : pos[i]);
    }
    col.sort((a, b) => key.get(a) - key.get(b) || pos[a] - pos[b]);
    renumber(col);
  };
  for (let round = 0; round < 4; round++) {
    for (let c = 1; c < columns.length; c++) sweep(columns[c], pred);
    for (let c = columns.length - 2; c >= 0; c--) sweep(columns[c], succ);
  }
  const tallest = columns.reduce((m, col) => Math.max(m, col.length), 0);
  const at = new Map();
  for (let i = 0; i < n; i++) {
    // Short columns are centred against the tallest.
    const offset = ((tallest - columns[layer[i]].length) * Y_GAP) / 2;
    at.set(nodes[i].id, { x: PAD + layer[i] * X_GAP, y: PAD + offset + pos[i] * Y_GAP });
  }
  return {
    at,
    width: PAD * 2 + (columns.length - 1) * X_GAP + NODE_W,
    height: PAD * 2 + (tallest - 1) * Y_GAP + NODE_H + 40,
  };
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function clip(text, max) {
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}

/// An <svg> of the graph; `onSelect(nodeId)` is called on click, Enter or Space.
export function render(graph, onSelect) {
  const { at, width, height } = layout(graph.nodes, graph.edges);
  const svg = el('svg', {
    class: 'graph',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'group',
    'aria-label': `workflow graph of ${graph.nodes.length} nodes`,
  });
  const defs = el('defs', {}, svg);
  const marker = el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, defs);
  el('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' }, marker);
  const edges = el('g', { class: 'edges' }, svg);
  for (const e of graph.edges) {
    const s = at.get(e.source);
    const t = at.get(e.target);
    if (!s || !t) continue;
    let d;
    if (e.cycle || t.x <= s.x) {
      // A back edge: out of the source's bottom, round below, into the target's bottom.
      const sx = s.x + NODE_W / 2 + 20;
      const tx = t.x + NODE_W / 2 - 20;
      const sy = s.y + NODE_H;
      const ty = t.y + NODE_H;
      const low = Math.max(sy, ty) + 34;
      d = `M${sx},${sy} C${sx},${low} ${tx},${low} ${tx},${ty}`;
    } else {
      const sx = s.x + NODE_W;
      const sy = s.y + NODE_H / 2;
      const tx = t.x;
      const ty = t.y + NODE_H / 2;
      const mid = (sx + tx) / 2;
      d = `M${sx},${sy} C${mid},${sy} ${mid},${ty} ${tx},${ty}`;
    }
    const path = el('path', { d, class: e.cycle ? 'edge cycle' : 'edge', 'marker-end': 'url(#arrow)' }, edges);
    el('title', {}, path).textContent = `${e.source}.${e.output} → ${e.target}.${e.input}${e.cycle ? ` (cycle ${e.cycle})` : ''}`;
  }
  const layer = el('g', { class: 'nodes' }, svg);
  for (const node of graph.nodes) {
    const p = at.get(node.id);
    const sub = `${clip(node.type.replace(/Node$/, ''), 14)} · ${stateLabel(node.state)}`;
    const iter = node.iterations > 1 ? `×${node.iterations}` : '';
    // The accessible name (the <title> below) starts with the text the node shows (glyph, id,
    // type and state, iterations), then says the rest in words.
    const label = `${stateGlyph(node.state)} ${clip(node.id, 18)} ${sub}${iter ? ' ' + iter : ''}: ` +
      `node ${node.id}, ${node.type}, ${stateLabel(node.state)}` +
      (node.iterations > 1 ? `, ${node.iterations} iterations` : '') +
      (node.attempts > 1 ? `, ${node.attempts} attempts` : '');
    const g = el('g', {
      class: `node st-${node.state}`,
      transform: `translate(${p.x},${p.y})`,
      tabindex: 0,
      role: 'button',
      'data-node': node.id,
      'data-state': node.state,
    }, layer);
    el('rect', { width: NODE_W, height: NODE_H, rx: 8 }, g);
    el('text', { x: 10, y: 20, class: 'glyph' }, g).textContent = stateGlyph(node.state);
    el('text', { x: 28, y: 20, class: 'id' }, g).textContent = clip(node.id, 18);
    el('text', { x: 10, y: 40, class: 'sub' }, g).textContent = sub;
    if (iter) {
      el('text', { x: NODE_W - 8, y: 20, class: 'iter', 'text-anchor': 'end' }, g).textContent = iter;
    }
    el('title', {}, g).textContent = label + (node.error ? `: ${node.error}` : '');
    const choose = () => onSelect(node.id);
    g.addEventListener('click', choose);
    g.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        choose();
      }
    });
  }
  return svg;
}

/// A graph too big to draw node by node: its layers, grouped into at most `maxGroups` columns
/// of consecutive layers, each drawn as a box with its node count and a bar of its nodes'
/// states. `onSelect(group)` is called with {index, first, last, nodes} on click or Enter.
export function renderGrouped(graph, onSelect, maxGroups = 40) {
  const { layer } = layers(graph.nodes, graph.edges);
  let top = 0;
  for (const l of layer) top = Math.max(top, l);
  const span = Math.ceil((top + 1) / maxGroups);
  const groups = [];
  graph.nodes.forEach((node, i) => {
    const g = Math.floor(layer[i] / span);
    groups[g] ||= { index: g, first: g * span, last: Math.min(top, g * span + span - 1), nodes: [], counts: {} };
    groups[g].nodes.push(node.id);
    groups[g].counts[node.state] = (groups[g].counts[node.state] || 0) + 1;
  });
  const present = groups.filter(Boolean);
  const W = 150;
  const GAP = 40;
  const H = 96;
  const width = PAD * 2 + present.length * (W + GAP) - GAP;
  const svg = el('svg', { class: 'graph grouped', width, height: H + PAD * 2, viewBox: `0 0 ${width} ${H + PAD * 2}`, role: 'group', 'aria-label': `workflow graph of ${graph.nodes.length} nodes in ${present.length} groups of layers` });
  present.forEach((g, k) => {
    const x = PAD + k * (W + GAP);
    if (k > 0) el('path', { d: `M${x - GAP},${PAD + H / 2} L${x},${PAD + H / 2}`, class: 'edge', 'marker-end': 'url(#arrow)' }, svg);
    const layersText = g.first === g.last ? `layer ${g.first}` : `layers ${g.first}–${g.last}`;
    const states = Object.keys(STATES).filter((st) => g.counts[st]);
    const worst = ['failed', 'dead_lettered', 'retrying', 'running', 'pending', 'not_run', 'skipped', 'succeeded'].find((st) => g.counts[st]) || 'pending';
    const box = el('g', { class: `node group st-${worst}`, transform: `translate(${x},${PAD})`, tabindex: 0, role: 'button', 'data-group': g.index }, svg);
    el('rect', { width: W, height: H, rx: 8 }, box);
    el('text', { x: 10, y: 20, class: 'id' }, box).textContent = `${g.nodes.length} node${g.nodes.length === 1 ? '' : 's'}`;
    el('text', { x: 10, y: 38, class: 'sub' }, box).textContent = layersText;
    // The states as a bar, and the largest two in words.
    let bx = 10;
    for (const st of states) {
      const w = ((W - 20) * g.counts[st]) / g.nodes.length;
      el('rect', { x: bx, y: 48, width: Math.max(w, 1), height: 10, class: `bar st-${st}` }, box);
      bx += w;
    }
    const words = states.sort((a, b) => g.counts[b] - g.counts[a]).slice(0, 2).map((st) => `${g.counts[st]} ${stateLabel(st)}`);
    words.forEach((w, j) => { el('text', { x: 10, y: 74 + j * 14, class: 'sub' }, box).textContent = w; });
    el('title', {}, box).textContent = `${g.nodes.length} nodes, ${layersText}: ` + states.map((st) => `${g.counts[st]} ${stateLabel(st)}`).join(', ');
    const choose = () => onSelect(g);
    box.addEventListener('click', choose);
    box.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        choose();
      }
    });
  });
  const defs = el('defs', {}, svg);
  const marker = el('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, defs);
  el('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' }, marker);
  return svg;
}
