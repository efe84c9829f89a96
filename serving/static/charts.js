/* leadscore dashboard charts: small inline-SVG bar and line charts, no dependencies.
 * Every chart is an <svg class="chart-svg"> with <title> tooltips on its marks.
 */
"use strict";

(function (global) {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#64748b"];

  function el(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(key, String(value));
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function titled(node, text) {
    node.appendChild(el("title", {}, text));
    return node;
  }

  /* A round step for about `count` intervals up to `value`, and the axis end it gives. */
  function niceScale(value, count) {
    count = count || 4;
    if (!(value > 0)) return { max: 1, step: 0.25 };
    const raw = value / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    let step = 10 * power;
    for (const m of [1, 2, 2.5, 5, 10]) {
      if (m * power >= raw) { step = m * power; break; }
    }
    return { max: Math.ceil(value / step - 1e-9) * step, step };
  }

  function ticks(max, count, step) {
    const out = [];
    if (step) {
      for (let v = 0; v <= max + step / 2; v += step) out.push(v);
      return out;
    }
    for (let i = 0; i <= count; i += 1) out.push((max * i) / count);
    return out;
  }

  function widthOf(container, opts) {
    if (opts.width) return opts.width;
    const measured = container.clientWidth || (container.parentElement && container.parentElement.clientWidth) || 720;
    return Math.max(360, Math.min(1400, measured));
  }

  function empty(container, message) {
    container.replaceChildren();
    const p = document.createElement("p");
    p.className = "muted empty";
    p.textContent = message;
    container.appendChild(p);
  }

  /* Horizontal bars. data: [{label, value, extra?}] ; opts: {format, color, label} */
  function barChart(container, data, opts) {
    opts = opts || {};
    const rows = data.filter((d) => typeof d.value === "number" && isFinite(d.value));
    if (!rows.length) return empty(container, opts.emptyText || "No data to chart.");
    const format = opts.format || ((v) => String(v));
    const labelWidth = opts.labelWidth || 170;
    const barHeight = 22;
    const gap = 6;
    const width = widthOf(container, opts);
    const plotWidth = width - labelWidth - 80;
    const height = rows.length * (barHeight + gap) + 30;
    const scale = niceScale(Math.max(...rows.map((d) => d.value), 0));
    const max = scale.max;
    const svg = el("svg", {
      class: "chart-svg bar-chart",
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": opts.label || "bar chart",
    });
    for (const t of ticks(max, 4, scale.step)) {
      const x = labelWidth + (t / max) * plotWidth;
      svg.appendChild(el("line", { x1: x, x2: x, y1: 0, y2: height - 24, class: "grid" }));
      svg.appendChild(el("text", { x, y: height - 8, class: "tick", "text-anchor": "middle" }, format(t)));
    }
    rows.forEach((d, i) => {
      const y = i * (barHeight + gap) + 4;
      const w = Math.max(1, (Math.max(d.value, 0) / max) * plotWidth);
      svg.appendChild(
        el("text", { x: labelWidth - 8, y: y + barHeight * 0.7, class: "label", "text-anchor": "end" },
          d.label.length > 26 ? d.label.slice(0, 25) + "…" : d.label)
      );
      const bar = el("rect", {
        x: labelWidth, y, width: w, height: barHeight, rx: 3,
        class: "bar", fill: d.color || opts.color || PALETTE[0],
      });
      svg.appendChild(titled(bar, `${d.label}: ${format(d.value)}${d.extra ? " · " + d.extra : ""}`));
      svg.appendChild(el("text", { x: labelWidth + w + 6, y: y + barHeight * 0.7, class: "value" }, format(d.value)));
    });
    container.replaceChildren(svg);
    return svg;
  }

  /* Lines over a numeric or categorical x. series: [{name, points: [{x, y, label?}]}] ;
   * opts: {xFormat, yFormat, xLabels (categorical), yMax, xMax, diagonal, yLabel, xLabel} */
  function lineChart(container, series, opts) {
    opts = opts || {};
    const clean = series
      .map((s) => ({ ...s, points: s.points.filter((p) => typeof p.y === "number" && isFinite(p.y)) }))
      .filter((s) => s.points.length);
    if (!clean.length) return empty(container, opts.emptyText || "No data to chart.");
    const width = widthOf(container, opts);
    const height = opts.height || 320;
    const left = 64, right = 20, top = 16, bottom = 54;
    const plotW = width - left - right;
    const plotH = height - top - bottom;
    const categorical = Array.isArray(opts.xLabels);
    const xs = clean.flatMap((s) => s.points.map((p) => p.x));
    const xMin = categorical ? 0 : (opts.xMin !== undefined ? opts.xMin : Math.min(...xs));
    const xMax = categorical ? Math.max(opts.xLabels.length - 1, 1) : (opts.xMax !== undefined ? opts.xMax : Math.max(...xs));
    const yScale = opts.yMax !== undefined ? niceScale(opts.yMax) : niceScale(Math.max(...clean.flatMap((s) => s.points.map((p) => p.y)), 0));
    const yMax = opts.yMax !== undefined ? opts.yMax : yScale.max;
    const sx = (x) => left + ((x - xMin) / (xMax - xMin || 1)) * plotW;
    const sy = (y) => top + plotH - (y / (yMax || 1)) * plotH;
    const yFormat = opts.yFormat || ((v) => String(v));
    const xFormat = opts.xFormat || ((v) => String(v));
    const svg = el("svg", {
      class: "chart-svg line-chart",
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": opts.label || "line chart",
    });
    for (const t of ticks(yMax, 4, yScale.step)) {
      svg.appendChild(el("line", { x1: left, x2: left + plotW, y1: sy(t), y2: sy(t), class: "grid" }));
      svg.appendChild(el("text", { x: left - 8, y: sy(t) + 4, class: "tick", "text-anchor": "end" }, yFormat(t)));
    }
    if (categorical) {
      const every = Math.max(1, Math.ceil(opts.xLabels.length / 12));
      opts.xLabels.forEach((label, i) => {
        if (i % every) return;
        svg.appendChild(el("text", { x: sx(i), y: top + plotH + 18, class: "tick", "text-anchor": "middle" }, label));
      });
    } else {
      for (const t of ticks(xMax - xMin, 4)) {
        const x = xMin + t;
        svg.appendChild(el("text", { x: sx(x), y: top + plotH + 18, class: "tick", "text-anchor": "middle" }, xFormat(x)));
      }
    }
    svg.appendChild(el("line", { x1: left, x2: left + plotW, y1: top + plotH, y2: top + plotH, class: "axis" }));
    svg.appendChild(el("line", { x1: left, x2: left, y1: top, y2: top + plotH, class: "axis" }));
    if (opts.xLabel) svg.appendChild(el("text", { x: left + plotW / 2, y: height - 8, class: "axis-label", "text-anchor": "middle" }, opts.xLabel));
    if (opts.yLabel) {
      svg.appendChild(el("text", { x: 14, y: top + plotH / 2, class: "axis-label", "text-anchor": "middle",
        transform: `rotate(-90 14 ${top + plotH / 2})` }, opts.yLabel));
    }
    if (opts.diagonal) {
      const end = Math.min(xMax, yMax);
      svg.appendChild(el("line", { x1: sx(0), y1: sy(0), x2: sx(end), y2: sy(end), class: "diagonal" }));
    }
    clean.forEach((s, i) => {
      const color = s.color || PALETTE[i % PALETTE.length];
      const d = s.points.map((p, j) => `${j ? "L" : "M"}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(" ");
      svg.appendChild(el("path", { d, class: "line", stroke: color, "stroke-dasharray": s.dashed ? "6 4" : null }));
      for (const p of s.points) {
        const dot = el("circle", { cx: sx(p.x), cy: sy(p.y), r: p.r || 3.5, fill: color, class: "dot", "fill-opacity": p.r ? 0.7 : 1 });
        svg.appendChild(titled(dot, `${s.name} · ${p.label || (categorical ? opts.xLabels[p.x] : xFormat(p.x))}: ${yFormat(p.y)}`));
      }
    });
    const legend = el("g", { class: "legend" });
    clean.forEach((s, i) => {
      const x = left + 10 + i * 150;
      legend.appendChild(el("rect", { x, y: top + 2, width: 12, height: 12, rx: 2, fill: s.color || PALETTE[i % PALETTE.length] }));
      legend.appendChild(el("text", { x: x + 18, y: top + 12, class: "legend-text" }, s.name));
    });
    svg.appendChild(legend);
    container.replaceChildren(svg);
    return svg;
  }

  /* Vertical grouped bars. groups: [{label, values: [{name, value}]}] */
  function columnChart(container, groups, opts) {
    opts = opts || {};
    const names = [...new Set(groups.flatMap((g) => g.values.map((v) => v.name)))];
    const values = groups.flatMap((g) => g.values.map((v) => v.value)).filter((v) => typeof v === "number" && isFinite(v));
    if (!values.length) return empty(container, opts.emptyText || "No data to chart.");
    const width = widthOf(container, opts), height = opts.height || 280;
    const left = 64, right = 16, top = 24, bottom = 40;
    const plotW = width - left - right, plotH = height - top - bottom;
    const yScale = niceScale(opts.yMax !== undefined ? opts.yMax : Math.max(...values, 0));
    const yMax = opts.yMax !== undefined ? opts.yMax : yScale.max;
    const yFormat = opts.yFormat || ((v) => String(v));
    const sy = (y) => top + plotH - (y / yMax) * plotH;
    const band = plotW / groups.length;
    const barW = Math.min(36, (band * 0.8) / Math.max(names.length, 1));
    const svg = el("svg", { class: "chart-svg column-chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": opts.label || "column chart" });
    for (const t of ticks(yMax, 4, yScale.step)) {
      svg.appendChild(el("line", { x1: left, x2: left + plotW, y1: sy(t), y2: sy(t), class: "grid" }));
      svg.appendChild(el("text", { x: left - 8, y: sy(t) + 4, class: "tick", "text-anchor": "end" }, yFormat(t)));
    }
    const maxChars = Math.max(4, Math.floor(band / 7));
    groups.forEach((g, gi) => {
      const x0 = left + gi * band + (band - barW * names.length) / 2;
      g.values.forEach((v) => {
        if (typeof v.value !== "number" || !isFinite(v.value)) return;
        const ni = names.indexOf(v.name);
        const rect = el("rect", { x: x0 + ni * barW, y: sy(v.value), width: barW - 2, height: Math.max(0, top + plotH - sy(v.value)),
          class: "bar", fill: PALETTE[ni % PALETTE.length], rx: 2 });
        svg.appendChild(titled(rect, `${g.label} · ${v.name}: ${yFormat(v.value)}`));
      });
      const text = g.label.length > maxChars ? g.label.slice(0, maxChars - 1) + "…" : g.label;
      svg.appendChild(titled(el("text", { x: left + gi * band + band / 2, y: top + plotH + 18, class: "tick", "text-anchor": "middle" }, text), g.label));
    });
    if (names.length > 1) {
      names.forEach((n, i) => {
        const x = left + 10 + i * 130;
        svg.appendChild(el("rect", { x, y: 4, width: 12, height: 12, rx: 2, fill: PALETTE[i % PALETTE.length] }));
        svg.appendChild(el("text", { x: x + 18, y: 14, class: "legend-text" }, n));
      });
    }
    container.replaceChildren(svg);
    return svg;
  }

  global.LeadCharts = { barChart, lineChart, columnChart, empty, niceScale, PALETTE };
})(window);
