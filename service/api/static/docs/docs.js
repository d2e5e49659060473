// Renders /api/v1/openapi.json: routes grouped by tag, then every schema with its fields.
// Plain script, no libraries: everything the page needs is served by labtrain itself.
"use strict";

const TOKEN_KEY = "labtrain.token"; // shared with the dashboard, so a signed-in user sees the docs at once
const CONSTRAINTS = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
  "minItems", "maxItems", "pattern", "format"];

const esc = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const refName = (ref) => ref.split("/").pop();

function typeText(schema) {
  if (!schema || Object.keys(schema).length === 0) return "any";
  if (schema.$ref) return `<a href="#schema-${esc(refName(schema.$ref))}">${esc(refName(schema.$ref))}</a>`;
  const union = schema.oneOf || schema.anyOf;
  if (union) return union.map(typeText).join(" | ");
  if (schema.enum) return schema.enum.map((v) => esc(JSON.stringify(v))).join(" | ");
  if (schema.const !== undefined) return esc(JSON.stringify(schema.const));
  if (schema.type === "array") return `array of ${typeText(schema.items)}`;
  if (schema.type === "object" && schema.additionalProperties && schema.additionalProperties !== true) {
    return `object of ${typeText(schema.additionalProperties)}`;
  }
  return esc(schema.format === "binary" ? "file" : schema.type || "any");
}

function notes(schema) {
  const parts = CONSTRAINTS.filter((k) => schema[k] !== undefined).map((k) => `${k} ${esc(schema[k])}`);
  for (const member of schema.anyOf || []) parts.push(...notes(member).filter(Boolean));
  const text = schema.description ? esc(schema.description) : "";
  return [text, parts.length ? `<span class="muted">${parts.join(", ")}</span>` : ""].filter(Boolean);
}

function fieldsTable(schema) {
  const props = schema.properties || {};
  const required = new Set(schema.required || []);
  const rows = Object.entries(props).map(([name, prop]) => `<tr><td><code>${esc(name)}</code>`
    + `${required.has(name) ? " <b>*</b>" : ""}</td><td class="type">${typeText(prop)}</td>`
    + `<td>${prop.default !== undefined ? `<code>${esc(JSON.stringify(prop.default))}</code>` : ""}</td>`
    + `<td>${notes(prop).join("<br>")}</td></tr>`);
  if (!rows.length) return `<p>${typeText(schema)}</p>`;
  return `<table><tr><th>field (* required)</th><th>type</th><th>default</th><th>notes</th></tr>${rows.join("")}</table>`;
}

function bodyHtml(content) {
  return Object.entries(content || {}).map(([media, { schema, examples }]) => `<p><code>${esc(media)}</code></p>`
    + (schema && schema.properties ? fieldsTable(schema) : `<p>${typeText(schema)}</p>`)
    + Object.entries(examples || {}).map(([name, ex]) => `<details><summary>Example: ${esc(name)}</summary>`
      + `<pre>${esc(JSON.stringify(ex.value, null, 2))}</pre></details>`).join("")).join("");
}

function operationHtml(path, method, op) {
  const params = (op.parameters || []).map((p) => `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td>`
    + `<td class="type">${typeText(p.schema)}</td><td>${notes({ ...p.schema, description: p.description }).join("<br>")}</td></tr>`);
  const responses = Object.entries(op.responses || {}).map(([code, resp]) => `<tr><td>${esc(code)}</td>`
    + `<td>${esc(resp.description || "")}</td><td class="type">${Object.entries(resp.content || {})
      .map(([media, c]) => `${esc(media)}: ${typeText(c.schema)}`).join("<br>")}</td></tr>`);
  const isPublic = Array.isArray(op.security) && op.security.length === 0;
  return `<details class="op"><summary><span class="method ${esc(method)}">${esc(method)}</span> `
    + `<span class="path">${esc(path)}</span> ${esc(op.summary || "")}`
    + `${isPublic ? '<span class="public">no token needed</span>' : ""}</summary>`
    + (params.length ? `<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th><th>notes</th></tr>${params.join("")}</table>` : "")
    + (op.requestBody ? `<h4>Request body</h4>${bodyHtml(op.requestBody.content)}` : "")
    + `<h4>Responses</h4><table><tr><th>status</th><th>meaning</th><th>body</th></tr>${responses.join("")}</table></details>`;
}

function render(doc) {
  const byTag = {};
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      (byTag[(op.tags || ["other"])[0]] ||= []).push(operationHtml(path, method, op));
    }
  }
  const tags = Object.keys(byTag).sort();
  document.getElementById("toc").innerHTML = tags.map((t) => `<a href="#tag-${esc(t)}">${esc(t)}</a>`).join("")
    + '<a href="#schemas">schemas</a>';
  document.getElementById("routes").innerHTML = tags.map((t) => `<h2 id="tag-${esc(t)}">${esc(t)}</h2>${byTag[t].join("")}`).join("");
  const schemas = Object.entries(doc.components.schemas).sort(([a], [b]) => a.localeCompare(b));
  document.getElementById("schemas").innerHTML = "<h2>Schemas</h2>" + schemas.map(([name, s]) =>
    `<section class="schema" id="schema-${esc(name)}"><h3>${esc(name)}</h3>`
    + `${s.description ? `<p>${esc(s.description)}</p>` : ""}${fieldsTable(s)}</section>`).join("");
}

async function load() {
  const status = document.getElementById("status");
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) { status.textContent = "Enter your token to load the documentation."; return; }
  status.textContent = "Loading…";
  const response = await fetch("/api/v1/openapi.json", { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    status.textContent = (body.error && body.error.message) || `The server answered ${response.status}.`;
    return;
  }
  status.textContent = "";
  render(await response.json());
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
  load();
});
load();
