// SPAN analyst page, heatmap view: the colour map, the canvases, score and metadata, download,
// and small helpers. A plain deferred script sharing the page's global scope with layers.js and
// app.js (index.html).
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
    ? `At or above the ${threshold.toFixed(2)} image threshold: worth a closer look.`
    : `Below the ${threshold.toFixed(2)} image threshold.`;
}

// The clone search (spancore.clones): plain shifts of a region onto the photo itself.
function describeClones(clones) {
  if (!clones) return "not searched (SPAN_CLONES off)";
  if (!clones.found) return "none found (the search looks for plain shifts only)";
  return clones.clones.map((c) => `a region repeated ${c.shift[0]}, ${c.shift[1]} px away ` +
    `(${(c.area_fraction * 100).toFixed(2)}% of the photo, noise correlation ${c.correlation.toFixed(2)}); ` +
    "both copies are marked").join("; ");
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
    ["Copied within the photo", describeClones(answer.clones)],
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
