// nomagic playground: the page. Plain JavaScript, no build step, no library.
// It talks to the server over one WebSocket (the protocol: nomagic/apps/playground/session.py).
"use strict";

const $ = (id) => document.getElementById(id);
const LRS = [0.00001, 0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10];
const REG_RATES = [0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10];
const ACTS = ["tanh", "relu", "sigmoid", "linear", "step", "softmax"];
const FEATURES = ["x1", "x2", "x1sq", "x2sq", "x1x2", "sinx1", "sinx2"];
const FEATURE_LABELS = {x1: "x₁", x2: "x₂", x1sq: "x₁²", x2sq: "x₂²", x1x2: "x₁x₂", sinx1: "sin(x₁)", sinx2: "sin(x₂)"};
const DATASETS = {
  classification: [["circle", "circle"], ["xor", "xor"], ["gauss", "gauss"], ["spiral", "spiral"],
                   ["blobs", "classes"], ["planner", "planner"]],
  regression: [["plane", "plane"], ["multigauss", "multi gauss"]],
};
const CLASS_COLORS = [[8, 119, 189], [245, 147, 34], [46, 160, 67], [142, 68, 173], [192, 57, 43], [90, 90, 90]];
const CLIENT_KEYS = ["show_test", "discretize"];

const st = {
  ws: null, sid: null, cfg: null, net: null, data: null, last: null, running: false,
  history: [], msgTotal: 0, view: {show_test: false, discretize: false}, hover: null, dots: [],
  nodePos: {}, pending: null, unrolledShown: Infinity,
};

// ---------------------------------------------------------------- colours and maps
function mix(a, b, t) { return a.map((v, i) => Math.round(v + (b[i] - v) * t)); }
const NEG = [245, 147, 34], MID = [232, 234, 235], POS = [8, 119, 189];
function colorOf(v) {  // v in [-1, 1]: orange - light grey - blue, as TensorFlow Playground
  if (!(v === v)) return MID;
  v = Math.max(-1, Math.min(1, v));
  return v < 0 ? mix(MID, NEG, -v) : mix(MID, POS, v);
}
function decode(m) {  // {lo, hi, b64} -> Float32Array of values
  const bin = atob(m.b64), out = new Float32Array(bin.length), span = (m.hi - m.lo) / 255;
  for (let i = 0; i < bin.length; i++) out[i] = m.lo + bin.charCodeAt(i) * span;
  return out;
}
function bytes(b64) { const s = atob(b64), a = new Uint8Array(s.length); for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i); return a; }

function paint(canvas, values, res, opts = {}) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(res, res);
  for (let i = 0; i < res * res; i++) {
    let c;
    if (opts.classes) {
      const k = opts.classes[i], a = opts.conf[i] / 255;
      c = mix(MID, CLASS_COLORS[k % CLASS_COLORS.length], opts.discretize ? 0.75 : Math.max(0, (a - 0.3) / 0.7) * 0.85);
    } else {
      let v = values[i] / (opts.scale || 1);
      if (opts.discretize) v = v >= 0 ? 1 : -1;
      c = colorOf(v);
    }
    img.data.set([c[0], c[1], c[2], 255], i * 4);
  }
  const off = document.createElement("canvas");
  off.width = off.height = res;
  off.getContext("2d").putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
}

// a neuron's map on a symmetric scale: tanh-like outputs in [-1, 1] keep their colours
function mapScale(m) { return Math.max(1, Math.abs(m.lo), Math.abs(m.hi)); }

// ---------------------------------------------------------------- the connection
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/ws`);
  st.ws = ws;
  ws.onopen = () => { $("conn").textContent = "connected"; };
  ws.onclose = () => { $("conn").textContent = "disconnected: reload the page to start again"; setRunning(false); };
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    const fn = HANDLERS[msg.type];
    if (fn) fn(msg);
  };
}
function send(msg) { if (st.ws && st.ws.readyState === 1) st.ws.send(JSON.stringify(msg)); }
function sendConfig(change) { send({type: "config", config: change}); }

const HANDLERS = {
  hello(m) {
    st.sid = m.session;
    $("dl-nomagic").href = `/api/model/${m.session}.nomagic`;
    $("dl-onnx").href = `/api/model/${m.session}.onnx`;
    const fromHash = readHash();
    if (fromHash) sendConfig(fromHash);
  },
  config(m) {
    st.cfg = m.config; st.net = m.net; st.data = m.data; st.history = [];
    $("upload-name").textContent = m.upload ? `uploaded: ${m.upload}` : "";
    renderControls(); renderNetwork(); drawPoints(); writeHash();
  },
  update(m) { onUpdate(m); },
  audit(m) {
    $("audit").hidden = false;
    const ul = $("audit-list"); ul.innerHTML = "";
    const head = document.createElement("li");
    head.style.color = "#333";
    head.textContent = `${m.train_days} training days: ` + Object.entries(m.classes).map(([k, v]) => `${k} ${v}`).join(", ");
    ul.appendChild(head);
    for (const w of m.warnings) { const li = document.createElement("li"); li.textContent = w; ul.appendChild(li); }
  },
  status(m) { setRunning(m.running); },
  stopped(m) { setRunning(false); note(`stopped: ${m.reason}`); },
  note(m) { note(m.message); },
  error(m) { showError(m.message); if (st.cfg) renderControls(); },
};

function showError(text) {
  $("error-text").textContent = text;
  $("error").hidden = false;
  clearTimeout(st.errTimer);
  st.errTimer = setTimeout(() => { $("error").hidden = true; }, 12000);
}
function note(text) {
  const li = document.createElement("li");
  li.textContent = text;
  if (/crash/.test(text)) li.className = "crash";
  const ul = $("notes");
  ul.insertBefore(li, ul.firstChild);
  while (ul.children.length > 8) ul.removeChild(ul.lastChild);
}
function setRunning(r) {
  st.running = r;
  $("run").textContent = r ? "❚❚" : "▶";
  $("run").classList.toggle("running", r);
}

// ---------------------------------------------------------------- the URL holds the settings
function writeHash() {
  const c = st.cfg, p = new URLSearchParams();
  for (const [k, v] of Object.entries(c)) p.set(k, Array.isArray(v) ? v.join(",") : String(v));
  for (const k of CLIENT_KEYS) p.set(k, String(st.view[k]));
  history.replaceState(null, "", "#" + p.toString());
  $("share").href = location.href;
}
function readHash() {
  if (location.hash.length < 2) return null;
  const p = new URLSearchParams(location.hash.slice(1)), out = {};
  const lists = {features: String, layers: Number, activations: String};
  const bools = new Set(["rnn"]), strings = new Set(["dataset", "problem", "reg", "engine"]);
  for (const [k, v] of p.entries()) {
    if (CLIENT_KEYS.includes(k)) { st.view[k] = v === "true"; continue; }
    if (k in lists) out[k] = v === "" ? [] : v.split(",").map(lists[k]);
    else if (bools.has(k)) out[k] = v === "true";
    else if (strings.has(k)) out[k] = v;
    else out[k] = Number(v);
  }
  if (out.dataset === "csv") delete out.dataset;  // an upload is not in the link
  return out;
}

// ---------------------------------------------------------------- controls
function fillSelect(sel, values, fmt = String) {
  sel.innerHTML = "";
  for (const v of values) { const o = document.createElement("option"); o.value = String(v); o.textContent = fmt(v); sel.appendChild(o); }
}
function setSelect(sel, v) {
  if (![...sel.options].some((o) => o.value === String(v))) {
    const o = document.createElement("option"); o.value = String(v); o.textContent = String(v); sel.appendChild(o);
  }
  sel.value = String(v);
}
function renderControls() {
  const c = st.cfg;
  setSelect($("lr"), c.lr); setSelect($("reg_rate"), c.reg_rate);
  $("reg").value = c.reg; $("problem").value = c.problem; $("engine").value = c.engine;
  const acts = new Set(c.activations);
  setSelect($("activation"), acts.size === 1 ? c.activations[0] : (acts.size ? "mixed" : "tanh"));
  for (const k of ["ratio", "noise", "batch", "points", "classes"]) { $(k).value = c[k]; $(k + "-v").textContent = c[k]; }
  $("classes-row").hidden = c.dataset !== "blobs";
  for (const k of ["seed", "stop_epochs", "target_loss", "fps"]) $(k).value = c[k];
  $("rnn").checked = c.rnn;
  $("show_test").checked = st.view.show_test; $("discretize").checked = st.view.discretize;
  $("layers-label").textContent = `${c.layers.length} hidden layer${c.layers.length === 1 ? "" : "s"}`;
  renderDatasets();
  $("trace").hidden = c.engine !== "processes";
  if (c.dataset !== "planner") $("audit").hidden = true;
  const ax = st.data.axes, d = st.data.domain;
  $("axes").textContent = `horizontal: ${ax[0]} (${d[0].toFixed(1)} … ${d[1].toFixed(1)}), vertical: ${ax[1]} ` +
    `(${d[2].toFixed(1)} … ${d[3].toFixed(1)})`;
}

function renderDatasets() {
  const box = $("datasets"), c = st.cfg;
  box.innerHTML = "";
  for (const [name, label] of DATASETS[c.problem]) {
    const b = document.createElement("button");
    b.dataset.dataset = name; b.title = label;
    b.className = c.dataset === name ? "selected" : "";
    const cv = document.createElement("canvas"); cv.width = cv.height = 40;
    drawIcon(cv, name);
    const s = document.createElement("span"); s.textContent = label;
    b.append(cv, s);
    b.onclick = () => sendConfig({dataset: name});
    box.appendChild(b);
  }
}

function rng(seed) { let s = seed; return () => { s = (s * 16807) % 2147483647; return s / 2147483647; }; }
function drawIcon(cv, name) {  // a small picture of each data set (not the data itself)
  const g = cv.getContext("2d"), r = rng(7), W = 40;
  g.fillStyle = "#f4f4f4"; g.fillRect(0, 0, W, W);
  const dot = (x, y, col) => { g.fillStyle = `rgb(${col})`; g.fillRect(x - 1, y - 1, 2.5, 2.5); };
  if (name === "plane" || name === "multigauss") {
    for (let i = 0; i < W; i += 2) for (let j = 0; j < W; j += 2) {
      const x = i / W * 12 - 6, y = 6 - j / W * 12;
      const v = name === "plane" ? (x + y) / 10 : Math.sin(x) * Math.cos(y * 1.2);
      g.fillStyle = `rgb(${colorOf(v)})`; g.fillRect(i, j, 2, 2);
    }
    return;
  }
  for (let i = 0; i < 90; i++) {
    let x, y, k;
    if (name === "circle") { const a = r() * 6.28, rad = i % 2 ? r() * 7 : 11 + r() * 5; x = 20 + rad * Math.cos(a); y = 20 + rad * Math.sin(a); k = i % 2 ? 0 : 1; }
    else if (name === "xor") { x = r() * W; y = r() * W; k = (x - 20) * (y - 20) > 0 ? 0 : 1; }
    else if (name === "gauss") { k = i % 2; const cx = k ? 12 : 28; x = cx + (r() - 0.5) * 12; y = (k ? 28 : 12) + (r() - 0.5) * 12; }
    else if (name === "spiral") { k = i % 2; const t = i / 90, a = 11 * t + k * Math.PI, rad = 17 * t; x = 20 + rad * Math.sin(a); y = 20 + rad * Math.cos(a); }
    else if (name === "blobs") { k = i % 3; const a = k * 2.1 + 0.8; x = 20 + 11 * Math.cos(a) + (r() - 0.5) * 9; y = 20 + 11 * Math.sin(a) + (r() - 0.5) * 9; }
    else { x = r() * W; y = W - Math.pow(r(), 3) * W; k = x > 14 && y > 26 ? 0 : (r() < 0.3 ? 0 : 1); }
    dot(x, y, CLASS_COLORS[name === "blobs" ? k : (k ? 1 : 0)]);
  }
}

function bindControls() {
  fillSelect($("lr"), LRS); fillSelect($("reg_rate"), REG_RATES); fillSelect($("activation"), ACTS.concat(["mixed"]));
  $("run").onclick = () => send({type: st.running ? "pause" : "run"});
  $("step").onclick = () => send({type: "step"});
  $("reset").onclick = () => { st.history = []; send({type: "reset"}); };
  $("regenerate").onclick = () => send({type: "regenerate"});
  $("lr").onchange = (e) => sendConfig({lr: Number(e.target.value)});
  $("reg_rate").onchange = (e) => sendConfig({reg_rate: Number(e.target.value)});
  $("reg").onchange = (e) => sendConfig({reg: e.target.value});
  $("engine").onchange = (e) => sendConfig({engine: e.target.value});
  $("activation").onchange = (e) => {
    if (e.target.value !== "mixed") sendConfig({activations: st.cfg.layers.map(() => e.target.value)});
  };
  $("problem").onchange = (e) => {
    const p = e.target.value;
    sendConfig({problem: p, dataset: DATASETS[p][0][0]});
  };
  for (const k of ["ratio", "noise", "batch", "points", "classes"]) {
    $(k).oninput = (e) => { $(k + "-v").textContent = e.target.value; };
    $(k).onchange = (e) => sendConfig({[k]: Number(e.target.value)});
  }
  for (const k of ["seed", "stop_epochs", "target_loss", "fps"]) {
    $(k).onchange = (e) => sendConfig({[k]: e.target.value === "" ? NaN : Number(e.target.value)});
  }
  $("rnn").onchange = (e) => sendConfig({rnn: e.target.checked});
  for (const k of CLIENT_KEYS) $(k).onchange = (e) => { st.view[k] = e.target.checked; writeHash(); redraw(); };
  $("add-layer").onclick = () => {
    const c = st.cfg;
    sendConfig({layers: c.layers.concat([c.layers.length ? c.layers[c.layers.length - 1] : 4]),
                activations: c.activations.concat([c.activations[c.activations.length - 1] || "tanh"])});
  };
  $("remove-layer").onclick = () => {
    const c = st.cfg;
    if (c.layers.length) sendConfig({layers: c.layers.slice(0, -1), activations: c.activations.slice(0, -1)});
  };
  $("error-close").onclick = () => { $("error").hidden = true; };
  $("upload").onchange = (e) => {
    const f = e.target.files[0];
    if (!f) return;
    if (f.size > 1000000) { showError(`upload: the file is ${f.size.toLocaleString()} bytes; the limit is 1,000,000 bytes (1 MB)`); return; }
    const rd = new FileReader();
    rd.onload = () => send({type: "upload", name: f.name, csv: String(rd.result)});
    rd.readAsText(f);
    e.target.value = "";
  };
  $("crash").onclick = () => send({type: "inject_crash", neuron: $("crash-neuron").value, phase: $("crash-phase").value});
  $("play-steps").onclick = playSteps;
  bindPlot();
}

// ---------------------------------------------------------------- the network
function layout() {
  const c = st.cfg, net = st.net;
  const cols = [FEATURES.map((f) => ({id: f, feature: f, on: c.features.includes(f)}))];
  for (const L of net.layers) {
    const col = [];
    for (let i = 0; i < L.size; i++) col.push({id: `${L.name}[${i}]`, layer: L.name, index: i});
    cols.push(col);
  }
  const maxN = Math.max(...cols.map((x) => x.length));
  const size = maxN <= 8 ? 36 : Math.max(12, Math.floor(460 / maxN) - 5);
  const gap = maxN <= 8 ? 14 : 5;
  const width = $("net").clientWidth || 560;
  const x0 = 60, xs = (width - x0 - 40) / Math.max(cols.length - 1, 1);
  const top = 64, pos = {};
  cols.forEach((col, k) => {
    col.forEach((n, i) => { pos[n.id] = {x: x0 + k * xs, y: top + i * (size + gap), size, node: n}; });
  });
  const height = top + maxN * (size + gap) + 10;
  return {cols, pos, size, width, height, xs, x0};
}

function renderNetwork() {
  const L = layout(), nodes = $("nodes"), svg = $("links");
  st.layout = L; st.nodePos = L.pos;
  nodes.innerHTML = ""; svg.innerHTML = "";
  $("net").style.height = L.height + "px";
  svg.setAttribute("width", L.width); svg.setAttribute("height", L.height);
  // layer headers: neurons +/- and the activation of each layer
  st.net.layers.forEach((layer, k) => {
    const h = document.createElement("div");
    h.className = "layer-head";
    h.style.left = (L.x0 + (k + 1) * L.xs - 45) + "px"; h.style.top = "0px"; h.style.width = "90px";
    if (layer.name === "out") {
      h.innerHTML = `<div>output</div><div class="small">${st.net.output_activation}, ${st.net.loss.replace("_", " ")}</div>`;
    } else {
      const i = k;
      h.innerHTML = `<div><button data-d="1">+</button> <button data-d="-1">−</button></div>`;
      const sel = document.createElement("select");
      fillSelect(sel, ACTS); sel.value = layer.activation; sel.title = `activation of ${layer.name}`;
      sel.className = "layer-act";
      sel.onchange = () => { const a = st.cfg.activations.slice(); a[i] = sel.value; sendConfig({activations: a}); };
      h.appendChild(sel);
      const lab = document.createElement("div");
      lab.className = "small"; lab.textContent = `${layer.size} ${layer.kind === "recurrent" ? "recurrent" : "neurons"}`;
      h.appendChild(lab);
      h.querySelectorAll("button").forEach((b) => {
        b.onclick = () => {
          const ls = st.cfg.layers.slice(); ls[i] = Math.max(1, ls[i] + Number(b.dataset.d));
          sendConfig({layers: ls});
        };
      });
    }
    nodes.appendChild(h);
  });
  const hd = document.createElement("div");
  hd.className = "layer-head"; hd.style.left = (L.x0 - 45) + "px"; hd.style.top = "0px"; hd.style.width = "90px";
  hd.innerHTML = `<div class="small">${st.cfg.rnn ? "one per step →" : "click to toggle"}</div>`;
  nodes.appendChild(hd);
  for (const [id, p] of Object.entries(L.pos)) {
    const d = document.createElement("div");
    d.className = "node" + (p.node.feature && !p.node.on ? " off" : "");
    d.dataset.id = id;
    Object.assign(d.style, {left: (p.x - p.size / 2) + "px", top: p.y + "px", width: p.size + "px", height: p.size + "px"});
    const cv = document.createElement("canvas"); cv.width = cv.height = 32;
    d.appendChild(cv);
    if (p.node.feature) {
      const nm = document.createElement("span"); nm.className = "name"; nm.textContent = FEATURE_LABELS[id];
      d.appendChild(nm);
      d.onclick = () => {
        const f = st.cfg.features.includes(id) ? st.cfg.features.filter((x) => x !== id) : st.cfg.features.concat([id]);
        sendConfig({features: f});
      };
    }
    d.onmouseenter = (e) => { st.hover = id; showNodeTip(id, e); redraw(); };
    d.onmousemove = (e) => moveTip(e);
    d.onmouseleave = () => { st.hover = null; $("hover-tip").hidden = true; redraw(); };
    nodes.appendChild(d);
  }
  // the synapses: one path per weight
  const links = [];
  const ins = st.cfg.features;
  st.net.layers.forEach((layer, k) => {
    const prev = k === 0 ? ins : (() => { const p = st.net.layers[k - 1]; return [...Array(p.size).keys()].map((i) => `${p.name}[${i}]`); })();
    for (let j = 0; j < layer.size; j++) {
      prev.forEach((src, i) => {
        const param = layer.kind === "recurrent" ? `${layer.name}.W` : `${layer.name}.weight`;
        links.push({src, dst: `${layer.name}[${j}]`, param, index: layer.kind === "recurrent" ? [0, j] : [i, j]});
      });
    }
  });
  st.links = {};
  for (const ln of links) {
    const a = L.pos[ln.src], b = L.pos[ln.dst];
    if (!a || !b) continue;
    const x1 = a.x + a.size / 2, y1 = a.y + a.size / 2, x2 = b.x - b.size / 2, y2 = b.y + b.size / 2, mx = (x1 + x2) / 2;
    const dpath = `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
    const p = document.createElementNS("http://www.w3.org/2000/svg", "path");
    p.setAttribute("d", dpath); p.setAttribute("class", "link");
    if (st.cfg.rnn && ln.param.endsWith(".W")) p.setAttribute("stroke-dasharray", "4 3");
    const hit = document.createElementNS("http://www.w3.org/2000/svg", "path");
    hit.setAttribute("d", dpath); hit.setAttribute("class", "hit");
    hit.onmouseenter = (e) => showLinkTip(ln, e);
    hit.onmousemove = (e) => moveTip(e);
    hit.onmouseleave = () => { $("hover-tip").hidden = true; };
    hit.onclick = () => editWeight(ln);
    svg.append(p, hit);
    ln.el = p; ln.hit = hit;
    st.links[`${ln.src}>${ln.dst}`] = ln;
  }
  // the crash menu lists the neurons
  const sel = $("crash-neuron"); sel.innerHTML = "";
  for (const layer of st.net.layers) for (let i = 0; i < layer.size; i++) {
    const o = document.createElement("option"); o.textContent = `${layer.name}[${i}]`; sel.appendChild(o);
  }
  if (st.last) applyWeights(st.last.weights);
}

function weightOf(ln, weights) {
  const w = (weights || (st.last && st.last.weights) || {})[ln.param];
  const row = w && w[ln.index[0]];
  if (row === undefined) return 0;  // weights of the network before a change: the next update brings the new ones
  const v = ln.index.length === 2 ? row[ln.index[1]] : row;
  return typeof v === "number" ? v : 0;
}
function applyWeights(weights) {
  if (!st.links) return;
  for (const ln of Object.values(st.links)) {
    const w = weightOf(ln, weights);
    ln.el.setAttribute("stroke", `rgb(${colorOf(w)})`);
    ln.el.setAttribute("stroke-width", Math.min(8, 0.6 + Math.abs(w) * 2.2).toFixed(2));
  }
}
function showLinkTip(ln, e) {
  const w = weightOf(ln);
  const tip = $("hover-tip");
  tip.innerHTML = "";
  tip.textContent = `weight ${ln.src} → ${ln.dst}: ${w.toFixed(4)} (click to edit)`;
  tip.hidden = false; moveTip(e);
}
function editWeight(ln) {
  const v = prompt(`New weight ${ln.src} → ${ln.dst} (${ln.param} [${ln.index}])`, weightOf(ln).toFixed(4));
  if (v === null) return;
  send({type: "set_weight", param: ln.param, index: ln.index, value: v.trim() === "" ? null : Number(v)});
}
function showNodeTip(id, e) {
  const tip = $("hover-tip");
  tip.innerHTML = "";
  const t = document.createElement("div");
  const p = st.nodePos[id];
  t.textContent = p.node.feature ? `input ${FEATURE_LABELS[id]}` : `neuron ${id}`;
  tip.appendChild(t);
  const m = st.last && st.last.neurons[id];
  if (m) {
    const cv = document.createElement("canvas"); cv.width = cv.height = 160;
    paint(cv, decode(m), st.last.neuron_grid, {scale: mapScale(m), discretize: st.view.discretize});
    tip.appendChild(cv);
    const r = document.createElement("div"); r.className = "small"; r.textContent = `range ${m.lo.toFixed(3)} … ${m.hi.toFixed(3)}`;
    tip.appendChild(r);
  }
  tip.hidden = false; moveTip(e);
}
function moveTip(e) {
  const tip = $("hover-tip");
  tip.style.left = (e.clientX + 14) + "px"; tip.style.top = (e.clientY + 10) + "px";
}

// ---------------------------------------------------------------- updates
function onUpdate(m) {
  st.last = m;
  setRunning(m.running);
  $("epoch").textContent = String(m.epoch).padStart(6, "0").replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  $("loss-test").textContent = m.test_loss == null ? "–" : m.test_loss.toFixed(3);
  $("loss-train").textContent = m.loss == null ? "–" : m.loss.toFixed(3);
  $("loss-test").dataset.value = m.test_loss == null ? "" : String(m.test_loss);
  const h = st.history;
  if (!h.length || h[h.length - 1][0] !== m.epoch) h.push([m.epoch, m.loss, m.test_loss]);
  else h[h.length - 1] = [m.epoch, m.loss, m.test_loss];
  if (h.length > 1000) st.history = h.filter((_, i) => i % 2 === 0);
  drawChart();
  for (const [id, map] of Object.entries(m.neurons)) {
    const d = document.querySelector(`.node[data-id="${CSS.escape(id)}"] canvas`);
    if (d) paint(d, decode(map), m.neuron_grid, {scale: mapScale(map), discretize: st.view.discretize});
  }
  const outs = document.querySelectorAll('.node[data-id^="out["] canvas');
  outs.forEach((cv) => paintOutput(cv));
  applyWeights(m.weights);
  redraw();
  renderMetrics(m.metrics);
  if (m.trace) onTrace(m.trace);
  for (const n of m.notes || []) {
    note(n);
    const hit = /^neuron (\S+) crashed/.exec(n);
    if (hit) flashNode(hit[1], "crashed", 1500);
  }
  if (m.unrolled) renderUnrolled(m.unrolled); else $("unrolled").hidden = true;
}

function paintOutput(cv) {
  const hm = st.last.heatmap;
  if (hm.classes) paint(cv, null, hm.grid, {classes: bytes(hm.classes), conf: bytes(hm.conf), discretize: st.view.discretize});
  else paint(cv, decode(hm), hm.grid, {discretize: st.view.discretize && st.data.problem === "classification"});
}

function redraw() {
  if (!st.last) return;
  const cv = $("heat"), label = $("plot-label");
  if (st.hover && st.last.neurons[st.hover]) {
    const m = st.last.neurons[st.hover];
    paint(cv, decode(m), st.last.neuron_grid, {scale: mapScale(m), discretize: st.view.discretize});
    label.textContent = st.nodePos[st.hover].node.feature ? `input ${FEATURE_LABELS[st.hover]}` : `neuron ${st.hover}`;
  } else {
    paintOutput(cv);
    label.textContent = "";
  }
  const hm = st.last.heatmap;
  $("cb-lo").textContent = hm.classes ? "class" : (st.data.problem === "regression" ? hm.lo.toFixed(2) : "-1");
  $("cb-hi").textContent = hm.classes ? "" : (st.data.problem === "regression" ? hm.hi.toFixed(2) : "1");
  drawPoints();
}

function toPx(x, y) {
  const d = st.data.domain;
  return [(x - d[0]) / (d[1] - d[0]) * 300, (d[3] - y) / (d[3] - d[2]) * 300];
}
function fromPx(px, py) {
  const d = st.data.domain;
  return [d[0] + px / 300 * (d[1] - d[0]), d[3] - py / 300 * (d[3] - d[2])];
}
function pointColor(label) {
  if (st.data.problem === "regression") return `rgb(${colorOf(label)})`;
  if (st.data.n_classes > 2) return `rgb(${CLASS_COLORS[label % CLASS_COLORS.length]})`;
  return label > 0 ? "rgb(8,119,189)" : "rgb(245,147,34)";
}
function drawPoints() {
  if (!st.data) return;
  const cv = $("points-layer"), g = cv.getContext("2d");
  g.clearRect(0, 0, 300, 300);
  const draw = (pts, test) => {
    for (const [x, y, l] of pts) {
      const [px, py] = toPx(x, y);
      g.beginPath(); g.arc(px, py, 3, 0, 6.283);
      g.fillStyle = pointColor(l); g.fill();
      g.lineWidth = test ? 1.4 : 0.8; g.strokeStyle = test ? "#000" : "#fff"; g.stroke();
    }
  };
  draw(st.data.train, false);
  if (st.view.show_test) draw(st.data.test, true);
  if (st.drag) {
    const [a, b, c, d] = st.drag;
    g.strokeStyle = "#c00"; g.setLineDash([4, 3]); g.lineWidth = 1.5;
    g.strokeRect(Math.min(a, c), Math.min(b, d), Math.abs(c - a), Math.abs(d - b)); g.setLineDash([]);
  }
}
function bindPlot() {
  const cv = $("points-layer");
  const at = (e) => { const r = cv.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  cv.onmousedown = (e) => { if ($("cut").checked) { const [x, y] = at(e); st.drag = [x, y, x, y]; } };
  cv.onmousemove = (e) => { if (st.drag) { const [x, y] = at(e); st.drag[2] = x; st.drag[3] = y; drawPoints(); } };
  window.addEventListener("mouseup", () => {
    if (!st.drag) return;
    const [a, b, c, d] = st.drag; st.drag = null;
    drawPoints();
    if (Math.abs(c - a) < 3 || Math.abs(d - b) < 3) return;
    const [x0, y0] = fromPx(a, b), [x1, y1] = fromPx(c, d);
    send({type: "remove_region", x0, x1, y0, y1});
  });
}

function drawChart() {
  const cv = $("chart"), g = cv.getContext("2d"), h = st.history;
  g.clearRect(0, 0, cv.width, cv.height);
  if (h.length < 2) return;
  let max = 0;
  for (const [, a, b] of h) max = Math.max(max, a || 0, b || 0);
  max = max || 1;
  const line = (k, col) => {
    g.beginPath(); g.strokeStyle = col; g.lineWidth = 1.5;
    h.forEach((p, i) => {
      const x = i / (h.length - 1) * cv.width, y = cv.height - 2 - (p[k] || 0) / max * (cv.height - 4);
      if (i) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
  };
  line(1, "#999"); line(2, "#111");
}

function renderMetrics(m) {
  const box = $("metrics");
  if (!m) { box.innerHTML = ""; return; }
  const pct = (v) => v == null ? "–" : (100 * v).toFixed(1) + "%";
  let html = `<div>Accuracy: train <b id="acc-train">${pct(m.train_accuracy)}</b>, test <b id="acc-test">${pct(m.test_accuracy)}</b></div>`;
  html += `<table><tr><th>true ↓ / predicted →</th>${m.labels.map((l) => `<th>${l}</th>`).join("")}</tr>`;
  m.confusion.forEach((row, i) => { html += `<tr><th>${m.labels[i]}</th>${row.map((v) => `<td>${v}</td>`).join("")}</tr>`; });
  box.innerHTML = html + "</table>";
}

// ---------------------------------------------------------------- the processes engine's messages
function onTrace(t) {
  st.msgTotal = t.total;
  $("msg-count").textContent = String(t.total);
  $("msg-dropped").textContent = String(t.dropped);
  $("msg-kinds").textContent = Object.entries(t.kinds).map(([k, v]) => `${k} ${v}`).join(" · ");
  const ol = $("msg-recent"); ol.innerHTML = "";
  for (const line of t.recent) { const li = document.createElement("li"); li.textContent = line; ol.appendChild(li); }
  for (const [key, kinds] of Object.entries(t.links)) {
    if (kinds.commit) { flashNode(key, "flash", 250); continue; }
    const [a, b] = key.split(">");
    const ln = st.links && st.links[`${nodeId(a)}>${b}`];
    if (!ln) continue;
    if (kinds.forward) spawnDot(ln, false, kinds.forward);
    if (kinds.delta) spawnDot(ln, true, kinds.delta);
  }
}
function nodeId(a) {  // the trace's "in0" is the first chosen feature (an rnn's one sensor: all of them in turn)
  if (!a.startsWith("in")) return a;
  const f = st.cfg.features;
  return f[Number(a.slice(2))] || f[0];
}
function flashNode(id, cls, ms) {
  const d = document.querySelector(`.node[data-id="${CSS.escape(id)}"]`);
  if (!d) return;
  d.classList.add(cls);
  setTimeout(() => d.classList.remove(cls), ms);
}
function spawnDot(ln, back, count) {
  if (st.dots.length > 240) return;
  const c = document.createElementNS("http://www.w3.org/2000/svg", "circle");
  c.setAttribute("r", Math.min(5, 2 + Math.log2(1 + count) / 2));
  c.setAttribute("class", "msg");
  c.setAttribute("visibility", "hidden");
  c.setAttribute("fill", back ? "#c0392b" : "#2a9d2a");
  $("links").appendChild(c);
  st.dots.push({el: c, path: ln.el, back, t0: performance.now() + Math.random() * 120, dur: 450});
}
function animate(now) {
  const keep = [];
  for (const d of st.dots) {
    let f = (now - d.t0) / d.dur;
    if (f < 0) { keep.push(d); continue; }
    if (f >= 1 || !d.path.isConnected) { d.el.remove(); continue; }
    if (d.back) f = 1 - f;
    const len = d.path.getTotalLength(), p = d.path.getPointAtLength(f * len);
    d.el.setAttribute("cx", p.x); d.el.setAttribute("cy", p.y); d.el.setAttribute("visibility", "visible");
    keep.push(d);
  }
  st.dots = keep;
  requestAnimationFrame(animate);
}

// ---------------------------------------------------------------- a recurrent layer, unrolled
function renderUnrolled(u) {
  const box = $("unrolled"), grid = $("unrolled-grid");
  box.hidden = false;
  let html = "<table><tr><th></th>";
  for (let t = 0; t < u.steps; t++) html += `<th>t=${t + 1}<br>reads ${u.inputs[t]}</th>${t < u.steps - 1 ? "<th></th>" : ""}`;
  html += "</tr>";
  for (let i = 0; i < u.neurons; i++) {
    html += `<tr><th>h[${i}]</th>`;
    for (let t = 0; t < u.steps; t++) {
      html += `<td class="${t >= st.unrolledShown ? "hidden-step" : ""}"><canvas width="16" height="16" data-t="${t}" data-i="${i}"></canvas></td>`;
      if (t < u.steps - 1) html += '<td class="arrow">→</td>';
    }
    html += "</tr>";
  }
  grid.innerHTML = html + "</table><div class='small hint'>h<sub>t</sub> = f(x<sub>t</sub>·W + h<sub>t−1</sub>·U + b): each map is a hidden unit's state after step t, over the plane</div>";
  grid.querySelectorAll("canvas").forEach((cv) => {
    const m = u.maps[Number(cv.dataset.t)][Number(cv.dataset.i)];
    paint(cv, decode(m), st.last.neuron_grid, {scale: mapScale(m)});
  });
}
function playSteps() {
  if (!st.last || !st.last.unrolled) return;
  const T = st.last.unrolled.steps;
  st.unrolledShown = 1;
  renderUnrolled(st.last.unrolled);
  const tick = () => {
    st.unrolledShown += 1;
    if (st.last && st.last.unrolled) renderUnrolled(st.last.unrolled);
    if (st.unrolledShown < T) setTimeout(tick, 700); else st.unrolledShown = Infinity;
  };
  setTimeout(tick, 700);
}

// ---------------------------------------------------------------- start
(function colorbar() {
  const cv = $("colorbar"), g = cv.getContext("2d");
  for (let x = 0; x < cv.width; x++) { g.fillStyle = `rgb(${colorOf(x / (cv.width - 1) * 2 - 1)})`; g.fillRect(x, 0, 1, cv.height); }
})();
bindControls();
window.addEventListener("hashchange", () => { const h = readHash(); if (h && st.cfg) sendConfig(h); });
window.addEventListener("resize", () => { if (st.cfg) renderNetwork(); });
requestAnimationFrame(animate);
connect();
