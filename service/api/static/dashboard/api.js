// Talking to the labtrain API: the token, JSON requests and the job event stream.
const TOKEN_KEY = "labtrain.token";

export const token = {
  get: () => localStorage.getItem(TOKEN_KEY),
  set: (value) => localStorage.setItem(TOKEN_KEY, value),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

// An API error as API.md shapes it: {"error": {"code", "message", "details": {"field"}}}.
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `the server answered ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
    this.field = (error.details || {}).field || null;
  }
}

function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${token.get() || ""}`, ...extra };
}

// `json` sends a JSON body, `form` a FormData (multipart); answers JSON or text.
export async function api(path, { method = "GET", json, form, signal } = {}) {
  const headers = authHeaders();
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const response = await fetch(`/api/v1${path}`, { method, headers, body, signal });
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("application/json") ? await response.json() : await response.text();
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("labtrain:unauthorized"));
    throw new ApiError(response.status, data);
  }
  return data;
}

// A job's log from byte `offset` on: the text, and the offset to ask from next time.
export async function logFrom(jobId, offset, signal) {
  const response = await fetch(`/api/v1/jobs/${encodeURIComponent(jobId)}/log?offset=${offset}`,
                               { headers: authHeaders(), signal });
  if (!response.ok) throw new ApiError(response.status, null);
  return { text: await response.text(), offset: Number(response.headers.get("X-Log-Offset") || offset) };
}

// Saves a file the API serves behind the token (a link cannot send the Authorization header).
export async function download(path, filename, signal) {
  const response = await fetch(`/api/v1${path}`, { headers: authHeaders(), signal });
  if (!response.ok) throw new ApiError(response.status, null);
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function parseEvent(block) {
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  return data ? JSON.parse(data) : null;
}

// Reads one server-sent event stream until it ends. EventSource cannot send an
// Authorization header, so this reads it with fetch.
async function readEvents(path, headers, onEvent, signal) {
  const response = await fetch(`/api/v1${path}`, { headers: authHeaders({ Accept: "text/event-stream", ...headers }), signal });
  if (!response.ok) throw new ApiError(response.status, await response.json());
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event) onEvent(event);
    }
  }
}

// Reconnects as EventSource would: after the stream's retry delay, until `done()` or `signal`.
async function reconnecting(open, done, signal) {
  while (!signal.aborted) {
    try {
      await open();
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status < 500) throw error;
    }
    if (done()) return;
    await new Promise((resolve) => setTimeout(resolve, 2000)); // the stream's retry delay
  }
}

// Follows a job's events, resuming with Last-Event-ID, until `isDone()` says the job has
// finished or `signal` aborts.
export async function followJobEvents(jobId, { onEvent, isDone, signal }) {
  let lastId = 0;
  await reconnecting(() => readEvents(`/jobs/${encodeURIComponent(jobId)}/events`, { "Last-Event-ID": String(lastId) },
                                      (event) => { lastId = event.seq; onEvent(event); }, signal),
                     isDone, signal);
}

// Calls `onChange(job)` whenever one of the user's jobs changes (a job's status, progress or
// events), until `signal` aborts; after a reconnection every running job comes again.
export async function followMyJobs({ onChange, signal }) {
  await reconnecting(() => readEvents("/events", {}, onChange, signal), () => false, signal);
}

// Calls `redraw()` after the user's jobs change, once per burst of changes (a round of the
// dispatcher moves many jobs at once), until `signal` aborts; a failed redraw waits for the next.
export function redrawWhenJobsChange(signal, redraw, ms = 250) {
  let pending = null;
  followMyJobs({ signal, onChange: () => {
    pending = pending || setTimeout(() => { pending = null; if (!signal.aborted) redraw().catch(() => {}); }, ms);
  } }).catch(() => {});
}

// `redraw` made to repeat every `ms` for as long as `keepGoing()` holds after a run (a queued
// job's place moves with other users' jobs, which wake none of this user's streams); each
// call restarts the wait, a failed run is tried again at the next, and `signal` stops it.
export function repeating(signal, ms, redraw, keepGoing) {
  let timer = null;
  signal.addEventListener("abort", () => clearTimeout(timer));
  const run = async () => {
    clearTimeout(timer);
    try {
      await redraw();
    } finally {
      if (!signal.aborted && keepGoing()) timer = setTimeout(() => run().catch(() => {}), ms);
    }
  };
  return run;
}
