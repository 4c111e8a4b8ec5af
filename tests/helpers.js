// Shared helpers for the Node tests: the reference cases, running the CLIs, comparing logits.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CASES_DIR = `${ROOT}build/cases`;
export const NATIVE = process.env.DOGE_NATIVE ?? `${ROOT}build/native/doge-native`; // tests/ can run an ASan build
export const CLI = `${ROOT}js/cli.js`;

const tempDirs = [];
/** A new directory under the system's temp dir (doge-<name>-XXXXXX), removed when the test process exits. */
export function tempDir(name) {
  if (!tempDirs.length) process.once('exit', () => tempDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const dir = mkdtempSync(`${tmpdir()}/doge-${name}-`);
  tempDirs.push(dir);
  return dir;
}

/** A scratch copy of reference case `name` (to break or edit), removed when the test process exits. */
export function caseCopy(name) {
  const dir = tempDir(`case-${name}`);
  cpSync(`${CASES_DIR}/${name}`, dir, { recursive: true });
  return dir;
}

/** The reference cases written by tests/reference/make_cases.py (see `make cases`). */
export function loadCases() {
  const names = JSON.parse(readFileSync(`${CASES_DIR}/index.json`, 'utf8'));
  return names.map((name) => {
    const dir = `${CASES_DIR}/${name}`;
    const c = JSON.parse(readFileSync(`${dir}/case.json`, 'utf8'));
    const read = (f) => {
      const b = readFileSync(`${dir}/${f}`); // may be a view into Node's shared pool
      return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    };
    return {
      ...c,
      dir,
      expected: c.prefill ? read(c.prefill) : null,
      expectedDecode: c.decode ? read(c.decode.file) : null,
    };
  });
}

export function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 30, ...opts });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function runCli(args, opts) {
  return run(process.execPath, [CLI, ...args], opts);
}

/** max |got - ref| / max |ref| */
export function relError(got, ref) {
  assert.equal(got.length, ref.length, 'logits length');
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - ref[i]));
    scale = Math.max(scale, Math.abs(ref[i]));
  }
  return diff / scale;
}

/** The index of the first maximum of each row of width `width` in v. */
export function argmaxRows(v, width) {
  const out = [];
  for (let r = 0; r < v.length / width; r++) {
    let best = 0;
    for (let j = 1; j < width; j++) if (v[r * width + j] > v[r * width + best]) best = j;
    out.push(best);
  }
  return out;
}

/** The parity criterion of the project: relative error <= tol and the same argmax in every row. */
export function assertMatches(got, ref, width, what, tol = 1e-4) {
  const rel = relError(got, ref);
  assert.ok(rel <= tol, `${what}: max|diff|/max|ref| = ${rel.toExponential(2)} > ${tol}`);
  assert.deepEqual(argmaxRows(got, width), argmaxRows(ref, width), `${what}: argmax per row`);
}
