// KWIK recorder dashboard: live plots over a WebSocket (min/max columns decimated by the
// server), the recorder panel, the remote devices and the recordings browser. No build
// step: plain script on top of uPlot.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token");
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];
// Counters a test or a bench reads: animation frames seen, plot redraws, frames received.
window.__kwik = { raf: 0, draws: 0, frames: 0, lastFrameAt: 0 };

const $ = (id) => document.getElementById(id);
function withToken(url) {
  if (!TOKEN) return url;
  return url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(TOKEN);
}
async function api(path, opts = {}) {
  opts.headers = Object.assign({}, opts.headers || {});
  if (TOKEN) opts.headers["Authorization"] = "Bearer " + TOKEN;
  const r = await fetch(path, opts);
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (!r.ok) throw new Error((body && body.error) || r.status + " " + r.statusText);
  return body;
}
const q = encodeURIComponent;
function fmtBytes(n) {
  if (n == null) return "–";
  const u = ["B", "kB", "MB", "GB", "TB"]; let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i];
}
function fmtSecs(s) {
  if (s == null) return "–";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function fmtVal(v) { return Number.isFinite(v) ? Number(v.toPrecision(6)).toString() : "–"; }
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

// ---------------------------------------------------------------- live plots
const live = { streams: new Map(), paused: false, autoscale: true, window: 10 };

function plotWidth() { return Math.max(300, Math.min(1600, $("streams").clientWidth - 10)); }

function makeStream(info) {
  const card = el("div", { class: "stream", id: "stream-" + info.name });
  card.append(el("h3", {}, info.name + " ", el("span", { class: "muted" }, `${info.schema}, ${info.rate_hz} Hz`)));
  const toggles = el("div", { class: "toggles row" });
  card.append(toggles);
  const readout = el("table", { class: "readout", id: "readout-" + info.name });
  const head = el("tr", {}, el("th", {}, "sample"));
  const vals = el("tr", {}, el("td", { id: `last-${info.name}-index` }, "–"));
  info.channels.forEach((c, k) => {
    head.append(el("th", {}, `${c} (${info.units[k]})`));
    vals.append(el("td", { id: `last-${info.name}-${c}` }, "–"));
  });
  readout.append(head, vals);
  card.append(readout);
  $("streams").append(card);
  // One plot per unit: accelerometer, gyroscope, temperature and audio apart.
  const groups = [];
  info.units.forEach((u, k) => {
    let g = groups.find((g) => g.unit === u);
    if (!g) { g = { unit: u, channels: [] }; groups.push(g); }
    g.channels.push(k);
  });
  const s = { info, card, groups, plots: [], buf: null, ws: null, dirty: false, frames: 0, perColumn: 1 };
  for (const g of groups) {
    const series = [{}];
    for (const k of g.channels) {
      const color = COLORS[k % COLORS.length];
      series.push({ label: info.channels[k] + " max", stroke: color, width: 1, points: { show: false } });
      series.push({ label: info.channels[k] + " min", stroke: color, width: 1, points: { show: false } });
    }
    const box = el("div", { class: "plot" });
    card.append(box);
    const opts = {
      width: plotWidth(), height: groups.length > 1 ? 150 : 220, title: `${info.name} — ${g.unit}`,
      series, legend: { show: false }, cursor: { show: false },
      scales: { x: { time: false }, y: { range: (u, min, max) => yRange(g, min, max) } },
      axes: [{ label: "s" }, { label: g.unit, size: 60 }],
    };
    g.plot = new uPlot(opts, [[]].concat(series.slice(1).map(() => [])), box);
    s.plots.push(g.plot);
  }
  info.channels.forEach((c, k) => {
    const cb = el("input", { type: "checkbox", checked: "", "data-channel": c });
    cb.addEventListener("change", () => {
      for (const g of groups) {
        const i = g.channels.indexOf(k);
        if (i >= 0) { g.plot.setSeries(1 + 2 * i, { show: cb.checked }); g.plot.setSeries(2 + 2 * i, { show: cb.checked }); }
      }
    });
    toggles.append(el("label", {}, cb, " " + c));
  });
  live.streams.set(info.name, s);
  connect(s);
}

function yRange(g, min, max) {
  if (live.autoscale || !g.frozen) {
    if (min === max) { min -= 1; max += 1; }
    const pad = (max - min) * 0.05;
    g.frozen = [min - pad, max + pad];
  }
  return g.frozen;
}

function resetBuf(s) {
  const n = s.info.channels.length;
  s.buf = { t: [], min: Array.from({ length: n }, () => []), max: Array.from({ length: n }, () => []) };
}

function connect(s) {
  if (s.ws) { s.ws.onclose = null; s.ws.close(); }
  resetBuf(s);
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const url = withToken(`${proto}//${location.host}/ws/live?stream=${q(s.info.name)}&window=${live.window}&width=${plotWidth()}`);
  const ws = new WebSocket(url);
  s.ws = ws;
  ws.onopen = () => { $("conn").textContent = "live"; };
  ws.onclose = () => { $("conn").textContent = "disconnected, retrying…"; setTimeout(() => connect(s), 1000); };
  ws.onmessage = (ev) => {
    const f = JSON.parse(ev.data);
    if (f.hello) return;
    s.frames++; window.__kwik.frames++; window.__kwik.lastFrameAt = performance.now();
    s.perColumn = f.per_column;
    const b = s.buf;
    for (let i = 0; i < f.t.length; i++) b.t.push(f.t[i]);
    for (let c = 0; c < f.min.length; c++) {
      const mn = f.min[c], mx = f.max[c], bm = b.min[c], bx = b.max[c];
      for (let i = 0; i < mn.length; i++) { bm.push(mn[i]); bx.push(mx[i]); }
    }
    const tEnd = b.t[b.t.length - 1];
    let cut = 0;
    while (cut < b.t.length && b.t[cut] < tEnd - live.window) cut++;
    // A jump back in time (device restarted, clock wrapped): start over.
    if (b.t.length > 1 && b.t[b.t.length - 1] < b.t[0]) cut = b.t.length - f.t.length;
    if (cut > 0) { b.t.splice(0, cut); b.min.forEach((a) => a.splice(0, cut)); b.max.forEach((a) => a.splice(0, cut)); }
    if (f.last_index != null) {
      $(`last-${s.info.name}-index`).textContent = f.last_index;
      s.info.channels.forEach((c, k) => { $(`last-${s.info.name}-${c}`).textContent = fmtVal(f.last[k]); });
    }
    s.dirty = true;
  };
}

function draw() {
  window.__kwik.raf++;
  if (!live.paused) {
    for (const s of live.streams.values()) {
      if (!s.dirty) continue;
      s.dirty = false;
      for (const g of s.groups) {
        const data = [s.buf.t];
        for (const k of g.channels) { data.push(s.buf.max[k]); data.push(s.buf.min[k]); }
        g.plot.setData(data);
        window.__kwik.draws++;
      }
    }
  }
  requestAnimationFrame(draw);
}

let fpsLast = { t: performance.now(), raf: 0 };
setInterval(() => {
  const now = performance.now(), k = window.__kwik;
  const fps = (k.raf - fpsLast.raf) * 1000 / (now - fpsLast.t);
  fpsLast = { t: now, raf: k.raf };
  const cols = [...live.streams.values()].map((s) => `${s.info.name}: ${s.perColumn} samples/column`).join(", ");
  $("fps").textContent = `${fps.toFixed(0)} FPS · ${cols}`;
}, 1000);

$("window").addEventListener("change", () => {
  live.window = Number($("window").value);
  for (const s of live.streams.values()) connect(s);
});
$("pause").addEventListener("click", () => {
  live.paused = !live.paused;
  $("pause").textContent = live.paused ? "Resume" : "Pause";
});
$("autoscale").addEventListener("change", () => { live.autoscale = $("autoscale").checked; });

// ---------------------------------------------------------------- recorder panel
async function refreshPanel() {
  let p;
  try { p = await api("/api/recorder"); } catch (e) { $("panel").hidden = true; return; }
  $("panel").hidden = false;
  const ind = $("indicator");
  ind.textContent = p.indicator; ind.className = "ind " + p.indicator;
  $("reason").textContent = p.reason || "";
  const cur = p.current, last = p.last && p.last.status;
  const st = cur || last;
  $("start").disabled = !!cur; $("stop").disabled = !cur;
  $("progress-bar").style.width = ((p.progress || 0) * 100).toFixed(1) + "%";
  $("st-start").textContent = p.started_utc || "–";
  if (st) {
    const samples = st.streams.reduce((a, s) => a + s.samples, 0);
    $("st-elapsed").textContent = fmtSecs(st.duration_s);
    $("st-samples").textContent = samples.toLocaleString("en");
    $("st-rate").textContent = st.streams.map((s) => s.rate_hz.toFixed(1) + " Hz").join(", ");
    $("st-free").textContent = fmtBytes(st.free_disk_bytes);
    $("st-ttf").textContent = st.time_to_full_s == null ? "–" : fmtSecs(st.time_to_full_s);
    const tb = $("st-streams").tBodies[0]; tb.replaceChildren();
    for (const s of st.streams) {
      const d = s.dropped;
      tb.append(el("tr", {}, el("td", {}, s.name), el("td", { class: "wrap" }, s.file.split("/").slice(-2).join("/")),
        el("td", {}, fmtBytes(s.bytes)), el("td", {}, s.samples.toLocaleString("en")), el("td", {}, s.rate_hz.toFixed(1) + " Hz"),
        el("td", {}, `${d.source} / ${d.ring} / ${d.exporter} / ${d.writer}`)));
    }
  }
}
$("start").addEventListener("click", async () => {
  $("panel-error").textContent = "";
  const body = { prefix: $("prefix").value, split: $("split").checked, format: $("format").value };
  if ($("duration").value) body.duration_s = Number($("duration").value);
  if ($("size").value) body.size_limit_bytes = Math.round(Number($("size").value) * 1e6);
  try {
    await api("/api/recorder/start", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  } catch (e) { $("panel-error").textContent = e.message; }
  refreshPanel(); refreshList();
});
$("stop").addEventListener("click", async () => {
  $("panel-error").textContent = "";
  try { await api("/api/recorder/stop", { method: "POST" }); } catch (e) { $("panel-error").textContent = e.message; }
  refreshPanel(); refreshList();
});

// ---------------------------------------------------------------- remote devices
// One block per device: Stop/Start (its gateways pause or resume sending; paused
// samples are counted as filtered, the files stay open), its paths, its streams.
function sendingText(link) {
  if (!link) return "–";
  if (!link.connected) return "disconnected";
  const want = link.requested, have = link.confirmed || "on";
  if (want && want !== have) return want === "paused" ? "stop requested (not confirmed)" : "start requested (not confirmed)";
  return have === "paused" ? "paused" : "sending";
}
function fmtRate(bps) { return bps == null ? "–" : fmtBytes(bps) + "/s"; }
async function setSending(device, action) {
  try { await api(`/api/devices/${action}?device=${q(device)}`, { method: "POST" }); }
  catch (e) { alert(e.message); }
  refreshDevices();
}
async function refreshDevices() {
  let devs;
  try { devs = await api("/api/devices"); } catch (_) { return; }
  $("devices").hidden = devs.length === 0;
  const box = $("device-list"); box.replaceChildren();
  for (const d of devs) {
    const live = d.streams.filter((s) => s.recording);
    const state = live.length ? [...new Set(live.map((s) => sendingText(s.link)))].join(", ") : "finished";
    const head = el("div", { class: "row" }, el("h3", {}, d.device),
      el("span", { class: "dev-state", "data-device": d.device }, state),
      el("button", { type: "button", class: "dev-stop", "data-device": d.device, onclick: () => setSending(d.device, "stop") }, "Stop"),
      el("button", { type: "button", class: "dev-start", "data-device": d.device, onclick: () => setSending(d.device, "start") }, "Start"));
    if (!live.length) { head.querySelector(".dev-stop").disabled = true; head.querySelector(".dev-start").disabled = true; }
    const paths = el("table", { class: "grid dev-paths", "data-device": d.device });
    paths.append(el("thead", {}, el("tr", {}, ...["stream", "path", "state", "gateway address", "RTT", "send rate", "received"].map((h) => el("th", {}, h)))));
    const pb = el("tbody"); paths.append(pb);
    for (const s of live) for (const p of (s.link ? s.link.paths : [])) {
      pb.append(el("tr", { class: p.state === "Abandoned" ? "muted" : "" }, el("td", {}, s.stream), el("td", {}, String(p.id)), el("td", {}, p.state + (p.status === "Backup" ? " (backup)" : "")),
        el("td", {}, p.remote || "–"), el("td", {}, p.rtt_ms == null ? "–" : p.rtt_ms.toFixed(2) + " ms"),
        el("td", {}, fmtRate(p.rate_bytes_per_s)), el("td", {}, fmtBytes(p.bytes_received))));
    }
    const streams = el("table", { class: "grid dev-streams", "data-device": d.device });
    streams.append(el("thead", {}, el("tr", {}, ...["stream", "state", "sending", "written", "rate", "received / duplicates / missing / malformed", "filtered (by request)", "lost in recorder"].map((h) => el("th", {}, h)))));
    const sb = el("tbody"); streams.append(sb);
    for (const s of d.streams) {
      const c = s.counts;
      sb.append(el("tr", { "data-stream": d.device + "/" + s.stream }, el("td", {}, s.stream), el("td", {}, s.recording ? s.state : "finished"),
        el("td", {}, s.recording ? sendingText(s.link) : "–"),
        el("td", { class: "written" }, s.written.toLocaleString("en")), el("td", {}, s.rate_hz == null ? "–" : s.rate_hz.toFixed(1) + " Hz"),
        el("td", {}, `${c.received} / ${c.duplicates} / ${c.missing} / ${c.malformed}`), el("td", { class: "filtered" }, String(c.filtered)), el("td", {}, s.recorder_dropped)));
    }
    box.append(el("div", { class: "device", "data-device": d.device }, head, paths, streams));
  }
}

// ---------------------------------------------------------------- recordings browser
const selected = new Set();
async function refreshList() {
  let list;
  try { list = await api("/api/recordings"); } catch (e) { $("rec-list").textContent = e.message; return; }
  const box = $("rec-list"); box.replaceChildren();
  if (list.length === 0) { box.append(el("p", { class: "muted" }, "No recordings yet.")); return; }
  let folder = null, tb = null;
  for (const r of list) {
    if (r.folder !== folder) {
      folder = r.folder;
      box.append(el("div", { class: "folder" }, folder || "(root)"));
      const t = el("table", { class: "grid" });
      t.append(el("thead", {}, el("tr", {}, ...["", "recording", "stream", "duration", "samples", "rate", "size", "dropped", "state", "stop reason", "verify", "files", ""].map((h) => el("th", {}, h)))));
      tb = el("tbody"); t.append(tb); box.append(t);
    }
    const m = r.meta;
    const name = r.path.split("/").pop().replace(/\.meta\.json$/, "");
    const cb = el("input", { type: "checkbox", "data-path": r.path });
    if (selected.has(r.path)) cb.checked = true;
    cb.addEventListener("change", () => { cb.checked ? selected.add(r.path) : selected.delete(r.path); $("overlay").disabled = selected.size !== 2; });
    const verifyCell = el("td", {});
    verifyCell.append(el("button", { type: "button", onclick: () => verifyOne(r.path, verifyCell) }, "verify"));
    const files = el("td", {});
    for (const d of r.data) files.append(el("a", { class: "dl", href: withToken("/api/recordings/file?path=" + q(d)), "data-kind": "data" }, d.split("/").pop().split(".").pop()));
    files.append(el("a", { class: "dl", href: withToken("/api/recordings/file?path=" + q(r.path)), "data-kind": "sidecar" }, "sidecar"));
    const actions = el("td", {},
      el("button", { type: "button", onclick: () => showPreview([r.path]) }, "preview"), " ",
      el("button", { type: "button", class: "delete", onclick: () => deleteOne(r.path) }, "delete"));
    if (r.live) actions.lastChild.disabled = true;
    const tr = el("tr", { "data-path": r.path, class: r.live ? "live" : "" }, el("td", {}, cb), el("td", {}, name));
    if (m) {
      tr.append(el("td", {}, m.stream), el("td", {}, fmtSecs(m.duration_s)), el("td", {}, m.samples.toLocaleString("en")),
        el("td", {}, m.average_rate_hz.toFixed(1) + " Hz"), el("td", {}, fmtBytes(m.file_size)),
        el("td", {}, m.dropped.source + m.dropped.ring + m.dropped.exporter + m.dropped.writer),
        el("td", {}, r.live ? "recording (live)" : m.state), el("td", {}, m.stop_reason || ""));
    } else {
      tr.append(el("td", { colspan: "8", class: "bad" }, r.error || "unreadable sidecar"));
    }
    tr.append(verifyCell, files, actions);
    tb.append(tr);
  }
  $("overlay").disabled = selected.size !== 2;
}
async function verifyOne(path, cell) {
  cell.textContent = "…";
  try {
    const v = await api("/api/recordings/verify?path=" + q(path));
    cell.replaceChildren(el("span", { class: v.ok ? "ok" : "bad", title: v.report.problems.join("\n") }, v.ok ? "OK" : "mismatch"));
  } catch (e) { cell.replaceChildren(el("span", { class: "bad" }, e.message)); }
}
async function deleteOne(path) {
  if (!confirm("Delete " + path + " and its data files?")) return;
  try { await api("/api/recordings?path=" + q(path), { method: "DELETE" }); selected.delete(path); }
  catch (e) { alert(e.message); }
  refreshList();
}
let previewPlot = null;
async function showPreview(paths) {
  const width = Math.max(300, $("recordings").clientWidth - 40);
  let previews;
  try { previews = await Promise.all(paths.map((p) => api(`/api/recordings/preview?path=${q(p)}&width=${width}`))); }
  catch (e) { alert(e.message); return; }
  $("preview-box").hidden = false;
  const overlay = previews.length > 1;
  $("overlay-channel-label").hidden = !overlay;
  const sel = $("overlay-channel");
  if (overlay && sel.dataset.for !== paths.join("|")) {
    sel.replaceChildren(...previews[0].channels.map((c, k) => el("option", { value: k }, c)));
    sel.dataset.for = paths.join("|");
    sel.onchange = () => showPreview(paths);
  }
  $("preview-title").textContent = (overlay ? "Overlay: " : "Preview: ") + paths.map((p) => p.split("/").pop()).join(" vs ");
  // One time axis from each recording's start, so two recordings line up.
  const grid = [];
  const series = [{}];
  const cols = [];
  previews.forEach((p, n) => {
    const t0 = p.columns.t.length ? p.columns.t[0] : 0;
    const chans = overlay ? [Number(sel.value || 0)] : p.channels.map((_, k) => k);
    for (const k of chans) {
      const color = COLORS[(overlay ? n * 3 : k) % COLORS.length];
      const tag = overlay ? ` [${n === 0 ? "A" : "B"}]` : "";
      series.push({ label: p.channels[k] + tag + " max", stroke: color, width: 1, spanGaps: true });
      series.push({ label: p.channels[k] + tag + " min", stroke: color, width: 1, spanGaps: true });
      cols.push({ t: p.columns.t.map((x) => x - t0), v: p.columns.max[k] }, { t: p.columns.t.map((x) => x - t0), v: p.columns.min[k] });
    }
  });
  // uPlot wants one shared x: merge the columns' times, each series null where it has none.
  const xs = [...new Set(cols.flatMap((c) => c.t))].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  grid.push(xs);
  for (const c of cols) {
    const ys = new Array(xs.length).fill(null);
    c.t.forEach((x, i) => { ys[index.get(x)] = c.v[i]; });
    grid.push(ys);
  }
  if (previewPlot) previewPlot.destroy();
  previewPlot = new uPlot({ width, height: 260, series, scales: { x: { time: false } }, axes: [{ label: "s" }, {}],
    legend: { show: true }, cursor: { show: true } }, grid, $("preview"));
}
$("overlay").addEventListener("click", () => showPreview([...selected]));
$("refresh").addEventListener("click", refreshList);

// ---------------------------------------------------------------- start
// Streams come and go with a recorder server's devices: new ones get a card.
async function refreshStreams() {
  const streams = await api("/api/streams");
  for (const info of streams) if (!live.streams.has(info.name)) makeStream(info);
  $("live").hidden = live.streams.size === 0;
  return streams.length;
}
async function init() {
  try {
    const n = await refreshStreams();
    $("conn").textContent = n ? "connecting…" : "recordings browser";
  } catch (e) { $("conn").textContent = e.message; }
  refreshPanel(); refreshDevices(); refreshList();
  setInterval(refreshPanel, 1000);
  setInterval(() => { refreshDevices(); refreshStreams().catch(() => {}); }, 2000);
  requestAnimationFrame(draw);
}
init();
