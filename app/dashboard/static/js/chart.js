// A small SVG line chart: lines with their points, an optional min–max band per series, and
// vertical markers (checkpoints). Every plotted point is a <circle class="point">, with a
// <title> a screen reader and a mouse can read; a table of the same numbers sits below.
import { h, svg, formatNumber } from "./dom.js";

// drawn at about the size shown, so the 12 px labels stay readable on a phone
const chartWidth = () => Math.round(Math.min(800, Math.max(320, window.innerWidth - 60)));
const HEIGHT = 280;
const PAD = { left: 56, right: 16, top: 16, bottom: 40 };

function niceTicks(low, high, count = 5) {
  if (low === high) return [low];
  const raw = (high - low) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let t = Math.ceil(low / step) * step; t <= high + step * 1e-9; t += step) ticks.push(Number(t.toFixed(10)));
  return ticks;
}

/**
 * series: [{key, name, color, points: [{x, y}], band: [{x, low, high}] | null}]
 * markers: [{x, label}]
 */
export function lineChart({ id, title, series, markers = [], xLabel = "step", yLabel = "", fixedY = null }) {
  const WIDTH = chartWidth();
  const values = [];
  const xs = [];
  for (const s of series) {
    for (const p of s.points) { values.push(p.y); xs.push(p.x); }
    for (const b of s.band || []) { values.push(b.low, b.high); xs.push(b.x); }
  }
  for (const m of markers) xs.push(m.x);
  const figure = h("figure", { class: "chart", "data-chart": id });
  figure.append(h("figcaption", {}, title));
  if (values.length === 0) {
    figure.append(h("p", { class: "empty" }, "No points yet."));
    return figure;
  }
  let [yLow, yHigh] = fixedY || [Math.min(...values), Math.max(...values)];
  if (fixedY) { yLow = Math.min(yLow, ...values); yHigh = Math.max(yHigh, ...values); }
  if (yLow === yHigh) { yLow -= 0.5; yHigh += 0.5; }
  let xLow = Math.min(...xs);
  let xHigh = Math.max(...xs);
  if (xLow === xHigh) { xLow -= 1; xHigh += 1; }
  const x = (v) => PAD.left + ((v - xLow) / (xHigh - xLow)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - ((v - yLow) / (yHigh - yLow)) * (HEIGHT - PAD.top - PAD.bottom);

  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": title });
  const axes = svg("g", { class: "axes" });
  for (const t of niceTicks(yLow, yHigh)) {
    axes.append(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(t), y2: y(t), class: "grid" }));
    axes.append(svg("text", { x: PAD.left - 6, y: y(t) + 4, "text-anchor": "end" }, formatNumber(t, 2)));
  }
  const xTicks = niceTicks(xLow, xHigh, WIDTH < 500 ? 4 : 8).filter((t) => Number.isInteger(t));
  for (const t of xTicks) axes.append(svg("text", { x: x(t), y: HEIGHT - PAD.bottom + 16, "text-anchor": "middle" }, String(t)));
  axes.append(svg("text", { x: (WIDTH + PAD.left) / 2, y: HEIGHT - 6, "text-anchor": "middle", class: "axis-label" }, xLabel));
  if (yLabel) axes.append(svg("text", { x: 12, y: PAD.top + 4, class: "axis-label" }, yLabel));
  axes.append(svg("line", { x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: HEIGHT - PAD.bottom, class: "axis" }));
  axes.append(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: HEIGHT - PAD.bottom, y2: HEIGHT - PAD.bottom, class: "axis" }));
  root.append(axes);

  for (const m of markers) {
    root.append(svg("g", { class: "marker", "data-step": m.x },
      svg("line", { x1: x(m.x), x2: x(m.x), y1: PAD.top, y2: HEIGHT - PAD.bottom }),
      svg("text", { x: x(m.x) + 3, y: PAD.top + 10 }, "◆"),
      svg("title", {}, m.label)));
  }
  for (const s of series) {
    if (s.band && s.band.length > 1) {
      const upper = s.band.map((b) => `${x(b.x)},${y(b.high)}`);
      const lower = s.band.slice().reverse().map((b) => `${x(b.x)},${y(b.low)}`);
      root.append(svg("polygon", { class: "band", points: [...upper, ...lower].join(" "), fill: s.color }));
    }
    if (s.points.length > 1) {
      root.append(svg("polyline", { class: "line", points: s.points.map((p) => `${x(p.x)},${y(p.y)}`).join(" "), stroke: s.color }));
    }
    const group = svg("g", { class: "points", "data-series": s.key });
    for (const p of s.points) {
      group.append(svg("circle", { class: "point", cx: x(p.x), cy: y(p.y), r: 3.5, fill: s.color },
        svg("title", {}, `${s.name} at ${xLabel} ${p.x}: ${formatNumber(p.y, 4)}`)));
    }
    root.append(group);
  }
  figure.append(h("div", { class: "chart-frame" }, root));
  const legend = h("ul", { class: "legend" },
    series.map((s) => h("li", {}, h("span", { class: "swatch", "aria-hidden": "true", dataset: { color: s.color } }), `${s.name}${s.band ? " (band: min–max)" : ""}`)),
    markers.length ? h("li", {}, h("span", { class: "marker-swatch", "aria-hidden": "true" }, "◆"), "checkpoint") : null);
  for (const swatch of legend.querySelectorAll(".swatch")) swatch.style.background = swatch.dataset.color;
  figure.append(legend);
  figure.append(dataTable(series, xLabel));
  return figure;
}

function dataTable(series, xLabel) {
  const steps = [...new Set(series.flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const lookup = series.map((s) => new Map(s.points.map((p) => [p.x, p.y])));
  return h("details", { class: "chart-table" }, h("summary", {}, "Show the numbers"),
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, xLabel), series.map((s) => h("th", { scope: "col" }, s.name)))),
      h("tbody", {}, steps.map((step) => h("tr", {}, h("th", { scope: "row" }, String(step)),
        lookup.map((m) => h("td", {}, m.has(step) ? formatNumber(m.get(step), 4) : "")))))));
}
