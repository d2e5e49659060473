// One job: live learning or convergence curves from the event stream, metrics, the
// confusion matrix, a search's leaderboard, a code job's artifacts, the spec, the log (live
// while it runs) and a cancel button.
import { api, download, followJobEvents, logFrom, repeating } from "./api.js";
import { lineChart, heatMap } from "./charts.js";
import { h, fill, statusBadge, progressBar, formatNumber, formatTime, errorBox, FINISHED } from "./ui.js";

export async function jobPage(container, [jobId], signal) {
  let job = await api(`/jobs/${jobId}`, { signal });
  const epochs = [];   // data of `epoch` events
  const logged = [];   // data of `metrics` events: what the job logged with MLflow or TensorBoard, by step
  const trials = [];   // data of `trial` events

  const head = h("div", { class: "card" });
  const curves = h("section", { class: "curves" });
  const results = h("div");
  const log = h("pre", { class: "log", "data-test": "job-log" });
  fill(container, head, curves, results,
       h("section", { class: "card" }, h("h2", {}, "Spec"), h("pre", { "data-test": "job-spec" }, JSON.stringify(job.spec, null, 2))),
       h("section", { class: "card" }, h("div", { class: "page-head" }, h("h2", {}, "Log"),
         h("button", { type: "button", class: "link", onclick: () => showLog() }, "Refresh")), log));

  let logOffset = 0;
  async function showLog() {
    const chunk = await logFrom(jobId, logOffset, signal);
    if (logOffset === 0) log.textContent = "";
    log.textContent += chunk.text;
    logOffset = chunk.offset;
    if (!log.textContent) log.textContent = "(empty)";
  }

  // While the job runs its log grows (a code job's prints): show what is new every few seconds.
  async function followLog() {
    while (!signal.aborted && !FINISHED.includes(job.status)) {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      await showLog().catch(() => {});
    }
  }

  function showHead() {
    const fraction = job.status === "succeeded" ? 1 : job.progress.fraction;
    const cancel = FINISHED.includes(job.status) ? null : h("button", {
      type: "button", class: "danger", "data-test": "cancel-job", onclick: async (event) => {
        event.target.disabled = true;
        try {
          await api(`/jobs/${jobId}/cancel`, { method: "POST", signal });
          job = await api(`/jobs/${jobId}`, { signal });
          showHead();
        } catch (error) {
          head.append(errorBox(error));
        }
      } }, "Cancel");
    fill(head,
      h("div", { class: "page-head" }, h("h1", { "data-test": "job-name" }, job.name || `${job.family} job`),
        compareTrials(job), cancel),
      h("p", {}, statusBadge(job.status, { id: "job-status" }), " ",
        job.position ? h("span", { class: "muted" }, `position ${job.position} in the ${job.queue} queue `) : null,
        h("span", { class: "muted" }, `${job.family} · `, h("span", { "data-test": "job-queue" }, `${job.queue} queue`),
          ` · ${job.id} · ${job.owner} · created ${formatTime(job.created_at)}`),
        job.tier === "debug" ? h("span", { class: "badge", "data-test": "job-tier" }, " debug") : null),
      // Why a queued job is not dispatched yet (its course's budget), as the API words it.
      job.status === "queued" && job.waiting ? h("p", { class: "waiting", "data-test": "job-waiting",
                                                        "data-reason": job.waiting.reason }, job.waiting.message) : null,
      job.status === "queued" && job.estimated_start ? h("p", { class: "muted", "data-test": "job-estimate" },
        `Estimated start: ${formatTime(job.estimated_start)}`) : null,
      job.preemptions ? h("p", { class: "muted", "data-test": "job-preemptions" },
        `Preempted ${job.preemptions === 1 ? "once" : `${job.preemptions} times`}: it yielded its slot to a ` +
        "debug job, went back to the queue and resumed from its checkpoint") : null,
      progressBar(fraction),
      job.error ? h("div", { class: "error", "data-test": "job-error" }, `${job.error.code}: ${job.error.message}`) : null,
      job.parent_id ? h("p", {}, "Trial ", job.trial_number, " of the search ",
                        h("a", { href: `#/jobs/${job.parent_id}` }, job.parent_id)) : null);
  }

  function showCurves() {
    if (searchesOrOptimises(job, trials)) {
      const chart = h("div", { class: "chart-box", "data-test": "convergence-chart" });
      fill(curves, h("div", { class: "card" }, h("h2", {}, "Convergence"), chart));
      lineChart(chart, convergence(job, trials));
      return;
    }
    const loggedCharts = loggedMetricCharts(logged);
    if (!epochs.length && !(job.spec || {}).training) {  // no epochs yet, nor will there be
      fill(curves, loggedCharts);
      return;
    }
    const loss = h("div", { class: "chart-box", "data-test": "loss-chart" });
    const accuracy = h("div", { class: "chart-box", "data-test": "accuracy-chart" });
    fill(curves, h("div", { class: "card" }, h("h2", {}, "Learning curves"), h("div", { class: "charts" }, loss, accuracy)),
         loggedCharts);
    lineChart(loss, { series: epochSeries("loss"), xLabel: "epoch", yLabel: "loss", xInteger: true });
    lineChart(accuracy, { series: epochSeries("accuracy"), xLabel: "epoch", yLabel: "accuracy", xInteger: true });
  }

  // Training and validation series of one metric; validation is dashed.
  function epochSeries(metric) {
    const points = (key) => epochs.filter((e) => typeof e[key] === "number").map((e) => [e.epoch, e[key]]);
    const series = [{ name: metric, points: points(metric) }];
    if (epochs.some((e) => typeof e[`val_${metric}`] === "number")) {
      series.push({ name: `val_${metric}`, points: points(`val_${metric}`), dashed: true });
    }
    return series;
  }

  function showResults() {
    const parts = [];
    const metrics = job.metrics || (job.result || {}).metrics;
    if (metrics) parts.push(h("section", { class: "card" }, h("h2", {}, "Metrics"), metricsTable(metrics)));
    const confusion = metrics && metrics.confusion_matrix;
    if (confusion && confusion.labels && confusion.matrix) {
      const box = h("div", { class: "heatmap-box", "data-test": "confusion-matrix" });
      parts.push(h("section", { class: "card" }, h("h2", {}, "Confusion matrix"), box));
      heatMap(box, confusion);
    }
    const result = job.result || {};
    if (result.model_id) {
      parts.push(h("p", {}, h("a", { class: "button", href: `#/models/${result.model_id}`, "data-test": "model-link" },
                               "Open the model")));
    } else if (result.model_not_kept) {  // a search's trial whose model its search did not keep
      parts.push(h("p", { class: "muted", "data-test": "model-not-kept" }, "No model kept: ", result.model_not_kept));
    }
    if (result.best_value !== undefined) {
      parts.push(h("section", { class: "card" }, h("h2", {}, "Best"),
        h("p", { "data-test": "best-value" }, "value ", formatNumber(result.best_value), " after ",
          result.evaluations, " evaluations"),
        h("pre", {}, JSON.stringify(result.best_params, null, 1).slice(0, 2000))));
    }
    if (Array.isArray(result.trials)) parts.push(leaderboard(result.trials, job.spec.search || {}));
    if (result.notebook) parts.push(renderedNotebook(result.notebook));
    if (result.artifacts) parts.push(artifactList());
    fill(results, parts);
  }

  // A notebook job's executed notebook, rendered by the worker once the job ended (never a
  // file the job wrote). Its outputs are the student's: the HTML goes into a frame sandboxed
  // with no permission at all (no script, an opaque origin that cannot reach the dashboard or
  // its token), on top of what rendering removed.
  function renderedNotebook(notebook) {
    let frame = h("p", { class: "muted", "data-test": "notebook-no-page" }, notebook.page_error || "no page");
    if (notebook.page) {
      frame = h("iframe", { class: "notebook", sandbox: "", referrerpolicy: "no-referrer",
                            title: "the executed notebook", "data-test": "notebook-frame" });
      api(`/jobs/${jobId}/notebook`, { signal }).then((html) => { frame.srcdoc = html; })
        .catch((error) => frame.replaceWith(errorBox(error)));
    }
    const path = (name) => `/jobs/${jobId}/artifacts/${name}`;
    return h("section", { class: "card" },
      h("div", { class: "page-head" }, h("h2", {}, "Notebook"),
        h("button", { type: "button", class: "link", "data-test": "notebook-download",
                      onclick: () => download(path(notebook.executed), notebook.executed, signal) },
          `Download ${notebook.executed}`)),
      frame);
  }

  // What a code job left in outputs/, each downloadable (the token goes with the request).
  function artifactList() {
    const list = h("ul", { class: "artifacts", "data-test": "artifacts" });
    api(`/jobs/${jobId}/artifacts`, { signal }).then((answer) => fill(list, answer.items.map((item) =>
      h("li", {}, h("button", { type: "button", class: "link", "data-test": "artifact",
                                onclick: () => download(`/jobs/${jobId}/artifacts/${item.path}`,
                                                        item.path.split("/").pop(), signal) }, item.path),
        h("span", { class: "muted" }, ` ${formatNumber(item.size)} bytes`))))).catch(() => {});
    return h("section", { class: "card" }, h("h2", {}, "Artifacts"), list);
  }

  function onEvent(event) {
    if (event.type === "epoch") {
      epochs.push(event.data);
      if (event.data.epochs) job.progress = { ...job.progress, fraction: event.data.epoch / event.data.epochs };
      showHead();
      showCurves();
    } else if (event.type === "metrics") {
      logged.push(event.data);
      showCurves();
    } else if (event.type === "trial") {
      trials.push(event.data);
      showCurves();
    } else if (event.type === "status" && event.data.status) {
      job.status = event.data.status;
      if (event.data.reason === "preempted") job.preemptions = (job.preemptions || 0) + 1;
      showHead();
    }
  }

  // While queued, its place, estimated start and what it waits for move with other jobs.
  const followQueue = repeating(signal, 5000, async () => {
    const now = await api(`/jobs/${jobId}`, { signal });
    if (!signal.aborted && job.status === "queued") {
      job = now;
      showHead();
    }
  }, () => job.status === "queued");

  showHead();
  showCurves();
  showResults();
  if (job.status === "queued") followQueue().catch(() => {});
  showLog().then(followLog).catch(() => {});
  await followJobEvents(jobId, { onEvent, isDone: () => FINISHED.includes(job.status), signal });
  if (signal.aborted) return;
  // The stream ended with the job: fetch what it left (metrics, model, result curve, log).
  job = await api(`/jobs/${jobId}`, { signal });
  showHead();
  showCurves();
  showResults();
  await showLog();
}

// A search's trials side by side (compare.js): their curves overlaid, what differs highlighted.
function compareTrials(job) {
  if (!(job.spec || {}).search) return null;
  return h("a", { class: "button", href: `#/compare?search=${job.id}`, "data-test": "compare-trials" },
           "Compare trials");
}

// A search's best value per finished trial, an optimisation's best value per evaluation.
// Once the job has finished, its result's curve is the whole story.
function convergence(job, trials) {
  const result = job.result || {};
  let points;
  if (Array.isArray(result.curve) && result.curve.length) {
    const step = result.curve_step || 1;
    points = result.curve.map((value, i) => [(i + 1) * step, value]).filter(([, y]) => y !== null);
  } else if (countsEvaluations(job, trials)) {
    points = trials.map((t) => [t.evaluations, t.best_value]);
  } else {
    points = trials.map((t, i) => [i + 1, t.best_value]).filter(([, y]) => y !== null && y !== undefined);
  }
  const series = [{ name: "best value", points }];
  if (!countsEvaluations(job, trials) && !result.curve) {  // a search: each trial's own value too
    series.push({ name: "trial value", points: trials.map((t, i) => [i + 1, t.value]).filter(([, y]) => typeof y === "number"),
                  dashed: true });
  }
  return { series, xLabel: countsEvaluations(job, trials) ? "evaluations" : "trial", yLabel: "best value", xInteger: true };
}

// What a job reports says how to draw it: trials (a search) or evaluations (an optimisation)
// are a convergence curve; epochs are loss and metric curves.
function searchesOrOptimises(job, trials) {
  const progress = job.progress || {};
  return trials.length > 0 || "trials_done" in progress || "evaluations" in progress ||
    Array.isArray((job.result || {}).curve);
}

function countsEvaluations(job, trials) {
  return "evaluations" in (job.progress || {}) || trials.some((t) => "evaluations" in t) ||
    (job.result || {}).curve_step !== undefined;
}

// What a job logged through MLflow or TensorBoard (`metrics` events): one chart per metric, x the
// step, its validation twin on the same chart (`val_loss` with `loss`, `validation/x` with `train/x`).
const MAX_LOGGED_CHARTS = 12;

function loggedMetricCharts(logged) {
  if (!logged.length) return null;
  const groups = new Map();
  for (const data of logged) {
    for (const [key, value] of Object.entries(data)) {
      if (key === "step" || key === "source" || typeof value !== "number") continue;
      const base = key.replace(/^val_/, "").replace(/^(train|validation|val)\//, "");
      if (!groups.has(base)) groups.set(base, new Map());
      const series = groups.get(base);
      if (!series.has(key)) series.set(key, []);
      series.get(key).push([data.step, value]);
    }
  }
  const boxes = [];
  for (const [base, series] of [...groups].slice(0, MAX_LOGGED_CHARTS)) {
    const box = h("div", { class: "chart-box", "data-test": "logged-chart", "data-metric": base });
    boxes.push(box);
    lineChart(box, {
      series: [...series].map(([name, points]) => ({ name, points, dashed: /^(val_|validation\/|val\/)/.test(name) })),
      xLabel: "step", yLabel: base, xInteger: true,
    });
  }
  return h("div", { class: "card" }, h("h2", {}, "Logged metrics"), h("div", { class: "charts" }, boxes));
}

function metricsTable(metrics) {
  const rows = [];
  for (const [name, value] of Object.entries(metrics)) {
    if (name === "confusion_matrix") continue;
    if (value !== null && typeof value === "object") {
      for (const [inner, v] of Object.entries(value)) {
        if (typeof v !== "object" || v === null) rows.push([`${name}.${inner}`, v]);
      }
    } else {
      rows.push([name, value]);
    }
  }
  return h("table", { class: "list metrics", "data-test": "metrics" },
           h("tbody", {}, rows.map(([name, value]) => h("tr", { "data-metric": name },
             h("th", {}, name), h("td", {}, formatNumber(value))))));
}

function leaderboard(trials, search) {
  const sign = search.direction === "minimize" ? 1 : -1;
  const ranked = [...trials].sort((a, b) => {
    if (a.value === null || a.value === undefined) return 1;
    if (b.value === null || b.value === undefined) return -1;
    return sign * (a.value - b.value);
  });
  return h("section", { class: "card" }, h("h2", {}, "Leaderboard"),
    h("table", { class: "list", "data-test": "leaderboard" },
      h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Trial"), h("th", {}, search.metric || "value"),
                       h("th", {}, "Parameters"), h("th", {}, "Status"))),
      h("tbody", {}, ranked.map((t, i) => h("tr", { "data-test": "trial-row" },
        h("td", {}, i + 1),
        h("td", {}, t.id ? h("a", { href: `#/jobs/${t.id}` }, `trial ${t.number}`) : `trial ${t.number}`),
        h("td", {}, formatNumber(t.value)),
        h("td", {}, h("code", {}, JSON.stringify(t.params))),
        h("td", {}, t.status))))));
}
