// Hand-drawn SVG charts: a line chart with axes and legend, and a heat map.
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  if (text !== undefined) el.textContent = text;
  return el;
}

// About five round tick values covering [low, high]; whole numbers only for counts (epochs, trials).
function ticks(low, high, count = 5, integer = false) {
  if (low === high) { low -= 1; high += 1; }
  const raw = (high - low) / count;
  const step = 10 ** Math.floor(Math.log10(raw));
  let nice = [1, 2, 5, 10].map((m) => m * step).find((s) => s >= raw);
  if (integer) nice = Math.max(1, Math.round(nice));
  // From the tick at or below `low` to the one at or above `high`, so the axes end on ticks.
  const values = [];
  const last = Math.ceil(high / nice - 1e-9) * nice;
  for (let v = Math.floor(low / nice + 1e-9) * nice; v <= last + nice * 1e-9; v += nice) values.push(+v.toPrecision(12));
  return values;
}

function label(value) {
  const a = Math.abs(value);
  return a !== 0 && (a >= 1e5 || a < 1e-3) ? value.toExponential(1) : String(+value.toPrecision(4));
}

// series: [{name, points: [[x, y], ...], dashed, color}]. The container's data-points
// attribute holds the length of the longest series (tests and scripts read it). legend: false
// leaves the legend to the page (many series: compare.js draws one for all its charts).
export function lineChart(container, { series, xLabel = "", yLabel = "", xInteger = false, width = 560, height = 300,
                                       legend: showLegend = true }) {
  const margin = { top: 30, right: 16, bottom: 44, left: 64 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
                            "aria-label": `${yLabel} by ${xLabel}` });
  container.dataset.points = String(Math.max(0, ...series.map((s) => s.points.length)));
  container.replaceChildren(root);
  if (!all.length) {
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "muted" }, "no data yet"));
    return;
  }
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const xTicks = ticks(Math.min(...xs), Math.max(...xs), 5, xInteger);
  const yTicks = ticks(Math.min(...ys), Math.max(...ys));
  const [x0, x1] = [xTicks[0], xTicks.at(-1)];
  const [y0, y1] = [yTicks[0], yTicks.at(-1)];
  const sx = (x) => margin.left + (x1 === x0 ? plotW / 2 : ((x - x0) / (x1 - x0)) * plotW);
  const sy = (y) => margin.top + plotH - (y1 === y0 ? plotH / 2 : ((y - y0) / (y1 - y0)) * plotH);

  const axes = svg("g", { class: "axes" });
  for (const t of yTicks) {
    axes.append(svg("line", { x1: margin.left, x2: margin.left + plotW, y1: sy(t), y2: sy(t), class: "grid" }));
    axes.append(svg("text", { x: margin.left - 6, y: sy(t) + 4, "text-anchor": "end" }, label(t)));
  }
  for (const t of xTicks) {
    axes.append(svg("line", { x1: sx(t), x2: sx(t), y1: margin.top + plotH, y2: margin.top + plotH + 4, class: "tick" }));
    axes.append(svg("text", { x: sx(t), y: margin.top + plotH + 18, "text-anchor": "middle" }, label(t)));
  }
  axes.append(svg("line", { x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + plotH, class: "axis" }));
  axes.append(svg("line", { x1: margin.left, x2: margin.left + plotW, y1: margin.top + plotH, y2: margin.top + plotH,
                            class: "axis" }));
  axes.append(svg("text", { x: margin.left + plotW / 2, y: height - 6, "text-anchor": "middle", class: "axis-label" },
                  xLabel));
  axes.append(svg("text", { x: 14, y: margin.top + plotH / 2, "text-anchor": "middle", class: "axis-label",
                            transform: `rotate(-90 14 ${margin.top + plotH / 2})` }, yLabel));
  root.append(axes);

  const legend = svg("g", { class: "legend" });
  series.forEach((s, i) => {
    const color = s.color || COLORS[i % COLORS.length];
    const points = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    const group = svg("g", { class: "series", "data-series": s.name, "data-points": points.length });
    const line = svg("polyline", { points: points.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" "),
                                   fill: "none", stroke: color, "stroke-width": 2 });
    if (s.dashed) line.setAttribute("stroke-dasharray", "6 4");
    group.append(line);
    if (points.length <= 60) {
      for (const [x, y] of points) group.append(svg("circle", { cx: sx(x), cy: sy(y), r: 3, fill: color }));
    }
    root.append(group);
    // The legend sits in a row above the plot, where it cannot hide a line.
    const ly = 10;
    const lx = margin.left + i * 140;
    const sample = svg("line", { x1: lx, x2: lx + 22, y1: ly, y2: ly, stroke: color, "stroke-width": 2 });
    if (s.dashed) sample.setAttribute("stroke-dasharray", "6 4");
    legend.append(sample, svg("text", { x: lx + 28, y: ly + 4 }, s.name));
  });
  if (showLegend) root.append(legend);
}

// A heat map of a square matrix (a confusion matrix: rows true, columns predicted).
export function heatMap(container, { labels, matrix, rowLabel = "true", columnLabel = "predicted" }) {
  const n = labels.length;
  const cell = Math.max(22, Math.min(48, Math.floor(420 / Math.max(n, 1))));
  const left = 90, top = 40;
  const width = left + n * cell + 10, height = top + n * cell + 10;
  const max = Math.max(1, ...matrix.flat());
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "heatmap", role: "img",
                            "aria-label": "confusion matrix" });
  root.append(svg("text", { x: left + (n * cell) / 2, y: 12, "text-anchor": "middle", class: "axis-label" },
                  columnLabel));
  root.append(svg("text", { x: 12, y: top + (n * cell) / 2, "text-anchor": "middle", class: "axis-label",
                            transform: `rotate(-90 12 ${top + (n * cell) / 2})` }, rowLabel));
  labels.forEach((name, i) => {
    root.append(svg("text", { x: left + i * cell + cell / 2, y: top - 6, "text-anchor": "middle" }, String(name)));
    root.append(svg("text", { x: left - 6, y: top + i * cell + cell / 2 + 4, "text-anchor": "end" }, String(name)));
  });
  matrix.forEach((row, i) => row.forEach((value, j) => {
    const share = value / max;
    // White to dark blue; the count is written in white on dark cells so it stays legible.
    const shade = `rgb(${Math.round(255 - 218 * share)}, ${Math.round(255 - 156 * share)}, ${Math.round(255 - 20 * share)})`;
    root.append(svg("rect", { x: left + j * cell, y: top + i * cell, width: cell - 1, height: cell - 1, fill: shade,
                              "data-row": i, "data-column": j, "data-value": value }));
    root.append(svg("text", { x: left + j * cell + cell / 2, y: top + i * cell + cell / 2 + 4, "text-anchor": "middle",
                              class: share > 0.55 ? "on-dark" : "" }, String(value)));
  }));
  container.dataset.size = String(n);
  container.replaceChildren(root);
}
