// DrumScribe's page: a live view (WebRTC, falling back to a WebSocket + AudioWorklet) and a
// batch view (upload or YouTube link, progress over server-sent events, downloads).
// Plain ES module, no build step. A finished score opens in the viewer (score-view.js).

import { openScore, score } from './score-view.js';

const API = '/api/v1';
const FORMATS = ['musicxml', 'pdf', 'midi'];
const RTC_CONNECT_TIMEOUT_MS = 6000;
const params = new URLSearchParams(location.search);

const $ = (selector, root = document) => root.querySelector(selector);

// ---------------------------------------------------------------------------------------
// Words for musicians
// ---------------------------------------------------------------------------------------

const MIC_ERRORS = {
  NotAllowedError: 'The microphone is blocked for this page. Allow it in your browser (the icon next to the address), then press Start again.',
  SecurityError: 'The browser allows the microphone only on a secure page (https or localhost).',
  NotFoundError: 'No microphone was found. Plug one in (or pick one in your system settings) and press Start again.',
  NotReadableError: 'The microphone is busy or not working. Close other apps that use it and press Start again.',
  OverconstrainedError: 'Your microphone cannot record in the way we need. Try another input.',
  AbortError: 'The microphone stopped before we could start. Press Start again.',
};

const JOB_ERRORS = {
  unsupported_media: 'That file is not audio or video we can read. Try an MP3, WAV, FLAC or a video file.',
  too_large: 'That file is too big to upload. Try a shorter or compressed version (MP3 or M4A).',
  too_long: 'That recording is too long. Cut it to under 20 minutes and try again.',
  empty: 'That file has no sound in it.',
  silent: 'That recording is silent: we could not hear anything to transcribe.',
  truncated: 'That file seems to be cut off or damaged. Try exporting it again.',
  invalid_samples: 'That file has damaged audio in it. Try exporting it again.',
  host_not_allowed: 'We can only fetch links from YouTube. Paste a youtube.com or youtu.be link, or upload the file.',
  invalid_url: 'That does not look like a web link. Paste the full address, starting with https://',
  invalid_request: 'Paste a YouTube link or choose a file.',
  network: 'We could not reach the server. Check your connection and try again.',
};

// What a live session's error codes mean to someone playing (the server's message is for developers).
const LIVE_ERRORS = {
  busy: 'Too many people are playing right now. Try again in a minute.',
  too_long: 'That was a long session! We stopped recording and are writing the score.',
  too_slow: 'Your audio reached us too slowly, so the session stopped. Check your connection (or close other apps using it) and press Start again.',
  idle: 'We heard nothing from your microphone for a while, so the session stopped. Press Start to play again.',
  invalid_start: 'This page and the server disagree about the audio format. Reload the page and press Start again.',
  recording_failed: 'The server could not save your recording (it may be out of space), so the session stopped. Please try again later.',
  finalize_failed: 'The server could not start writing your score. What you played is kept; it will be listed under Recent once the server is back.',
  too_big: 'The browser sent more audio at once than the server accepts. Reload the page and try again.',
  internal: 'Something went wrong on the server and the session stopped. Press Start to try again.',
  unauthorized: 'This server did not accept your API key (it may have been revoked). Reload the page to enter a valid one.',
  rate_limited: 'Too many sessions were started from your network just now. Wait a minute and press Start again.',
  unavailable: 'The server cannot check your API key right now. Try again in a moment.',
};

// The tempo mark's SMuFL note glyphs in verovio's SVG, as the Unicode notes any text font has.
const SMUFL_NOTES = { '\ueca5': '♩', '\ueca7': '♪', '\uecb7': '.' };

const STAGES = {
  queued: 'Waiting in line…',
  download: 'Fetching the video…',
  decode: 'Reading the audio…',
  separate: 'Separating the drums from the band…',
  detect: 'Listening for drum hits…',
  score: 'Writing the score…',
};

function jobErrorText(error) {
  if (!error) return 'Something went wrong. Please try again.';
  if (typeof error === 'string') {
    return `That did not work: ${error.replace(/^[a-z_]+: /, '')}`;
  }
  return JOB_ERRORS[error.code] || error.message || 'Something went wrong. Please try again.';
}

// ---------------------------------------------------------------------------------------
// Live view
// ---------------------------------------------------------------------------------------

const live = {
  section: $('#live'),
  start: $('#live-start'),
  stop: $('#live-stop'),
  status: $('#live-status'),
  level: $('#level'),
  hitCount: $('#hit-count'),
  tempo: $('#tempo'),
  latency: $('#latency'),
  transport: $('#transport'),
  notationBox: $('#live-notation-box'),
  notation: $('#live-notation'),
  result: $('#live-result'),
};

// What tests and curious people can read: window.drumscribe.live (and .score, the viewer's)
const state = {
  transport: null, sessionId: null, hits: 0, latencies: [], final: null, t0: null, error: null, notationTempo: null,
};
window.drumscribe = { live: state, score };

let session = null; // the running session's resources

function say(text, kind = 'info') {
  live.status.textContent = text;
  live.status.dataset.kind = kind;
}

function resetLive() {
  Object.assign(state, {
    transport: null, sessionId: null, hits: 0, latencies: [], final: null, t0: null, error: null, notationTempo: null,
  });
  live.hitCount.textContent = '0';
  live.tempo.textContent = '–';
  live.latency.textContent = '–';
  live.transport.textContent = '–';
  for (const lane of document.querySelectorAll('.lane')) $('.count', lane).textContent = '0';
  live.notationBox.hidden = true;
  live.result.hidden = true;
  delete live.section.dataset.sessionId;
}

function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

// The tempo mark the notation shows ("♩ = 111"), so the Tempo box says the same; null if none.
// String work, not DOMParser: parsing the SVG's <style> in this page would break its CSP.
function notationTempo(svg) {
  const mark = /class="tempo">([\s\S]*?)<\/g>/.exec(svg);
  if (!mark) return null;
  const text = [...mark[1].replace(/<[^>]*>/g, '')].map((c) => SMUFL_NOTES[c] ?? c).join('').replace(/\s+/g, ' ').trim();
  return /=\s*\d/.test(text) ? text : null;
}

// Room left of the staff: verovio fits the picture to its own text widths, so the part's
// name ("Drumset") is cut off wherever the browser's serif font is wider than its estimate.
const LABEL_ROOM_PX = 40;

function withLabelRoom(svg) {
  const size = /^\s*<svg\b[^>]*?\swidth="([\d.]+)px" height="([\d.]+)px"/.exec(svg);
  if (!size) return svg;
  const [, width, height] = size;
  return svg
    .replace(`width="${width}px"`, `width="${Number(width) + LABEL_ROOM_PX}px"`)
    .replace('<svg class="definition-scale"',
      `<svg x="${LABEL_ROOM_PX}" width="${width}" height="${height}" class="definition-scale"`);
}

function showNotation(svg) {
  const tempo = notationTempo(svg);
  if (tempo) {
    state.notationTempo = tempo;
    live.tempo.textContent = tempo;
  }
  const url = URL.createObjectURL(new Blob([withLabelRoom(svg)], { type: 'image/svg+xml' }));
  const old = live.notation.src;
  live.notation.src = url;
  if (old.startsWith('blob:')) URL.revokeObjectURL(old);
  live.notationBox.hidden = false;
}

function flash(family) {
  const lane = document.querySelector(`.lane[data-family="${family}"]`);
  if (!lane) return;
  const count = $('.count', lane);
  count.textContent = String(Number(count.textContent) + 1);
  lane.classList.remove('lit');
  void lane.offsetWidth; // restart the animation
  lane.classList.add('lit');
}

function showDownloads(container, downloads) {
  for (const fmt of FORMATS) {
    const link = $(`a[data-format="${fmt}"]`, container);
    if (downloads && downloads[fmt]) {
      link.href = downloads[fmt];
      link.parentElement.hidden = false;
    } else {
      link.removeAttribute('href');
      link.parentElement.hidden = true;
    }
  }
  container.hidden = false;
}

// One message from the server, with the time it arrived (performance.now()).
function onMessage(message, arrived) {
  switch (message.type) {
    case 'ready':
      state.sessionId = message.session_id;
      live.section.dataset.sessionId = message.session_id;
      if (state.t0 === null) state.t0 = arrived;
      say('Listening — play!');
      break;
    case 'hits':
      for (const hit of message.hits) {
        state.hits += 1;
        flash(hit.family);
        if (state.t0 !== null) state.latencies.push(arrived - (state.t0 + hit.t * 1000));
      }
      live.hitCount.textContent = String(state.hits);
      if (state.latencies.length) {
        live.latency.textContent = `${Math.round(median(state.latencies))} ms`;
        live.latency.dataset.ms = String(median(state.latencies));
      }
      break;
    case 'tempo': // until the notation's tempo mark is there: then the box shows what it shows
      if (!state.notationTempo) live.tempo.textContent = `♩ = ${Math.round(message.bpm)}`;
      break;
    case 'notation':
      showNotation(message.svg);
      break;
    case 'final':
      state.final = message;
      finishLive(message);
      break;
    case 'error': {
      state.error = message;
      const text = LIVE_ERRORS[message.code] || `The session stopped: ${message.message}`;
      say(text, 'error');
      if (message.code === 'too_long') break; // the server goes on to the score and `final`
      endLive(false);
      // The server scores what it heard whatever ended the session: show it when it is there.
      if (state.sessionId && state.hits > 0) awaitScore(`${text} What you played so far is being scored…`);
      break;
    }
    default:
      break;
  }
}

function finishLive(final) {
  live.hitCount.textContent = String(state.hits);
  if (final.status === 'succeeded') {
    say(`Done — ${final.hits_total} hits. Your score is below.`, 'success');
    showDownloads(live.result, final.downloads);
    openScore(final.job_id);
  } else if (final.status === 'empty') {
    say('We did not hear anything. Check the input level and try again.', 'error');
  } else {
    say(`The score could not be made${final.error ? `: ${final.error}` : ''}.`, 'error');
  }
  live.section.dataset.state = 'done';
  endLive(true);
  loadRecent();
}

function endLive(done) {
  if (!session) return;
  const s = session;
  session = null;
  for (const track of s.stream ? s.stream.getTracks() : []) track.stop();
  if (s.raf) cancelAnimationFrame(s.raf);
  if (s.context) s.context.close().catch(() => {});
  if (s.pc) s.pc.close();
  if (s.ws && s.ws.readyState <= WebSocket.OPEN) s.ws.close();
  live.level.value = 0;
  live.start.disabled = false;
  live.stop.disabled = true;
  if (!done) live.section.dataset.state = 'idle';
}

// The connection went away before `final`: the server scores what it got all the same,
// so follow the session by its id until the score is there.
async function dropped() {
  endLive(false);
  if (!state.sessionId) {
    say('The connection to the server dropped. Press Start to try again.', 'error');
    return;
  }
  awaitScore('The connection dropped. What you played so far is being scored…');
}

// Follow an ended session by its id until its score is there (or two minutes have passed).
async function awaitScore(text) {
  const id = state.sessionId;
  say(text, 'error');
  live.section.dataset.state = 'finishing';
  for (let attempt = 0; attempt < 120; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if (session || state.sessionId !== id) return; // a new session started meanwhile
    const found = await fetch(`${API}/sessions/${id}`).then((r) => (r.ok ? r.json() : null)).catch(() => null);
    if (found && found.job && ['succeeded', 'failed', 'cancelled'].includes(found.status)) {
      finishLive({ type: 'final', session_id: id, job_id: found.job_id, status: found.status,
        hits_total: state.hits, downloads: found.downloads, error: found.job.error });
      return;
    }
  }
  say(`Your score will be listed under Recent when it is ready (session ${id}).`, 'error');
  live.section.dataset.state = 'idle';
  loadRecent();
}

function meter(context, stream) {
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  context.createMediaStreamSource(stream).connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  let peak = 0;
  const tick = () => {
    if (!session) return;
    analyser.getFloatTimeDomainData(data);
    let max = 0;
    for (const v of data) max = Math.max(max, Math.abs(v));
    peak = Math.max(max, peak * 0.9);
    live.level.value = Math.min(1, peak);
    session.raf = requestAnimationFrame(tick);
  };
  session.raf = requestAnimationFrame(tick);
}

function timeout(ms, what) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} timed out`)), ms));
}

async function startWebRtc(stream) {
  const config = await fetch(`${API}/rtc/config`).then((r) => r.json()).catch(() => ({ ice_servers: [] }));
  const pc = new RTCPeerConnection({ iceServers: config.ice_servers || [] });
  session.pc = pc;
  for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
  const channel = pc.createDataChannel('events');
  session.channel = channel;
  channel.onmessage = (event) => onMessage(JSON.parse(event.data), performance.now());
  const connected = new Promise((resolve, reject) => {
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected') {
        // The browser sends audio from here on: its first sample is the session's t = 0.
        if (state.t0 === null) state.t0 = performance.now();
        resolve();
      } else if (pc.connectionState === 'failed') {
        reject(new Error('WebRTC failed'));
      }
    });
  });
  const opened = new Promise((resolve) => { channel.onopen = resolve; });
  await pc.setLocalDescription(await pc.createOffer());
  await Promise.race([
    new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') resolve();
      pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
    }),
    new Promise((resolve) => setTimeout(resolve, 2000)), // enough candidates by now
  ]);
  const response = await fetch(`${API}/rtc/offer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
  });
  if (!response.ok) throw new Error(`the server refused the offer (${response.status})`);
  await pc.setRemoteDescription(await response.json());
  await Promise.race([Promise.all([connected, opened]), timeout(RTC_CONNECT_TIMEOUT_MS, 'WebRTC')]);
  pc.addEventListener('connectionstatechange', () => {
    if (!session || session.pc !== pc || state.final) return;
    if (pc.connectionState === 'disconnected') {
      say('The connection is unsteady; trying to keep it…');
    } else if (pc.connectionState === 'connected' && live.section.dataset.state === 'running') {
      say('Listening — play!');
    } else if (pc.connectionState === 'failed') {
      dropped();
    }
  });
  channel.onclose = () => {
    if (session && session.pc === pc && !state.final) dropped();
  };
  session.send = (message) => channel.send(JSON.stringify(message));
}

async function startWebSocket(stream) {
  const context = session.context;
  await context.audioWorklet.addModule('/static/capture-worklet.js');
  const source = context.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(context, 'capture', {
    numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: 'explicit',
    processorOptions: { frames: Math.round(context.sampleRate * 0.02) },
  });
  const mute = context.createGain();
  mute.gain.value = 0;
  source.connect(node).connect(mute).connect(context.destination); // pulled by the destination
  session.node = node;
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}${API}/stream`);
  ws.binaryType = 'arraybuffer';
  session.ws = ws;
  const queued = [];
  let capturing = true;
  node.port.onmessage = (event) => {
    if (!capturing) return;
    if (state.t0 === null) {
      // The first chunk's first sample was captured one chunk before it arrived here.
      state.t0 = performance.now() - (event.data.byteLength / 4 / context.sampleRate) * 1000;
    }
    if (ws.readyState === WebSocket.OPEN) ws.send(event.data);
    else queued.push(event.data);
  };
  ws.onmessage = (event) => onMessage(JSON.parse(event.data), performance.now());
  ws.onclose = () => {
    if (session && session.ws === ws && !state.final && !state.error) dropped();
  };
  await Promise.race([
    new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('WebSocket failed')); }),
    timeout(8000, 'WebSocket'),
  ]);
  ws.send(JSON.stringify({ type: 'start', sample_rate: context.sampleRate, channels: 1, encoding: 'f32le' }));
  for (const chunk of queued.splice(0)) ws.send(chunk);
  session.send = (message) => {
    capturing = false;
    source.disconnect();
    ws.send(JSON.stringify(message));
  };
}

async function startLive() {
  if (session) return;
  resetLive();
  live.start.disabled = true;
  live.section.dataset.state = 'starting';
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    say(MIC_ERRORS.SecurityError, 'error');
    live.start.disabled = false;
    return;
  }
  say('Asking for your microphone…');
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
    });
  } catch (error) {
    say(MIC_ERRORS[error.name] || `The microphone could not be opened (${error.message}).`, 'error');
    live.start.disabled = false;
    live.section.dataset.state = 'idle';
    return;
  }
  session = { stream };
  session.context = new AudioContext();
  meter(session.context, stream);
  let transport = params.get('transport') === 'websocket' || !window.RTCPeerConnection ? 'websocket' : 'webrtc';
  say('Connecting…');
  if (transport === 'webrtc') {
    try {
      await startWebRtc(stream);
    } catch (error) {
      console.warn('WebRTC did not connect, using the WebSocket instead:', error);
      if (session && session.pc) session.pc.close();
      if (!session) return;
      session.pc = null;
      state.t0 = null;
      transport = 'websocket';
    }
  }
  try {
    if (transport === 'websocket') await startWebSocket(stream);
  } catch (error) {
    say('We could not connect to the server. Check your connection and try again.', 'error');
    endLive(false);
    return;
  }
  state.transport = transport;
  live.section.dataset.transport = transport;
  live.transport.textContent = transport === 'webrtc' ? 'WebRTC' : 'WebSocket';
  live.section.dataset.state = 'running';
  live.stop.disabled = false;
  live.stop.focus();
  if (!state.sessionId) say('Listening — play!');
}

function stopLive() {
  if (!session || !session.send) return;
  live.stop.disabled = true;
  live.section.dataset.state = 'finishing';
  say('Writing your score…');
  session.send({ type: 'stop' });
  for (const track of session.stream.getTracks()) track.stop(); // the mic light goes off now
}

live.start.addEventListener('click', startLive);
live.stop.addEventListener('click', stopLive);

// ---------------------------------------------------------------------------------------
// Batch view
// ---------------------------------------------------------------------------------------

const batch = {
  input: $('#upload-input'),
  drop: $('#drop-zone'),
  linkForm: $('#link-form'),
  link: $('#link-input'),
  job: $('#job'),
  title: $('#job-title'),
  progress: $('#job-progress'),
  status: $('#job-status'),
  result: $('#job-result'),
  recent: $('#recent'),
};
let events = null;

function jobStatus(text, status) {
  batch.status.textContent = text;
  batch.status.dataset.status = status;
}

function beginJob(title) {
  if (events) events.close();
  events = null;
  batch.job.hidden = false;
  batch.result.hidden = true;
  batch.title.textContent = title;
  batch.progress.value = 0;
  batch.progress.removeAttribute('value'); // indeterminate until we know
}

function followJob(id) {
  events = new EventSource(`${API}/jobs/${id}/events`);
  events.onmessage = (event) => {
    const job = JSON.parse(event.data);
    showJob(job);
    if (['succeeded', 'failed', 'cancelled'].includes(job.status)) {
      events.close();
      events = null;
      loadRecent();
    }
  };
  events.addEventListener('deleted', () => {
    events.close();
    jobStatus('That job was deleted.', 'deleted');
  });
  events.onerror = () => {
    if (events && events.readyState === EventSource.CLOSED) jobStatus(JOB_ERRORS.network, 'error');
  };
}

function showJob(job) {
  if (job.title) batch.title.textContent = job.title;
  if (job.status === 'succeeded') {
    batch.progress.value = 1;
    jobStatus('Done — your score is ready.', 'succeeded');
    const downloads = Object.fromEntries(FORMATS.map((fmt) => [fmt, `${API}/jobs/${job.id}/download/${fmt}`]));
    showDownloads(batch.result, downloads);
    openScore(job.id);
  } else if (job.status === 'failed') {
    batch.progress.value = 0;
    jobStatus(jobErrorText(job.error), 'failed');
  } else if (job.status === 'cancelled') {
    jobStatus('This job was cancelled.', 'cancelled');
  } else {
    batch.progress.value = job.status === 'queued' ? 0 : job.progress;
    jobStatus(STAGES[job.status === 'queued' ? 'queued' : job.stage] || 'Working…', job.status);
  }
}

function submitJob(body, title, contentType) {
  beginJob(title);
  jobStatus(body instanceof FormData ? 'Uploading…' : 'Sending the link…', 'uploading');
  const xhr = new XMLHttpRequest();
  xhr.open('POST', `${API}/jobs`);
  if (contentType) xhr.setRequestHeader('content-type', contentType);
  xhr.responseType = 'json';
  xhr.upload.onprogress = (event) => {
    if (event.lengthComputable) {
      batch.progress.value = event.loaded / event.total;
      jobStatus(`Uploading… ${Math.round((100 * event.loaded) / event.total)}%`, 'uploading');
    }
  };
  xhr.onload = () => {
    const answer = xhr.response || {};
    if (xhr.status === 202 && answer.id) {
      batch.progress.value = 0;
      jobStatus(STAGES.queued, 'queued');
      followJob(answer.id);
      loadRecent();
    } else {
      batch.progress.value = 0;
      jobStatus(answer.error ? jobErrorText(answer.error) : `The server said no (${xhr.status}).`, 'failed');
    }
  };
  xhr.onerror = () => jobStatus(JOB_ERRORS.network, 'failed');
  xhr.send(body);
}

function uploadFile(file) {
  if (!file) return;
  const form = new FormData();
  form.append('file', file, file.name);
  form.append('title', file.name.replace(/\.[^.]+$/, ''));
  submitJob(form, file.name);
}

batch.input.addEventListener('change', () => uploadFile(batch.input.files[0]));
for (const name of ['dragenter', 'dragover']) {
  batch.drop.addEventListener(name, (event) => { event.preventDefault(); batch.drop.classList.add('over'); });
}
for (const name of ['dragleave', 'drop']) {
  batch.drop.addEventListener(name, () => batch.drop.classList.remove('over'));
}
batch.drop.addEventListener('drop', (event) => {
  event.preventDefault();
  uploadFile(event.dataTransfer.files[0]);
});
batch.linkForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const url = batch.link.value.trim();
  if (!url) { jobStatus(JOB_ERRORS.invalid_request, 'failed'); batch.job.hidden = false; return; }
  submitJob(JSON.stringify({ url }), url, 'application/json');
});

const STATUS_WORDS = { queued: 'waiting', running: 'working', succeeded: 'ready', failed: 'failed', cancelled: 'cancelled' };

async function loadRecent() {
  let jobs;
  try {
    jobs = (await fetch(`${API}/jobs`).then((r) => r.json())).jobs || [];
  } catch {
    return;
  }
  batch.recent.replaceChildren();
  if (!jobs.length) {
    const li = document.createElement('li');
    li.className = 'small';
    li.textContent = 'Nothing yet.';
    batch.recent.append(li);
  }
  for (const job of jobs) {
    const li = document.createElement('li');
    li.dataset.status = job.status;
    const title = document.createElement('span');
    title.className = 'recent-title';
    title.textContent = job.title || 'Untitled';
    const when = document.createElement('span');
    when.className = 'small';
    when.textContent = `${new Date(job.created * 1000).toLocaleString()} · ${STATUS_WORDS[job.status] || job.status}`;
    li.append(title, when);
    if (job.status === 'succeeded') {
      const links = document.createElement('span');
      links.className = 'recent-links';
      const open = document.createElement('button');
      open.type = 'button';
      open.className = 'link';
      open.textContent = 'Open';
      open.setAttribute('aria-label', `Open the score of ${title.textContent}`);
      open.addEventListener('click', () => openScore(job.id));
      links.append(open);
      for (const fmt of FORMATS) {
        const a = document.createElement('a');
        a.href = `${API}/jobs/${job.id}/download/${fmt}`;
        a.textContent = fmt === 'musicxml' ? 'MusicXML' : fmt.toUpperCase();
        a.setAttribute('download', '');
        links.append(a);
      }
      li.append(links);
    }
    batch.recent.append(li);
  }
}

// ---------------------------------------------------------------------------------------
// API key: asked for once when the server wants one (DRUMSCRIBE_AUTH=keys), kept in this
// browser, and sent as the cookie drumscribe_key, which links, server-sent events, images,
// the WebSocket and the WebRTC offer all carry without further code.
// ---------------------------------------------------------------------------------------

const KEY_STORE = 'drumscribe.key';

function keepKey(key) {
  localStorage.setItem(KEY_STORE, key);
  const secure = location.protocol === 'https:' ? '; Secure' : '';
  document.cookie = `drumscribe_key=${encodeURIComponent(key)}; Path=/; SameSite=Strict; Max-Age=31536000${secure}`;
}

async function ensureKey() {
  const config = await fetch(`${API}/config`).then((r) => r.json()).catch(() => ({ auth: 'off' }));
  if (config.auth !== 'keys') return;
  let key = localStorage.getItem(KEY_STORE);
  let message = 'This DrumScribe asks for an API key. Paste the key you were given:';
  for (;;) {
    if (key) {
      keepKey(key);
      const check = await fetch(`${API}/jobs`).catch(() => null);
      if (!check || check.status !== 401) return;
      message = 'That key was not accepted (mistyped, or revoked). Paste a valid API key:';
    }
    key = (window.prompt(message) || '').trim();
    if (!key) return;
  }
}

ensureKey().then(loadRecent);
