// SPAN analyst page, forensic layers: the second request (POST v1/analyze) and its panels.
// A plain deferred script sharing the page's global scope with heatmap.js and app.js (index.html).
"use strict";

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
  caption.textContent = layerCaption(card, card.view.layer);
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
