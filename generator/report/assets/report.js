// instructforge report: draws the charts and the browsers from the inline JSON (#report-data).
// Hand-written SVG and DOM, no library, nothing fetched.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2f6fdb", "#e4572e", "#17a398", "#f3a712", "#8e44ad", "#6c8a00", "#d81e5b", "#3d5a80",
    "#ff8c42", "#2a9d8f", "#9c6644", "#5e60ce", "#c1121f", "#588157", "#b5838d", "#0077b6"];
  const colour = (i) => PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
  const fmt = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : String(n));
  const pct = (x) => (100 * x).toFixed(1) + "%";
  const tip = document.getElementById("tip");

  function svg(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function html(tag, attrs, parent, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function canvas(id, w, h) {
    const host = document.getElementById(id);
    if (!host) return null;
    host.textContent = "";
    return svg("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img" }, host);
  }
  function hover(el, text) {
    el.addEventListener("mousemove", (ev) => {
      tip.hidden = false;
      tip.textContent = text;
      tip.style.left = Math.min(ev.clientX + 12, window.innerWidth - 440) + "px";
      tip.style.top = ev.clientY + 12 + "px";
    });
    el.addEventListener("mouseleave", () => { tip.hidden = true; });
  }
  function empty(id, text) {
    const host = document.getElementById(id);
    if (host) html("p", { class: "muted" }, host, text);
  }

  // Horizontal bars: items [{label, value, colour?, text?}].
  function bars(id, items, opts) {
    opts = opts || {};
    if (!items.length) return empty(id, opts.empty || "nothing to show");
    const w = 640, row = 20, left = opts.left || 150, h = items.length * row + 10;
    const s = canvas(id, w, h);
    const max = Math.max(...items.map((i) => i.value), 1);
    items.forEach((it, k) => {
      const y = 5 + k * row;
      svg("text", { x: left - 6, y: y + 14, "text-anchor": "end" }, s).textContent = String(it.label).slice(0, 24);
      const bw = Math.max(1, ((w - left - 90) * it.value) / max);
      const r = svg("rect", { x: left, y: y + 2, width: bw, height: row - 5, fill: it.colour || colour(k) }, s);
      hover(r, it.text || `${it.label}: ${fmt(it.value)}`);
      svg("text", { x: left + bw + 4, y: y + 14 }, s).textContent = it.note || fmt(it.value);
    });
  }

  // Vertical histogram from {edges, counts}.
  function histogram(id, h, unit) {
    if (!h || !h.n) return empty(id, "no values");
    const w = 420, ht = 180, pad = 28, n = h.counts.length;
    const s = canvas(id, w, ht + 36);
    const max = Math.max(...h.counts, 1), bw = (w - pad - 6) / n;
    svg("line", { x1: pad, y1: ht, x2: w, y2: ht, class: "axis" }, s);
    h.counts.forEach((c, i) => {
      const bh = ((ht - 12) * c) / max;
      const r = svg("rect", { x: pad + i * bw + 1, y: ht - bh, width: Math.max(1, bw - 2), height: bh, fill: "#2f6fdb" }, s);
      hover(r, `${h.edges[i]}–${h.edges[i + 1]}${unit || ""}: ${fmt(c)} rows`);
    });
    svg("text", { x: pad, y: ht + 14 }, s).textContent = String(h.edges[0]);
    svg("text", { x: w - 4, y: ht + 14, "text-anchor": "end" }, s).textContent = String(h.edges[n]) + (unit || "");
    svg("text", { x: pad, y: 10 }, s).textContent = fmt(max);
    const m = h.median !== undefined ? `median ${+h.median.toFixed(3)}, mean ${+h.mean.toFixed(3)}, max ${+h.max.toFixed(3)}, n ${fmt(h.n)}` : "";
    svg("text", { x: w / 2, y: ht + 30, "text-anchor": "middle" }, s).textContent = m;
  }

  // Funnel: one row per stage, its reasons as segments placed after what earlier stages dropped.
  function funnel() {
    const f = D.funnel;
    if (!f) return;
    const w = 900, row = 30, left = 130, right = 140, stages = f.stages;
    const s = canvas("funnel-chart", w, (stages.length + 2) * row + 10);
    const scale = (w - left - right) / Math.max(f.candidates, 1);
    let offset = 0, k = 0;
    const line = (label, y) => { svg("text", { x: left - 6, y: y + 19, "text-anchor": "end" }, s).textContent = label; };
    line("candidates", 5);
    svg("rect", { x: left, y: 9, width: f.candidates * scale, height: row - 10, fill: "#9aa5b8" }, s);
    svg("text", { x: left + f.candidates * scale + 4, y: 24 }, s).textContent = fmt(f.candidates);
    stages.forEach((st, i) => {
      const y = 5 + (i + 1) * row;
      line(st.stage, y);
      let x = left + offset * scale, total = 0;
      st.reasons.forEach((r) => {
        const seg = svg("rect", { x, y: y + 4, width: Math.max(1, r.count * scale), height: row - 10, fill: colour(k++), class: "seg" }, s);
        hover(seg, `${st.stage} / ${r.reason}: ${fmt(r.count)} (${pct(r.count / Math.max(f.candidates, 1))}); click to see the rows`);
        if (r.count * scale > 7 * r.reason.length) {
          const label = svg("text", { x: x + 4, y: y + 19, fill: "#fff", "pointer-events": "none" }, s);
          label.textContent = r.reason;
        }
        seg.addEventListener("click", () => showDrops(st.stage, r.reason));
        x += r.count * scale; total += r.count;
      });
      svg("text", { x: x + 4, y: y + 19 }, s).textContent = `−${fmt(total)}`;
      offset += total;
    });
    const y = 5 + (stages.length + 1) * row;
    line("kept", y);
    svg("rect", { x: left + offset * scale, y: y + 4, width: Math.max(1, f.kept * scale), height: row - 10, fill: "#17a398" }, s);
    svg("text", { x: left + (offset + f.kept) * scale + 4, y: y + 19 }, s).textContent = `${fmt(f.kept)} (${pct(f.kept / Math.max(f.candidates, 1))})`;
    document.querySelectorAll("#funnel-table tr.reason").forEach((tr) => {
      const open = () => showDrops(tr.dataset.stage, tr.dataset.reason);
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") open(); });
    });
  }

  function showDrops(stage, reason) {
    const st = D.funnel.stages.find((x) => x.stage === stage);
    const r = st && st.reasons.find((x) => x.reason === reason);
    if (!r) return;
    document.querySelectorAll("#funnel-table tr.reason").forEach((tr) => {
      tr.classList.toggle("active", tr.dataset.stage === stage && tr.dataset.reason === reason);
    });
    const box = document.getElementById("drops");
    box.textContent = "";
    box.hidden = false;
    html("h3", {}, box, `${stage} / ${reason}: ${fmt(r.count)} rows dropped`);
    html("p", { class: "muted" }, box, r.rows.length ? `showing ${fmt(r.rows.length)} (from ${r.source})` : "no rows recorded for this reason");
    r.rows.forEach((row) => {
      const d = html("div", { class: "drop" }, box);
      html("div", {}, d, row.instruction);
      if (row.input) html("div", { class: "muted" }, d, "input: " + row.input);
      if (row.output) html("div", { class: "muted" }, d, "output: " + row.output);
      if (row.twin) html("div", { class: "twin" }, d, "kept twin: " + row.twin);
      const keys = Object.keys(row.detail || {});
      if (keys.length) html("div", { class: "detail" }, d, keys.map((k) => `${k}: ${JSON.stringify(row.detail[k])}`).join("  ·  "));
    });
    box.scrollIntoView({ block: "nearest" });
  }

  // Sunburst: verbs on the inner ring, their top objects on the outer ring.
  function sunburst() {
    const data = D.diversity.sunburst;
    document.getElementById("sunburst-share").textContent = pct(D.diversity.sunburst_share);
    if (!data.length) return empty("sunburst", "no verbs found");
    const size = 420, c = size / 2, r0 = 50, r1 = 125, r2 = 200;
    const s = canvas("sunburst", size, size);
    const total = data.reduce((a, v) => a + v.count, 0);
    const arc = (a0, a1, ra, rb) => {
      const p = (a, r) => `${c + r * Math.sin(a)},${c - r * Math.cos(a)}`;
      const large = a1 - a0 > Math.PI ? 1 : 0;
      return `M${p(a0, ra)}A${ra},${ra} 0 ${large} 1 ${p(a1, ra)}L${p(a1, rb)}A${rb},${rb} 0 ${large} 0 ${p(a0, rb)}Z`;
    };
    let a = 0;
    data.forEach((v, i) => {
      const span = (2 * Math.PI * v.count) / total;
      const seg = svg("path", { d: arc(a, a + span - 0.002, r0, r1), fill: colour(i), stroke: "#fff" }, s);
      hover(seg, `${v.verb}: ${fmt(v.count)} instructions`);
      if (span > 0.12) {
        const mid = a + span / 2, rr = (r0 + r1) / 2;
        svg("text", { x: c + rr * Math.sin(mid), y: c - rr * Math.cos(mid) + 4, "text-anchor": "middle", fill: "#fff" }, s).textContent = v.verb;
      }
      let b = a;
      v.objects.forEach(([obj, n]) => {
        const sp = (2 * Math.PI * n) / total;
        const o = svg("path", { d: arc(b, b + sp - 0.002, r1 + 2, r2), fill: colour(i), "fill-opacity": 0.55, stroke: "#fff" }, s);
        hover(o, `${v.verb} ${obj}: ${fmt(n)}`);
        if (sp > 0.09) {
          const mid = b + sp / 2, rr = (r1 + r2) / 2;
          svg("text", { x: c + rr * Math.sin(mid), y: c - rr * Math.cos(mid) + 4, "text-anchor": "middle" }, s).textContent = obj.slice(0, 12);
        }
        b += sp;
      });
      a += span;
    });
  }

  // Embedding map: the sample's 2-D projection; colour by cluster or task type.
  function map() {
    const m = D.diversity.map, select = document.getElementById("map-colour");
    const draw = () => {
      if (!m.points.length) return empty("map", "no points");
      const by = select.value, keys = by === "task" ? m.task : m.cluster;
      const names = [...new Set(keys)].sort((x, y) => (x > y ? 1 : -1));
      const idx = new Map(names.map((n, i) => [n, i]));
      const w = 460, h = 380, pad = 10;
      const s = canvas("map", w, h);
      const xs = m.points.map((p) => p[0]), ys = m.points.map((p) => p[1]);
      const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
      const sx = (x) => pad + ((w - 2 * pad) * (x - x0)) / (x1 - x0 || 1);
      const sy = (y) => h - pad - ((h - 2 * pad) * (y - y0)) / (y1 - y0 || 1);
      m.points.forEach((p, i) => {
        const dot = svg("circle", { cx: sx(p[0]).toFixed(1), cy: sy(p[1]).toFixed(1), r: 2.6, fill: colour(idx.get(keys[i])), "fill-opacity": 0.75 }, s);
        hover(dot, `[${by} ${keys[i]}] ${m.text[i]}`);
      });
      const legend = document.getElementById("map-legend");
      legend.textContent = "";
      names.slice(0, 24).forEach((n) => {
        const sp = html("span", {}, legend);
        html("i", { style: `background:${colour(idx.get(n))}` }, sp);
        sp.appendChild(document.createTextNode(`${by} ${n}`));
      });
    };
    select.addEventListener("change", draw);
    draw();
  }

  function rounds() {
    const rs = D.rounds;
    if (!rs.length) return;
    const w = 640, h = 220, pad = 34, n = rs.length;
    const s = canvas("rounds-chart", w, h + 30);
    const max = Math.max(...rs.map((r) => r.candidates), 1), bw = Math.min((w - 2 * pad) / n, 90);
    svg("line", { x1: pad, y1: h, x2: w - pad, y2: h, class: "axis" }, s);
    const pts = [];
    const gap = Math.min(3, bw * 0.1), half = Math.max(0.5, bw / 2 - gap), every = Math.ceil(n / 20);
    rs.forEach((r, i) => {
      const x = pad + i * bw, ch = ((h - 20) * r.candidates) / max, ah = ((h - 20) * r.accepted) / max;
      hover(svg("rect", { x: x + gap, y: h - ch, width: half, height: ch, fill: "#9aa5b8" }, s), `round ${r.round}: ${fmt(r.candidates)} candidates`);
      hover(svg("rect", { x: x + bw / 2, y: h - ah, width: half, height: ah, fill: "#17a398" }, s), `round ${r.round}: ${fmt(r.accepted)} accepted`);
      if (i % every === 0) svg("text", { x: x + bw / 2, y: h + 14, "text-anchor": "middle" }, s).textContent = String(r.round);
      pts.push(`${x + bw / 2},${h - (h - 20) * r.acceptance}`);
    });
    svg("polyline", { points: pts.join(" "), fill: "none", stroke: "#e4572e", "stroke-width": 2 }, s);
    svg("text", { x: pad, y: h + 28 }, s).textContent = "grey: candidates · green: accepted · red line: acceptance (0–100% of the height)";
  }

  // Examples: search, filters, pages of 50; a click shows the row's lineage.
  function examples() {
    const rows = D.examples.rows, PAGE = 50;
    const q = document.getElementById("ex-search"), fTask = document.getElementById("ex-task");
    const fRound = document.getElementById("ex-round"), fCluster = document.getElementById("ex-cluster");
    const body = document.querySelector("#ex-table tbody");
    const fill = (sel, values) => [...new Set(values.filter((v) => v !== null && v !== undefined))]
      .sort((a, b) => (a > b ? 1 : -1)).forEach((v) => html("option", { value: String(v) }, sel, String(v)));
    fill(fTask, rows.map((r) => r.task));
    fill(fRound, rows.map((r) => r.round));
    fill(fCluster, rows.map((r) => r.cluster));
    let page = 0, shown = rows;
    const match = (r, text) => !text || (r.instruction + " " + r.input + " " + r.output).toLowerCase().includes(text);
    const apply = () => {
      const text = q.value.trim().toLowerCase();
      shown = rows.filter((r) => match(r, text) && (!fTask.value || r.task === fTask.value)
        && (!fRound.value || String(r.round) === fRound.value) && (!fCluster.value || String(r.cluster) === fCluster.value));
      page = 0;
      draw();
    };
    const draw = () => {
      body.textContent = "";
      const pages = Math.max(1, Math.ceil(shown.length / PAGE));
      shown.slice(page * PAGE, page * PAGE + PAGE).forEach((r) => {
        const tr = html("tr", {}, body);
        [r.i, r.instruction, r.input, r.output, r.task, r.round ?? "", r.cluster ?? ""].forEach((v) => html("td", {}, tr, String(v)));
        tr.addEventListener("click", () => {
          const next = tr.nextSibling;
          if (next && next.classList && next.classList.contains("lineage")) return next.remove();
          const lin = document.createElement("tr");
          lin.className = "lineage";
          html("td", { colspan: "7" }, lin, JSON.stringify(r.lineage, null, 2));
          tr.after(lin);
        });
      });
      document.getElementById("ex-count").textContent = `${fmt(shown.length)} rows match`;
      document.getElementById("ex-page").textContent = `page ${page + 1} of ${pages}`;
    };
    q.addEventListener("input", apply);
    [fTask, fRound, fCluster].forEach((s) => s.addEventListener("change", apply));
    document.getElementById("ex-prev").addEventListener("click", () => { if (page > 0) { page--; draw(); } });
    document.getElementById("ex-next").addEventListener("click", () => { if ((page + 1) * PAGE < shown.length) { page++; draw(); } });
    draw();
  }

  funnel();
  sunburst();
  map();
  bars("clusters", D.diversity.cluster_sizes.map(([c, n]) => ({ label: `cluster ${c}`, value: n, colour: colour(c) })));
  histogram("nearest-seed", D.diversity.nearest_seed);
  ["instruction", "input", "output"].forEach((k) => histogram("len-" + k, D.lengths.hist[k], " words"));
  const totalTypes = D.lengths.task_types.reduce((a, t) => a + t[1], 0) || 1;
  bars("task-types", D.lengths.task_types.map(([t, n]) => ({ label: t, value: n, note: `${fmt(n)} (${pct(n / totalTypes)})` })));
  rounds();
  examples();
  document.body.dataset.ready = "1";
})();
