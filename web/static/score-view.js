// The score viewer and player: every page of a finished job's score at the column's full width
// (zoomable), the job's details, and its recording with a cursor over the notes as they sound,
// a bar loop and slow-down for practice. Plain ES module, no build step.

const API = '/api/v1';
const ZOOMS = [0.5, 0.75, 1, 1.25, 1.5, 2, 2.5, 3];
// Narrower than this, the viewer asks for pages half as wide as A4 (a bar or two a line): an A4
// page at a phone's width is too small to read.
const NARROW_PX = 640;
const FORMATS = ['musicxml', 'pdf', 'midi', 'midi_quantized'];
const FEELS = { straight: 'Straight', swing: 'Swing (swung eighths)', shuffle: 'Shuffle (swung eighths)' };
const SVG_NS = 'http://www.w3.org/2000/svg';

const $ = (selector, root = document) => root.querySelector(selector);

const view = {
  section: $('#score'),
  title: $('#score-title'),
  status: $('#score-status'),
  downloads: $('#score-downloads'),
  pages: $('#score-pages'),
  tempo: $('#detail-tempo'),
  metre: $('#detail-metre'),
  feel: $('#detail-feel'),
  separation: $('#detail-separation'),
  model: $('#detail-model'),
  length: $('#detail-length'),
  player: $('#player'),
  audio: $('#player-audio'),
  play: $('#play'),
  seek: $('#seek'),
  time: $('#player-time'),
  speed: $('#speed'),
  speedValue: $('#speed-value'),
  loop: $('#loop'),
  loopFrom: $('#loop-from'),
  loopTo: $('#loop-to'),
  loopA: $('#loop-a'),
  loopB: $('#loop-b'),
  zoomIn: $('#zoom-in'),
  zoomOut: $('#zoom-out'),
  zoomLevel: $('#zoom-level'),
};

// What tests and curious people can read: window.drumscribe.score
export const score = {
  jobId: null, layout: null, pages: 0, bars: [], notes: [], end: 0, zoom: 1,
  note: -1, bar: -1, playing: [], loop: null, cursor: null,
};

let opened = 0; // the newest openScore call: an older one still loading gives way
let cursor = null;
let frame = 0;
let lastSystem = null;
let noteOfId = new Map(); // a note element's id -> its index in score.notes
let barOfId = new Map(); // a measure element's id -> its index in score.bars

function formatTime(seconds) {
  if (!Number.isFinite(seconds)) return '0:00';
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

// The last index whose time is at or before t (-1 before the first).
function indexAt(items, t) {
  let lo = 0;
  let hi = items.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (items[mid].t <= t + 1e-3) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
  }
  return found;
}

function separationText(separation) {
  if (!separation) return 'Not recorded';
  const model = separation.model ? ` (${separation.model})` : '';
  if (separation.applied) return `Drums separated from the band${model}`;
  if (separation.requested === 'off') return 'Off: the recording was transcribed as it is';
  if (separation.available === false) return 'Not separated: unavailable on this server';
  if (separation.full_mix === false) return 'Not needed: the recording is drums alone';
  return 'Not separated';
}

function tempoText(details) {
  if (!details.bpm) return '–';
  return `♩ = ${Math.round(details.bpm)}`;
}

function showDetails(details) {
  view.tempo.textContent = tempoText(details);
  view.tempo.dataset.bpm = String(details.bpm ?? '');
  view.metre.textContent = details.time_signature || '–';
  view.feel.textContent = FEELS[details.feel] || details.feel || '–';
  view.separation.textContent = separationText(details.separation);
  view.separation.title = details.separation?.reason || ''; // why it is unavailable, for the curious
  const model = details.model || {};
  view.model.textContent = model.name ? `${model.name} ${model.version || ''}`.trim() : '–';
  view.length.textContent = details.duration ? formatTime(details.duration) : '–';
}

function showDownloads(jobId) {
  for (const fmt of FORMATS) {
    $(`a[data-format="${fmt}"]`, view.downloads).href = `${API}/jobs/${jobId}/download/${fmt}`;
  }
}

// A page's SVG as an element of this page: no <style> (the page's CSP allows only its own
// stylesheet, which holds verovio's few rules; dropped before parsing, as parsing applies it),
// sized by a viewBox so it scales with the zoom.
function pageElement(text, number, count) {
  const unstyled = text.replace(/<style\b[\s\S]*?<\/style>/g, '');
  const svg = new DOMParser().parseFromString(unstyled, 'image/svg+xml').documentElement;
  if (svg.namespaceURI !== SVG_NS) throw new Error(`page ${number} is not SVG`);
  const width = parseFloat(svg.getAttribute('width'));
  const height = parseFloat(svg.getAttribute('height'));
  if (width && height && !svg.hasAttribute('viewBox')) svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.removeAttribute('width');
  svg.removeAttribute('height');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `Page ${number} of ${count}`);
  const page = document.createElement('div');
  page.className = 'score-page';
  page.dataset.page = String(number);
  page.append(document.importNode(svg, true));
  return page;
}

function say(text, kind = 'info') {
  view.status.textContent = text;
  view.status.dataset.kind = kind;
}

function failed(mine, error) {
  if (mine !== opened) return;
  say(`The score could not be shown: ${error.message}`, 'error');
  view.section.dataset.state = 'error';
}

export async function openScore(jobId) {
  const mine = ++opened;
  view.audio.pause();
  view.audio.removeAttribute('src');
  cursor = null;
  lastSystem = null;
  view.section.hidden = false;
  view.section.dataset.state = 'loading';
  view.section.dataset.jobId = jobId;
  view.pages.replaceChildren();
  view.player.hidden = true;
  const layout = view.pages.clientWidth < NARROW_PX ? 'narrow' : 'a4';
  Object.assign(score, {
    jobId, layout, pages: 0, bars: [], notes: [], end: 0, note: -1, bar: -1, playing: [], loop: null,
  });
  showDownloads(jobId);
  say('Loading the score…');
  view.section.scrollIntoView({ block: 'start' });
  let found;
  try {
    const response = await fetch(`${API}/jobs/${jobId}/preview?layout=${layout}`);
    found = await response.json();
    if (!response.ok) throw new Error(found.error ? found.error.message : `status ${response.status}`);
  } catch (error) {
    failed(mine, error);
    return;
  }
  if (mine !== opened) return;
  view.title.textContent = found.details.title || 'Score';
  showDetails(found.details);
  Object.assign(score, { pages: found.pages, bars: found.bars, notes: found.notes, end: found.end });
  noteOfId = new Map(found.notes.flatMap((note, i) => note.ids.map((id) => [id, i])));
  barOfId = new Map(found.bars.map((bar, i) => [bar.id, i]));
  setupLoopInputs();
  try {
    for (const [i, url] of found.page_urls.entries()) {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`page ${i + 1}: status ${response.status}`);
      const text = await response.text();
      if (mine !== opened) return;
      view.pages.append(pageElement(text, i + 1, found.pages));
    }
  } catch (error) {
    failed(mine, error);
    return;
  }
  cursor = document.createElement('div');
  cursor.className = 'cursor';
  cursor.hidden = true;
  cursor.setAttribute('aria-hidden', 'true');
  if (found.audio) {
    view.audio.src = found.audio;
    view.player.hidden = false;
    say(found.pages > 1 ? `${found.pages} pages. Press Play to hear it with the notes.` : 'Press Play to hear it with the notes.');
  } else {
    say('The recording of this job is not kept, so it cannot be played here.');
  }
  view.section.dataset.pages = String(found.pages);
  view.section.dataset.state = 'ready';
  follow();
}

// --- the cursor ---------------------------------------------------------------------

function systemOf(element) {
  return element.closest('g.system') || element.closest('g.measure') || element;
}

// The x of a note (its notehead's centre) and the top and bottom of its system, in the
// coordinates of its page's box.
function place(noteIndex) {
  const note = score.notes[noteIndex];
  const element = note && note.ids.map((id) => document.getElementById(id)).find(Boolean);
  if (!element) return null;
  const page = element.closest('.score-page');
  const box = page.getBoundingClientRect();
  const head = (element.querySelector('.notehead') || element).getBoundingClientRect();
  const system = systemOf(element);
  const staff = (system.querySelector('.staff') || system).getBoundingClientRect();
  return {
    page, system,
    x: head.left + head.width / 2 - box.left,
    top: staff.top - box.top,
    height: staff.height,
  };
}

function highlight(noteIndex) {
  for (const id of score.playing) document.getElementById(id)?.classList.remove('playing');
  score.playing = noteIndex >= 0 ? [...score.notes[noteIndex].ids] : [];
  for (const id of score.playing) document.getElementById(id)?.classList.add('playing');
}

function moveCursor(t) {
  const i = indexAt(score.notes, t);
  if (i !== score.note) {
    score.note = i;
    highlight(i);
  }
  score.bar = indexAt(score.bars, t);
  view.section.dataset.bar = score.bar >= 0 ? score.bars[score.bar].n : '';
  const here = i >= 0 ? place(i) : null;
  if (!here) {
    cursor.hidden = true;
    score.cursor = null;
    return;
  }
  let { x } = here;
  const next = i + 1 < score.notes.length ? place(i + 1) : null;
  if (next && next.system === here.system && next.x > here.x) {
    const from = score.notes[i].t;
    const span = score.notes[i + 1].t - from;
    if (span > 0) x += (next.x - here.x) * Math.min(1, Math.max(0, (t - from) / span));
  }
  if (cursor.parentElement !== here.page) here.page.append(cursor);
  cursor.hidden = false;
  cursor.style.transform = `translate(${x}px, ${here.top}px)`;
  cursor.style.height = `${here.height}px`;
  score.cursor = { page: Number(here.page.dataset.page), x, top: here.top };
  if (!view.audio.paused) keepInView(here.system);
  lastSystem = here.system;
}

// While it plays: a new system that is not wholly in the window is brought to its middle, and
// on a zoomed page the viewer scrolls sideways to keep the cursor in its left third.
function keepInView(system) {
  if (system !== lastSystem) {
    const box = system.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) system.scrollIntoView({ block: 'center', inline: 'nearest' });
  }
  const at = cursor.getBoundingClientRect();
  const shown = view.pages.getBoundingClientRect();
  if (at.left < shown.left || at.right > shown.right) view.pages.scrollLeft += at.left - (shown.left + shown.width / 3);
}

// --- playing --------------------------------------------------------------------------

// The index of the bar the score numbers ``number`` (a pickup bar is numbered 0); past the
// ends, the first or last bar.
function barIndex(number) {
  const found = score.bars.findIndex((bar) => Number(bar.n) === number);
  if (found >= 0) return found;
  return number < Number(score.bars[0].n) ? 0 : score.bars.length - 1;
}

function loopRange() {
  if (!view.loop.checked || !score.bars.length) return null;
  const first = barIndex(Number(view.loopFrom.value));
  const last = Math.max(first, barIndex(Number(view.loopTo.value)));
  const end = last + 1 < score.bars.length ? score.bars[last + 1].t : score.end;
  return { from: score.bars[first].n, to: score.bars[last].n, start: Math.max(0, score.bars[first].t), end };
}

function keepInLoop() {
  score.loop = loopRange();
  const { loop } = score;
  if (!loop) return;
  const t = view.audio.currentTime;
  if (t >= loop.end || t < loop.start - 0.05) view.audio.currentTime = loop.start;
}

function follow() {
  if (!cursor) return;
  keepInLoop();
  const t = view.audio.currentTime;
  moveCursor(t);
  const duration = Number.isFinite(view.audio.duration) ? view.audio.duration : score.end;
  view.seek.max = String(duration);
  if (document.activeElement !== view.seek) view.seek.value = String(t);
  view.time.textContent = `${formatTime(t)} / ${formatTime(duration)}`;
}

function tick() {
  follow();
  frame = view.audio.paused ? 0 : requestAnimationFrame(tick);
}

function setupLoopInputs() {
  const numbers = score.bars.map((bar) => Number(bar.n));
  for (const input of [view.loopFrom, view.loopTo]) {
    input.min = String(Math.min(...numbers, 1));
    input.max = String(Math.max(...numbers, 1));
  }
  view.loopFrom.value = String(numbers[0] ?? 1);
  view.loopTo.value = String(numbers[Math.min(numbers.length, 4) - 1] ?? 1);
  view.loop.checked = false;
}

function currentBarNumber() {
  const bar = score.bars[Math.max(0, indexAt(score.bars, view.audio.currentTime))];
  return bar ? Number(bar.n) : 1;
}

view.play.addEventListener('click', () => {
  if (view.audio.paused) {
    view.audio.play().catch((error) => say(`The recording cannot be played here: ${error.message}`, 'error'));
  } else {
    view.audio.pause();
  }
});
view.audio.addEventListener('play', () => {
  view.play.textContent = 'Pause';
  view.play.setAttribute('aria-label', 'Pause');
  if (!frame) frame = requestAnimationFrame(tick);
});
view.audio.addEventListener('pause', () => {
  view.play.textContent = 'Play';
  view.play.setAttribute('aria-label', 'Play');
});
view.audio.addEventListener('error', () => {
  if (view.audio.getAttribute('src')) say('Your browser cannot play this recording (its format), but the score is here.', 'error');
});
for (const name of ['timeupdate', 'seeked', 'loadedmetadata', 'ratechange']) view.audio.addEventListener(name, follow);
view.seek.addEventListener('input', () => { view.audio.currentTime = Number(view.seek.value); follow(); });
// Space plays and pauses while the score view is open (not while typing, or on a control,
// where space means what it always does).
document.addEventListener('keydown', (event) => {
  if (event.code !== 'Space' || view.player.hidden || view.section.hidden) return;
  if (event.target.closest('input, button, select, textarea, a, [contenteditable]')) return;
  event.preventDefault();
  view.play.click();
});

function setSpeed() {
  const rate = Number(view.speed.value);
  view.audio.defaultPlaybackRate = rate; // kept when a new recording loads
  view.audio.playbackRate = rate;
  view.audio.preservesPitch = true;
  view.speedValue.textContent = `${Math.round(rate * 100)}%`;
}
view.speed.addEventListener('input', setSpeed);

for (const input of [view.loop, view.loopFrom, view.loopTo]) {
  input.addEventListener('change', () => {
    if (Number(view.loopTo.value) < Number(view.loopFrom.value)) view.loopTo.value = view.loopFrom.value;
    follow();
  });
}
view.loopA.addEventListener('click', () => {
  view.loopFrom.value = String(currentBarNumber());
  if (Number(view.loopTo.value) < Number(view.loopFrom.value)) view.loopTo.value = view.loopFrom.value;
});
view.loopB.addEventListener('click', () => {
  view.loopTo.value = String(Math.max(currentBarNumber(), Number(view.loopFrom.value)));
  view.loop.checked = true;
  follow();
});

// A click on a note plays from it; elsewhere in a bar, from the bar's start.
view.pages.addEventListener('click', (event) => {
  const note = event.target.closest('g.note, g.chord');
  const ids = note ? [note.id, ...[...note.querySelectorAll('g.note')].map((n) => n.id)] : [];
  const index = ids.map((id) => noteOfId.get(id)).find((i) => i !== undefined);
  let t = index !== undefined ? score.notes[index].t : null;
  if (t === null) {
    const bar = barOfId.get(event.target.closest('g.measure')?.id);
    if (bar !== undefined) t = score.bars[bar].t;
  }
  if (t !== null && view.audio.getAttribute('src')) {
    view.audio.currentTime = Math.max(0, t);
    follow();
  }
});

// --- zoom -----------------------------------------------------------------------------

function setZoom(zoom) {
  score.zoom = zoom;
  view.pages.style.setProperty('--zoom', String(zoom));
  view.zoomLevel.textContent = `${Math.round(zoom * 100)}%`;
  view.zoomOut.disabled = zoom <= ZOOMS[0];
  view.zoomIn.disabled = zoom >= ZOOMS[ZOOMS.length - 1];
  if (cursor) follow();
}
view.zoomIn.addEventListener('click', () => setZoom(ZOOMS.find((z) => z > score.zoom) ?? score.zoom));
view.zoomOut.addEventListener('click', () => setZoom([...ZOOMS].reverse().find((z) => z < score.zoom) ?? score.zoom));
window.addEventListener('resize', () => { if (cursor) follow(); });
setZoom(1);
