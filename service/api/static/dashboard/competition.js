// A competition: its facts, the leaderboard, and for a student their submissions (what each
// scored, how many are left today, which count in the end), a form submitting a model or a
// CSV of predictions; for its staff every submission and the grades as CSV.
import { api, download, repeating } from "./api.js";
import { h, fill, errorBox, formatNumber, formatTime, statusBadge } from "./ui.js";

const STAFF = ["instructor", "ta"];
const SCORING_POLL_MS = 2000; // while a submission is being scored

export async function competitionPage(container, [competitionId], signal) {
  const path = `/competitions/${encodeURIComponent(competitionId)}`;
  const [competition, me] = await Promise.all([api(path, { signal }), api("/me", { signal })]);
  const course = (me.courses || []).find((c) => c.name === competition.course) || {};
  const roles = course.roles || (course.role ? [course.role] : []);
  const staff = me.admin || roles.some((role) => STAFF.includes(role));
  const student = roles.includes("student");

  const facts = h("section", { class: "card" });
  const board = h("div", { "data-test": "competition-leaderboard" });
  const submissions = h("div", { "data-test": "submissions" });
  const left = h("p", { class: "muted", "data-test": "submissions-left" });
  fill(container, facts,
    h("section", { class: "card" }, h("div", { class: "page-head" }, h("h2", {}, "Leaderboard"),
      staff ? h("button", { type: "button", class: "link", "data-test": "grades-download",
                            onclick: () => download(`${path}/grades.csv`, `${competition.name}-grades.csv`, signal)
                              .catch((error) => board.before(errorBox(error))) }, "Download grades.csv") : null),
      board),
    student || staff ? h("section", { class: "card" }, h("h2", {}, staff ? "Submissions" : "Your submissions"),
      left, student ? submitForms(path, models(signal), signal, () => showSubmissions()) : null, submissions) : null);

  let phase = competition.phase;
  async function showBoard() {
    const answer = await api(`${path}/leaderboard`, { signal });
    if (signal.aborted) return;
    phase = answer.phase;
    showFacts();
    fill(board, leaderboardTable(answer.rows, competition.metric));
  }

  function showFacts() {
    const better = competition.higher_is_better === undefined ? ""
      : competition.higher_is_better ? " (higher is better)" : " (lower is better)";
    fill(facts,
      h("h1", { "data-test": "competition-name" }, competition.name),
      h("p", {}, competition.course ? ["Course ", h("a", { href: `#/courses/${competition.course}` }, competition.course), " · "] : null,
        "metric ", h("strong", { "data-test": "competition-metric" }, competition.metric), better,
        " · closes ", h("span", { "data-test": "competition-closes" }, formatTime(competition.closes_at)),
        phase ? [" · ", h("span", { class: `phase phase-${phase}`, "data-test": "competition-phase" },
                        phase === "public" ? "public leaderboard (part of the test set)" : "final: private leaderboard")] : null),
      h("p", { class: "muted" }, `${competition.daily_limit} submissions a day`,
        competition.final_selections ? `; your ${competition.final_selections} selected submissions count at the close` : ""));
  }

  // Drawn again every few seconds while one is being scored; a scored one may move the board.
  let scoring = false;
  const showSubmissions = repeating(signal, SCORING_POLL_MS, async () => {
    const answer = await api(`${path}/submissions`, { signal });
    if (signal.aborted) return;
    const remaining = answer.left_today;
    fill(left, remaining === undefined ? "" : `${remaining} submission${remaining === 1 ? "" : "s"} left today`);
    fill(submissions, submissionsTable(answer.items, { staff, path, signal, redraw: showSubmissions }));
    if (scoring && !answer.items.some((s) => s.status === "scoring")) await showBoard();
    scoring = answer.items.some((s) => s.status === "scoring");
  }, () => scoring);

  showFacts();
  await Promise.all([showBoard(), student || staff ? showSubmissions().catch((error) => fill(submissions, errorBox(error))) : null]);
}

function leaderboardTable(rows, metric) {
  if (!rows.length) return h("p", { class: "muted", "data-test": "leaderboard-empty" }, "No scored submissions yet.");
  return h("table", { class: "list" },
    h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Student"), h("th", {}, metric), h("th", {}, "Submissions"),
      h("th", {}, "Last submission"))),
    h("tbody", {}, rows.map((row) => h("tr", { "data-test": "leaderboard-row", "data-user": row.user },
      h("td", { "data-test": "rank" }, row.rank), h("td", { "data-test": "user" }, row.user),
      h("td", { "data-test": "score" }, formatNumber(row.score)), h("td", { "data-test": "count" }, row.submissions),
      h("td", {}, formatTime(row.submitted_at))))));
}

function submissionsTable(items, { staff, path, signal, redraw }) {
  if (!items.length) return h("p", { class: "muted", "data-test": "no-submissions" }, "No submissions yet.");
  const select = (submission, selected) => async (event) => {
    event.target.disabled = true;
    try {
      await api(`${path}/submissions/${submission.id}/select`, { method: "POST", json: { selected }, signal });
      await redraw();
    } catch (error) {
      event.target.replaceWith(errorBox(error));
    }
  };
  return h("table", { class: "list" },
    h("thead", {}, h("tr", {}, h("th", {}, "Submitted"), staff ? h("th", {}, "Student") : null, h("th", {}, "What"),
      h("th", {}, "Status"), h("th", {}, "Public score"), h("th", {}, "Private score"), h("th", {}, "Counts at the close"))),
    h("tbody", {}, items.map((s) => h("tr", { "data-test": "submission-row", "data-id": s.id, "data-status": s.status },
      h("td", {}, formatTime(s.created_at)), staff ? h("td", {}, s.user) : null,
      h("td", {}, s.model ? ["model ", h("a", { href: `#/models/${s.model}` }, s.model)] : "predictions file"),
      h("td", {}, statusBadge(s.status, { "data-test": "submission-status" }),
        s.error ? h("div", { class: "error", "data-test": "submission-error" }, s.error) : null),
      h("td", { "data-test": "public-score" }, formatNumber(s.public_score)),
      h("td", { "data-test": "private-score" }, formatNumber(s.private_score)),
      h("td", {}, s.selected ? h("span", { class: "status status-succeeded", "data-test": "selected" }, "selected") : null,
        staff || s.status !== "scored" ? null
          : s.selected ? h("button", { type: "button", class: "link", "data-test": "unselect-submission",
                                       onclick: select(s, false) }, " unselect")
          : h("button", { type: "button", class: "secondary", "data-test": "select-submission", onclick: select(s, true) }, "Select"))))));
}

// The student's models, newest first, for the submit form's list.
async function models(signal) {
  const { items } = await api("/models?limit=100", { signal });
  return items;
}

// Two ways to submit: one of the student's models, or a CSV of predictions (id,prediction).
function submitForms(path, modelsLoaded, signal, redraw) {
  const message = h("div", { "data-test": "submit-message" });
  const model = h("select", { id: "submission-model", "data-test": "submission-model" }, h("option", { value: "" }, "Loading…"));
  modelsLoaded.then((items) => fill(model, h("option", { value: "" }, items.length ? "Choose a model" : "No models yet"),
    items.map((m) => h("option", { value: m.id }, `${m.id} · ${m.algorithm || m.framework || ""} ${m.task || ""} · ${formatTime(m.created_at)}`))))
    .catch((error) => fill(message, errorBox(error)));
  const file = h("input", { id: "submission-file", type: "file", accept: ".csv,text/csv", "data-test": "submission-file" });

  async function send(request) {
    try {
      const answer = await api(`${path}/submissions`, { method: "POST", signal, ...request });
      fill(message, h("p", { class: "ok", "data-test": "submitted" }, `Submitted: ${answer.id} is being scored.`));
      await redraw();
    } catch (error) {
      fill(message, errorBox(error));
    }
  }

  const byModel = h("form", { class: "inline-form", "data-test": "submit-model-form", onsubmit: (event) => {
    event.preventDefault();
    if (!model.value) return fill(message, errorBox(new Error("choose one of your models first")));
    send({ json: { model: model.value } });
  } }, h("label", { for: "submission-model" }, "A model"), model,
    h("button", { type: "submit", "data-test": "submit-model" }, "Submit the model"));
  const byFile = h("form", { class: "inline-form", "data-test": "submit-file-form", onsubmit: (event) => {
    event.preventDefault();
    if (!file.files[0]) return fill(message, errorBox(new Error("choose a CSV file with columns id,prediction first")));
    const form = new FormData();
    form.append("file", file.files[0], file.files[0].name);
    send({ form });
  } }, h("label", { for: "submission-file" }, "Or a CSV of predictions (id,prediction)"), file,
    h("button", { type: "submit", "data-test": "submit-file" }, "Submit the file"));
  return h("div", { class: "submit-forms" }, byModel, byFile, message);
}
