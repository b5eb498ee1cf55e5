// SPAN analyst page. Plain browser JavaScript, no build step, nothing fetched from outside this server.
// Each file is sent to POST v1/localize?format=json; the heatmap comes back as an 8-bit PNG and is
// colour-mapped here on a canvas, so the opacity slider and view switch never need another request.
"use strict";

// matplotlib's "inferno" (perceptually uniform, readable in greyscale and by most colour-blind
// viewers), 256 RGB entries as hex: the same table as service/render.py, so the page and
// `span scan` overlays look alike. Dark = unlikely, bright yellow = likely manipulated.
const INFERNO_HEX =
  '00000401000501010601010802010a02020c02020e03021004031204031405041706041907051b08051d09061f0a0722' +
  '0b07240c08260d08290e092b10092d110a30120a32140b34150b37160b39180c3c190c3e1b0c411c0c431e0c451f0c48' +
  '210c4a230c4c240c4f260c51280b53290b552b0b572d0b592f0a5b310a5c320a5e340a5f3609613809623909633b0964' +
  '3d09653e0966400a67420a68440a68450a69470b6a490b6a4a0c6b4c0c6b4d0d6c4f0d6c510e6c520e6d540f6d550f6d' +
  '57106e59106e5a116e5c126e5d126e5f136e61136e62146e64156e65156e67166e69166e6a176e6c186e6d186e6f196e' +
  '71196e721a6e741a6e751b6e771c6d781c6d7a1d6d7c1d6d7d1e6d7f1e6c801f6c82206c84206b85216b87216b88226a' +
  '8a226a8c23698d23698f24699025689225689326679526679727669827669a28659b29649d29649f2a63a02a63a22b62' +
  'a32c61a52c60a62d60a82e5fa92e5eab2f5ead305dae305cb0315bb1325ab3325ab43359b63458b73557b93556ba3655' +
  'bc3754bd3853bf3952c03a51c13a50c33b4fc43c4ec63d4dc73e4cc83f4bca404acb4149cc4248ce4347cf4446d04545' +
  'd24644d34743d44842d54a41d74b3fd84c3ed94d3dda4e3cdb503bdd513ade5238df5337e05536e15635e25734e35933' +
  'e45a31e55c30e65d2fe75e2ee8602de9612bea632aeb6429eb6628ec6726ed6925ee6a24ef6c23ef6e21f06f20f1711f' +
  'f1731df2741cf3761bf37819f47918f57b17f57d15f67e14f68013f78212f78410f8850ff8870ef8890cf98b0bf98c0a' +
  'f98e09fa9008fa9207fa9407fb9606fb9706fb9906fb9b06fb9d07fc9f07fca108fca309fca50afca60cfca80dfcaa0f' +
  'fcac11fcae12fcb014fcb216fcb418fbb61afbb81dfbba1ffbbc21fbbe23fac026fac228fac42afac62df9c72ff9c932' +
  'f9cb35f8cd37f8cf3af7d13df7d340f6d543f6d746f5d949f5db4cf4dd4ff4df53f4e156f3e35af3e55df2e661f2e865' +
  'f2ea69f1ec6df1ed71f1ef75f1f179f2f27df2f482f3f586f3f68af4f88ef5f992f6fa96f8fb9af9fc9dfafda1fcffa4';

const COLORMAP = (() => {
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < lut.length; i++) lut[i] = parseInt(INFERNO_HEX.substr(i * 2, 2), 16);
  return lut;
})();

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
let lastThreshold = 0.5;
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
      field(card, "layer-caption").textContent = LAYER_CAPTIONS[radio.value];
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

  const threshold = typeof answer.threshold === "number" ? answer.threshold : lastThreshold;
  fillScore(card, answer.score, threshold);
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

// ---------------------------------------------------------------- forensic layers

// A second request, after the heatmap is shown: the layers take longer than the model, and the
// analyst can read the heatmap meanwhile. Maps come as URL-safe base64 PNGs (POST v1/analyze).
async function loadLayers(card, width, height) {
  const caption = field(card, "layer-caption");
  let body;
  try {
    const form = new FormData();
    form.append("image", card.file, card.file.name || "image");
    const response = await apiFetch(API.analyze, { method: "POST", body: form, headers: { Accept: "application/json" } });
    body = await readJson(response);
    if (!response.ok) throw new Error(errorMessage(body, response));
  } catch (err) {
    caption.textContent = `Forensic layers unavailable: ${err.message}`;
    field(card, "metadata-state").textContent = "Metadata unavailable.";
    field(card, "provenance-verdict").textContent = "Content Credentials unavailable.";
    return;
  }
  if (!card.isConnected) return;
  for (const [name, section] of Object.entries(body.layers || {})) {
    const radio = card.querySelector(`[data-field="layer"][value="${name}"]`);
    if (radio) {
      radio.disabled = !section.applicable || typeof section.png_base64url !== "string";
      radio.parentElement.title = section.applicable ? `${Math.round(section.ms)} ms on the server` : section.reason;
      radio.parentElement.classList.toggle("not-applicable", !section.applicable);
    }
    if (section.applicable && typeof section.png_base64url === "string") {
      const bitmap = await createImageBitmap(base64ToBlob(base64UrlToBase64(section.png_base64url), "image/png"), {
        colorSpaceConversion: "none",
        premultiplyAlpha: "none",
      });
      card.view.layers[name] = colourMap(bitmap, width, height);
      bitmap.close();
    }
  }
  const copymove = body.layers.copymove;
  card.view.copymove = copymove && copymove.applicable ? copymove.summary : null;
  fillFilePanel(card, body.layers.metadata, body.layers.jpeg);
  fillProvenance(card, body.layers.c2pa);
  caption.textContent = LAYER_CAPTIONS[card.view.layer];
  card.classList.add("layers-done");
  draw(card);
}

function base64UrlToBase64(text) {
  const standard = text.replace(/-/g, "+").replace(/_/g, "/");
  return standard + "=".repeat((4 - (standard.length % 4)) % 4);
}

// Copy-move matches as lines from source to copy, and each region's outline.
function drawMatches(ctx, summary, width) {
  const line = Math.max(1, Math.round(width / 500));
  ctx.lineWidth = line;
  for (const region of summary.regions || []) {
    for (const [polygon, colour] of [[region.source_polygon, "#22d3ee"], [region.target_polygon, "#f0abfc"]]) {
      if (!polygon || polygon.length < 3) continue;
      ctx.strokeStyle = colour;
      ctx.beginPath();
      polygon.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath();
      ctx.stroke();
    }
    ctx.strokeStyle = "rgba(250, 250, 250, 0.85)";
    ctx.beginPath();
    for (const [sx, sy, tx, ty] of region.matches || []) {
      ctx.moveTo(sx, sy);
      ctx.lineTo(tx, ty);
    }
    ctx.stroke();
  }
}

function fillFilePanel(card, metadata, jpeg) {
  const state = field(card, "metadata-state");
  const findings = field(card, "findings");
  findings.replaceChildren();
  const facts = [];
  if (metadata && metadata.applicable) {
    const m = metadata.summary;
    state.textContent = m.findings.length ? "Worth checking:" : "Nothing in the metadata contradicts the photo.";
    for (const text of m.findings) findings.append(listItem(text));
    facts.push(["Camera", m.camera], ["Captured", m.captured], ["Modified", m.modified],
      ["Software", (m.software || []).join(", ")],
      ["EXIF thumbnail", m.thumbnail ? m.thumbnail.verdict || (m.thumbnail.readable ? "" : m.thumbnail.reason) : "none"]);
    const tags = field(card, "all-tags");
    tags.replaceChildren();
    const all = { ...m.exif, ...Object.fromEntries(Object.entries(m.xmp || {}).map(([k, v]) => [`XMP ${k}`, v])),
      ...Object.fromEntries(Object.entries(m.iptc || {}).map(([k, v]) => [`IPTC ${k}`, v])) };
    fillList(tags, Object.entries(all).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : v]));
    field(card, "exif-details").hidden = Object.keys(all).length === 0;
  } else {
    state.textContent = metadata ? `No metadata: ${metadata.reason}` : "Metadata not read.";
  }
  if (jpeg && jpeg.applicable) {
    const j = jpeg.summary;
    facts.push(["JPEG quality", `${j.implied_quality}${j.standard_tables ? " (standard tables)" : " (estimated)"}`],
      ["JPEG encoder", j.encoder]);
    for (const text of j.warnings || []) findings.append(listItem(text));
  } else if (jpeg) {
    facts.push(["JPEG structure", jpeg.reason]);
  }
  fillList(field(card, "file-facts"), facts);
}

const VERDICTS = {
  none: "No Content Credentials in this file.",
  invalid: "Content Credentials present but INVALID: do not rely on them.",
  intact_untrusted_signer: "Content Credentials intact, but the signer is not verified.",
  trusted: "Content Credentials valid, signed by a trusted signer.",
};

function fillProvenance(card, c2pa) {
  const verdict = field(card, "provenance-verdict");
  const facts = [];
  const actions = field(card, "provenance-actions");
  actions.replaceChildren();
  const ingredients = field(card, "ingredients");
  ingredients.replaceChildren();
  verdict.className = "panel-state verdict";
  if (!c2pa || !c2pa.applicable) {
    verdict.textContent = c2pa ? `Not checked: ${c2pa.reason}` : "Not checked.";
    fillList(field(card, "provenance-facts"), facts);
    return;
  }
  const p = c2pa.summary;
  verdict.textContent = VERDICTS[p.verdict] || p.verdict;
  verdict.classList.add(`verdict-${p.verdict}`);
  verdict.title = p.message;
  if (p.present) {
    facts.push(["Detail", p.message]);
    if (p.signer) facts.push(["Signed by", [p.signer.common_name, p.signer.issuer].filter(Boolean).join(", ")],
      ["Signed at", p.signer.time]);
    facts.push(["Claim generator", p.claim_generator], ["AI-generated", p.ai_generated ? "yes (declared)" : "not declared"]);
    for (const action of p.actions || []) {
      actions.append(listItem([action.action, action.software, action.digital_source_type].filter(Boolean).join(" · ")));
    }
    for (const ingredient of p.ingredients || []) {
      const figure = document.createElement("figure");
      if (ingredient.thumbnail_base64) {
        const img = document.createElement("img");
        const url = URL.createObjectURL(base64ToBlob(ingredient.thumbnail_base64, "image/jpeg"));
        card.view.urls.push(url);
        img.src = url;
        img.alt = `Ingredient ${ingredient.title || ""}`;
        figure.append(img);
      }
      const caption = document.createElement("figcaption");
      caption.textContent = [ingredient.title, ingredient.relationship].filter(Boolean).join(" · ");
      figure.append(caption);
      ingredients.append(figure);
    }
  }
  fillList(field(card, "provenance-facts"), facts);
}

function listItem(text) {
  const item = document.createElement("li");
  item.textContent = text;
  return item;
}

function fillList(list, rows) {
  list.replaceChildren();
  for (const [label, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value === undefined || value === null || value === "" ? "—" : String(value);
    if (dd.textContent === "—") dd.classList.add("missing");
    list.append(dt, dd);
  }
}

function sameAspect(photo, width, height) {
  return Math.abs(photo.width / photo.height - width / height) < 0.02;
}

function showNote(card, text) {
  const note = field(card, "note");
  note.textContent = text;
  note.hidden = false;
}

// 8-bit heatmap PNG -> two colour-mapped canvases: "heat" opaque (heatmap view) and "glow" with
// the probability-dependent opacity (overlay view), plus the raw values for the pointer probe.
function colourMap(bitmap, width, height) {
  const heat = newCanvas(width, height);
  const ctx = heat.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bitmap, 0, 0, width, height);
  const image = ctx.getImageData(0, 0, width, height);
  const pixels = image.data;
  const values = new Uint8Array(width * height);
  for (let i = 0, p = 0; p < values.length; i += 4, p++) {
    const v = pixels[i];   // greyscale PNG: R = G = B = probability × 255
    values[p] = v;
    pixels[i] = COLORMAP[v * 3];
    pixels[i + 1] = COLORMAP[v * 3 + 1];
    pixels[i + 2] = COLORMAP[v * 3 + 2];
    pixels[i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  for (let i = 0, p = 0; p < values.length; i += 4, p++) {
    pixels[i + 3] = Math.round(255 * (OVERLAY_FLOOR + (1 - OVERLAY_FLOOR) * (values[p] / 255)));
  }
  const glow = newCanvas(width, height);
  glow.getContext("2d").putImageData(image, 0, 0);
  return { heat, glow, values };
}

function newCanvas(width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

function draw(card) {
  const view = card.view;
  if (!view.heat) return;
  const canvas = field(card, "canvas");
  const ctx = canvas.getContext("2d");
  ctx.globalAlpha = 1;
  ctx.fillStyle = "#1b1c1e";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const showPhoto = view.photo && view.mode !== "heatmap";
  if (showPhoto) ctx.drawImage(view.photo, 0, 0, canvas.width, canvas.height);
  const layer = view.layer === "span" ? view : view.layers[view.layer] || view;
  if (view.mode !== "photo") {
    ctx.globalAlpha = showPhoto ? view.opacity : 1;
    ctx.drawImage(showPhoto ? layer.glow : layer.heat, 0, 0);
    ctx.globalAlpha = 1;
  }
  if (view.layer === "copymove" && view.copymove) drawMatches(ctx, view.copymove, canvas.width);
  canvas.dataset.layer = view.layer;
  field(card, "legend-caption").textContent = view.layer === "span"
    ? "Probability of manipulation per pixel (0 = unlikely, 1 = likely); the mark is the threshold."
    : "The layer's value per pixel (0 = nothing to see, 1 = strongest); the threshold mark is the model's.";
  field(card, "opacity").disabled = view.mode !== "overlay" || !view.photo;
  const what = { overlay: "with the manipulation heatmap overlaid", heatmap: "manipulation heatmap", photo: "photo" };
  canvas.setAttribute("aria-label", `${card.file.name}: ${what[view.mode]}`);
  canvas.dataset.mode = view.mode;
}

function probe(card, event) {
  const view = card.view;
  if (!view.values) return;
  const canvas = event.currentTarget;
  const box = canvas.getBoundingClientRect();
  const x = Math.floor(((event.clientX - box.left) / box.width) * view.width);
  const y = Math.floor(((event.clientY - box.top) / box.height) * view.height);
  if (x < 0 || y < 0 || x >= view.width || y >= view.height) return;
  if (view.layer !== "span" && view.layers[view.layer]) {
    const v = view.layers[view.layer].values[y * view.width + x] / 255;
    field(card, "probe").textContent = `Pixel (${x}, ${y}): ${view.layer} ${v.toFixed(2)}`;
    return;
  }
  const p = view.values[y * view.width + x] / 255;
  field(card, "probe").textContent = `Pixel (${x}, ${y}): probability ${p.toFixed(2)}`;
}

function fillScore(card, score, threshold) {
  field(card, "score").textContent = formatScore(score);
  field(card, "score-fill").style.width = `${Math.max(0, Math.min(1, score)) * 100}%`;
  field(card, "score-threshold").style.left = `${threshold * 100}%`;
  const above = score >= threshold;
  card.classList.toggle("above-threshold", above);
  field(card, "verdict").textContent = above
    ? `At or above the ${threshold.toFixed(2)} threshold: worth a closer look.`
    : `Below the ${threshold.toFixed(2)} threshold.`;
}

function fillMetadata(card, answer, width, height) {
  const meta = answer.metadata || {};
  // Orientation 1 (or none) needs no rotation; anything else the server should have applied.
  let orientation = "upright, no EXIF rotation";
  if (meta.orientation_applied) orientation = `EXIF orientation ${meta.orientation ?? ""} applied (turned upright)`;
  else if (meta.orientation && meta.orientation !== 1) orientation = `EXIF orientation ${meta.orientation} NOT applied`;
  const fraction = typeof answer.tampered_fraction === "number"
    ? `${(answer.tampered_fraction * 100).toFixed(answer.tampered_fraction < 0.01 ? 2 : 1)}% of pixels` : "—";
  const rows = [
    ["Tampered fraction", fraction],
    ["Dimensions", `${width} × ${height} px`],
    ["Format", meta.format],
    ["Camera", meta.camera],
    ["Software", meta.software],
    ["Captured", meta.captured],
    ["Orientation", orientation],
    ["File size", formatBytes(card.file.size)],
    ["Time on server", answer.timings_ms && typeof answer.timings_ms.total === "number"
      ? `${Math.round(answer.timings_ms.total)} ms` : null],
  ];
  fillList(field(card, "metadata"), rows);
}

function downloadView(card) {
  const canvas = field(card, "canvas");
  canvas.toBlob((blob) => {
    if (!blob) return;
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = `${fileStem(card.file.name)}.${card.view.mode}.png`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }, "image/png");
}

// ---------------------------------------------------------------- small helpers

function legendGradient() {
  const stops = [];
  for (let i = 0; i <= 16; i++) {
    const v = Math.round((i / 16) * 255);
    stops.push(`rgb(${COLORMAP[v * 3]}, ${COLORMAP[v * 3 + 1]}, ${COLORMAP[v * 3 + 2]}) ${(i / 16) * 100}%`);
  }
  return `linear-gradient(to right, ${stops.join(", ")})`;
}

function base64ToBlob(base64, type) {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new Blob([bytes], { type });
}

// The file's digest goes into the JSON report (chain of custody). WebCrypto exists only in
// secure contexts (https or localhost); elsewhere the report says null rather than guessing.
async function sha256Hex(file) {
  if (!(window.crypto && crypto.subtle)) return null;
  try {
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  } catch {
    return null;
  }
}

function fileStem(name) {
  const base = (name || "image").split(/[\\/]/).pop();
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

function formatScore(score) {
  return typeof score === "number" ? score.toFixed(2) : "—";
}

function formatBytes(bytes) {
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  if (bytes >= 1 << 10) return `${(bytes / (1 << 10)).toFixed(0)} KiB`;
  return `${bytes} bytes`;
}

function announce(text) {
  $("#status").textContent = text;
}

setUpIntake();
loadModelInfo();
