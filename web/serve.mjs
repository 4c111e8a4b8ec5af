#!/usr/bin/env node
// Serves the built web demo (build/web) on localhost with the COOP/COEP headers that make the page
// cross-origin isolated, so the pthreads build can run.
//   node web/serve.mjs [--port 8080] [--root build/web] [--no-isolation]
import { createServer } from 'node:http';
import { createReadStream, statSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.json': 'application/json', '.webmanifest': 'application/manifest+json', '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.map': 'application/json', '.safetensors': 'application/octet-stream',
};

/** @returns {Promise<{url: string, close: () => Promise<void>}>} */
export async function serve({ root, port = 8080, host = '127.0.0.1', isolation = true }) {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    let file = join(root, path);
    if (!file.startsWith(root)) {
      res.writeHead(403).end();
      return;
    }
    let info;
    try {
      info = statSync(file);
      if (info.isDirectory()) {
        file = join(file, 'index.html');
        info = statSync(file);
      }
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const headers = { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': info.size, 'cache-control': 'no-cache' };
    if (isolation) {
      headers['cross-origin-opener-policy'] = 'same-origin';
      headers['cross-origin-embedder-policy'] = 'require-corp';
      headers['cross-origin-resource-policy'] = 'same-origin';
    }
    res.writeHead(200, headers);
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  await new Promise((r) => server.listen(port, host, r));
  return {
    url: `http://${host}:${server.address().port}/`,
    close: () => new Promise((r) => {
      server.closeAllConnections();
      server.close(r);
    }),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '8080' }, root: { type: 'string' }, 'no-isolation': { type: 'boolean' } } });
  const root = values.root ?? fileURLToPath(new URL('../build/web', import.meta.url));
  const s = await serve({ root, port: Number(values.port), isolation: !values['no-isolation'] });
  console.log(`doge-wasm demo at ${s.url} (${values['no-isolation'] ? 'no COOP/COEP: single-thread build' : 'cross-origin isolated: pthreads build'})`);
}
