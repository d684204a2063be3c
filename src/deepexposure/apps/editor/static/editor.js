// deepexposure edit: the page. Plain JS, no build step. Every request carries the session token.
"use strict";

const TOKEN = document.body.dataset.token;
const $ = (id) => document.getElementById(id);
const state = { evs: [], seed: [], strength: 1, renderer: "fusion", look: null, before: false, segments: false,
                maxAbs: 10 };
let inflight = false;
let pending = null;
let renders = 0;

function api(path, body) {
  const opts = { headers: { "X-Token": TOKEN } };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  return fetch(path, opts);
}

// The message of a failed response: the JSON {"error"} of the API, else its text (a 403 after the server was
// restarted with a new token is plain text), else the status.
async function errorOf(r) {
  const text = await r.text().catch(() => "");
  try {
    const data = JSON.parse(text);
    if (data && data.error) return data.error;
  } catch (err) { /* not JSON */ }
  return text.trim() || `the server answered ${r.status}`;
}

function showError(msg) {
  const box = $("error");
  box.textContent = msg || "";
  box.hidden = !msg;
}

function view() {
  if (state.before) return "before";
  return state.segments ? "segments" : "after";
}

// One render request at a time; while one runs, only the latest change waits (sliders never queue up).
function request(draft) {
  pending = { draft: Boolean(draft) };
  pump();
}

async function pump() {
  if (inflight || !pending) return;
  const job = pending;
  pending = null;
  inflight = true;
  const body = { evs: state.evs, strength: state.strength, renderer: state.renderer, look: state.look, view: view(),
                 draft: job.draft };
  try {
    const r = await api("api/render", body);
    if (!r.ok) {
      showError(await errorOf(r));
    } else {
      showError("");
      const blob = await r.blob();
      const img = $("preview");
      const old = img.src;
      img.src = URL.createObjectURL(blob);
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      renders += 1;
      img.dataset.renders = String(renders);
      img.dataset.view = body.view;
      img.dataset.draft = String(job.draft);
      $("badge").hidden = body.view !== "before";
      drawHistogram(r.headers.get("X-Histogram"), Number(r.headers.get("X-Clipped")));
      const ms = r.headers.get("X-Render-Ms");
      $("status").textContent = `${body.view}${job.draft ? " (draft)" : ""}: rendered in ${ms} ms`;
    }
  } catch (err) {
    showError(`the editor server does not answer (${err})`);
  } finally {
    inflight = false;
    if (pending) pump();
  }
}

function drawHistogram(text, clipped) {
  const canvas = $("histogram");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!text) return;
  const counts = text.split(",").map(Number);
  const peak = Math.max(1, ...counts.slice(1, -1), 1);  // the end bins (black, white) may tower: scale by the rest
  const w = canvas.width / counts.length;
  counts.forEach((c, i) => {
    const h = Math.min(1, c / peak) * (canvas.height - 2);
    ctx.fillStyle = i === counts.length - 1 && c > 0 ? "#e05050" : "#c8c8c8";
    ctx.fillRect(i * w, canvas.height - h, Math.max(1, w - 0.5), h);
  });
  $("clipped").textContent = `${(100 * clipped).toFixed(2)}% of pixels with a channel at 255`;
}

function fmt(x) {
  return (x >= 0 ? "+" : "") + x.toFixed(2);
}

function buildSliders() {
  const box = $("sliders");
  box.replaceChildren();
  state.evs.forEach((ev, k) => {
    const row = document.createElement("div");
    row.className = "slider";
    const label = document.createElement("label");
    label.htmlFor = `ev-${k}`;
    label.textContent = state.hasSegments ? `segment ${k}` : `EV ${k + 1}`;
    const input = document.createElement("input");
    input.type = "range";
    input.id = `ev-${k}`;
    const span = Math.min(state.maxAbs, Math.max(4, Math.ceil(Math.abs(ev))));
    input.min = String(-span);
    input.max = String(span);
    input.step = "0.05";
    input.value = String(ev);
    input.title = "double-click: back to the seed";
    const out = document.createElement("output");
    out.id = `ev-${k}-value`;
    out.textContent = fmt(ev);
    input.addEventListener("input", () => {
      state.evs[k] = Number(input.value);
      out.textContent = fmt(state.evs[k]);
      request(true);
    });
    input.addEventListener("change", () => request(false));
    input.addEventListener("dblclick", () => {
      state.evs[k] = state.seed[k];
      input.value = String(state.seed[k]);
      out.textContent = fmt(state.seed[k]);
      request(false);
    });
    row.append(label, input, out);
    box.append(row);
  });
}

async function save(overwrite) {
  const name = $("out-name").value.trim();
  const button = $("save");
  button.disabled = true;  // one save at a time: a second click would only meet the first one's files
  $("save-status").textContent = "saving at full resolution…";
  try {
    const r = await api("api/save", { evs: state.evs, strength: state.strength, renderer: state.renderer,
                                      look: state.look, name, overwrite: Boolean(overwrite) });
    if (r.status === 409) {
      const data = await r.json();
      button.disabled = false;
      if (window.confirm(`${data.error}. Replace?`)) return save(true);
      $("save-status").textContent = "not saved (the existing files are kept)";
      return;
    }
    if (!r.ok) {
      $("save-status").textContent = "not saved";
      showError(await errorOf(r));
      return;
    }
    const data = await r.json();
    showError("");
    $("save-status").textContent = `saved ${data.photo} and ${data.recipe}`;
  } catch (err) {
    $("save-status").textContent = "not saved";
    showError(`the editor server does not answer (${err})`);
  } finally {
    button.disabled = false;
  }
}

async function init() {
  const r = await api("api/state");
  if (!r.ok) {
    showError(`cannot load the session (${r.status})`);
    return;
  }
  const s = await r.json();
  state.evs = s.evs.slice();
  state.seed = s.evs.slice();
  state.renderer = s.renderer;
  state.look = s.look;
  state.hasSegments = s.segments;
  state.maxAbs = s.max_abs_ev;
  $("photo-name").textContent = s.photo + (s.recipe_file ? `  (recipe ${s.recipe_file})` : "");
  $("photo-info").textContent = `${s.size[0]}x${s.size[1]}${s.raw ? " RAW" : ""} · model ${s.model}`;
  $("out-dir").textContent = `into ${s.out_dir}`;
  $("out-name").value = s.output;
  const sel = $("renderer");
  s.renderers.forEach((name) => sel.append(new Option(name, name, false, name === s.renderer)));
  $("segments").disabled = !s.segments;
  buildSliders();
  sel.addEventListener("change", () => { state.renderer = sel.value; request(false); });
  const looks = $("look");
  s.looks.forEach((name) => looks.append(new Option(name, name, false, name === s.look)));
  looks.addEventListener("change", () => { state.look = looks.value; request(false); });
  $("strength").addEventListener("input", () => {
    state.strength = Number($("strength").value);
    $("strength-value").textContent = state.strength.toFixed(2);
    request(true);
  });
  $("strength").addEventListener("change", () => request(false));
  $("before").addEventListener("change", () => { state.before = $("before").checked; request(false); });
  $("segments").addEventListener("change", () => { state.segments = $("segments").checked; request(false); });
  $("reset").addEventListener("click", () => {
    state.evs = state.seed.slice();
    buildSliders();
    request(false);
  });
  $("save").addEventListener("click", () => save(false));
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" && e.target.type === "text") return;
    if (e.key === "b" || e.key === "B") { $("before").click(); }
    if ((e.key === "s" || e.key === "S") && !$("segments").disabled) { $("segments").click(); }
  });
  request(false);
}

init();
