// The submit form, generated from GET /api/v1/algorithms: each parameter's input follows
// its type, default and bounds, so the form never drifts from what the API accepts. Its queue
// choice comes from GET /api/v1/queue, each queue offered for the devices it runs jobs on.
import { api } from "./api.js";
import { h, fill, errorBox, markInvalid } from "./ui.js";

const TRAINING_FIELDS = ["epochs", "batch_size", "learning_rate", "optimizer", "validation_split"];

// An input for one catalog parameter; `read()` gives its value, or undefined to leave
// the parameter out (empty, or still its default) so the server applies its own default.
function parameterInput(field, parameter) {
  const accepts = parameter.accepts.filter((a) => a.type !== "null");
  const id = field.replaceAll(".", "-");
  const common = { id, name: field, "data-field": field, "data-test": `field-${id}` };
  const fallback = parameter.default;
  let input, read;
  if (accepts.length === 1 && accepts[0].type === "choice") {
    const choices = accepts[0].choices;
    input = h("select", common, fallback === null ? h("option", { value: "" }, "(default)") : null,
              choices.map((c) => h("option", { value: c, selected: c === fallback }, c)));
    read = () => (input.value === "" || input.value === String(fallback) ? undefined : input.value);
  } else if (accepts.length === 1 && (accepts[0].type === "integer" || accepts[0].type === "number")) {
    const a = accepts[0];
    input = h("input", { ...common, type: "number", step: a.type === "integer" ? 1 : "any",
                         min: a.minimum ?? a.exclusiveMinimum, max: a.maximum ?? a.exclusiveMaximum,
                         value: fallback ?? "", placeholder: fallback === null ? "default" : "" });
    read = () => (input.value === "" || Number(input.value) === fallback ? undefined : Number(input.value));
  } else if (accepts.length === 1 && accepts[0].type === "boolean") {
    input = h("input", { ...common, type: "checkbox", checked: fallback === true });
    read = () => (input.checked === Boolean(fallback) ? undefined : input.checked);
  } else {
    // Several kinds accepted (e.g. "auto" or a number): free text, read as JSON when it parses.
    input = h("input", { ...common, type: "text", placeholder: JSON.stringify(fallback) });
    read = () => {
      if (input.value.trim() === "") return undefined;
      try { return JSON.parse(input.value); } catch { return input.value.trim(); }
    };
  }
  const bounds = accepts.map(describe).join(" or ");
  const row = h("div", { class: "field" }, h("label", { for: id }, parameter.name), input,
                h("small", { class: "muted" }, [parameter.description, bounds].filter(Boolean).join(". ")));
  return { name: parameter.name, row, read };
}

function describe(accept) {
  if (accept.type === "choice") return `one of ${accept.choices.join(", ")}`;
  const low = accept.minimum ?? accept.exclusiveMinimum;
  const high = accept.maximum ?? accept.exclusiveMaximum;
  if (low === undefined && high === undefined) return accept.type;
  return `${accept.type} ${low ?? "−∞"}…${high ?? "∞"}`;
}

function select(field, options, selected) {
  const id = field.replaceAll(".", "-");
  return h("select", { id, name: field, "data-field": field, "data-test": `field-${id}` },
           options.map(([value, text]) => h("option", { value, selected: value === selected }, text)));
}

// "bigmem (cpu) — the 512 GB server": a queue as the select offers it.
function queueLabel(name, queue) {
  return `${name} (${queue.device})${queue.description ? ` — ${queue.description}` : ""}`;
}

// What a chosen queue takes and who serves it, beside the select.
function queueHint(queue) {
  if (!queue) return "By the job's device: cpu, or gpu for a GPU job (auto: while a GPU worker is online).";
  const limits = Object.entries(queue.max || {}).map(([key, value]) => `${key} ${value}`);
  const served = queue.backend === "slurm" ? `SLURM partition ${queue.partition}`
    : `${queue.workers.length} worker${queue.workers.length === 1 ? "" : "s"} online`;
  return [served, limits.length ? `at most ${limits.join(", ")} per job` : null].filter(Boolean).join("; ");
}

function labelled(text, input) {
  return h("div", { class: "field" }, h("label", { for: input.id }, text), input);
}

export async function submitPage(container, _params, signal) {
  const [catalog, datasets, { queues }] = await Promise.all([
    api("/algorithms", { signal }), api("/datasets", { signal }), api("/queue", { signal })]);
  // The server's families (GET /algorithms lists them with their titles), those this page has a form for.
  const forms = { classic: classicFields, network: networkFields, code: codeFields };
  const offered = catalog.families.filter((f) => f.name in forms);
  const kind = select("kind", offered.map((f) => [f.name, f.title]), offered[0]?.name);
  const name = h("input", { id: "name", name: "name", "data-field": "name", "data-test": "field-name", type: "text",
                            placeholder: "optional" });
  const fields = h("div");
  const message = h("div", { "data-test": "form-message" });
  let build = () => ({});
  // The device the job asks for as the form knows it: a classic job's is always the CPU.
  let deviceOf = () => "cpu";
  const queue = h("select", { id: "queue", name: "queue", "data-field": "queue", "data-test": "field-queue" });
  const queueAbout = h("small", { class: "muted", "data-test": "queue-hint" });

  // The queues this job may go to: a GPU queue for a GPU job, a CPU queue for a CPU job, either
  // for "auto" (the API decides: a GPU queue makes it a GPU job); the choice kept while offered.
  function showQueues() {
    const device = deviceOf();
    const fitting = Object.entries(queues).filter(([, q]) => device === "auto" || q.device === device);
    const kept = fitting.some(([q]) => q === queue.value) ? queue.value : "";
    fill(queue, h("option", { value: "" }, "default (by device)"),
         fitting.map(([q, entry]) => h("option", { value: q, selected: q === kept }, queueLabel(q, entry))));
    queue.value = kept;
    showQueueHint();
  }
  const showQueueHint = () => fill(queueAbout, queueHint(queues[queue.value]));
  queue.addEventListener("change", showQueueHint);

  // Built-ins not installed on this server are left out; one served by its subset says so (its label).
  const datasetOptions = (images) => datasets.items
    .filter((d) => (images ? true : d.kind !== "images") && d.installed !== false)
    .map((d) => [d.builtin ? d.id : `upload:${d.id}`, d.builtin ? d.label || d.name : `${d.name} (uploaded)`]);
  const datasetValue = (value) => (value.startsWith("upload:") ? { id: value.slice(7) } : value);

  function classicFields() {
    const dataset = select("dataset", datasetOptions(false), "iris");
    const algorithm = select("algorithm", catalog.algorithms.map((a) => [a.name, `${a.name} — ${a.title}`]), "knn");
    const cv = h("input", { id: "evaluation-cv", name: "evaluation.cv", "data-field": "evaluation.cv", type: "number",
                            min: 2, max: 20, step: 1, placeholder: "none", "data-test": "field-evaluation-cv" });
    const params = h("fieldset", { "data-test": "params" });
    let inputs = [];
    const showParams = () => {
      const entry = catalog.algorithms.find((a) => a.name === algorithm.value);
      inputs = entry.parameters.map((p) => parameterInput(`params.${p.name}`, p));
      fill(params, h("legend", {}, "Parameters"), inputs.map((i) => i.row));
    };
    algorithm.addEventListener("change", showParams);
    showParams();
    fill(fields, labelled("Data set", dataset), labelled("Algorithm", algorithm), params,
         labelled("Cross-validation folds", cv));
    deviceOf = () => "cpu"; // classic algorithms run on the CPU: the API refuses a GPU queue
    build = () => {
      const spec = { dataset: datasetValue(dataset.value), algorithm: algorithm.value, params: {} };
      for (const input of inputs) {
        const value = input.read();
        if (value !== undefined) spec.params[input.name] = value;
      }
      if (cv.value !== "") spec.evaluation = { cv: Number(cv.value) };
      return spec;
    };
  }

  function networkFields() {
    const dataset = select("dataset", datasetOptions(true), "mnist");
    const frameworks = Object.keys(catalog.networks.frameworks);
    const framework = select("framework", frameworks.map((f) => [f, f]), frameworks[0]);
    const preset = select("network.preset", catalog.networks.presets.map((p) => [p.name, `${p.name} — ${p.title}`]), "mlp");
    const device = select("device", [["auto", "auto"], ["cpu", "cpu"], ["gpu", "gpu"]], "auto");
    const training = catalog.networks.training.filter((p) => TRAINING_FIELDS.includes(p.name))
      .map((p) => parameterInput(`training.${p.name}`, p));
    fill(fields, labelled("Data set", dataset), labelled("Framework", framework), labelled("Network", preset),
         h("fieldset", { "data-test": "training" }, h("legend", {}, "Training"), training.map((i) => i.row)),
         labelled("Device", device));
    deviceOf = () => device.value;
    device.addEventListener("change", showQueues);
    build = () => {
      const spec = { dataset: datasetValue(dataset.value), framework: framework.value,
                     network: { preset: preset.value }, training: {}, device: device.value };
      for (const input of training) {
        const value = input.read();
        if (value !== undefined) spec.training[input.name] = value;
      }
      return spec;
    };
  }

  // A student's own code: the file (or a project as .zip / .tar.gz) is uploaded first, then run.
  function codeFields() {
    const file = h("input", { id: "code-file", name: "file", "data-field": "code.source", "data-test": "field-code-file",
                              type: "file", accept: ".py,.ipynb,.zip,.tar.gz,.tgz" });
    const entrypoint = h("input", { id: "code-entrypoint", "data-field": "code.entrypoint", type: "text",
                                    "data-test": "field-code-entrypoint", placeholder: "train.py (needed for a project)" });
    const args = h("input", { id: "code-args", "data-field": "code.args", type: "text", "data-test": "field-code-args",
                              placeholder: "--epochs 5 --lr 0.001" });
    const dataset = select("dataset", [["", "none"], ...datasetOptions(true)], "");
    const device = select("device", [["auto", "auto"], ["cpu", "cpu"], ["gpu", "gpu"]], "auto");
    const memory = h("input", { id: "resources-memory_mb", "data-field": "resources.memory_mb", type: "number",
                                min: 64, step: 64, "data-test": "field-memory", placeholder: `${catalog.code.defaults.memory_mb}` });
    fill(fields, labelled("Script, notebook or project", file), labelled("Entrypoint", entrypoint), labelled("Arguments", args),
         labelled("Data set", dataset), labelled("Device", device), labelled("Memory (MB)", memory),
         h("p", { class: "muted" }, "In the script or notebook, import labtrain_job: report(epoch=..., loss=...) draws live curves, ",
           "and files saved under labtrain_job.outputs_dir() become the job's artifacts."));
    deviceOf = () => device.value;
    device.addEventListener("change", showQueues);
    build = async () => {
      if (!file.files.length) throw Object.assign(new Error("choose a .py file, a notebook (.ipynb) or a project (.zip, .tar.gz)"),
                                                  { field: "code.source" });
      const form = new FormData();
      form.append("file", file.files[0]);
      const source = await api("/sources", { method: "POST", form, signal });
      const spec = { code: { source: source.id, args: args.value.trim() ? args.value.trim().split(/\s+/) : [] },
                     device: device.value };
      if (entrypoint.value.trim()) spec.code.entrypoint = entrypoint.value.trim();
      if (dataset.value) spec.dataset = datasetValue(dataset.value);
      if (memory.value !== "") spec.resources = { memory_mb: Number(memory.value) };
      return spec;
    };
  }

  const showFields = () => {
    forms[kind.value]();
    showQueues();
  };
  kind.addEventListener("change", showFields);
  showFields();

  const form = h("form", { class: "card", "data-test": "submit-form", novalidate: true },
    h("h1", {}, "Submit a job"), labelled("Kind", kind), labelled("Name", name), fields,
    h("div", { class: "field" }, h("label", { for: queue.id }, "Queue"), queue, queueAbout),
    h("button", { type: "submit", "data-test": "submit-job" }, "Submit"), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
    try {
      const spec = await build();
      if (name.value.trim()) spec.name = name.value.trim();
      if (queue.value) spec.queue = queue.value; // none chosen: the API picks cpu or gpu by the device
      const job = await api("/jobs", { method: "POST", json: spec, signal });
      location.hash = `#/jobs/${job.id}`;
    } catch (error) {
      fill(message, errorBox(error));
      markInvalid(form, error); // the field is e.g. "params.n_neighbors"
    }
  });
  fill(container, form);
}
