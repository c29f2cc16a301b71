"""The web page served at ``GET /``: one self-contained HTML file (no external resources).

Kept as a Python string so it ships with the package without package-data configuration.
Each dropped file is sent on its own to ``POST /v1/predict?explain=true&top_k=5`` and shown as a
card: the predicted class, the verdicts "not sure" (top probability below the page's minimum
confidence, sent as ``min_confidence``) and "not one of my classes" (the unknown-input flag), the top-5 bars, the model's input with the heat map over it (a slider
fades it), the band that was cut, which expert dominated at each scale, and the description of the
predicted class from ``GET /v1/classes``. "Download all results (CSV)" saves every result shown
so far, built in the browser from those JSON results (``resultsCsv``): filename, class,
probability, top_k (``class=prob`` joined by ``; ``), band_top, band_bottom, pixel_size_m,
field_of_view_m (``width x height`` in metres), abstain, unknown and ood_score where the results
carry them, and error.
"""

INDEX_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hnf: classify micrographs</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 14px 24px; }
  header h1 { margin: 0; font-size: 20px; }
  header p { margin: 4px 0 0; font-size: 13px; color: #c8cdd8; }
  main { padding: 18px 24px; }
  #drop { border: 2px dashed #7b8497; border-radius: 10px; background: #fff; padding: 28px;
          text-align: center; cursor: pointer; font-size: 16px; }
  #drop.over { background: #e6f0ff; border-color: #2f6fdf; }
  #drop small { display: block; color: #5d6577; margin-top: 6px; font-size: 13px; }
  #cards { display: flex; flex-wrap: wrap; gap: 16px; margin-top: 18px; }
  .card { background: #fff; border-radius: 10px; box-shadow: 0 1px 4px rgba(0,0,0,.12);
          padding: 14px; width: 560px; }
  .card h2 { font-size: 14px; margin: 0 0 8px; word-break: break-all; color: #5d6577; font-weight: normal; }
  .pred { font-size: 22px; font-weight: 600; margin-bottom: 8px; }
  .pred .prob { font-size: 15px; color: #5d6577; font-weight: normal; }
  .row { display: flex; gap: 14px; }
  .pics { position: relative; width: 224px; height: 224px; flex: none; background: #000; }
  .pics img { position: absolute; left: 0; top: 0; width: 224px; height: 224px; image-rendering: auto; }
  .bars { flex: 1; font-size: 13px; }
  .bar { margin: 3px 0 7px; }
  .bar .track { background: #e3e6ec; border-radius: 3px; height: 10px; }
  .bar .fill { background: #2f6fdf; border-radius: 3px; height: 10px; }
  .bar .label { display: flex; justify-content: space-between; }
  .meta, .experts { font-size: 12px; color: #5d6577; margin-top: 6px; }
  .desc { font-size: 13px; margin-top: 10px; line-height: 1.4; max-height: 9em; overflow: auto; }
  .error { color: #b00020; font-weight: 600; }
  .verdict { font-size: 15px; font-weight: 600; border-radius: 6px; padding: 6px 10px; margin-bottom: 8px; }
  .verdict.unknown { background: #fde8e8; color: #8a1010; }
  .verdict.unsure { background: #fff4d6; color: #6b4e00; }
  #settings { font-size: 13px; color: #5d6577; margin-top: 10px; }
  #settings input { width: 4.5em; }
  .status { color: #5d6577; }
  #download-csv { margin-top: 12px; font-size: 14px; padding: 6px 12px; cursor: pointer; }
  label.fade { font-size: 12px; color: #5d6577; display: block; margin-top: 4px; }
</style>
</head>
<body>
<header>
  <h1>hnf &middot; classify electron micrographs</h1>
  <p id="model-line">Loading the model&hellip;</p>
</header>
<main>
  <div id="drop" tabindex="0" role="button" aria-label="Choose or drop micrographs">
    <strong>Drop micrographs here</strong>, or click to choose files
    <small>JPEG, PNG, BMP or TIFF (8/16-bit, float). Several at once are fine. The information band at the
    bottom is found and cut automatically.</small>
    <input id="file-input" type="file" multiple accept=".jpg,.jpeg,.png,.bmp,.tif,.tiff,image/*" hidden>
  </div>
  <div id="settings"><label>Say &ldquo;not sure&rdquo; below a confidence of
    <input id="min-confidence" type="number" min="0" max="1" step="0.05" value="0.5"></label></div>
  <button id="download-csv" type="button" disabled>Download all results (CSV)</button>
  <div id="cards"></div>
</main>
<script>
"use strict";
const classInfo = {};
const drop = document.getElementById("drop");
const input = document.getElementById("file-input");
const cards = document.getElementById("cards");
const shownResults = [];  // every result shown, in the order it arrived, with the file's name

function lengthText(metres) {  // 3.37e-6 -> "3.37 \u00b5m"
  const units = [[1e-3, "mm"], [1e-6, "\u00b5m"], [1e-9, "nm"], [1e-12, "pm"]];
  for (const [size, name] of units) {
    if (metres >= size) return `${(metres / size).toPrecision(3)} ${name}`;
  }
  return `${(metres / 1e-12).toPrecision(3)} pm`;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

async function loadInfo() {
  try {
    const [model, classes] = await Promise.all([fetch("v1/model").then(r => r.json()),
                                                fetch("v1/classes").then(r => r.json())]);
    for (const c of classes.classes) classInfo[c.name] = c;
    document.getElementById("model-line").textContent =
      `Model ${model.name} (hnf ${model.version}), ${model.num_classes} classes: ${model.classes.join(", ")}`;
  } catch (err) {
    document.getElementById("model-line").textContent = "Could not reach the service: " + err;
  }
}

function bars(topK) {
  const box = el("div", {class: "bars"});
  for (const entry of topK) {
    const pct = (100 * entry.prob).toFixed(1);
    box.append(el("div", {class: "bar"},
      el("div", {class: "label"}, el("span", {}, entry.class), el("span", {}, pct + "%")),
      el("div", {class: "track"}, el("div", {class: "fill", style: `width:${pct}%`}))));
  }
  return box;
}

function show(card, result) {
  card.querySelector(".status").remove();
  if (result.error) {
    card.append(el("div", {class: "error", "data-role": "error"}, result.error));
    return;
  }
  const best = result.top_k[0];
  if (result.unknown) {
    card.append(el("div", {class: "verdict unknown", "data-role": "unknown"},
      "Not one of my classes: this image looks unlike the images the model was trained on, so the class below is only the nearest guess."));
  }
  if (result.abstain) {
    card.append(el("div", {class: "verdict unsure", "data-role": "abstain"},
      `Not sure: the top probability ${(100 * best.prob).toFixed(1)}% is below the minimum of ${(100 * minConfidence()).toFixed(0)}%.`));
  }
  card.append(el("div", {class: "pred"},
    el("span", {"data-role": "predicted-class"}, result.class), " ",
    el("span", {class: "prob"}, (100 * best.prob).toFixed(1) + "%")));
  const row = el("div", {class: "row"});
  const pics = el("div", {class: "pics"});
  const ex = result.explanation;
  if (ex) {
    const base = el("img", {src: ex.input_png, alt: "what the model saw"});
    const over = el("img", {src: ex.overlay_png, alt: "where the model looked", "data-role": "overlay"});
    pics.append(base, over);
    const slider = el("input", {type: "range", min: "0", max: "100", value: "100"});
    slider.addEventListener("input", () => { over.style.opacity = slider.value / 100; });
    const left = el("div", {}, pics, el("label", {class: "fade"}, "heat map ", slider));
    row.append(left);
  }
  row.append(bars(result.top_k));
  card.append(row);
  const band = result.band ? `information band cut (rows ${result.band.top}\u2013${result.band.bottom})`
                           : "no information band found";
  card.append(el("div", {class: "meta"}, `${result.width}\u00d7${result.height} ${result.mode}, ${band}`));
  card.append(el("div", {class: "meta", "data-role": "scale"}, result.pixel_size_m
    ? `pixel size ${lengthText(result.pixel_size_m)}, field of view ${lengthText(result.field_of_view_m[0])} \u00d7 ${lengthText(result.field_of_view_m[1])}`
    : "pixel size not stated in the file"));
  if (ex && ex.scales && ex.scales.length) {
    const parts = ex.scales.map(s => `patch ${s.patch}: ${s.dominant} ` +
      `(${Object.entries(s.experts).map(([k, v]) => k + " " + Math.round(100 * v) + "%").join(", ")})`);
    card.append(el("div", {class: "experts"}, "Dominant expert per scale \u2014 " + parts.join("; ")));
  } else if (ex) {
    card.append(el("div", {class: "experts"}, "Heat map by occlusion (this model has no expert gates)."));
  }
  const info = classInfo[result.class];
  if (info && info.description) {
    card.append(el("div", {class: "desc", "data-role": "description"},
      el("strong", {}, result.class + ": "), info.description));
  }
}

function minConfidence() {
  const value = parseFloat(document.getElementById("min-confidence").value);
  return Number.isFinite(value) ? Math.min(1, Math.max(0, value)) : 0;
}

function csvCell(value) {  // RFC 4180: quote cells holding a comma, quote or line break
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

function resultsCsv(results) {
  const flags = ["abstain", "unknown", "ood_score"].filter(k => results.some(r => k in r));
  const header = ["filename", "class", "probability", "top_k", "band_top", "band_bottom",
                  "pixel_size_m", "field_of_view_m", ...flags, "error"];
  const lines = [header.join(",")];
  for (const r of results) {
    const top = r.top_k || [];
    const cells = [r.filename, r.error ? "" : r.class, top.length ? top[0].prob : "",
                   top.map(e => `${e.class}=${e.prob}`).join("; "),
                   r.band ? r.band.top : "", r.band ? r.band.bottom : "", r.pixel_size_m,
                   r.field_of_view_m ? r.field_of_view_m.join(" x ") : "",
                   ...flags.map(k => r[k] === null || r[k] === undefined ? "" : r[k]), r.error];
    lines.push(cells.map(csvCell).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

function downloadCsv() {
  const blob = new Blob([resultsCsv(shownResults)], {type: "text/csv"});
  const url = URL.createObjectURL(blob);
  const link = el("a", {href: url, download: "hnf-results.csv"});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function predictOne(file) {
  const card = el("div", {class: "card", "data-role": "result"},
                  el("h2", {}, file.name), el("div", {class: "status"}, "Classifying\u2026"));
  cards.prepend(card);
  const form = new FormData();
  form.append("files", file, file.name);
  let result;
  try {
    const response = await fetch(`v1/predict?explain=true&top_k=5&min_confidence=${minConfidence()}`,
                                 {method: "POST", body: form});
    const body = await response.json();
    result = body.results && body.results.length ? body.results[0]
           : {error: body.error || `HTTP ${response.status}`};
  } catch (err) {
    result = {error: "request failed: " + err};
  }
  show(card, result);
  shownResults.push({...result, filename: file.name});
  const button = document.getElementById("download-csv");
  button.disabled = false;
  button.textContent = `Download all results (CSV, ${shownResults.length})`;
  card.setAttribute("data-done", "1");
}

async function handle(files) {
  const list = Array.from(files);
  const queue = list.slice();
  const workers = Array.from({length: Math.min(2, queue.length)}, async () => {
    while (queue.length) await predictOne(queue.shift());
  });
  await Promise.all(workers);
}

drop.addEventListener("click", () => input.click());
drop.addEventListener("keydown", e => { if (e.key === "Enter" || e.key === " ") input.click(); });
input.addEventListener("change", () => { handle(input.files); input.value = ""; });
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over"); handle(e.dataTransfer.files); });
document.getElementById("download-csv").addEventListener("click", downloadCsv);
loadInfo();
</script>
</body>
</html>
"""
