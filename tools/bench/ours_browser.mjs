// doge-wasm in headless Chromium: bundles js/bench.js and the engine worker into a small page, serves it with
// the model over loopback (cross-origin isolated, so the pthreads build can run), and prints the benchmark
// object of `doge-wasm bench --json` with "where": "chromium".
//   node tools/bench/ours_browser.mjs --model build/bench/models/doge-20m [--weights int8] [--threads 2] ...
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { cpSync, mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { serve } from '../../web/serve.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const { values } = parseArgs({
  options: {
    model: { type: 'string' }, weights: { type: 'string', default: 'f32' }, threads: { type: 'string', default: '1' },
    'prompt-tokens': { type: 'string', default: '256' }, 'new-tokens': { type: 'string', default: '128' },
  },
});
if (!values.model) {
  console.error('usage: ours_browser.mjs --model DIR [--weights f32|int8] [--threads N] [--prompt-tokens P] [--new-tokens N]');
  process.exit(2);
}

const site = `${root}build/bench/browser`;
rmSync(site, { recursive: true, force: true });
mkdirSync(`${site}/models`, { recursive: true });
await build({
  entryPoints: { 'bench-page': `${root}tools/bench/browser/bench-page.js`, worker: `${root}js/worker.js` },
  outdir: `${site}/js`, bundle: true, format: 'esm', platform: 'browser', target: 'es2022', external: ['node:*'], logLevel: 'warning',
});
cpSync(`${root}tools/bench/browser/index.html`, `${site}/index.html`);
mkdirSync(`${site}/dist`);
for (const f of readdirSync(`${root}dist`)) cpSync(`${root}dist/${f}`, `${site}/dist/${f}`);
const name = basename(resolve(values.model));
symlinkSync(resolve(values.model), `${site}/models/${name}`);

const server = await serve({ root: site, port: 0 });
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-quic',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  await page.goto(server.url);
  await page.waitForFunction(() => typeof window.dogeBench === 'function');
  const options = {
    weights: values.weights, threads: Number(values.threads),
    promptTokens: Number(values['prompt-tokens']), newTokens: Number(values['new-tokens']),
  };
  const report = await page.evaluate(([url, o]) => window.dogeBench(url, o), [`${server.url}models/${name}/`, options]);
  process.stdout.write(JSON.stringify({ model: name, where: 'chromium', ...report }) + '\n');
} finally {
  await browser.close();
  await server.close();
}
