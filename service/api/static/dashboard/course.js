// A course: its members by role; for its staff each student's usage (and, for an instructor,
// a form granting hours); for a student their own usage and queued jobs; its data sets and
// competitions.
import { api, redrawWhenJobsChange, repeating } from "./api.js";
import { h, fill, errorBox, markInvalid, formatHours, formatTime } from "./ui.js";

const ROLE_TITLES = { instructor: "Instructors", ta: "Teaching assistants", student: "Students" };
const STAFF = ["instructor", "ta"];

// "GPU 0.4 h used, 9.6 left" for one kind of hours of a course entry or usage row.
export function hoursLine(kind, used, left, attrs = {}) {
  return h("span", { class: "hours", "data-kind": kind, ...attrs },
    `${kind.toUpperCase()} `, h("span", { "data-test": "used" }, formatHours(used)), " h used, ",
    h("span", { "data-test": "left" }, formatHours(left)), " left");
}

// A course in the header: its name (a link to its page), what was used and what is left,
// and where the user's next queued job stands.
export function courseSummary(entry) {
  return h("a", { href: `#/courses/${entry.name}`, class: "nav-course", "data-test": "nav-course", "data-course": entry.name },
    h("strong", {}, entry.name), " ", hoursLine("gpu", entry.used.gpu_hours, entry.left.gpu_hours), " · ",
    hoursLine("cpu", entry.used.cpu_hours, entry.left.cpu_hours), queueSummary(entry.queue || []));
}

// "Storage 1.2 GB of 20 GB": what the user's files take against their quota (GET /me's storage).
export function storageSummary(storage) {
  if (!storage) return null;
  const size = (bytes) => {
    for (const [unit, scale] of [["GB", 1024 ** 3], ["MB", 1024 ** 2], ["KB", 1024]]) {
      if (bytes >= scale) return `${Number((bytes / scale).toPrecision(3))} ${unit}`;
    }
    return `${bytes} bytes`;
  };
  const full = storage.used_bytes >= storage.quota_bytes;
  return h("span", { class: full ? "nav-storage error" : "nav-storage", "data-test": "nav-storage",
                     title: Object.entries(storage.by_kind || {}).map(([kind, bytes]) => `${kind} ${size(bytes)}`).join(", ") },
    `Storage ${size(storage.used_bytes)} of ${size(storage.quota_bytes)}`);
}

// " · 2 queued, next #3 about 14:20": the first of the user's queued jobs in line.
export function queueSummary(queue) {
  if (!queue.length) return null;
  const next = queue.find((job) => job.position) || queue[0];
  return h("span", { "data-test": "nav-queue-summary" }, ` · ${queue.length} queued`,
    next.position ? `, next #${next.position}` : "",
    next.estimated_start ? ` about ${new Date(next.estimated_start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}` : "",
    next.waiting && next.waiting.reason === "budget" ? ", waiting for budget" : "");
}

function budgetText(budget) {
  if (!budget) return "no limit on device hours";
  const parts = [`${formatHours(budget.gpu_hours)} GPU-hours`, `${formatHours(budget.cpu_hours)} CPU-hours`];
  if (budget.week_gpu_hours !== undefined && budget.week_gpu_hours !== null) {
    parts.push(`at most ${formatHours(budget.week_gpu_hours)} GPU-hours a week`);
  }
  return `${parts.join(", ")} per student this term`;
}

export async function coursePage(container, [name], signal) {
  const path = `/courses/${encodeURIComponent(name)}`;
  const [course, me] = await Promise.all([api(path, { signal }), api("/me", { signal })]);
  const roles = course.roles || [];
  const staff = me.admin || roles.some((role) => STAFF.includes(role));
  const instructor = me.admin || roles.includes("instructor");

  const usage = h("div", { "data-test": "course-usage" });
  const students = h("datalist", { id: "grant-students" }); // the grant form's suggestions
  const own = h("div", { "data-test": "my-usage" });
  fill(container,
    h("section", { class: "card" },
      h("h1", { "data-test": "course-name" }, course.name),
      h("p", { class: "muted" }, `Term ends ${course.term_end}`, course.closed ? " (closed)" : "",
        ` · ${budgetText(course.budget)}`, course.role ? ` · you are ${{ instructor: "an instructor", ta: "a TA", student: "a student" }[course.role]}` : "")),
    course.members ? membersCard(course.members) : null,
    staff ? h("section", { class: "card" }, h("h2", {}, "Students' usage"), usage,
              instructor ? grantForm(path, students, signal, () => showUsage()) : null) : null,
    roles.includes("student") ? h("section", { class: "card" }, h("h2", {}, "Your usage"), own) : null,
    listCard("Data sets", "course-datasets", api(`${path}/datasets`, { signal }), (item) => datasetItem(course, item)),
    listCard("Competitions", "course-competitions", api(`${path}/competitions`, { signal }), competitionItem));

  async function showUsage() {
    const { items } = await api(`${path}/usage`, { signal });
    if (signal.aborted) return;
    fill(usage, usageTable(items));
    fill(students, items.map((row) => h("option", { value: row.user }, row.name || row.user)));
  }

  // Drawn again every few seconds while a job waits: its place moves with others' jobs.
  let queued = false;
  const showOwn = repeating(signal, 5000, async () => {
    const { courses } = await api("/me", { signal });
    const mine = courses.find((c) => c.name === course.name);
    if (signal.aborted || !mine) return;
    queued = (mine.queue || []).length > 0;
    fill(own, ownUsage(mine));
  }, () => queued);

  // What was used and each job's place in the queue change with the jobs.
  const redraw = () => Promise.all([staff ? showUsage() : null, roles.includes("student") ? showOwn() : null]);
  redrawWhenJobsChange(signal, redraw, 1000);
  await redraw().catch((error) => fill(staff ? usage : own, errorBox(error)));
}

function membersCard(members) {
  const byRole = {};
  for (const { user, role } of members) (byRole[role] = byRole[role] || []).push(user);
  return h("section", { class: "card", "data-test": "course-members" }, h("h2", {}, "Members"),
    Object.keys(ROLE_TITLES).filter((role) => byRole[role]).map((role) => h("div", { class: "role" },
      h("h3", {}, `${ROLE_TITLES[role]} (${byRole[role].length})`),
      h("ul", { class: "inline" }, byRole[role].map((user) =>
        h("li", { "data-test": "member", "data-role": role, "data-user": user }, user))))));
}

function usageTable(items) {
  if (!items.length) return h("p", { class: "muted", "data-test": "no-students" }, "No students yet.");
  const granted = (row) => (row.granted ? `${formatHours(row.granted.gpu_hours || 0)} GPU, ${formatHours(row.granted.cpu_hours || 0)} CPU` : "none");
  return h("table", { class: "list" },
    h("thead", {}, h("tr", {}, h("th", {}, "Student"), h("th", {}, "GPU hours used"), h("th", {}, "GPU left"),
      h("th", {}, "CPU hours used"), h("th", {}, "CPU left"), h("th", {}, "Granted"), h("th", {}, "Jobs"))),
    h("tbody", {}, items.map((row) => h("tr", { "data-test": "usage-row", "data-user": row.user },
      h("td", {}, row.user, row.name && row.name !== row.user ? h("span", { class: "muted" }, ` ${row.name}`) : null),
      h("td", { "data-test": "gpu-used" }, formatHours(row.used.gpu_hours)),
      h("td", { "data-test": "gpu-left" }, formatHours(row.left.gpu_hours)),
      h("td", { "data-test": "cpu-used" }, formatHours(row.used.cpu_hours)),
      h("td", { "data-test": "cpu-left" }, formatHours(row.left.cpu_hours)),
      h("td", { "data-test": "granted" }, granted(row)),
      h("td", { "data-test": "jobs" }, typeof row.jobs === "object" && row.jobs ? jobCounts(row.jobs) : row.jobs ?? 0)))));
}

// {"queued": 1, "running": 0, ...} as "1 queued"; a plain count as itself.
function jobCounts(jobs) {
  const parts = Object.entries(jobs).filter(([, n]) => n).map(([status, n]) => `${n} ${status}`);
  return parts.length ? parts.join(", ") : "0";
}

// An instructor gives a student more hours; the table is drawn again from the API's answer.
function grantForm(path, students, signal, redraw) {
  const user = h("input", { id: "grant-user", name: "user", "data-field": "user", "data-test": "grant-user",
                            list: "grant-students", required: true, placeholder: "student id" });
  const gpu = h("input", { id: "grant-gpu", type: "number", step: "any", "data-field": "gpu_hours",
                           "data-test": "grant-gpu", placeholder: "0" });
  const cpu = h("input", { id: "grant-cpu", type: "number", step: "any", "data-field": "cpu_hours",
                           "data-test": "grant-cpu", placeholder: "0" });
  const message = h("div", { "data-test": "grant-message" });
  const form = h("form", { class: "grant", "data-test": "grant-form", novalidate: true },
    h("h3", {}, "Grant hours"), students,
    h("div", { class: "field" }, h("label", { for: "grant-user" }, "Student"), user),
    h("div", { class: "field" }, h("label", { for: "grant-gpu" }, "GPU hours"), gpu),
    h("div", { class: "field" }, h("label", { for: "grant-cpu" }, "CPU hours"), cpu),
    h("button", { type: "submit", "data-test": "grant-submit" }, "Grant"), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { user: user.value.trim() };
    if (gpu.value !== "") body.gpu_hours = Number(gpu.value);
    if (cpu.value !== "") body.cpu_hours = Number(cpu.value);
    try {
      await api(`${path}/grants`, { method: "POST", json: body, signal });
      fill(message, h("p", { class: "ok", "data-test": "grant-done" },
        `Granted ${body.user} ${formatHours(body.gpu_hours || 0)} GPU and ${formatHours(body.cpu_hours || 0)} CPU hours.`));
      form.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
      gpu.value = cpu.value = "";
      window.dispatchEvent(new CustomEvent("labtrain:usage")); // the header's figures
      await redraw();
    } catch (error) {
      fill(message, errorBox(error));
      markInvalid(form, error);
    }
  });
  return form;
}

// A student's own course entry from GET /me: used, left, granted, and their queued jobs.
export function ownUsage(entry) {
  const week = entry.week;
  return [
    h("p", {}, hoursLine("gpu", entry.used.gpu_hours, entry.left.gpu_hours), " · ",
      hoursLine("cpu", entry.used.cpu_hours, entry.left.cpu_hours)),
    entry.granted && (entry.granted.gpu_hours || entry.granted.cpu_hours)
      ? h("p", { class: "muted", "data-test": "my-granted" }, `Including ${formatHours(entry.granted.gpu_hours || 0)} GPU and `,
          `${formatHours(entry.granted.cpu_hours || 0)} CPU hours granted by the instructors.`) : null,
    week ? h("p", { class: "muted", "data-test": "my-week" }, "This week: ", hoursLine("gpu", week.used, week.left),
      ` of ${formatHours(week.cap)}`, week.resets_at ? `; it starts again ${formatTime(week.resets_at)}` : "") : null,
    h("h3", {}, "Your queued jobs"),
    queueList(entry.queue || []),
  ];
}

export function queueList(queue) {
  if (!queue.length) return h("p", { class: "muted", "data-test": "my-queue-empty" }, "None waiting.");
  return h("ol", { class: "queue", "data-test": "my-queue" }, queue.map((job) =>
    h("li", { "data-test": "queue-item", "data-job-id": job.id },
      h("a", { href: `#/jobs/${job.id}` }, job.name || job.id), " ",
      h("span", { "data-test": "queue-position" }, job.position ? `position ${job.position}` : "not in line"),
      // A job its budget holds has no estimate: it starts once a grant (or a new week) covers it.
      job.waiting ? null : h("span", { class: "muted", "data-test": "queue-estimate" },
        job.estimated_start ? `, starts about ${formatTime(job.estimated_start)}` : ", no estimate yet"),
      job.waiting ? h("div", { class: "waiting", "data-test": "queue-waiting" }, job.waiting.message) : null)));
}

// A card whose list comes from one request; a failed request shows its error in the card alone.
function listCard(title, test, request, item) {
  const body = h("div", { "data-test": test }, h("p", { class: "muted" }, "Loading…"));
  request.then(({ items }) => fill(body, items.length ? h("ul", { class: "plain" }, items.map(item))
                                                       : h("p", { class: "muted" }, "None yet.")))
    .catch((error) => fill(body, errorBox(error)));
  return h("section", { class: "card" }, h("h2", {}, title), body);
}

function datasetItem(course, item) {
  const size = item.rows !== undefined ? `${item.rows} rows` : item.shape ? `shape ${JSON.stringify(item.shape)}` : "";
  return h("li", { "data-test": "course-dataset", "data-name": item.name },
    h("strong", {}, item.name), h("span", { class: "muted" }, size ? ` · ${size}` : ""),
    " · use it as ", h("code", {}, JSON.stringify({ dataset: { course: course.name, name: item.name } })));
}

function competitionItem(item) {
  return h("li", { "data-test": "course-competition", "data-id": item.id },
    h("a", { href: `#/competitions/${item.id}`, "data-test": "competition-link" }, item.name),
    h("span", { class: "muted" }, ` · ${item.metric} · closes ${formatTime(item.closes_at)}`));
}
