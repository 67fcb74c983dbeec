// The dashboard served at / by the admin listener: one self-contained page (no build step, no CDN,
// nothing fetched but /api/status), polling every second and redrawing without a reload. Kept as
// a string in a module so it ships inside the hub's code with nothing to copy beside it.
// (The page's script uses no backticks or `${`: it lives inside this template literal.)
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>synchub dashboard</title>
<style>
  :root { --fg: #1d2430; --muted: #667085; --line: #e4e7ec; --bad: #b42318; --ok: #067647; --warn: #b54708; }
  body { font: 14px/1.4 system-ui, sans-serif; color: var(--fg); margin: 0; background: #f8f9fb; }
  header { display: flex; gap: 24px; align-items: baseline; padding: 14px 24px; background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 18px; margin: 0; }
  main { padding: 16px 24px; display: grid; gap: 16px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
  h2 { font-size: 14px; margin: 0 0 8px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 4px 10px 4px 0; border-bottom: 1px solid var(--line); font-variant-numeric: tabular-nums; }
  th { color: var(--muted); font-weight: 500; }
  .num { text-align: right; }
  .tiles { display: flex; gap: 24px; flex-wrap: wrap; }
  .tile b { display: block; font-size: 22px; }
  .tile span { color: var(--muted); }
  .ok { color: var(--ok); } .bad { color: var(--bad); } .warn { color: var(--warn); }
  .muted { color: var(--muted); }
  canvas { width: 100%; height: 180px; }
  #legend span { margin-right: 14px; }
</style>
</head>
<body>
<header>
  <h1>synchub</h1>
  <span id="ready" data-testid="ready">connecting…</span>
  <span class="muted">version <span id="version">?</span>, up <span id="uptime">?</span></span>
  <span class="muted">updated <span id="updated" data-testid="updated">never</span></span>
</header>
<main>
  <section>
    <div class="tiles">
      <div class="tile"><b id="connections" data-testid="connections">0</b><span>connections</span></div>
      <div class="tile"><b id="committed" data-testid="committed">0</b><span>events committed</span></div>
      <div class="tile"><b id="rejected">0</b><span>events rejected</span></div>
      <div class="tile"><b id="slow" data-testid="slow-consumers">0</b><span>slow consumers closed</span></div>
      <div class="tile"><b id="errors">0</b><span>connection errors</span></div>
    </div>
  </section>
  <section>
    <h2>Events per second, last minutes</h2>
    <canvas id="chart" width="1200" height="180"></canvas>
    <div id="legend"></div>
  </section>
  <section>
    <h2>Projects</h2>
    <table><thead><tr><th>project</th><th class="num">head seq</th><th class="num">events/s</th><th class="num">devices</th><th class="num">max lag</th></tr></thead>
    <tbody id="projects" data-testid="projects"></tbody></table>
  </section>
  <section>
    <h2>Devices</h2>
    <table><thead><tr><th>project</th><th>device</th><th class="num">cursor</th><th class="num">lag (events)</th><th>address</th><th>connected since</th><th class="num">bytes buffered</th></tr></thead>
    <tbody id="devices" data-testid="devices"></tbody></table>
  </section>
  <section>
    <h2>Recent connection errors</h2>
    <table><thead><tr><th>time</th><th>code</th><th>project</th><th>device</th><th>message</th></tr></thead>
    <tbody id="recent-errors"></tbody></table>
  </section>
</main>
<script>
"use strict";
var COLORS = ["#2e90fa", "#12b76a", "#f79009", "#9e77ed", "#f04438", "#0ba5ec", "#667085"];

function el(id) { return document.getElementById(id); }
function cell(text, cls) {
  var td = document.createElement("td");
  td.textContent = String(text);
  if (cls) td.className = cls;
  return td;
}
function row(cells) {
  var tr = document.createElement("tr");
  cells.forEach(function (c) { tr.appendChild(c); });
  return tr;
}
function fill(tbody, rows, empty, columns) {
  tbody.replaceChildren.apply(tbody, rows.length ? rows : [row([cell(empty, "muted")])]);
  if (!rows.length) tbody.firstChild.firstChild.colSpan = columns;
}
function duration(s) {
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}
function time(iso) { return new Date(iso).toLocaleTimeString(); }

function drawChart(rates) {
  var canvas = el("chart");
  var ctx = canvas.getContext("2d");
  var w = canvas.width, h = canvas.height, pad = 28;
  ctx.clearRect(0, 0, w, h);
  var names = Object.keys(rates.series).sort();
  var n = 300, max = 1;
  names.forEach(function (p) { rates.series[p].forEach(function (v) { if (v > max) max = v; }); });
  ctx.strokeStyle = "#e4e7ec"; ctx.fillStyle = "#667085"; ctx.font = "11px system-ui";
  for (var i = 0; i <= 4; i++) {
    var y = h - pad - (h - 2 * pad) * i / 4;
    ctx.beginPath(); ctx.moveTo(pad + 30, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillText(String(Math.round(max * i / 4)), 0, y + 4);
  }
  ctx.fillText("-" + Math.round(n * rates.intervalMs / 60000) + " min", pad + 30, h - 6);
  ctx.fillText("now", w - 24, h - 6);
  var legend = [];
  names.forEach(function (p, k) {
    var pts = rates.series[p], color = COLORS[k % COLORS.length];
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    pts.forEach(function (v, j) {
      var x = pad + 30 + (w - pad - 30) * (n - pts.length + j) / (n - 1);
      var y = h - pad - (h - 2 * pad) * v / max;
      if (j === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke(); ctx.lineWidth = 1;
    var span = document.createElement("span");
    span.style.color = color;
    span.textContent = "\\u25A0 " + p;
    legend.push(span);
  });
  el("legend").replaceChildren.apply(el("legend"), legend);
}

function render(s) {
  var ready = el("ready");
  ready.textContent = s.hub.ready ? "ready" : "not ready: " + (s.hub.notReadyReason || "?");
  ready.className = s.hub.ready ? "ok" : "bad";
  el("version").textContent = s.hub.version;
  el("uptime").textContent = duration(s.hub.uptimeSeconds);
  el("updated").textContent = new Date().toLocaleTimeString();
  el("connections").textContent = s.hub.connections;
  el("committed").textContent = s.totals.eventsCommitted;
  el("rejected").textContent = s.totals.eventsRejected;
  el("slow").textContent = s.totals.slowConsumers;
  var errorCount = 0;
  Object.keys(s.totals.errors).forEach(function (k) { errorCount += s.totals.errors[k]; });
  el("errors").textContent = errorCount;
  el("slow").className = s.totals.slowConsumers ? "warn" : "";

  fill(el("projects"), s.projects.map(function (p) {
    var lag = 0;
    p.devices.forEach(function (d) { if (d.lag > lag) lag = d.lag; });
    var tr = row([cell(p.project), cell(p.headSeq, "num"), cell(p.eventsPerSecond, "num"), cell(p.devices.length, "num"), cell(lag, "num" + (lag > 0 ? " warn" : ""))]);
    tr.dataset.project = p.project;
    tr.dataset.headSeq = String(p.headSeq);
    return tr;
  }), "no projects", 5);

  var devices = [];
  s.projects.forEach(function (p) {
    p.devices.forEach(function (d) {
      var tr = row([cell(p.project), cell(d.deviceId), cell(d.cursor, "num"), cell(d.lag, "num" + (d.lag > 0 ? " warn" : "")), cell(d.address), cell(time(d.connectedSince)), cell(d.bytesBuffered, "num")]);
      tr.dataset.deviceId = d.deviceId;
      devices.push(tr);
    });
  });
  fill(el("devices"), devices, "no devices connected", 7);

  fill(el("recent-errors"), s.recentErrors.map(function (e) {
    return row([cell(time(e.at)), cell(e.code, "bad"), cell(e.project), cell(e.deviceId || "-"), cell(e.message)]);
  }), "none", 5);
  drawChart(s.rates);
}

function poll() {
  fetch("/api/status", { cache: "no-store" })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(render)
    .catch(function (err) {
      var ready = el("ready");
      ready.textContent = "hub unreachable (" + err.message + ")";
      ready.className = "bad";
    })
    .finally(function () { setTimeout(poll, 1000); });
}
poll();
</script>
</body>
</html>
`;
