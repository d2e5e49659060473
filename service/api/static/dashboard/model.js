// A model: its summary, and predictions from a drawn digit, an image file or a row of features.
import { api } from "./api.js";
import { h, fill, errorBox, formatNumber } from "./ui.js";

export async function modelPage(container, [modelId], signal) {
  const model = await api(`/models/${modelId}`, { signal });
  const answer = h("div", { "data-test": "prediction-result" });
  const names = model.class_names || model.classes || [];

  async function predict(request) {
    fill(answer, h("p", { class: "muted" }, "Predicting…"));
    try {
      showAnswer(await api(`/models/${modelId}/predict`, { method: "POST", signal, ...request }));
    } catch (error) {
      fill(answer, errorBox(error));
    }
  }

  function showAnswer(result) {
    const predicted = (result.labels || result.predictions)[0];
    const probabilities = (result.probabilities || [])[0] || [];
    const best = Math.max(...probabilities);
    fill(answer,
      h("p", { class: "prediction" }, "Prediction: ", h("strong", { "data-test": "prediction" }, String(predicted))),
      probabilities.length ? h("div", { class: "bars", "data-test": "probabilities" }, probabilities.map((p, i) => {
        const bar = h("div", { class: `bar-fill${p === best ? " best" : ""}` });
        bar.style.width = `${(p * 100).toFixed(1)}%`;
        return h("div", { class: "bar", "data-test": "probability", "data-class": String(names[i] ?? i), "data-value": p },
                 h("span", { class: "bar-label" }, String(names[i] ?? i)), h("div", { class: "bar-track" }, bar),
                 h("span", { class: "bar-value" }, `${(p * 100).toFixed(1)}%`));
      })) : null);
  }

  const summary = h("section", { class: "card" },
    h("h1", {}, "Model ", h("code", {}, model.id)),
    h("p", { class: "muted" }, `${model.framework || ""} ${model.algorithm || ""} · ${model.task} · from job `,
      h("a", { href: `#/jobs/${model.job_id}` }, model.job_id)),
    h("table", { class: "list metrics" }, h("tbody", {},
      Object.entries(model.metrics || {}).filter(([, v]) => typeof v === "number")
        .map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, formatNumber(v)))))));

  fill(container, summary, h("section", { class: "card" }, h("h2", {}, "Try it"), tryInputs(model, predict), answer));
}

// What the model takes: a drawn or uploaded digit, an uploaded picture resized as training's
// were, a row of features, or (a model from students' code) one JSON input of its shape.
function tryInputs(model, predict) {
  const input = model.input || {};
  const picture = model.picture;
  if (input.resize) return pictureInputs(input.resize.size, input.resize.color, predict);
  if (input.kind === "image" || (picture && picture.digits)) return imageInputs(predict);
  if (picture) return pictureInputs(picture.size, picture.channels === 1 ? "grayscale" : "rgb", predict);
  if (input.features || !input.shape) return featureInputs(model, predict);
  return arrayInputs(input.shape, predict);
}

function arrayInputs(shape, predict) {
  const text = h("textarea", { id: "instance", rows: 4, "data-test": "instance",
                               placeholder: `one input of shape [${shape.join(", ")}] as JSON, e.g. nested lists` });
  const form = h("form", { class: "try", onsubmit: (event) => {
    event.preventDefault();
    let instance;
    try {
      instance = JSON.parse(text.value);
    } catch {
      form.append(errorBox(new Error("the input is not valid JSON")));
      return;
    }
    predict({ json: { instances: [instance] } });
  } }, h("label", { for: "instance" }, `Input of shape [${shape.join(", ")}]`), text,
    h("button", { type: "submit", "data-test": "predict-instance" }, "Predict"));
  return form;
}

function sendImage(predict, blob, name) {
  const form = new FormData();
  form.append("file", blob, name);
  return predict({ form });
}

function fileInput(predict) {
  const file = h("input", { type: "file", accept: "image/png,image/jpeg,image/bmp", "data-test": "image-file",
                            id: "image-file" });
  file.addEventListener("change", () => file.files[0] && sendImage(predict, file.files[0], file.files[0].name));
  return file;
}

// A model of pictures that are not digits: an upload is resized as its training images were.
function pictureInputs([height, width], color, predict) {
  return h("div", { class: "try" },
    h("div", {}, h("label", { for: "image-file" }, "Upload an image"), fileInput(predict),
      h("p", { class: "muted" }, `It is resized to ${width}x${height} pixels, ${color}.`)));
}

function imageInputs(predict) {
  const canvas = h("canvas", { id: "digit-canvas", width: 280, height: 280, "data-test": "digit-canvas",
                               "aria-label": "draw a digit here" });
  const ctx = canvas.getContext("2d");
  // White paper and a thick black pen: the server's image preparation expects a digit
  // drawn like MNIST's (it inverts light paper and crops to the ink).
  const clear = () => { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  ctx.lineWidth = 22;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = "#000";
  let drawing = false;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * (canvas.width / box.width), (event.clientY - box.top) * (canvas.height / box.height)];
  };
  // Pointer events cover the mouse, touch screens and pens alike.
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    const [x, y] = at(event);
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + 0.1, y + 0.1);
    ctx.stroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const [x, y] = at(event);
    ctx.lineTo(x, y);
    ctx.stroke();
  });
  const stop = () => { drawing = false; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);

  return h("div", { class: "try" },
    h("div", {}, canvas, h("div", { class: "buttons" },
      h("button", { type: "button", "data-test": "predict-drawing",
                    onclick: () => canvas.toBlob((blob) => sendImage(predict, blob, "drawing.png"), "image/png") }, "Predict the drawing"),
      h("button", { type: "button", class: "secondary", "data-test": "clear-canvas", onclick: clear }, "Clear"))),
    h("div", {}, h("label", { for: "image-file" }, "Or upload an image"), fileInput(predict)));
}

function featureInputs(model, predict) {
  const count = (model.input && model.input.features && model.input.features.length) || 0;
  const text = h("input", { type: "text", id: "features", "data-test": "features",
                            placeholder: `${count || "the"} numbers, comma-separated` });
  const names = model.input && model.input.features ? h("p", { class: "muted" }, `Features: ${model.input.features.join(", ")}`) : null;
  return h("form", { class: "try", onsubmit: (event) => {
    event.preventDefault();
    const row = text.value.split(",").map((v) => v.trim()).filter(Boolean).map((v) => (isNaN(Number(v)) ? v : Number(v)));
    predict({ json: { instances: [row] } });
  } }, names, text, h("button", { type: "submit", "data-test": "predict-features" }, "Predict"));
}
