// The chat page: a model picker, settings, and a chat view that streams tokens from the engine worker.
// Everything runs in this browser through the package's own API (js/index.js).
import { loadModel, threadsSupported } from '../js/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const hubHost = params.get('hub') ?? undefined; // tests point this at a local server in the hub layout

// Layouts as known from the hub (doge-legacy.md): only Doge-20M and Doge-40M were re-uploaded in the
// transformers layout; the -Instruct repos keep the original remote-code layout (both run here).
const MODELS = [
  { id: 'embedded', label: 'doge-mini — embedded, works offline (6.8 MB)' },
  { id: 'SmallDoge/Doge-20M', label: 'SmallDoge/Doge-20M — base, 52.5 MB (transformers layout)' },
  { id: 'SmallDoge/Doge-20M-Instruct', label: 'SmallDoge/Doge-20M-Instruct — 52.5 MB (original layout)' },
  { id: 'SmallDoge/Doge-60M-Instruct', label: 'SmallDoge/Doge-60M-Instruct — 218 MB (original layout)' },
  { id: 'SmallDoge/Doge-160M-Instruct', label: 'SmallDoge/Doge-160M-Instruct — 611 MB (original layout)' },
  { id: 'SmallDoge/Doge-320M-Instruct', label: 'SmallDoge/Doge-320M-Instruct — 1.34 GB (original layout)' },
  { id: 'custom', label: 'Custom repo id or URL…' },
  { id: 'folder', label: 'Local folder…' },
];

const SETTINGS = ['temperature', 'top-k', 'top-p', 'min-p', 'repetition-penalty', 'max-new-tokens', 'seed', 'threads', 'weights'];
// The settings a model's generation_config.json gives defaults for; those the user changes keep the user's value.
const MODEL_SETTINGS = ['temperature', 'top-k', 'top-p', 'min-p', 'repetition-penalty', 'max-new-tokens'];
const state = { model: null, source: null, messages: [], abort: null, droppedFiles: null, busy: false, changed: new Set(), loading: null };

// ---- small UI helpers ----------------------------------------------------------------------------------
function showError(e) {
  const el = $('error');
  el.textContent = e ? `${e.code ?? 'ERROR'}: ${e.message ?? e}` : '';
  el.hidden = !e;
}

function setBusy(busy) {
  state.busy = busy;
  // screen readers read the reply once it is complete, not every token as it streams (aria-live region)
  $('messages').setAttribute('aria-busy', String(busy));
  const ready = !!state.model && !busy;
  $('input').disabled = !state.model;
  $('send').disabled = !ready;
  $('stop').disabled = !busy;
  $('load-button').disabled = busy;
}

function addMessage(role, text) {
  const div = document.createElement('div');
  div.className = `message ${role}`;
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  div.append(body);
  if (role === 'assistant') {
    const copy = document.createElement('button');
    copy.className = 'copy';
    copy.type = 'button';
    copy.textContent = 'copy';
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(body.textContent);
        copy.textContent = 'copied';
      } catch {
        getSelection().selectAllChildren(body); // no clipboard permission: select it for Ctrl+C
      }
    });
    div.append(copy);
  }
  $('messages').append(div);
  div.scrollIntoView({ block: 'end' });
  return body;
}

const mb = (n) => (n / 1e6).toFixed(1);

// ---- model picker and loading --------------------------------------------------------------------------
function fillModelSelect() {
  for (const m of MODELS) $('model-select').append(new Option(m.label, m.id));
  const pick = () => {
    $('custom-row').hidden = $('model-select').value !== 'custom';
    $('folder-row').hidden = $('model-select').value !== 'folder';
  };
  $('model-select').addEventListener('change', pick);
  pick();
}

function chosenSource() {
  const id = $('model-select').value;
  if (id === 'embedded') return new URL('models/doge-mini', location.href).href;
  if (id === 'custom') {
    const v = $('custom-model').value.trim();
    if (!v) throw Object.assign(new Error('type a repo id (org/name) or a URL prefix'), { code: 'BAD_ARGUMENT' });
    return v;
  }
  if (id === 'folder') {
    const files = state.droppedFiles ?? [...$('folder-input').files];
    if (!files.length) throw Object.assign(new Error('choose a folder, or drop its files on the page'), { code: 'BAD_ARGUMENT' });
    return files;
  }
  return id;
}

function progressView() {
  const box = $('progress');
  box.textContent = '';
  const rows = new Map();
  const t0 = performance.now();
  return ({ file, loaded, total }) => {
    let row = rows.get(file);
    if (!row) {
      row = document.createElement('div');
      row.className = 'file-progress';
      row.innerHTML = '<div class="label"></div><progress max="1" value="0"></progress>';
      row.querySelector('progress').setAttribute('aria-label', `${file} download`);
      box.append(row);
      rows.set(file, row);
    }
    const secs = Math.max((performance.now() - t0) / 1000, 1e-3);
    const pct = total ? ` (${((loaded / total) * 100).toFixed(0)}%)` : '';
    row.querySelector('.label').textContent = `${file}: ${mb(loaded)}${total ? ` of ${mb(total)}` : ''} MB${pct}, ${mb(loaded / secs)} MB/s`;
    if (total) row.querySelector('progress').value = loaded / total;
  };
}

async function load() {
  showError(null);
  let source;
  try {
    source = chosenSource();
  } catch (e) {
    showError(e);
    return;
  }
  state.loading?.abort(); // a load still running (a second drop) gives way: one engine at a time
  const loading = (state.loading = new AbortController());
  setBusy(true);
  // the page's state for scripts and tests (loading, ready, failed): loading from the click on, not only once
  // the old model is gone, or a script waiting for 'ready' would see the old model's
  $('engine-status').textContent = 'engine: loading…';
  document.body.dataset.engine = 'loading';
  const old = state.model;
  state.model = null;
  await old?.dispose();
  try {
    const threads = Number($('threads').value) || 1;
    state.model = await loadModel(source, {
      threads: threadsSupported() ? threads : 1, weights: $('weights').value, hubHost, onProgress: progressView(), signal: loading.signal,
    });
    state.source = $('model-select').value === 'embedded' ? 'embedded' : typeof source === 'string' ? source : 'folder';
    const info = state.model.info;
    applyModelDefaults();
    newChat();
    $('model-info').textContent = `${info.layout} layout${info.isMoe ? ` (MoE routing ${info.moeRouting})` : ''}, ` +
      `${info.task}, vocabulary ${info.vocabSize}, context ${info.contextLength} tokens, ` +
      `${info.weights} weights (${(info.weightBytes / 1e6).toFixed(1)} MB), ` +
      `${info.hasChatTemplate ? 'has a chat template' : 'no chat template'}; auto mode: ${chatMode()}`;
    $('engine-status').textContent = info.build === 'threads'
      ? `engine: pthreads build, ${info.threads} thread${info.threads > 1 ? 's' : ''}`
      : `engine: single-thread build (${info.threadsReason})`;
    document.body.dataset.engine = 'ready';
  } catch (e) {
    if (loading.signal.aborted) return; // replaced by a newer load, which reports for itself
    $('engine-status').textContent = 'engine: not loaded';
    document.body.dataset.engine = 'failed';
    showError(e);
  } finally {
    if (state.loading === loading) {
      state.loading = null;
      setBusy(false);
    }
  }
}

// ---- settings --------------------------------------------------------------------------------------------
/** The model's defaults, for the settings the user has not changed. */
function applyModelDefaults() {
  const g = state.model?.info.generationConfig ?? {};
  const sampling = g.do_sample === true;
  const defaults = {
    temperature: sampling ? g.temperature ?? 1 : 0, 'top-k': g.top_k ?? 50, 'top-p': g.top_p ?? 1, 'min-p': g.min_p ?? 0,
    'repetition-penalty': g.repetition_penalty ?? 1, 'max-new-tokens': g.max_new_tokens ?? 256,
  };
  for (const k of MODEL_SETTINGS) if (!state.changed.has(k)) $(k).value = defaults[k];
  saveSettings();
}

/** "Defaults from the model": forgets the user's values of the settings the model gives defaults for. */
function resetSettings() {
  state.changed.clear();
  applyModelDefaults();
}

function saveSettings() {
  const s = Object.fromEntries(SETTINGS.map((k) => [k, $(k).value]));
  s.system = $('system').value;
  s.mode = $('mode').value;
  s.changed = [...state.changed];
  localStorage.setItem('doge-settings', JSON.stringify(s));
}

function restoreSettings() {
  const s = JSON.parse(localStorage.getItem('doge-settings') ?? '{}');
  for (const k of SETTINGS) if (s[k] !== undefined) $(k).value = s[k];
  state.changed = new Set((s.changed ?? []).filter((k) => MODEL_SETTINGS.includes(k)));
  if (!$('threads').value) $('threads').value = threadsSupported() ? Math.min(navigator.hardwareConcurrency || 1, 4) : 1;
  $('threads').disabled = !threadsSupported();
  if (s.system) $('system').value = s.system;
  if (s.mode) $('mode').value = s.mode;
}

function generationOptions() {
  const num = (id) => ($(id).value === '' ? undefined : Number($(id).value));
  const opts = {
    temperature: num('temperature'), topK: num('top-k'), topP: num('top-p'), minP: num('min-p'),
    repetitionPenalty: num('repetition-penalty'), maxNewTokens: num('max-new-tokens'), seed: num('seed'),
  };
  return Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
}

// ---- chat ----------------------------------------------------------------------------------------------
/** auto: Instruct models chat with their template; base models (the embedded one too) continue the text. */
function chatMode() {
  const mode = $('mode').value;
  if (mode !== 'auto') return mode;
  if (!state.model?.info.hasChatTemplate || state.source === 'embedded') return 'complete';
  return /instruct/i.test(state.source) || state.source === 'folder' ? 'chat' : 'complete';
}

function newChat() {
  state.abort?.abort(); // the reply still streaming belongs to the old chat: send() drops it
  state.messages = [];
  $('messages').textContent = '';
  $('gen-stats').textContent = '';
  showError(null);
}

async function send() {
  const text = $('input').value;
  if (!state.model || state.busy || !text.trim()) return;
  showError(null);
  $('input').value = '';
  const complete = chatMode() === 'complete';
  let input;
  let body;
  if (complete) {
    body = addMessage('assistant', text);
    input = text;
  } else {
    addMessage('user', text);
    if (!state.messages.length && $('system').value.trim()) state.messages.push({ role: 'system', content: $('system').value.trim() });
    state.messages.push({ role: 'user', content: text });
    input = state.messages;
    body = addMessage('assistant', '');
  }
  const messages = state.messages; // New chat replaces the list: what arrives after that is dropped
  const current = () => state.messages === messages;
  state.abort = new AbortController();
  setBusy(true);
  const t0 = performance.now();
  let count = 0;
  let reply = '';
  try {
    const stream = state.model.generate(input, { ...generationOptions(), signal: state.abort.signal });
    for await (const piece of stream) {
      if (!current()) continue;
      reply += piece.text;
      body.textContent += piece.text;
      if (piece.tokenId !== null) count++;
      $('gen-stats').textContent = `${count} tokens, ${(count / ((performance.now() - t0) / 1000)).toFixed(1)} tok/s`;
      body.parentElement.scrollIntoView({ block: 'end' });
    }
    const { stats } = await stream.result;
    if (current()) $('gen-stats').textContent = `${stats.generatedTokens} tokens, ${stats.tokensPerSecond ? stats.tokensPerSecond.toFixed(1) : '–'} tok/s, ` +
      `prompt ${stats.promptTokens} tokens in ${stats.prefillMs.toFixed(0)} ms, stopped: ${stats.stopReason}`;
  } catch (e) {
    if (current()) showError(e);
  } finally {
    if (!complete && current()) messages.push({ role: 'assistant', content: reply });
    state.abort = null;
    setBusy(false);
  }
}

// ---- cached models (Cache Storage, filled by the service worker) --------------------------------------
async function refreshCacheList() {
  const list = $('cache-list');
  list.textContent = '';
  if (!('caches' in window)) return;
  const cache = await caches.open('doge-models');
  const groups = new Map();
  for (const req of await cache.keys()) {
    const url = new URL(req.url);
    const key = url.href.slice(0, url.href.lastIndexOf('/'));
    const res = await cache.match(req);
    const size = Number(res?.headers.get('content-length')) || 0;
    const g = groups.get(key) ?? { size: 0, requests: [] };
    g.size += size;
    g.requests.push(req);
    groups.set(key, g);
  }
  if (!groups.size) list.innerHTML = '<li class="hint">none</li>';
  for (const [key, g] of groups) {
    const li = document.createElement('li');
    const name = key.replace(/\/resolve\/[^/]+$/, '').replace(/^.*?\/\/[^/]+\//, '');
    li.innerHTML = `<span class="name"></span><button class="secondary">delete</button>`;
    li.querySelector('.name').textContent = `${name} (${mb(g.size)} MB)`;
    li.querySelector('button').addEventListener('click', async () => {
      await Promise.all(g.requests.map((r) => cache.delete(r)));
      refreshCacheList();
    });
    list.append(li);
  }
}

// ---- wiring ----------------------------------------------------------------------------------------------
function wire() {
  $('load-button').addEventListener('click', load);
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    send();
  });
  $('input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      send();
    }
  });
  $('stop').addEventListener('click', () => state.abort?.abort());
  document.addEventListener('keydown', (e) => e.key === 'Escape' && state.abort?.abort()); // Stop from the keyboard
  $('new-chat').addEventListener('click', newChat);
  $('reset-settings').addEventListener('click', resetSettings);
  for (const id of [...SETTINGS, 'system', 'mode']) {
    $(id).addEventListener('change', () => {
      if (MODEL_SETTINGS.includes(id)) state.changed.add(id);
      saveSettings();
    });
  }
  $('cache-refresh').addEventListener('click', refreshCacheList);
  $('folder-input').addEventListener('change', () => (state.droppedFiles = null));
  document.addEventListener('dragover', (e) => {
    e.preventDefault();
    document.body.classList.add('dragging');
  });
  document.addEventListener('dragleave', () => document.body.classList.remove('dragging'));
  document.addEventListener('drop', (e) => {
    document.body.classList.remove('dragging');
    if (!e.dataTransfer.files.length) return; // dragged text: the input box takes it as usual
    e.preventDefault();
    state.droppedFiles = [...e.dataTransfer.files];
    $('model-select').value = 'folder';
    $('model-select').dispatchEvent(new Event('change'));
    load();
  });
  const online = () => ($('offline-status').textContent = navigator.onLine ? '' : 'offline');
  addEventListener('online', online);
  addEventListener('offline', online);
  online();
}

fillModelSelect();
restoreSettings();
wire();
refreshCacheList();
if ('serviceWorker' in navigator && !params.has('nosw')) {
  navigator.serviceWorker.register('sw.js').catch((e) => console.warn('service worker not registered:', e));
}
if (!params.has('noautoload')) load();
