// Service worker: keeps the app (shell, engine builds, embedded model) in a versioned cache so the page
// works offline, and stores model files fetched from the hub in Cache Storage ('doge-models') as they
// stream, so a second load does not download them again.
const VERSION = '__VERSION__';
const PRECACHE = __PRECACHE__; // written by web/build.mjs
const SHELL = `doge-app-${VERSION}`;
const MODELS = 'doge-models';

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(SHELL);
    // past the browser's HTTP cache: a host caching files for minutes would fill this version with the last one
    await cache.addAll(PRECACHE.map((url) => new Request(url, { cache: 'reload' })));
    // no skipWaiting: an open tab keeps the page and the engine it loaded with; the new version takes over
    // once every tab of the old one is closed
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key.startsWith('doge-app-') && key !== SHELL) await caches.delete(key);
    await self.clients.claim();
  })());
});

const isModelFile = (url) => /\/resolve\/[^/]+\/[^/]+$/.test(url.pathname);

/** Fetches from the network and stores a copy in `cacheName` while the body streams to the page. A 404 is
 * kept too: it answers the optional-file probes (e.g. model.safetensors.index.json) when offline. */
async function fetchAndStore(request, cacheName) {
  const res = await fetch(request);
  if (res.status === 404) {
    const copy = res.clone();
    caches.open(cacheName).then((c) => c.put(request, copy)).catch(() => {});
    return res;
  }
  if (res.status !== 200 || !res.body) return res;
  const [toPage, toCache] = res.body.tee();
  const headers = new Headers(res.headers);
  const cache = await caches.open(cacheName);
  cache.put(request, new Response(toCache, { status: 200, headers })).catch(() => {}); // quota: keep serving
  return new Response(toPage, { status: 200, statusText: res.statusText, headers });
}

/** Whether a cached hub file is what the hub serves now (a repo's files change: the SmallDoge repos were
 * re-uploaded in another layout): a HEAD request (no CORS preflight) compared by ETag, or by size when the
 * ETag is not readable. A cached 404 is asked again (the file may exist now). With no answer within a few
 * seconds (offline), the cached file is used. */
async function stillCurrent(request, hit) {
  let head;
  try {
    head = await fetch(request.url, { method: 'HEAD', mode: request.mode, credentials: request.credentials, signal: AbortSignal.timeout(5000) });
  } catch {
    return true;
  }
  if (head.status >= 500 || head.status === 429) return true; // the hub is struggling: the cached file will do
  if (hit.status === 404 || head.status === 404) return hit.status === head.status;
  if (!head.ok) return true;
  const [was, now] = [hit.headers.get('etag'), head.headers.get('etag')];
  if (was && now) return was === now;
  return hit.headers.get('content-length') === head.headers.get('content-length');
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET' || request.headers.has('range')) return;
  const url = new URL(request.url);
  if (isModelFile(url)) {
    // online, a cached file is used while the hub still serves it unchanged; offline, whatever is cached
    event.respondWith((async () => {
      const hit = await caches.match(request);
      if (hit && (await stillCurrent(request, hit))) return hit;
      return fetchAndStore(request, MODELS).catch((e) => hit ?? Promise.reject(e));
    })());
    return;
  }
  if (url.origin !== location.origin) return;
  event.respondWith((async () => {
    const hit = await caches.match(request, { ignoreSearch: request.mode === 'navigate' });
    if (hit) return hit;
    try {
      return await fetch(request);
    } catch (e) {
      if (request.mode === 'navigate') {
        const shell = await caches.match('./', { ignoreSearch: true });
        if (shell) return shell;
      }
      // The build wrote the whole embedded model directory: a file it lacks (e.g. the optional
      // model.safetensors.index.json) does not exist, offline or not.
      if (new URL(request.url).pathname.startsWith(new URL('models/', self.registration.scope).pathname)) {
        return new Response('not found', { status: 404 });
      }
      throw e;
    }
  })());
});
