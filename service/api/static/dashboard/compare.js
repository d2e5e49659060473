// Jobs side by side (#/compare?ids=A,B,C or #/compare?search=S for a search's trials; ids may
// also name MLflow runs that are no job, from the runs page): one chart
// per metric with every job's curve overlaid, a table of parameters and final metrics with the
// differences highlighted, and the comparison as CSV. GET /api/v1/compare does the gathering.
import { api, download } from "./api.js";
import { lineChart } from "./charts.js";
import { h, fill, statusBadge, formatNumber } from "./ui.js";

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
                 "#4b5563", "#65a30d"];
const CHART_LEGEND_MAX = 4; // more curves than this and the charts' own legends would overflow

// Past the palette, hues a golden angle apart stay told apart.
function colorOf(index) {
  return index < PALETTE.length ? PALETTE[index] : `hsl(${Math.round((index * 137.508) % 360)}, 65%, 45%)`;
}

export async function comparePage(container, [query], signal) {
  const asked = new URLSearchParams(query || "");
  const search = asked.get("search");
  const params = new URLSearchParams(search ? { search } : { ids: asked.get("ids") || "" });
  const comparison = await api(`/compare?${params}`, { signal });
  if (signal.aborted) return;
  const { items } = comparison;
  const colors = new Map(items.map((item, i) => [item.id, colorOf(i)]));
  const csvName = search ? `search-${search}-trials.csv` : "compare.csv";

  const head = h("section", { class: "card" },
    h("div", { class: "page-head" },
      h("h1", {}, search ? "Trials compared" : `${items.length} ${kindsOf(items)} compared`),
      h("button", { type: "button", class: "link", "data-test": "compare-csv",
                    onclick: () => download(`/compare?${params}&format=csv`, csvName, signal) }, "Download CSV")),
    search ? h("p", {}, "The trials of the search ", h("a", { href: `#/jobs/${search}` }, search),
               comparison.omitted ? h("span", { class: "muted", "data-test": "compare-omitted" },
                 ` (${comparison.omitted} more not shown: at most 50, the best of its leaderboard)`) : null) : null,
    h("ul", { class: "inline compare-legend", "data-test": "compare-legend" }, items.map((item) =>
      h("li", { "data-item": item.id },
        h("span", { class: "swatch", style: `background: ${colors.get(item.id)}` }),
        itemLink(item), " ", statusBadge(item.status)))));

  if (!items.length) {
    fill(container, head, h("p", { class: "muted", "data-test": "compare-empty" }, "The search has no trials yet."));
    return;
  }
  fill(container, head, charts(comparison, colors), table(comparison, colors));
}

// One chart per metric that has a curve: each job's curve in its own color.
function charts(comparison, colors) {
  const { items } = comparison;
  const keys = comparison.metrics.filter((key) => items.some((item) => item.series[key]));
  if (!keys.length) return null;
  const boxes = keys.map((key) => {
    const box = h("div", { class: "chart-box", "data-test": "compare-chart", "data-metric": key });
    const having = items.filter((item) => item.series[key]);
    const axes = [...new Set(having.map((item) => item.series[key].x))];
    lineChart(box, {
      series: having.map((item) => ({ name: item.label, points: item.series[key].points, color: colors.get(item.id) })),
      xLabel: axes.join(" / "), yLabel: key, xInteger: true, legend: items.length <= CHART_LEGEND_MAX,
    });
    return box;
  });
  return h("section", { class: "card" }, h("h2", {}, "Curves"), h("div", { class: "charts" }, boxes));
}

// Parameters and final metrics, a column per job; rows whose values differ are highlighted.
function table(comparison, colors) {
  const { items, differ } = comparison;
  const differs = { params: new Set(differ.params), metrics: new Set(differ.metrics) };
  const rows = (kind, names, valueOf) => names.map((name) => h("tr", {
    "data-test": kind === "params" ? "param-row" : "metric-row", [kind === "params" ? "data-param" : "data-metric"]: name,
    class: differs[kind].has(name) ? "differs" : "same" },
    h("th", {}, name), items.map((item) => h("td", {}, valueOf(item, name)))));
  const section = (title, count) => h("tr", { class: "section" }, h("th", { colspan: items.length + 1 }, title,
    h("span", { class: "muted" }, ` ${count} differ${count === 1 ? "s" : ""}`)));
  const grid = h("table", { class: "list compare", "data-test": "compare-table" },
    h("thead", {}, h("tr", {}, h("th", {}, ""), items.map((item) => h("th", { "data-item": item.id },
      h("span", { class: "swatch", style: `background: ${colors.get(item.id)}` }),
      itemLink(item))))),
    h("tbody", {},
      section("Parameters", differ.params.length), rows("params", comparison.params, (item, name) => shown(item.params[name])),
      section("Final metrics", differ.metrics.length), rows("metrics", comparison.metrics, finalValue)));
  const onlyDiffering = h("input", { type: "checkbox", "data-test": "compare-only-differences",
    onchange: () => grid.classList.toggle("only-differences", onlyDiffering.checked) });
  return h("section", { class: "card" },
    h("div", { class: "page-head" }, h("h2", {}, "Parameters and final metrics"),
      h("label", {}, onlyDiffering, " only what differs")),
    h("div", { class: "compare-scroll" }, grid));
}

// A parameter as the spec writes it (a learning rate of 0.0001 stays 0.0001).
function shown(value) {
  if (value === undefined) return h("span", { class: "muted" }, "–");
  if (value === null) return h("span", { class: "muted" }, "null");
  return String(value);
}

// A job's final metric, else the last point of its curve.
function finalValue(item, name) {
  if (name in item.metrics) return formatNumber(item.metrics[name]);
  const points = (item.series[name] || {}).points || [];
  return points.length ? formatNumber(points[points.length - 1][1]) : shown(undefined);
}

// A job links to its page; an MLflow run that is no job to its experiment's runs.
function itemLink(item) {
  if (item.kind !== "run") return h("a", { href: `#/jobs/${item.id}` }, item.label);
  const experiment = item.experiment || "";
  return h("a", { href: `#/runs?experiment=${encodeURIComponent(experiment)}`, "data-kind": "run",
                  title: `MLflow run ${item.id} in ${experiment}` }, item.label,
           h("span", { class: "muted" }, ` (${experiment})`));
}

function kindsOf(items) {
  const runs = items.filter((item) => item.kind === "run").length;
  if (!runs) return "jobs";
  return runs === items.length ? "runs" : "jobs and runs";
}
