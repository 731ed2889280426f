"""The page of ``ember serve``: one self-contained HTML document (inline CSS and JavaScript, nothing fetched from
elsewhere) whose script builds the form for the model's kind from the ``/info`` answer written into it."""

from __future__ import annotations

import html
import json
import re
from typing import Any

__all__ = ["page"]


def page(info: dict[str, Any]) -> str:
    """The HTML page for a model: the parts that name it are written here, the form is built by the script."""
    esc = html.escape
    classes = info.get("classes")
    shown = ""
    if classes:
        listed = ", ".join(esc(str(c)) for c in classes[:50]) + (" …" if len(classes) > 50 else "")
        shown = f'<p class="muted">Classes ({len(classes)}): {listed}</p>'
    # JSON inside <script>: "<", ">" and "&" escaped so that no value can close the element
    data = json.dumps(info, ensure_ascii=True)
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    parts = {"TITLE": esc(info["name"]), "KIND": esc(info["kind"]), "CLASSES": shown, "MODEL": data}
    # one pass: a value written in (a file named "x%MODEL%.ember") is never searched for placeholders again
    return re.sub(r"%(TITLE|KIND|CLASSES|MODEL)%", lambda m: parts[m[1]], _PAGE)


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE% · ember</title>
<style>
:root { --fg: #1d232a; --muted: #5f6b76; --accent: #d9480f; --bg: #f7f7f8; --card: #fff; --line: #e1e4e8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 15px/1.5 system-ui, -apple-system, sans-serif; }
main { max-width: 860px; margin: 0 auto; padding: 24px 16px; }
h1 { font-size: 22px; margin: 0; }
.muted { color: var(--muted); margin: 4px 0; }
a { color: var(--accent); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 18px; margin: 16px 0; }
#drop { border: 2px dashed var(--line); border-radius: 10px; padding: 32px; text-align: center; cursor: pointer; }
#drop.over { border-color: var(--accent); background: #fff4ee; }
.stage { position: relative; display: inline-block; max-width: 100%; vertical-align: top; margin: 0 12px 12px 0; }
.stage img { display: block; max-width: 100%; max-height: 420px; }
.stage .overlay, .stage svg { position: absolute; left: 0; top: 0; width: 100%; height: 100%; }
.stage .overlay { opacity: 0.5; image-rendering: pixelated; }
.bar { display: grid; grid-template-columns: minmax(90px, 30%) 1fr 70px; gap: 10px; align-items: center;
  margin: 3px 0; }
.track { background: #eceef1; border-radius: 4px; height: 14px; overflow: hidden; }
.fill { background: var(--accent); height: 100%; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.answer { font-size: 20px; font-weight: 600; margin: 4px 0 12px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; }
label { display: block; margin: 8px 0 2px; font-weight: 500; }
input, select, textarea { font: inherit; padding: 6px 8px; border: 1px solid var(--line); border-radius: 6px; }
input, select { width: 100%; max-width: 360px; }
textarea { width: 100%; min-height: 110px; }
button { font: inherit; margin-top: 12px; padding: 8px 18px; border: 0; border-radius: 6px; background: var(--accent);
  color: #fff; cursor: pointer; }
.error { color: #b00020; white-space: pre-wrap; }
.generated { white-space: pre-wrap; }
</style>
</head>
<body>
<main>
<h1>%TITLE%</h1>
<p class="muted">A %KIND% model · <a href="info">/info</a> · <code>POST /predict</code> takes JSON</p>
%CLASSES%
<div id="app" class="card"><noscript>This page needs JavaScript; the JSON API works without it.</noscript></div>
<div id="result" class="card" hidden></div>
</main>
<script>const MODEL = %MODEL%;</script>
<script>
"use strict";
const app = document.getElementById("app"), out = document.getElementById("result");

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  e.append(...kids);  // strings become text nodes: nothing is parsed as HTML
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

async function ask(body, type) {
  out.hidden = false;
  out.replaceChildren(el("p", {class: "muted"}, "Predicting…"));
  try {
    const r = await fetch("predict", {method: "POST", headers: {"Content-Type": type || "application/json"},
                                      body: type ? body : JSON.stringify(body)});
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.error || r.statusText);
    return answer;
  } catch (e) {
    out.replaceChildren(el("p", {class: "error"}, String(e.message || e)));
    return null;
  }
}

function text(v) { return typeof v === "string" ? v : JSON.stringify(v); }

function bars(probs) {
  const rows = Object.entries(probs).sort((a, b) => b[1] - a[1]).slice(0, 10);
  return rows.map(([name, p]) => el("div", {class: "bar"}, el("span", {}, name),
    el("div", {class: "track"}, el("div", {class: "fill", style: `width:${(100 * p).toFixed(1)}%`})),
    el("span", {class: "num"}, (100 * p).toFixed(1) + " %")));
}

function answerParts(res) {
  const parts = [];
  if ("prediction" in res) parts.push(el("div", {class: "answer"}, text(res.prediction)));
  if (res.probabilities) parts.push(...bars(res.probabilities));
  return parts;
}

// ---- images -----------------------------------------------------------------------------------
function imageForm() {
  const input = el("input", {type: "file", accept: "image/*", hidden: ""});
  const drop = el("div", {id: "drop"}, "Drop an image here, or click to choose one");
  drop.onclick = () => input.click();
  drop.ondragover = e => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = e => { e.preventDefault(); drop.classList.remove("over");
                       if (e.dataTransfer.files[0]) sendImage(e.dataTransfer.files[0]); };
  input.onchange = () => { if (input.files[0]) sendImage(input.files[0]); input.value = ""; };
  app.replaceChildren(drop, input);
}

async function sendImage(file) {
  const res = await ask(file, file.type || "application/octet-stream");
  if (!res) return;
  const stage = el("div", {class: "stage"}, el("img", {src: URL.createObjectURL(file), alt: file.name}));
  const parts = [stage];
  if (res.mask) stage.append(el("img", {class: "overlay", src: "data:image/png;base64," + res.mask, alt: "mask"}));
  if (res.points) {
    const s = svg("svg", {viewBox: `0 0 ${res.width} ${res.height}`, preserveAspectRatio: "none"});
    const r = Math.max(res.width, res.height) / 80;
    res.points.forEach(([x, y]) => s.append(svg("circle", {cx: x, cy: y, r: r, fill: "#d9480f", stroke: "#fff",
                                                           "stroke-width": r / 3})));
    stage.append(s);
    parts.push(el("p", {class: "muted"}, res.points.map(([x, y]) => `(${x}, ${y})`).join("  ")));
  }
  if (res.image) parts.push(el("div", {class: "stage"},
                                el("img", {src: "data:image/png;base64," + res.image, alt: "output"})));
  if (res.classes) {
    for (const c of res.classes) {
      parts.push(el("div", {class: "bar"},
        el("span", {}, el("span", {class: "swatch", style: `background:${res.colors[c.label] || "#888"}`}), c.label),
        el("div", {class: "track"}, el("div", {class: "fill", style: `width:${(100 * c.share).toFixed(1)}%`})),
        el("span", {class: "num"}, (100 * c.share).toFixed(1) + " %")));
    }
  }
  out.replaceChildren(...parts, ...answerParts(res));
}

// ---- texts ------------------------------------------------------------------------------------
function textForm(lm) {
  const area = el("textarea", {placeholder: lm ? "A prompt to continue" : "A text to classify"});
  const fields = [el("label", {}, lm ? "Prompt" : "Text"), area];
  const words = el("input", {type: "number", min: 0, max: 1000, value: 20});
  const temp = el("input", {type: "number", min: 0, step: "any", value: 1.0});
  if (lm) fields.push(el("label", {}, "Words to write"), words, el("label", {}, "Temperature"), temp);
  const go = el("button", {onclick: async () => {
    const body = {text: area.value};
    if (lm) Object.assign(body, {n_words: parseInt(words.value, 10), temperature: parseFloat(temp.value)});
    const res = await ask(body);
    if (res) out.replaceChildren(...(lm ? [el("p", {class: "generated"}, res.generated)] : answerParts(res)));
  }}, lm ? "Write" : "Classify");
  app.replaceChildren(...fields, go);
}

// ---- tables -----------------------------------------------------------------------------------
function tableForm() {
  const fields = [], read = {};
  for (const [col, values] of Object.entries(MODEL.inputs.categorical)) {
    const select = el("select", {}, el("option", {value: ""}, "(missing)"),
                      ...values.map((v, i) => el("option", {value: String(i)}, text(v))));
    if (values.length) select.value = "0";
    read[col] = () => select.value === "" ? null : values[parseInt(select.value, 10)];
    fields.push(el("label", {}, col), select);
  }
  for (const col of MODEL.inputs.continuous) {
    const input = el("input", {type: "number", step: "any", placeholder: "(missing)"});
    read[col] = () => input.value === "" ? null : parseFloat(input.value);
    fields.push(el("label", {}, col), input);
  }
  const go = el("button", {onclick: async () => {
    const row = {};
    for (const [col, get] of Object.entries(read)) row[col] = get();
    const res = await ask({row: row});
    if (res) out.replaceChildren(...answerParts(res));
  }}, "Predict");
  app.replaceChildren(...fields, go);
}

// ---- ratings ----------------------------------------------------------------------------------
function ratingForm() {
  const fields = [], read = {};
  for (const key of ["user", "item"]) {
    const spec = MODEL.inputs[key];
    const list = el("datalist", {id: key + "s"}, ...spec.values.map(v => el("option", {value: text(v)})));
    const input = el("input", {list: key + "s", value: spec.values.length ? text(spec.values[0]) : ""});
    read[key] = () => input.value;
    fields.push(el("label", {}, `${spec.column} (${spec.count} known)`), input, list);
  }
  const go = el("button", {onclick: async () => {
    const res = await ask({user: read.user(), item: read.item()});
    if (res) out.replaceChildren(el("div", {class: "answer"}, "Predicted rating: " + res.prediction.toFixed(3)));
  }}, "Predict the rating");
  app.replaceChildren(...fields, go);
}

if (MODEL.kind === "tabular") tableForm();
else if (MODEL.kind === "collab") ratingForm();
else if (MODEL.kind === "text-classifier") textForm(false);
else if (MODEL.kind === "language-model") textForm(true);
else imageForm();
</script>
</body>
</html>
"""
