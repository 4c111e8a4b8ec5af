#!/usr/bin/env node
/**
 * The doge-wasm command line. Every command runs the wasm core; `--help` on each explains it.
 * Errors: exit code 2 and one line on stderr.
 */
import { parseArgs } from 'node:util';
import { DogeError } from './errors.js';
import { Engine, LOGITS } from './wasm-engine.js';
import { openSource } from './sources.js';
import { streamWeights } from './weights.js';

const COMMON = {
  model: { type: 'string', help: '<dir|url|repo-id>  the model (a HF model directory, URL prefix or hub repo id)' },
  threads: { type: 'string', help: '<N>  worker threads (default 1; N > 1 uses the pthreads build)' },
  build: { type: 'string', help: '<auto|threads|single>  which wasm build to run (default auto)' },
  'hub-host': { type: 'string', help: '<url>  Hugging Face host for repo ids (default https://huggingface.co)' },
  revision: { type: 'string', help: '<rev>  hub revision (default main)' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
};

const COMMANDS = {
  logits: {
    summary: 'run one prefill of token ids and print the logits as JSON',
    usage: 'doge-wasm logits --model <dir> --ids 5,17,42 [--threads N]',
    details:
      'Prints {"shape": [S, V], "logits": [...]} (all positions, row-major) for a causal LM, or\n' +
      '{"shape": [num_labels], "logits": [...]} for a sequence-classification model.',
    options: {
      ...COMMON,
      ids: { type: 'string', help: '<1,2,3>  comma-separated token ids' },
      hash: { type: 'boolean', help: 'also print "weights_hash", a checksum of the loaded weights' },
    },
    run: runLogits,
  },
};

function fail(code, message) {
  throw new DogeError(code, message);
}

function intOption(value, name, min, max) {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) fail('BAD_ARGUMENT', `--${name} must be an integer from ${min} to ${max}, got '${value}'`);
  return n;
}

function parseIds(text) {
  if (!text) fail('BAD_ARGUMENT', '--ids is required (e.g. --ids 5,17,42)');
  const ids = text.split(',').map((t) => t.trim());
  if (ids.some((t) => !/^-?\d+$/.test(t))) fail('BAD_ARGUMENT', `--ids must be comma-separated integers, got '${text}'`);
  return ids.map(Number);
}

/** Loads the model named by the common options into a fresh engine. */
async function loadFromOptions(values) {
  if (!values.model) fail('BAD_ARGUMENT', '--model is required');
  const threads = intOption(values.threads, 'threads', 1, 256) ?? 1;
  const build = values.build ?? 'auto';
  if (!['auto', 'threads', 'single'].includes(build)) fail('BAD_ARGUMENT', `--build must be auto, threads or single, got '${build}'`);
  const source = await openSource(values.model, { hubHost: values['hub-host'], revision: values.revision });
  const configText = await source.readText('config.json');
  if (configText === null) fail('NOT_FOUND', `${source.label}: no config.json`);
  const engine = await Engine.create({ threads, build });
  try {
    const model = await streamWeights(engine, source, configText);
    return { engine, model };
  } catch (e) {
    engine.dispose();
    throw e;
  }
}

async function runLogits(values) {
  const ids = parseIds(values.ids);
  const { engine, model } = await loadFromOptions(values);
  try {
    const session = model.createSession(Math.max(ids.length, model.maxPositionEmbeddings));
    const causal = model.task === 'causal-lm';
    const logits = session.forward(ids, causal ? LOGITS.ALL : LOGITS.LAST);
    const shape = causal ? [ids.length, model.vocabSize] : [model.numLabels];
    const out = { shape, logits: Array.from(logits) };
    if (values.hash) out.weights_hash = model.weightsHash();
    process.stdout.write(JSON.stringify(out) + '\n');
    session.free();
    model.free();
  } finally {
    engine.dispose();
  }
}

function help(name) {
  if (!name) {
    const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`);
    return `usage: doge-wasm <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun 'doge-wasm <command> --help' for a command's options.\n`;
  }
  const c = COMMANDS[name];
  const opts = Object.entries(c.options).map(([k, o]) => `  --${k} ${o.help}`);
  return `usage: ${c.usage}\n\n${c.summary}.\n${c.details ? `\n${c.details}\n` : ''}\noptions:\n${opts.join('\n')}\n`;
}

async function main(argv) {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help(rest[0] in COMMANDS ? rest[0] : undefined));
    return 0;
  }
  const command = COMMANDS[name];
  if (!command) fail('BAD_ARGUMENT', `unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')})`);
  let values;
  try {
    const options = Object.fromEntries(Object.entries(command.options).map(([k, { type, short }]) => [k, short ? { type, short } : { type }]));
    ({ values } = parseArgs({ args: rest, options, allowPositionals: false }));
  } catch (e) {
    fail('BAD_ARGUMENT', e.message);
  }
  if (values.help) {
    process.stdout.write(help(name));
    return 0;
  }
  await command.run(values);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e) => {
    const line = e instanceof DogeError ? `${e.code}: ${e.message}` : `INTERNAL: ${e?.stack ?? e}`;
    process.stderr.write(`doge-wasm: ${line.split('\n')[0]}\n`);
    process.exitCode = 2;
  },
);
