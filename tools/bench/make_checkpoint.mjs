// Writes random-weight Doge checkpoints with the dimensions of the released models, for `make bench`.
// They are "plain" (A = 0, residual weights 1): the same math as a Qwen3 block, so the peer runtimes
// (llama.cpp's qwen3 architecture, an ONNX export) run exactly the same model.
//   node tools/bench/make_checkpoint.mjs doge-20m build/bench/models/doge-20m
import { existsSync } from 'node:fs';
import { writeTinyModel } from '../../tests/fixtures.js';

/** Dimensions of the released checkpoints (doge-spec.md 8.1): vocab 32768, head_dim 128, tied head. */
export const DIMS = {
  'doge-20m': { vocab: 32768, hidden: 256, layers: 8, heads: 2, kvHeads: 1, inter: 512 },
  'doge-60m': { vocab: 32768, hidden: 512, layers: 16, heads: 4, kvHeads: 2, inter: 1024 },
};

const [name, out] = process.argv.slice(2);
if (!DIMS[name] || !out) {
  console.error(`usage: make_checkpoint.mjs <${Object.keys(DIMS).join('|')}> <out-dir>`);
  process.exit(2);
}
if (!existsSync(`${out}/model.safetensors`)) {
  writeTinyModel(out, { ...DIMS[name], maxPos: 2048, keepWindow: 2048, plain: true, seed: 20 });
  console.error(`wrote ${out}`);
}
