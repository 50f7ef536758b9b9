// FractalMIDI Studio page: a piano-roll on a <canvas>, selection tools that snap to the grid,
// generation through the local API, a history of versions, and playback (the server's
// FluidSynth WAV, or a small WebAudio synth when the server has no FluidSynth).
"use strict";

const PITCHES = 128;
const GUTTER = 46;          // px: pitch labels on the left
const RULER = 20;           // px: bar numbers on top
const EXTRA_BARS = 8;       // empty bars shown after the end (room to select a continuation)
const STEP_PX = [2, 3, 4, 6, 8, 12, 16, 24, 32];
const PITCH_PX = [3, 4, 6, 8, 10, 14];
const FRAME_MS = 70;        // per coarse-to-fine frame
const MAX_FRAME_TOTAL_MS = 450;
const LOOKAHEAD_S = 1.5;    // the synth schedules the notes starting this far ahead ...
const SCHEDULE_MS = 250;    // ... every this often (a timer: it keeps running in a background tab)
const BRUSH_RADIUS = 1;     // pitch rows painted above and below the pointer
const SYNTH_GAIN = 0.12;
const START_DELAY_S = 0.03; // playback is scheduled this far ahead (counted in the latency shown)
const NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
const BLACK_KEYS = new Set([1, 3, 6, 8, 10]);

const $ = (id) => document.getElementById(id);
const canvas = $("roll");
const ctx = canvas.getContext("2d");
const wrap = $("roll-wrap");

const state = {
  info: null,
  versions: [],          // summaries, oldest first
  current: null,         // {version, notes}
  other: null,           // id of the version A/B switches to
  stepZoom: 4, pitchZoom: 2,
  span: null,            // [start, end) steps, all pitches unless a band is set
  band: null,            // [low, high] pitches, the whole piece unless a span is set
  cells: new Map(),      // pitch -> Set of steps (rectangles and brush strokes)
  drag: null,
  frame: null,           // {start, image} shown while a generation is revealed
  busy: false,
  play: null,            // {source(s), startTime, offsetStep, secondsPerStep, endStep}
  cursor: 0,             // step where playback starts
  audioCache: new Map(), // version id -> AudioBuffer
  lastLatencyMs: null, lastGenerateMs: null,
};
let audio = null;

// ------------------------------------------------------------------ helpers

function noteName(p) { return NOTE_NAMES[p % 12] + (Math.floor(p / 12) - 1); }
function stepPx() { return STEP_PX[state.stepZoom]; }
function pitchPx() { return PITCH_PX[state.pitchZoom]; }
function stepsPerBar() { return state.info ? state.info.steps_per_bar : 16; }
function pieceSteps() { return state.current ? state.current.version.steps : 0; }
function maxSteps() { return state.info ? state.info.limits.max_piece_steps : 4096; }
function viewSteps() {
  const regionEnd = Math.max(state.span ? state.span[1] : 0, ...[...state.cells.values()].map((s) => Math.max(0, ...s) + 1));
  const bar = stepsPerBar();
  return Math.min(maxSteps(), Math.ceil(Math.max(pieceSteps(), regionEnd) / bar) * bar + EXTRA_BARS * bar);
}
function snapUnit() {
  const mode = $("snap").value;
  return mode === "bar" ? stepsPerBar() : mode === "beat" ? Math.max(1, stepsPerBar() / 4) : 1;
}
function say(text, isError = false) {
  const el = $("message");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

let colourLut = null;
function velocityColour(v) {
  if (!colourLut) {
    const anchors = state.info.velocity_colours;
    colourLut = [];
    for (let vel = 0; vel <= 127; vel++) {
      let k = 0;
      while (k < anchors.length - 2 && vel > anchors[k + 1][0]) k++;
      const [v0, c0] = anchors[k], [v1, c1] = anchors[k + 1];
      const t = Math.min(1, Math.max(0, (vel - v0) / (v1 - v0)));
      colourLut.push(`rgb(${c0.map((c, i) => Math.round(c + t * (c1[i] - c))).join(",")})`);
    }
  }
  return colourLut[Math.max(1, Math.min(127, v))];
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const kind = response.headers.get("content-type") || "";
  const body = kind.includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error((body && body.error) || `the server answered ${response.status}`);
  return body;
}

// ------------------------------------------------------------------ geometry

function xOf(step) { return GUTTER + step * stepPx() - wrap.scrollLeft; }
function yOf(pitch) { return RULER + (PITCHES - 1 - pitch) * pitchPx() - wrap.scrollTop; }
function cellAt(clientX, clientY) {
  const box = canvas.getBoundingClientRect();
  const x = clientX - box.left + wrap.scrollLeft - GUTTER, y = clientY - box.top + wrap.scrollTop - RULER;
  return {
    step: Math.max(0, Math.min(viewSteps() - 1, Math.floor(x / stepPx()))),
    pitch: Math.max(0, Math.min(PITCHES - 1, PITCHES - 1 - Math.floor(y / pitchPx()))),
    inRuler: clientY - box.top < RULER, inGutter: clientX - box.left < GUTTER,
  };
}

function layout() {
  const width = GUTTER + viewSteps() * stepPx(), height = RULER + PITCHES * pitchPx();
  const spacer = $("roll-spacer");
  spacer.style.width = width + "px";
  spacer.style.height = height + "px";
  const w = Math.min(wrap.clientWidth, width), h = Math.min(wrap.clientHeight, height);
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = w + "px";
  canvas.style.height = h + "px";
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  draw();
}

// ------------------------------------------------------------------ drawing

function draw() {
  if (!state.info) return;
  canvas.style.left = wrap.scrollLeft + "px";
  canvas.style.top = wrap.scrollTop + "px";
  const w = canvas.width / (window.devicePixelRatio || 1), h = canvas.height / (window.devicePixelRatio || 1);
  const sp = stepPx(), pp = pitchPx(), bar = stepsPerBar(), beat = Math.max(1, bar / 4);
  const first = Math.max(0, Math.floor((wrap.scrollLeft) / sp)), last = Math.min(viewSteps(), Math.ceil((wrap.scrollLeft + w) / sp) + 1);
  ctx.fillStyle = "#1e1e1e";
  ctx.fillRect(0, 0, w, h);
  for (let p = 0; p < PITCHES; p++) {              // black-key rows and octave lines
    const y = yOf(p);
    if (y > h || y + pp < RULER) continue;
    if (BLACK_KEYS.has(p % 12)) { ctx.fillStyle = "#191919"; ctx.fillRect(GUTTER, y, w, pp); }
    if (p % 12 === 0) { ctx.fillStyle = "#333"; ctx.fillRect(GUTTER, y + pp - 1, w, 1); }
  }
  for (let s = first - (first % beat); s <= last; s += beat) {   // beat and bar lines
    ctx.fillStyle = s % bar === 0 ? "#555" : "#2c2c2c";
    ctx.fillRect(Math.round(xOf(s)), RULER, 1, h);
  }
  const end = pieceSteps();                          // the piece's end
  if (end > 0) { ctx.fillStyle = "#888"; ctx.fillRect(Math.round(xOf(end)), RULER, 2, h); }
  if (state.current) {
    for (const [p, on, off, vel] of state.current.notes) {
      if (off < first || on > last) continue;
      const y = yOf(p);
      if (y > h || y + pp < RULER) continue;
      ctx.fillStyle = velocityColour(vel);
      ctx.fillRect(xOf(on) + 0.5, y + 0.5, Math.max(1, (off - on) * sp - 1), Math.max(1, pp - 1));
    }
  }
  if (state.frame && state.frame.image.complete) {  // a coarse-to-fine frame over the steps the model saw
    ctx.imageSmoothingEnabled = false;
    const img = state.frame.image;
    ctx.drawImage(img, xOf(state.frame.start), yOf(PITCHES - 1), img.width * sp, PITCHES * pp);
  }
  drawRegion();
  drawPlayhead();
  // fixed gutter and ruler on top
  ctx.fillStyle = "#262626";
  ctx.fillRect(0, 0, GUTTER, h);
  ctx.fillRect(0, 0, w, RULER);
  ctx.font = "10px system-ui, sans-serif";
  ctx.textBaseline = "middle";
  for (let p = 0; p < PITCHES; p++) {
    const y = yOf(p);
    if (y > h || y + pp < RULER) continue;
    if (BLACK_KEYS.has(p % 12)) { ctx.fillStyle = "#111"; ctx.fillRect(GUTTER - 14, y, 14, pp); }
    if (p % 12 === 0 || (pp >= 10 && !BLACK_KEYS.has(p % 12))) {
      ctx.fillStyle = p % 12 === 0 ? "#ddd" : "#999";
      ctx.fillText(noteName(p), 4, y + pp / 2);
    }
  }
  ctx.fillStyle = "#ddd";
  const every = Math.max(1, Math.ceil(30 / (bar * sp)));
  for (let s = first - (first % bar); s <= last; s += bar) {
    if ((s / bar) % every) continue;
    const x = xOf(s);
    if (x >= GUTTER - 1) { ctx.fillRect(Math.round(x), 12, 1, RULER - 12); ctx.fillText(String(s / bar + 1), x + 3, 8); }
  }
  if (state.cursor > 0) {
    const x = xOf(state.cursor);
    if (x >= GUTTER) { ctx.fillStyle = "#4caf50"; ctx.beginPath(); ctx.moveTo(x - 5, 0); ctx.lineTo(x + 5, 0); ctx.lineTo(x, 9); ctx.fill(); }
  }
}

function spanBandRect() {
  if (!state.span && !state.band) return null;
  const [start, stop] = state.span || [0, pieceSteps()];
  const [low, high] = state.band || [0, PITCHES - 1];
  return stop > start ? [start, stop, low, high] : null;
}

function regionRects() {
  const rects = [];
  const main = spanBandRect();
  if (main) rects.push(main);
  for (const [p, steps] of state.cells) {           // rows of painted cells as runs
    const sorted = [...steps].sort((a, b) => a - b);
    let i = 0;
    while (i < sorted.length) {
      let j = i;
      while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
      rects.push([sorted[i], sorted[j] + 1, p, p]);
      i = j + 1;
    }
  }
  return rects;
}

function drawRegion() {
  const rects = regionRects();
  if (!rects.length) return;
  ctx.fillStyle = state.busy ? `rgba(63,167,255,${0.18 + 0.12 * Math.sin(performance.now() / 150)})` : "rgba(255,255,255,0.16)";
  ctx.strokeStyle = "rgba(120,200,255,0.9)";
  for (const [start, stop, low, high] of rects) {
    const x = xOf(start), y = yOf(high), wd = (stop - start) * stepPx(), ht = (high - low + 1) * pitchPx();
    ctx.fillRect(x, y, wd, ht);
    if (rects.length < 64) ctx.strokeRect(x + 0.5, y + 0.5, wd - 1, ht - 1);
  }
}

function drawPlayhead() {
  if (!state.play) return;
  const x = xOf(playStep());
  ctx.fillStyle = "#ff5252";
  ctx.fillRect(Math.round(x), 0, 2, canvas.height);
}

// ------------------------------------------------------------------ selection tools

function tool() { return document.querySelector("input[name=tool]:checked").value; }

function paintCells(cell) {
  for (let p = cell.pitch - BRUSH_RADIUS; p <= cell.pitch + BRUSH_RADIUS; p++) {
    if (p < 0 || p >= PITCHES) continue;
    if (!state.cells.has(p)) state.cells.set(p, new Set());
    state.cells.get(p).add(cell.step);
  }
}

function addRect(start, stop, low, high) {
  for (let p = low; p <= high; p++) {
    if (!state.cells.has(p)) state.cells.set(p, new Set());
    const row = state.cells.get(p);
    for (let s = start; s < stop; s++) row.add(s);
  }
}

function snapped(a, b) {
  const unit = snapUnit();
  const lo = Math.min(a, b), hi = Math.max(a, b);
  return [Math.floor(lo / unit) * unit, Math.min(viewSteps(), Math.floor(hi / unit) * unit + unit)];
}

function onPointerDown(event) {
  if (event.button !== 0 || state.busy) return;
  const cell = cellAt(event.clientX, event.clientY);
  if (cell.inRuler) {                                  // the ruler moves the playback cursor
    state.cursor = Math.floor(cell.step / snapUnit()) * snapUnit();
    if (state.play) startPlayback(state.cursor);
    draw();
    return;
  }
  if (cell.inGutter) return;
  canvas.setPointerCapture(event.pointerId);
  state.drag = { tool: tool(), from: cell, to: cell, last: cell };
  if (state.drag.tool === "brush") paintCells(cell);
  updateDrag();
}

function onPointerMove(event) {
  if (!state.drag) return;
  const cell = cellAt(event.clientX, event.clientY);
  if (state.drag.tool === "brush") {                   // fill the gaps of a fast stroke
    const a = state.drag.last, n = Math.max(Math.abs(cell.step - a.step), Math.abs(cell.pitch - a.pitch), 1);
    for (let i = 1; i <= n; i++) {
      paintCells({ step: Math.round(a.step + (cell.step - a.step) * i / n), pitch: Math.round(a.pitch + (cell.pitch - a.pitch) * i / n) });
    }
    state.drag.last = cell;
  }
  state.drag.to = cell;
  updateDrag();
}

function updateDrag() {
  const d = state.drag;
  if (d.tool === "span") state.span = snapped(d.from.step, d.to.step);
  if (d.tool === "band") state.band = [Math.min(d.from.pitch, d.to.pitch), Math.max(d.from.pitch, d.to.pitch)];
  if (d.tool === "rect") d.rect = [...snapped(d.from.step, d.to.step), Math.min(d.from.pitch, d.to.pitch), Math.max(d.from.pitch, d.to.pitch)];
  layoutIfGrown();
  draw();
  if (d.rect) {                                          // the rectangle being dragged
    const [start, stop, low, high] = d.rect;
    ctx.strokeStyle = "#fff";
    ctx.strokeRect(xOf(start) + 0.5, yOf(high) + 0.5, (stop - start) * stepPx() - 1, (high - low + 1) * pitchPx() - 1);
  }
  updateGenerateLabel();
}

function onPointerUp() {
  const d = state.drag;
  if (!d) return;
  if (d.rect) addRect(...d.rect);
  state.drag = null;
  draw();
  updateGenerateLabel();
}

function clearRegion() {
  state.span = null; state.band = null; state.cells = new Map();
  draw();
  updateGenerateLabel();
}

let laidOutSteps = 0;
function layoutIfGrown() { if (viewSteps() !== laidOutSteps) { laidOutSteps = viewSteps(); layout(); } }

// ------------------------------------------------------------------ generation

function generationRequest() {
  const rects = regionRects(), steps = pieceSteps(), bar = stepsPerBar();
  const bars = Math.max(1, Math.min(32, parseInt($("bars").value, 10) || 4));
  if (rects.length) {
    const inside = rects.some(([start]) => start < steps);
    return { rects, mode: steps === 0 ? "compose" : inside ? "inpaint" : "continue" };
  }
  return { rects: [[steps, steps + bars * bar, 0, PITCHES - 1]], mode: steps === 0 ? "compose" : "continue" };
}

function updateGenerateLabel() {
  const { mode } = generationRequest(), bars = $("bars").value;
  const text = regionRects().length
    ? { compose: "Compose selection", continue: "Continue into selection", inpaint: "Regenerate region" }[mode]
    : { compose: `Compose ${bars} bars`, continue: `Continue ${bars} bars` }[mode];
  $("generate").textContent = text;
}

function readOptions() {
  const options = {};
  for (const input of document.querySelectorAll("#options input")) {
    const kind = input.dataset.kind, raw = input.value.trim();
    if (kind === "list") options[input.name] = raw.split(/[\s,]+/).filter(Boolean).map(Number);
    else if (kind === "number") options[input.name] = Number(raw);
    else if (kind === "integer") options[input.name] = Math.round(Number(raw));
    else if (kind === "boolean") options[input.name] = raw.toLowerCase() === "true";
    else options[input.name] = raw;
  }
  return options;
}

async function generate() {
  if (state.busy) return;
  ensureAudio();
  stopPlayback();
  const began = performance.now();
  const request = generationRequest();
  state.busy = true;
  $("generate").disabled = true;
  say("Generating…");
  const pulse = setInterval(draw, 60);
  let result;
  try {
    result = await api("/api/generate", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ version: state.current ? state.current.version.id : null, rects: request.rects,
        options: readOptions(), seed: Math.max(0, parseInt($("seed").value, 10) || 0) }),
    });
  } catch (err) {
    say(err.message, true);
    return;
  } finally {
    clearInterval(pulse);
    state.busy = false;
    $("generate").disabled = false;
  }
  state.lastGenerateMs = performance.now() - began;
  $("seed").value = String((parseInt($("seed").value, 10) || 0) + 1);
  const summary = result.version;
  state.versions.push(summary);
  const audioReady = $("autoplay").checked ? loadPreview(summary).catch(() => null) : null;
  await showFrames(result.frames);
  setCurrent({ version: summary, notes: result.notes }, true);  // the region stays: Generate again = another take
  const seconds = (state.lastGenerateMs / 1000).toFixed(2);
  say(`${summary.label}: generated in ${seconds} s (model ${summary.elapsed_s.toFixed(2)} s).`);
  if (audioReady) {
    const region = summary.region || { start: 0, end: summary.steps };
    const clip = (await audioReady) || { buffer: null, start: region.start, end: Math.min(summary.steps, region.end + stepsPerBar()) };
    if (state.current && state.current.version.id === summary.id) {
      startPlayback(region.start, clip);
      state.lastLatencyMs = performance.now() - began + START_DELAY_S * 1000;
      say(`${summary.label}: generated in ${seconds} s, playing ${(state.lastLatencyMs / 1000).toFixed(2)} s after Generate.`);
    }
  }
}

function showFrames(frames) {
  const images = frames.images;
  if (!images.length) return Promise.resolve();
  const per = Math.min(FRAME_MS, MAX_FRAME_TOTAL_MS / images.length);
  return new Promise((resolve) => {
    let i = 0;
    const next = () => {
      if (i >= images.length) { state.frame = null; resolve(); return; }
      const image = new Image();
      image.onload = () => { state.frame = { start: frames.start, image }; draw(); i++; setTimeout(next, per); };
      image.onerror = () => { i++; next(); };
      image.src = images[i];
    };
    next();
  });
}

// ------------------------------------------------------------------ versions and history

function setCurrent(entry, fromGenerate = false) {
  if (state.current && state.current.version.id !== entry.version.id) state.other = state.current.version.id;
  state.current = entry;
  if (!fromGenerate) state.cursor = Math.min(state.cursor, entry.version.steps);
  const id = entry.version.id;
  for (const [kind, el] of [["mid", $("dl-mid")], ["wav", $("dl-wav")], ["png", $("dl-png")]]) {
    el.href = `/api/versions/${encodeURIComponent(id)}/${kind}`;
    el.setAttribute("aria-disabled", "false");
  }
  $("dl-wav").hidden = !state.info.wav;
  renderHistory();
  layoutIfGrown();
  layout();
  updateGenerateLabel();
}

async function showVersion(id) {
  if (!id) return;
  stopPlayback();
  try {
    const entry = await api(`/api/versions/${encodeURIComponent(id)}`);
    setCurrent(entry);
    say(`Version ${id}: ${entry.version.label}.`);
  } catch (err) {
    say(err.message, true);
  }
}

function renderHistory() {
  const list = $("history");
  list.replaceChildren();
  for (const v of state.versions) {
    const item = document.createElement("li");
    item.textContent = `${v.label}`;
    item.title = `version ${v.id}` + (v.elapsed_s != null ? `, model ${v.elapsed_s.toFixed(2)} s` : "");
    item.dataset.id = v.id;
    if (state.current && v.id === state.current.version.id) item.classList.add("current");
    if (v.id === state.other) item.classList.add("other");
    item.addEventListener("click", () => showVersion(v.id));
    list.append(item);
  }
  $("undo").disabled = !(state.current && state.current.version.parent);
  $("ab").disabled = !state.other;
}

function centreOnNotes() {
  const notes = state.current ? state.current.notes : [];
  const mean = notes.length ? notes.reduce((sum, n) => sum + n[0], 0) / notes.length : 60;
  wrap.scrollTop = Math.max(0, RULER + (PITCHES - 1 - mean) * pitchPx() - wrap.clientHeight / 2);
}

async function openFile(file) {
  if (!file) return;
  if (file.size > state.info.limits.max_upload_bytes) {
    say(`${file.name} is too big: at most ${state.info.limits.max_upload_bytes} bytes are accepted.`, true);
    return;
  }
  stopPlayback();
  say(`Opening ${file.name}…`);
  try {
    const entry = await api("/api/open", { method: "POST", body: file,
      headers: { "Content-Type": "application/octet-stream", "X-Filename": file.name.replace(/[^\x20-\x7e]/g, "_") } });
    state.versions.push(entry.version);
    clearRegion();
    state.cursor = 0;
    setCurrent(entry);
    wrap.scrollLeft = 0;
    centreOnNotes();
    draw();
    say(`Opened ${file.name}: ${entry.notes.length} notes, ${entry.version.steps} steps.`);
  } catch (err) {
    say(err.message, true);
  }
}

// ------------------------------------------------------------------ playback

function ensureAudio() {
  if (!audio) {
    audio = new AudioContext();
    const out = audio.createDynamicsCompressor();
    out.connect(audio.destination);
    audio.out = out;
  }
  if (audio.state === "suspended") audio.resume();
  return audio;
}

async function loadAudio(id) {
  if (!state.info.wav || state.audioCache.has(id)) return;
  const response = await fetch(`/api/versions/${encodeURIComponent(id)}/wav`);
  if (!response.ok) throw new Error("the WAV could not be rendered");
  state.audioCache.set(id, await ensureAudio().decodeAudioData(await response.arrayBuffer()));
}

async function loadPreview(summary) {           // the region and a bar after it, rendered by the server meanwhile
  if (!summary.preview) return null;
  const response = await fetch(`/api/versions/${encodeURIComponent(summary.id)}/preview`);
  if (!response.ok) return null;
  const buffer = await ensureAudio().decodeAudioData(await response.arrayBuffer());
  return { buffer, start: summary.preview.start, end: summary.preview.end };
}

function playStep() {
  const p = state.play;
  return p.offsetStep + (audio.currentTime - p.startTime) / p.secondsPerStep;
}

function startPlayback(fromStep, clip = null) {   // clip: play steps [start, end) only, from buffer (else the synth)
  stopPlayback();
  if (!state.current) return;
  const version = state.current.version, spsec = version.seconds_per_step;
  const ac = ensureAudio();
  const from = Math.max(clip ? clip.start : 0, Math.min(fromStep, version.steps));
  const startTime = ac.currentTime + START_DELAY_S;
  const buffer = clip ? clip.buffer : state.audioCache.get(version.id);
  const endStep = clip ? clip.end : version.steps;
  state.play = { sources: [], startTime, offsetStep: from, secondsPerStep: spsec, endStep, synth: null };
  if (buffer) {
    const src = ac.createBufferSource();
    src.buffer = buffer;
    src.connect(ac.out);
    src.start(startTime, (from - (clip ? clip.start : 0)) * spsec);
    state.play.sources.push(src);
  } else {                                            // the in-browser synth, scheduled a little ahead
    const notes = state.current.notes.filter((n) => n[2] > from && n[1] < endStep).sort((a, b) => a[1] - b[1]);
    state.play.synth = { notes, next: 0 };
    scheduleSynth();
    state.play.timer = setInterval(scheduleSynth, SCHEDULE_MS);
  }
  $("play").textContent = "■ Stop";
  requestAnimationFrame(tick);
}

function scheduleSynth() {
  const p = state.play, synth = p.synth, ac = audio;
  const horizon = p.offsetStep + (ac.currentTime + LOOKAHEAD_S - p.startTime) / p.secondsPerStep;
  p.sources = p.sources.filter((src) => src.endTime > ac.currentTime);
  while (synth.next < synth.notes.length && synth.notes[synth.next][1] < horizon) {
    const [pitch, on, off, vel] = synth.notes[synth.next++];
    const t0 = p.startTime + Math.max(0, on - p.offsetStep) * p.secondsPerStep;
    const t1 = p.startTime + (off - p.offsetStep) * p.secondsPerStep;
    const osc = ac.createOscillator(), gain = ac.createGain();
    osc.type = "triangle";
    osc.frequency.value = 440 * Math.pow(2, (pitch - 69) / 12);
    gain.gain.setValueAtTime(0, t0);
    gain.gain.linearRampToValueAtTime(SYNTH_GAIN * vel / 127, t0 + 0.005);
    gain.gain.setTargetAtTime(0, t1, 0.03);
    osc.connect(gain).connect(ac.out);
    osc.start(t0);
    osc.stop(t1 + 0.2);
    osc.endTime = t1 + 0.2;
    p.sources.push(osc);
  }
}

function stopPlayback() {
  if (!state.play) return;
  clearInterval(state.play.timer);
  for (const src of state.play.sources) { try { src.stop(); } catch (e) { /* already stopped */ } }
  state.play = null;
  $("play").textContent = "▶ Play";
  draw();
}

function tick() {
  if (!state.play) return;
  const step = playStep();
  if (step >= state.play.endStep) { stopPlayback(); return; }
  const x = step * stepPx();
  if (x < wrap.scrollLeft || x > wrap.scrollLeft + wrap.clientWidth - GUTTER) wrap.scrollLeft = Math.max(0, x - 40);
  draw();
  requestAnimationFrame(tick);
}

async function togglePlay() {
  if (state.play) { stopPlayback(); return; }
  if (!state.current) { say("Open a MIDI file or generate something first.", true); return; }
  ensureAudio();
  try {
    await loadAudio(state.current.version.id);
  } catch (err) {
    say(err.message + "; playing with the built-in synth instead.", true);
  }
  startPlayback(state.cursor);
}

// ------------------------------------------------------------------ set-up

function buildOptions(options, kinds) {
  const box = $("options");
  box.replaceChildren();
  for (const [name, value] of Object.entries(options || {})) {
    const label = document.createElement("label");
    label.textContent = name.replace(/_/g, " ");
    const input = document.createElement("input");
    input.name = name;
    input.id = `opt-${name}`;
    input.dataset.kind = kinds[name];
    if (Array.isArray(value)) input.value = value.join(" ");
    else {
      if (typeof value === "number") { input.type = "number"; input.step = "any"; }
      input.value = String(value);
    }
    label.htmlFor = input.id;
    box.append(label, input);
  }
}

async function start() {
  state.info = await api("/api/info");
  const model = state.info.model;
  $("model").textContent = model ? `Model: ${model.preset} (${model.family}) from ${model.checkpoint}; grid ${state.info.grid}; audio: ${state.info.wav ? "FluidSynth" : "built-in synth"}.`
    : "No model loaded: start with --checkpoint to generate.";
  if (!model) $("generate").disabled = true;
  buildOptions(model && model.options, model && model.option_kinds);
  for (const el of [$("dl-mid"), $("dl-wav"), $("dl-png")]) el.setAttribute("aria-disabled", "true");
  $("dl-wav").hidden = !state.info.wav;
  state.versions = state.info.versions;
  renderHistory();
  laidOutSteps = viewSteps();
  layout();
  centreOnNotes();
  updateGenerateLabel();
  say(model ? "Open a MIDI file (or drop one here), or press Compose to start from nothing." : "No model loaded: you can open, view and play MIDI.");
}

$("open").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", (e) => { openFile(e.target.files[0]); e.target.value = ""; });
$("new").addEventListener("click", () => {
  stopPlayback(); state.current = null; state.cursor = 0; clearRegion(); renderHistory(); layout();
  for (const el of [$("dl-mid"), $("dl-wav"), $("dl-png")]) el.setAttribute("aria-disabled", "true");
  say("Empty roll: Compose writes new music, or select a span first.");
});
$("clear").addEventListener("click", clearRegion);
$("generate").addEventListener("click", generate);
$("bars").addEventListener("input", updateGenerateLabel);
$("play").addEventListener("click", togglePlay);
$("undo").addEventListener("click", () => state.current && showVersion(state.current.version.parent));
$("ab").addEventListener("click", () => showVersion(state.other));
function zoomTime(delta) {                             // keeps the step in the middle of the view in place
  const middle = (wrap.scrollLeft + (wrap.clientWidth - GUTTER) / 2) / stepPx();
  state.stepZoom = Math.max(0, Math.min(STEP_PX.length - 1, state.stepZoom + delta));
  layout();
  wrap.scrollLeft = Math.max(0, middle * stepPx() - (wrap.clientWidth - GUTTER) / 2);
  draw();
}
$("zoom-in").addEventListener("click", () => zoomTime(1));
$("zoom-out").addEventListener("click", () => zoomTime(-1));
$("pitch-in").addEventListener("click", () => { state.pitchZoom = Math.min(PITCH_PX.length - 1, state.pitchZoom + 1); layout(); centreOnNotes(); });
$("pitch-out").addEventListener("click", () => { state.pitchZoom = Math.max(0, state.pitchZoom - 1); layout(); centreOnNotes(); });
canvas.addEventListener("pointerdown", onPointerDown);
canvas.addEventListener("pointermove", onPointerMove);
canvas.addEventListener("pointerup", onPointerUp);
canvas.addEventListener("pointercancel", onPointerUp);
wrap.addEventListener("scroll", draw);
wrap.addEventListener("wheel", (e) => {
  if (!e.ctrlKey) return;
  e.preventDefault();
  zoomTime(e.deltaY < 0 ? 1 : -1);
}, { passive: false });
window.addEventListener("resize", layout);
window.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
  if (e.key === " ") {                                  // play/stop, not "press the focused button"
    e.preventDefault();
    if (document.activeElement instanceof HTMLButtonElement) document.activeElement.blur();
    togglePlay();
  }
  else if (e.key === "Escape") clearRegion();
  else if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); $("undo").click(); }
  else if (e.key === "b") $("ab").click();
});
for (const name of ["dragenter", "dragover"]) {
  window.addEventListener(name, (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
}
window.addEventListener("dragleave", (e) => { if (!e.relatedTarget) document.body.classList.remove("dragging"); });
window.addEventListener("drop", (e) => {
  e.preventDefault();
  document.body.classList.remove("dragging");
  openFile(e.dataTransfer.files[0]);
});

// for tests and scripts: where a cell is on screen, and the last timings
window.studio = {
  state,
  cellCenter(pitch, step) {
    const box = canvas.getBoundingClientRect();
    return { x: box.left + xOf(step) + stepPx() / 2, y: box.top + yOf(pitch) + pitchPx() / 2 };
  },
  scrollTo(pitch, step) {
    wrap.scrollLeft = Math.max(0, step * stepPx() - 20);
    wrap.scrollTop = Math.max(0, RULER + (PITCHES - 1 - pitch) * pitchPx() - wrap.clientHeight / 2);
    draw();
  },
  regionRects,
};

start().catch((err) => say(err.message, true));
