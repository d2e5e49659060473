// The dashboard's router, header (the courses' hours), sign-in, job list and queue pages.
import { api, redrawWhenJobsChange, repeating, token } from "./api.js";
import { h, fill, statusBadge, progressBar, formatTime, errorBox } from "./ui.js";
import { jobPage } from "./job.js";
import { submitPage } from "./submit.js";
import { modelPage } from "./model.js";
import { coursePage, courseSummary, queueSummary, storageSummary } from "./course.js";
import { competitionPage } from "./competition.js";
import { comparePage } from "./compare.js";
import { runsPage } from "./runs.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
const navCourses = document.getElementById("nav-courses");
let current = null; // the AbortController of the page on screen: stops its streams and timers
let header = null;  // the AbortController of the header's course figures, while signed in

const routes = [
  [/^#\/signin$/, signInPage],
  [/^#\/jobs\/([\w-]+)$/, jobPage],
  [/^#\/submit$/, submitPage],
  [/^#\/models\/([\w-]+)$/, modelPage],
  [/^#\/queue$/, queuePage],
  [/^#\/courses\/([\w.-]+)$/, coursePage],
  [/^#\/competitions\/([\w-]+)$/, competitionPage],
  [/^#\/compare(?:\?(.*))?$/, comparePage],
  [/^#\/runs(?:\?(.*))?$/, runsPage],
  [/^#\/experiments\/([^/?]+)(?:\/runs\/([^/?]+))?(?:[/?].*)?$/, mlflowLink],
  [/^(#\/?|#\/jobs)?$/, jobsPage],
];

function route() {
  if (current) current.abort();
  current = new AbortController();
  const hash = location.hash;
  if (!token.get() && hash !== "#/signin") {
    location.hash = "#/signin";
    return;
  }
  nav.hidden = !token.get();
  if (token.get()) followCourses();
  for (const [pattern, page] of routes) {
    const match = hash.match(pattern);
    if (match) {
      view.dataset.page = page.name;
      page(view, match.slice(1), current.signal).catch((error) => {
        if (!current.signal.aborted) fill(view, errorBox(error));
      });
      return;
    }
  }
  fill(view, h("p", {}, "No such page. ", h("a", { href: "#/jobs" }, "Back to the jobs")));
}

// A job's MLflow run id is its id then ten zeros (service/tracking/run_ids.py).
const JOB_RUN_ID = /^([0-9a-f]{22})0{10}$/;

// MLflow's UI links, as its client prints them where labtrain is the tracking URI and as
// students paste them (#/experiments/<id>/runs/<run id>, #/experiments/<id>, and their
// sub-pages): a job's run opens the job, another run its experiment's runs with it marked.
// The link's own entry in the history is replaced, so Back leaves for the page before.
async function mlflowLink(_container, [experiment, runId]) {
  const job = runId ? runId.match(JOB_RUN_ID) : null;
  const asked = new URLSearchParams({ experiment, ...(runId ? { run: runId } : {}) });
  location.replace(job ? `#/jobs/${job[1]}` : `#/runs?${asked}`);
}

// Runs `fn` now and every `ms` until the page is left.
function every(ms, signal, fn) {
  // A failed refresh (e.g. the server restarting) is tried again at the next tick.
  const timer = setInterval(() => fn().catch(() => {}), ms);
  signal.addEventListener("abort", () => clearInterval(timer));
  return fn();
}

async function signInPage(container) {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true,
                             placeholder: "lt_...", "data-test": "token-input" });
  const message = h("div");
  const form = h("form", { class: "card narrow", "data-test": "signin-form" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Paste the token that ", h("code", {}, "labtrain users create NAME"),
      " printed for you. It stays in this browser until you sign out."),
    h("label", { for: "token" }, "Token"), input,
    h("button", { type: "submit", "data-test": "signin-submit" }, "Sign in"), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    token.set(input.value.trim());
    try {
      await api("/jobs?limit=1"); // proves the token works before leaving the page
      location.hash = "#/jobs";
    } catch (error) {
      token.clear();
      fill(message, errorBox(error));
    }
  });
  fill(container, form);
  input.focus();
}

async function jobsPage(container, _params, signal) {
  const table = h("div", { "data-test": "job-list" });
  const selected = new Set(); // jobs ticked to compare, kept across redraws
  const compareSlot = h("span");
  fill(container, h("div", { class: "page-head" }, h("h1", {}, "Jobs"),
                    h("span", {}, compareSlot, " ", h("a", { class: "button", href: "#/submit" }, "Submit a job"))), table);
  // The list is drawn again when a job changes (the server says so), not on a timer.
  redrawWhenJobsChange(signal, refresh);
  await refresh();

  async function refresh() {
    const { items } = await api("/jobs?limit=100", { signal });
    if (signal.aborted) return;
    // Only admins get other users' jobs, so an owner column appears only for them.
    const owners = new Set(items.map((job) => job.owner));
    const showOwner = owners.size > 1;
    if (!items.length) {
      fill(table, h("p", { class: "muted", "data-test": "no-jobs" }, "No jobs yet. ",
                    h("a", { href: "#/submit" }, "Submit one"), "."));
      return;
    }
    fill(table, h("table", { class: "list" },
      h("thead", {}, h("tr", {}, h("th", {}, "Job"), h("th", {}, "Kind"), showOwner ? h("th", {}, "Owner") : null,
                       h("th", {}, "Status"), h("th", {}, "Progress"), h("th", {}, "Created"))),
      h("tbody", {}, items.map((job) => h("tr", { "data-test": "job-row", "data-job-id": job.id },
        h("td", {}, selectBox(job), h("a", { href: `#/jobs/${job.id}`, "data-test": "job-link" }, job.name || job.id)),
        h("td", {}, job.family), showOwner ? h("td", { "data-test": "job-owner" }, job.owner) : null,
        h("td", {}, statusBadge(job.status), job.position ? h("span", { class: "muted" }, ` #${job.position}`) : null,
          job.waiting ? h("div", { class: "muted", "data-test": "job-row-waiting" }, job.waiting.message) : null),
        h("td", {}, progressBar(job.status === "succeeded" ? 1 : job.progress.fraction)),
        h("td", {}, formatTime(job.created_at)))))));
  }

  // Two to fifty ticked jobs open side by side (compare.js).
  function selectBox(job) {
    return h("input", { type: "checkbox", class: "select", "data-test": "job-select", checked: selected.has(job.id),
                        "aria-label": `compare ${job.name || job.id}`, onchange: (event) => {
      if (event.target.checked) selected.add(job.id);
      else selected.delete(job.id);
      fill(compareSlot, selected.size >= 2 && selected.size <= 50 ? h("a", { class: "button",
        href: `#/compare?ids=${[...selected].join(",")}`, "data-test": "compare-selected" }, `Compare ${selected.size}`) : null);
    } });
  }
}

async function queuePage(container, _params, signal) {
  const body = h("div", { "data-test": "queue" });
  fill(container, h("h1", {}, "Queue"), body);
  await every(3000, signal, async () => {
    const queue = await api("/queue", { signal });
    if (signal.aborted) return;
    const rows = Object.entries(queue.queues).map(([name, q]) => h("tr", { "data-test": "queue-row", "data-queue": name },
      h("td", {}, name), h("td", { "data-test": "queued" }, q.queued), h("td", { "data-test": "running" }, q.running),
      h("td", {}, q.workers.length ? q.workers.map((w) => h("div", {}, `${w.name} (${w.concurrency} slot${w.concurrency === 1 ? "" : "s"})`,
        w.gpu ? h("span", { class: "muted" }, ` ${w.gpu.name}, ${Math.round(w.gpu.memory_mb / 1024)} GiB`) : null))
        : h("span", { class: "muted" }, "none online"))));
    const mine = queue.your_queued_jobs;
    fill(body,
      h("table", { class: "list" }, h("thead", {}, h("tr", {}, h("th", {}, "Queue"), h("th", {}, "Queued"),
        h("th", {}, "Running"), h("th", {}, "Workers"))), h("tbody", {}, rows)),
      h("h2", {}, "Your queued jobs"),
      mine.length ? h("ol", { "data-test": "your-queued-jobs" }, mine.map((job) => h("li", {},
        h("a", { href: `#/jobs/${job.id}` }, job.name || job.id), ` on ${job.queue}, position ${job.position ?? "?"}`)))
        : h("p", { class: "muted" }, "None waiting."));
  });
}

// The header's courses: what the user used of each and what is left, drawn again whenever
// one of their jobs changes (as the job list is), after a grant, and now and then while a
// job of theirs waits in the queue (its place moves).
function followCourses() {
  if (header) return;
  header = new AbortController();
  const signal = header.signal;
  let queued = false;
  const redraw = repeating(signal, 15_000, async () => {
    const me = await api("/me", { signal });
    if (signal.aborted) return;
    queued = me.courses.some((course) => (course.queue || []).length) || (me.queue || []).length > 0;
    // Jobs in no course have a place in the queue too.
    const other = (me.queue || []).length ? h("a", { href: "#/queue", class: "nav-course", "data-test": "nav-other-queue" },
                                              "No course", queueSummary(me.queue)) : null;
    fill(navCourses, me.courses.map(courseSummary), other, storageSummary(me.storage));
  }, () => queued);
  redrawWhenJobsChange(signal, redraw, 2000); // a course's staff hear of all its jobs: at most every 2 s
  window.addEventListener("labtrain:usage", () => redraw().catch(() => {}), { signal });
  redraw().catch(() => {});
}

function signOut() {
  token.clear();
  if (header) header.abort();
  header = null;
  fill(navCourses);
  location.hash = "#/signin";
}

document.getElementById("sign-out").addEventListener("click", signOut);
window.addEventListener("labtrain:unauthorized", signOut);
window.addEventListener("hashchange", route);
route();
