// Small DOM helpers shared by the pages.

// h("a", {href: "#/jobs", class: "x"}, "text", childNode): attributes starting with "on" are listeners.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export const FINISHED = ["succeeded", "failed", "cancelled"];

export function statusBadge(status, attrs = {}) {
  return h("span", { class: `status status-${status}`, "data-test": "job-status", ...attrs }, status);
}

export function progressBar(fraction, attrs = {}) {
  const percent = Math.round(Math.max(0, Math.min(1, fraction || 0)) * 100);
  const bar = h("div", { class: "progress", "data-test": "progress", "data-value": percent, role: "progressbar",
                         "aria-valuenow": percent, "aria-valuemin": 0, "aria-valuemax": 100, ...attrs },
                h("div", { class: "progress-fill" }), h("span", {}, `${percent}%`));
  bar.firstChild.style.width = `${percent}%`;
  return bar;
}

export function formatNumber(value) {
  if (typeof value !== "number") return value === null || value === undefined ? "" : String(value);
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 1e4 || Math.abs(value) < 1e-3 ? value.toExponential(3) : value.toFixed(4);
}

// Device hours as a budget shows them: "∞" where there is no limit (null).
export function formatHours(value) {
  if (value === null || value === undefined) return "∞";
  return String(Math.round(Number(value) * 100) / 100);
}

export function formatTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

export function errorBox(error) {
  const field = error.field ? h("span", { class: "field", "data-test": "error-field" }, error.field) : null;
  return h("div", { class: "error", role: "alert", "data-test": "error" },
           h("span", { "data-test": "error-message" }, error.message), field ? [" (", field, ")"] : null);
}

// Marks the input an API error names (data-field "params" matches "params.n_neighbors").
export function markInvalid(form, error) {
  form.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
  const input = error.field && [...form.querySelectorAll("[data-field]")]
    .find((el) => error.field === el.dataset.field || error.field.startsWith(`${el.dataset.field}.`));
  if (input) {
    input.classList.add("invalid");
    input.focus();
  }
}

// Replaces a container's content.
export function fill(container, ...children) {
  container.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return container;
}
