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

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET' || request.headers.has('range')) return;
  const url = new URL(request.url);
  if (isModelFile(url)) {
    // a cached 404 answers only offline: the file may have been uploaded since
    event.respondWith(caches.match(request).then((hit) => (hit && hit.status !== 404 ? hit
      : fetchAndStore(request, MODELS).catch((e) => hit ?? Promise.reject(e)))));
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
