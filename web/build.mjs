// Builds the web demo into build/web: bundles the page and the engine worker with esbuild, copies the wasm
// builds, the embedded model and the static files, and writes the service worker's precache list.
import { build } from 'esbuild';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = `${root}build/web`;
// --model DIR builds the demo around another default model (same file names)
const { values } = parseArgs({ options: { model: { type: 'string' } } });
const model = values.model ?? `${root}models/doge-mini`;
if (!existsSync(`${root}dist/doge-mt.wasm`)) throw new Error('dist/ is missing: run make wasm first');
if (!existsSync(`${model}/model.safetensors`)) throw new Error(`${model}: no model.safetensors`);

rmSync(out, { recursive: true, force: true });
mkdirSync(`${out}/js`, { recursive: true });
await build({
  entryPoints: { app: `${root}web/app.js`, worker: `${root}js/worker.js` },
  outdir: `${out}/js`,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  external: ['node:*'], // Node-only branches, never taken in a browser
  minify: true,
  sourcemap: true,
  logLevel: 'warning',
});
for (const f of ['index.html', 'style.css', 'manifest.webmanifest']) cpSync(`${root}web/${f}`, `${out}/${f}`);
cpSync(`${root}web/icons`, `${out}/icons`, { recursive: true });
mkdirSync(`${out}/dist`);
for (const f of readdirSync(`${root}dist`)) cpSync(`${root}dist/${f}`, `${out}/dist/${f}`);
const modelFiles = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
mkdirSync(`${out}/models/doge-mini`, { recursive: true });
for (const f of modelFiles) cpSync(`${model}/${f}`, `${out}/models/doge-mini/${f}`);

// Everything the page needs offline; the version changes whenever any of it changes.
const list = (dir) => readdirSync(`${out}/${dir}`).filter((f) => !f.endsWith('.map')).map((f) => `${dir}/${f}`);
const precache = ['./', 'index.html', 'style.css', 'manifest.webmanifest', ...list('icons'), ...list('js'), ...list('dist'),
  ...modelFiles.map((f) => `models/doge-mini/${f}`)];
const hash = createHash('sha256');
for (const f of precache.slice(1)) hash.update(readFileSync(`${out}/${f}`));
const sw = readFileSync(`${root}web/sw.js`, 'utf8')
  .replace("'__VERSION__'", JSON.stringify(hash.digest('hex').slice(0, 12)))
  .replace('__PRECACHE__', JSON.stringify(precache));
writeFileSync(`${out}/sw.js`, sw);
console.log(`web demo built in ${out} (${precache.length} files precached)`);
