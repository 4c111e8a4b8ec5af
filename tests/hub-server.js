// A local stand-in for the Hugging Face hub: serves <root>/<org>/<repo>/<file> at
// /<org>/<repo>/resolve/<revision>/<file>, on 127.0.0.1 only.
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { createReadStream, readFileSync, statSync } from 'node:fs';

/** The hash of a file's content (hashed on every request: a file replaced within the filesystem's mtime tick
 * keeps its size and mtime, so neither can tell that it changed). */
const contentTag = (path) => `"${createHash('sha256').update(readFileSync(path)).digest('hex')}"`;

/** @param {string} root @param {{chunkDelayMs?: number}} [opts] chunkDelayMs streams 4 KiB pieces slowly */
export async function startHub(root, { chunkDelayMs = 0 } = {}) {
  const requests = []; // urls
  const log = []; // 'METHOD url'
  const server = createServer((req, res) => {
    requests.push(req.url);
    log.push(`${req.method} ${req.url}`);
    const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/([^/?]+)$/.exec(req.url);
    const path = m && !m.slice(1).some((p) => p === '..') ? `${root}/${m[1]}/${m[2]}/${decodeURIComponent(m[4])}` : null;
    let size = -1;
    let etag;
    try {
      if (path) {
        const st = statSync(path);
        size = st.size;
        etag = contentTag(path); // the content's hash, like the hub's ETag of an LFS file (its sha256)
      }
    } catch {}
    if (size < 0) {
      res.writeHead(404, { 'content-type': 'text/plain', 'access-control-allow-origin': '*' });
      res.end('Entry not found');
      return;
    }
    // like the real hub: readable cross-origin (the demo page fetches it with CORS)
    res.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream', etag,
      'access-control-allow-origin': '*', 'access-control-expose-headers': 'ETag' });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    if (!chunkDelayMs) {
      createReadStream(path).pipe(res);
      return;
    }
    const data = readFileSync(path);
    let off = 0;
    const timer = setInterval(() => {
      if (off >= data.length || res.destroyed) {
        clearInterval(timer);
        res.end();
        return;
      }
      res.write(data.subarray(off, off + 4096));
      off += 4096;
    }, chunkDelayMs);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    log,
    close: () => new Promise((r) => server.close(r)),
  };
}
