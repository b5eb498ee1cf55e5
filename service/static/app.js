// SPAN analyst page. Plain browser JavaScript, no build step, nothing fetched from outside this server.
// Each file is sent to POST v1/localize?format=json; the heatmap comes back as an 8-bit PNG and is
// colour-mapped here on a canvas, so the opacity slider and view switch never need another request.
// Loaded last of three deferred scripts (index.html): heatmap.js (colour map, canvases, small
// helpers) and layers.js (forensic layer panels) come first; all share this page's global scope.
"use strict";

// Relative URLs, so the page also works behind a reverse proxy under a path prefix.
const API = { model: "v1/model", localize: "v1/localize?format=json",
  analyze: "v1/analyze?layers=ela,ghost,noise,jpeg,copymove,metadata,c2pa" };
// A server with API keys answers 401; the page then asks once and keeps the key for this tab
// (sessionStorage: gone when the tab closes, never shared with other tabs or sent elsewhere).
const KEY_STORAGE = "span-api-key";
// What each layer's map shows, for the caption under the switch (README "Forensic layers").
const LAYER_CAPTIONS = {
  span: "Model heatmap: the model's probability that each pixel was manipulated.",
  ela: "Error level: how much each region changes when re-saved as JPEG (quality 90); bright regions were saved fewer times or elsewhere.",
  ghost: "JPEG ghost: bright regions re-save best at a quality where the rest of the photo changes most (saved earlier at a lower quality).",
  noise: "Noise level: bright regions have 2–4× more or less noise than the photo's typical level (another camera, blur, resampling).",
  jpeg: "JPEG grid: bright regions carry an 8×8 block grid shifted against the photo's (pasted without aligning).",
  copymove: "Copy-move: regions found twice in the photo; lines join matching points of the source (cyan) and the copy (magenta).",
};
// The caption of a layer; copy-move's also counts what it verified and what it set aside, so an
// analyst sees that look-alikes were considered (a facade's windows) and why they are not marked.
function layerCaption(card, name) {
  const summary = name === "copymove" ? card.view.copymove : null;
  if (!summary) return LAYER_CAPTIONS[name];
  const found = (summary.regions || []).length + (summary.dense_shifts || []).length;
  const rejected = (summary.rejected || []).length;
  return `${LAYER_CAPTIONS[name]} ${found} verified; ${rejected} look-alike${rejected === 1 ? "" : "s"} set aside ` +
    "(their fine noise differs: repeated structure, not a copy).";
}
const MAX_PARALLEL = 2;       // the server batches; two in flight keeps it busy without flooding its queue
const MAX_BUSY_RETRIES = 3;   // 429/503 with Retry-After: wait and try again a few times
// Overlay opacity grows with the probability, as in service/render.py: at the slider's value s a
// pixel of probability p is blended at s × (0.2 + 0.8 p). At the default s = 0.75 that is exactly
// render.py's 0.15 + 0.6 p, so clean regions keep the photo visible and suspect regions glow.
const OVERLAY_FLOOR = 0.2;
const DEFAULT_OPACITY = 0.75;

const $ = (selector, root = document) => root.querySelector(selector);
const field = (card, name) => card.querySelector(`[data-field="${name}"]`);

let nextCardId = 0;
let activeRequests = 0;
const pending = [];           // cards waiting for a request slot
let lastThreshold = 0.5;        // the pixel decision's, for the colour scale's mark
let lastImageThreshold = null;  // the image decision's; null: the pixel one (older servers)
let keyPrompt = null;         // while the key form is shown: resolves when a key is entered

// ---------------------------------------------------------------- model information

async function loadModelInfo(attempt = 0) {
  const info = $("#model-info");
  try {
    const response = await apiFetch(API.model, { headers: { Accept: "application/json" } });
    const body = await readJson(response);
    if (response.status === 503 && attempt < 60) {   // still loading or warming up: ask again shortly
      info.textContent = "Model loading…";
      setTimeout(() => loadModelInfo(attempt + 1), 2000);
      return;
    }
    if (!response.ok) throw new Error(errorMessage(body, response));
    $("#model-error").hidden = true;
    showModel(body);
  } catch (err) {
    info.textContent = "Model information unavailable.";
    const box = $("#model-error");
    box.textContent = `Could not read the model description from the server: ${err.message}`;
    box.hidden = false;
  }
}

// GET v1/model describes the loaded model (name, version, sha256, trained, status, …);
// the same "model" block also comes with every answer, so either one can raise the banner.
function showModel(model) {
  const parts = [`Model ${model.name || "unknown"} ${model.version || ""}`.trim()];
  const sha = model.sha256 || (model.files && model.files["span.onnx"] && model.files["span.onnx"].sha256);
  if (sha) parts.push(`sha256 ${sha.slice(0, 12)}…`);
  if (model.precision) parts.push(model.precision);  // fp32, or the gated int8 file
  if (model.trained === false) parts.push("UNTRAINED");
  else if (model.trained === true) parts.push("trained");
  const info = $("#model-info");
  info.textContent = parts.join(" · ");
  if (sha) info.title = `ONNX sha256 ${sha}`;
  if (typeof model.threshold === "number") lastThreshold = model.threshold;
  if (typeof model.image_threshold === "number") lastImageThreshold = model.image_threshold;
  if (model.trained === false) {
    if (model.status) $("#untrained-detail").textContent = `The server reports: “${model.status}”.`;
    $("#untrained-banner").hidden = false;
  } else if (model.warning) {
    // trained weights whose makers attached a caveat (a weak budget, a known blind spot)
    const caveat = $("#model-caveat");
    caveat.textContent = `Read before trusting a heatmap: ${model.warning}`;
    caveat.hidden = false;
  }
}

// ---------------------------------------------------------------- API key

// fetch() with the tab's key, if any. On 401 the key (if one was sent) is forgotten, the form asks
// for one, and the request is sent again once it is entered; requests made while the form is up
// wait for it rather than send an upload the server will refuse.
async function apiFetch(url, options) {
  for (;;) {
    if (keyPrompt) await keyPrompt;
    const key = sessionStorage.getItem(KEY_STORAGE);
    const headers = key ? { ...options.headers, Authorization: `Bearer ${key}` } : options.headers;
    const response = await fetch(url, { ...options, headers });
    if (response.status !== 401) return response;
    if (key && sessionStorage.getItem(KEY_STORAGE) === key) sessionStorage.removeItem(KEY_STORAGE);
    await askForKey(Boolean(key));
  }
}

function askForKey(refused) {
  if (keyPrompt) return keyPrompt;
  const form = $("#key-form");
  const input = $("#key-input");
  $("#key-error").hidden = !refused;
  const info = $("#model-info");
  if (info.textContent.startsWith("Loading")) info.textContent = "Waiting for an API key…";
  form.hidden = false;
  input.value = "";
  input.focus();
  keyPrompt = new Promise((resolve) => {
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_STORAGE, input.value.trim());
      input.value = "";
      form.hidden = true;
      keyPrompt = null;
      resolve();
    }, { once: true });
  });
  return keyPrompt;
}

// ---------------------------------------------------------------- intake

function setUpIntake() {
  const input = $("#file-input");
  const zone = $("#drop-zone");
  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = "";   // choosing the same file again must fire "change" again
  });
  // Dropping anywhere on the page works; the zone only shows where.
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      zone.classList.add("drag-over");
    });
  }
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) zone.classList.remove("drag-over");
  });
  document.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    zone.classList.remove("drag-over");
    addFiles(event.dataTransfer.files);
  });
  $("#clear-all").addEventListener("click", () => {
    for (const card of [...document.querySelectorAll(".result")]) removeCard(card);
  });
}

function hasFiles(event) {
  return event.dataTransfer && [...event.dataTransfer.types].includes("Files");
}

function addFiles(fileList) {
  const files = [...fileList];
  if (!files.length) return;
  // Newest batch on top, files of one batch in the order given.
  const batch = document.createDocumentFragment();
  for (const file of files) {
    const card = createCard(file);
    batch.append(card);
    pending.push(card);
  }
  $("#results").prepend(batch);
  $("#clear-all").hidden = false;
  announce(`${files.length} file${files.length > 1 ? "s" : ""} queued for analysis.`);
  pump();
}

function pump() {
  while (activeRequests < MAX_PARALLEL && pending.length) {
    const card = pending.shift();
    if (!card.isConnected) continue;   // removed while waiting
    activeRequests++;
    analyse(card).finally(() => {
      activeRequests--;
      pump();
    });
  }
}

// ---------------------------------------------------------------- one image

function createCard(file) {
  const card = $("#result-template").content.firstElementChild.cloneNode(true);
  card.id = `result-${nextCardId++}`;
  card.file = file;
  card.view = { mode: "overlay", opacity: DEFAULT_OPACITY, photo: null, heat: null, glow: null, values: null, urls: [],
    layer: "span", layers: {}, copymove: null };
  field(card, "name").textContent = file.name || "unnamed file";
  field(card, "name").title = file.name;

  // Radio names must be unique per card so each card has its own view switch.
  for (const radio of card.querySelectorAll('[data-field="mode"]')) {
    radio.name = `${card.id}-mode`;
    radio.addEventListener("change", () => {
      card.view.mode = radio.value;
      draw(card);
    });
  }
  for (const radio of card.querySelectorAll('[data-field="layer"]')) {
    radio.name = `${card.id}-layer`;
    radio.addEventListener("change", () => {
      card.view.layer = radio.value;
      field(card, "layer-caption").textContent = layerCaption(card, radio.value);
      draw(card);
    });
  }
  const slider = field(card, "opacity");
  slider.value = String(DEFAULT_OPACITY * 100);
  field(card, "opacity-value").textContent = `${slider.value}%`;
  slider.addEventListener("input", () => {
    card.view.opacity = slider.valueAsNumber / 100;
    field(card, "opacity-value").textContent = `${slider.value}%`;
    slider.setAttribute("aria-valuetext", `${slider.value} percent`);
    draw(card);
  });
  field(card, "legend-bar").style.background = legendGradient();
  card.querySelector('[data-action="remove"]').addEventListener("click", () => removeCard(card));
  card.querySelector('[data-action="download-view"]').addEventListener("click", () => downloadView(card));
  const canvas = field(card, "canvas");
  canvas.addEventListener("pointermove", (event) => probe(card, event));
  canvas.addEventListener("pointerleave", () => {
    field(card, "probe").textContent = "Point at the image to read the probability at a pixel.";
  });
  return card;
}

function removeCard(card) {
  for (const url of card.view.urls) URL.revokeObjectURL(url);
  if (card.view.photo) card.view.photo.close();   // decoded photos are large: free them now
  card.remove();
  if (!document.querySelector(".result")) $("#clear-all").hidden = true;
}

async function analyse(card) {
  const file = card.file;
  setState(card, "Analysing…");
  // Decode the photo in the browser while the server works. Formats the browser cannot show
  // (HEIC, most TIFFs) still get analysed; the page then shows the heatmap alone.
  const photoPromise = createImageBitmap(file, { imageOrientation: "from-image" }).catch(() => null);
  const digestPromise = sha256Hex(file);
  let answer;
  try {
    answer = await postImage(file);
  } catch (err) {
    photoPromise.then((photo) => photo && photo.close());
    return fail(card, err.message);
  }
  try {
    await showAnswer(card, answer, await photoPromise, await digestPromise);
  } catch (err) {
    fail(card, `The server answered, but the page could not display it: ${err.message}`);
  }
}

async function postImage(file) {
  for (let attempt = 0; ; attempt++) {
    const form = new FormData();
    form.append("image", file, file.name || "image");
    let response;
    try {
      response = await apiFetch(API.localize, { method: "POST", body: form, headers: { Accept: "application/json" } });
    } catch (err) {
      throw new Error(`Could not reach the server (${err.message}).`);
    }
    const body = await readJson(response);
    if (response.ok) {
      if (!body || typeof body.heatmap_png_base64 !== "string") throw new Error("The server's answer has no heatmap.");
      return body;
    }
    const retryAfter = Number(response.headers.get("Retry-After"));
    if ((response.status === 429 || response.status === 503) && attempt < MAX_BUSY_RETRIES && retryAfter >= 0) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(Math.max(retryAfter, 1), 30) * 1000));
      continue;
    }
    throw new Error(errorMessage(body, response));
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

// Every error body of the service is {"error": {"code", "message"}}; proxies may send something else.
function errorMessage(body, response) {
  const error = body && body.error;
  if (error && error.message) return error.code ? `${error.message} (${error.code})` : error.message;
  if (body && typeof body.detail === "string") return body.detail;
  return `The server refused the request: HTTP ${response.status} ${response.statusText}`.trim();
}

function fail(card, message) {
  card.setAttribute("aria-busy", "false");
  card.classList.add("failed");
  setState(card, "Rejected");
  const box = field(card, "error");
  box.textContent = `Not analysed: ${message}`;
  box.hidden = false;
  field(card, "body").hidden = true;
  announce(`${card.file.name}: not analysed. ${message}`);
}

function setState(card, text) {
  field(card, "state").textContent = text;
}

async function showAnswer(card, answer, photo, digest) {
  const heatBitmap = await createImageBitmap(base64ToBlob(answer.heatmap_png_base64, "image/png"), {
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  const width = answer.width || heatBitmap.width;
  const height = answer.height || heatBitmap.height;
  const { heat, glow, values } = colourMap(heatBitmap, width, height);
  heatBitmap.close();

  const view = card.view;
  Object.assign(view, { photo, heat, glow, values, width, height });
  const canvas = field(card, "canvas");
  canvas.width = width;
  canvas.height = height;
  // Thumbnails are enlarged by whole steps with sharp pixels, so a small map is still readable.
  const zoom = Math.floor(480 / Math.max(width, height));
  if (zoom > 1) {
    canvas.style.width = `${width * zoom}px`;
    canvas.classList.add("zoomed");
  }
  if (!photo) {
    showNote(card, "This browser cannot display this image format, so only the heatmap is shown.");
    card.querySelector('[data-field="mode"][value="heatmap"]').click();
    for (const radio of card.querySelectorAll('[data-field="mode"]:not([value="heatmap"])')) radio.disabled = true;
  } else if (!sameAspect(photo, width, height)) {
    showNote(card, `The photo shown here is ${photo.width}×${photo.height} but the server analysed it as ` +
      `${width}×${height}; the overlay may not line up.`);
  }

  // the score bar shows the image decision; the colour scale's mark, the pixel threshold
  const threshold = typeof answer.threshold === "number" ? answer.threshold : lastThreshold;
  const imageThreshold = typeof answer.image_threshold === "number" ? answer.image_threshold
    : lastImageThreshold ?? threshold;
  fillScore(card, answer.score, imageThreshold);
  field(card, "legend-threshold").style.left = `${threshold * 100}%`;
  fillMetadata(card, answer, width, height);
  if (answer.model) {
    if (answer.model.trained === false) $("#untrained-banner").hidden = false;
    if ($("#model-info").textContent.startsWith("Model information unavailable")) showModel(answer.model);
  }

  const stem = fileStem(card.file.name);
  const heatmapUrl = URL.createObjectURL(base64ToBlob(answer.heatmap_png_base64, "image/png"));
  const report = {
    report: "SPAN image manipulation analysis",
    created: new Date().toISOString(),
    server: location.origin,
    file: { name: card.file.name, bytes: card.file.size, type: card.file.type || null, sha256: digest },
    ...answer,
  };
  const reportUrl = URL.createObjectURL(new Blob([JSON.stringify(report, null, 2)], { type: "application/json" }));
  view.urls.push(heatmapUrl, reportUrl);
  Object.assign(field(card, "download-heatmap"), { href: heatmapUrl, download: `${stem}.heatmap.png` });
  Object.assign(field(card, "download-report"), { href: reportUrl, download: `${stem}.report.json` });

  field(card, "body").hidden = false;
  card.setAttribute("aria-busy", "false");
  card.classList.add("done");
  setState(card, "Analysed");
  draw(card);
  announce(`${card.file.name}: score ${formatScore(answer.score)}.`);
  loadLayers(card, width, height);
}

setUpIntake();
loadModelInfo();
