// Writes the committed seed corpus of the fuzz targets (tests/fuzz/corpus/*).
//   node tests/fuzz/make_seeds.mjs
import { mkdirSync, readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { writeTinyModel } from '../fixtures.js';

const root = fileURLToPath(new URL('corpus/', import.meta.url));
for (const d of ['json', 'config', 'loader']) mkdirSync(`${root}${d}`, { recursive: true });

const tmp = mkdtempSync(`${tmpdir()}/doge-seeds-`);
const config = writeTinyModel(tmp, { vocab: 16, hidden: 8, inter: 16, layers: 1, heads: 2, kvHeads: 1 });
const st = readFileSync(`${tmp}/model.safetensors`);

writeFileSync(`${root}json/object.json`, '{"a": [1, -2.5e3, true, false, null], "s": "x\\n\\u00e9\\ud83d\\ude00"}');
writeFileSync(`${root}json/nested.json`, '[[[{"k": [{}]}]], "", 0.5]');
writeFileSync(`${root}config/tiny.json`, JSON.stringify(config));
writeFileSync(`${root}config/rope_yarn.json`, JSON.stringify({ ...config, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 16 } }));
writeFileSync(`${root}config/moe.json`, JSON.stringify({ ...config, is_moe: true, num_experts: 16, num_experts_per_tok: 2 }));
writeFileSync(`${root}loader/whole.bin`, Buffer.concat([Buffer.from([63]), st]));
writeFileSync(`${root}loader/bytewise.bin`, Buffer.concat([Buffer.from([0]), st]));
writeFileSync(`${root}loader/truncated.bin`, Buffer.concat([Buffer.from([6]), st.subarray(0, st.length - 9)]));
console.log(`seeds written to ${root}`);
