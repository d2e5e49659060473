// MLflow runs that are no job (#/runs, #/runs?experiment=NAME or ID): what a laptop logged with
// MLFLOW_TRACKING_URI set to labtrain, newest first, each with its experiment and latest
// metrics. Runs ticked here open side by side (compare.js), as jobs ticked in the job list do.
// `&run=ID` marks one run (where an MLflow link to it leads, app.js).
import { api } from "./api.js";
import { h, fill, statusBadge, formatTime, formatNumber } from "./ui.js";

const SHOWN_METRICS = 3; // latest values a row shows

export async function runsPage(container, [query], signal) {
  const asked = new URLSearchParams(query || "");
  const experiment = asked.get("experiment");
  const linked = asked.get("run");
  const params = new URLSearchParams({ limit: "100", ...(experiment ? { experiment } : {}) });
  const { items } = await api(`/runs?${params}`, { signal });
  if (signal.aborted) return;
  const selected = new Set(); // runs ticked to compare
  const compareSlot = h("span");
  const showOwner = new Set(items.map((run) => run.owner)).size > 1;

  // An MLflow link names the experiment by its id: its runs say its name.
  const experimentName = experiment && items.length ? items[0].experiment.name : experiment;
  const head = h("div", { class: "page-head" },
    h("h1", {}, "Runs", experiment ? h("span", { class: "muted", "data-test": "runs-experiment" },
      ` in ${experimentName} `, h("a", { href: "#/runs" }, "(all)")) : null),
    compareSlot);
  const about = h("p", { class: "muted" }, "MLflow runs logged from elsewhere (",
    h("code", {}, "MLFLOW_TRACKING_URI"), " set to labtrain); a job's own logging is on its page.");
  const unlisted = linked && !items.some((run) => run.id === linked) ? h("p", { class: "waiting", "data-test": "run-not-listed" },
    `Run ${linked} is not among the runs listed here: it was deleted, is not yours to see, or is older than these.`) : null;
  if (!items.length) {
    fill(container, head, about, unlisted, h("p", { class: "muted", "data-test": "no-runs" }, "No runs yet."));
    return;
  }
  const table = h("table", { class: "list", "data-test": "run-list" },
    h("thead", {}, h("tr", {}, h("th", {}, "Run"), h("th", {}, "Experiment"), showOwner ? h("th", {}, "Owner") : null,
      h("th", {}, "Status"), h("th", {}, "Latest metrics"), h("th", {}, "Started"))),
    h("tbody", {}, items.map((run) => h("tr", { "data-test": "run-row", "data-run-id": run.id,
                                                class: run.id === linked ? "linked" : null,
                                                "aria-current": run.id === linked ? "true" : null },
      h("td", {}, selectBox(run), h("span", { "data-test": "run-name" }, run.name || run.id)),
      h("td", {}, h("a", { href: `#/runs?experiment=${encodeURIComponent(run.experiment.name)}`,
                           "data-test": "run-experiment" }, run.experiment.name)),
      showOwner ? h("td", {}, run.owner) : null,
      h("td", {}, statusBadge(run.status)),
      h("td", { class: "muted" }, metricsText(run)),
      h("td", {}, formatTime(run.start_time))))));
  fill(container, head, about, unlisted, table);
  const marked = table.querySelector("tr.linked");
  if (marked) marked.scrollIntoView({ block: "center" });

  // Two to fifty ticked runs open side by side.
  function selectBox(run) {
    return h("input", { type: "checkbox", class: "select", "data-test": "run-select",
                        "aria-label": `compare ${run.name || run.id}`, onchange: (event) => {
      if (event.target.checked) selected.add(run.id);
      else selected.delete(run.id);
      fill(compareSlot, selected.size >= 2 && selected.size <= 50 ? h("a", { class: "button",
        href: `#/compare?ids=${[...selected].join(",")}`, "data-test": "compare-selected" }, `Compare ${selected.size}`) : null);
    } });
  }
}

function metricsText(run) {
  const shown = Object.entries(run.metrics).slice(0, SHOWN_METRICS)
    .map(([key, value]) => `${key} ${formatNumber(value)}`).join(", ");
  const more = run.metric_count - Math.min(run.metric_count, SHOWN_METRICS);
  return (shown + (more > 0 ? ` (+${more})` : "")) || "–";
}
