#!/usr/bin/env node
/**
 * The doge-wasm command line, on the package's public API. `doge-wasm <command> --help` explains each.
 * Errors: exit code 2 and one line on stderr, `doge-wasm: CODE: message`.
 */
import { parseArgs } from 'node:util';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DogeError, loadModel, loadModelTokenizer } from './index.js';
import { benchModel } from './bench.js';
import { MOE_ROUTING, WEIGHTS } from './wasm-engine.js';

/** The small model trained by this project and shipped with the package (tools/train.py). */
const EMBEDDED_MODEL = fileURLToPath(new URL('../models/doge-mini', import.meta.url));

const SOURCE_OPTIONS = {
  model: { type: 'string', arg: '<dir|url|repo-id>', help: 'the model: a HF model directory, a URL prefix or a hub repo id (default: the embedded doge-mini)' },
  'hub-host': { type: 'string', arg: '<url>', help: 'host for repo ids (default https://huggingface.co)' },
  revision: { type: 'string', arg: '<rev>', help: 'hub revision (default main)' },
};
const ENGINE_OPTIONS = {
  ...SOURCE_OPTIONS,
  threads: { type: 'string', arg: '<N>', help: 'threads of the engine (default 1)' },
  build: { type: 'string', arg: '<auto|threads|single>', help: 'wasm build: auto picks the pthreads build where SharedArrayBuffer works' },
  'context-length': { type: 'string', arg: '<N>', help: 'KV cache size in tokens (default max_position_embeddings)' },
  'batch-size': { type: 'string', arg: '<N>', help: 'run prompts in pieces of N tokens (default 256; bounds activation memory, same results)' },
  'bounded-cache': { type: 'boolean', help: 'keep the KV cache at --context-length forever (exact; evicts keys the dynamic mask can never pick again)' },
  'moe-routing': { type: 'string', arg: '<hf|legacy_2025_03>', help: 'CDMoE routing of MoE models (default hf)' },
  weights: { type: 'string', arg: '<f32|int8>', help: 'weight format in memory: f32 (default, exact) or int8 (quantized while loading)' },
  verbose: { type: 'boolean', help: 'print the checkpoint layout, MoE routing and engine build on stderr' },
};
const SAMPLING_OPTIONS = {
  'max-new-tokens': { type: 'string', arg: '<N>', help: 'most tokens to generate (default generation_config, else 256)' },
  temperature: { type: 'string', arg: '<T>', help: '0 = greedy (default from generation_config.json)' },
  'top-k': { type: 'string', arg: '<K>', help: 'keep the K most likely tokens (0 = off, default 50)' },
  'top-p': { type: 'string', arg: '<P>', help: 'nucleus sampling, in (0, 1] (default 1)' },
  'min-p': { type: 'string', arg: '<P>', help: 'drop tokens below P x the best probability (default 0)' },
  'repetition-penalty': { type: 'string', arg: '<R>', help: 'penalise tokens already in the context (default 1)' },
  seed: { type: 'string', arg: '<S>', help: 'random seed; the same seed gives the same text' },
  stop: { type: 'string', multiple: true, arg: '<TEXT>', help: 'stop when this text appears (repeatable)' },
  system: { type: 'string', arg: '<TEXT>', help: 'system prompt (chat)' },
};
const HELP = { help: { type: 'boolean', short: 'h', help: 'show this help' } };

const COMMANDS = {
  generate: {
    summary: 'stream a continuation (or a chat reply) to stdout',
    usage: 'doge-wasm generate --model <dir|url|repo-id> (--prompt TEXT | --ids 1,2,3) [--chat] [options]',
    details: 'A progress bar goes to stderr while loading (when stderr is a terminal). --json prints one object\n' +
      '{"ids": [...], "text": "...", "stats": {...}} at the end instead of streaming.',
    options: {
      ...ENGINE_OPTIONS,
      prompt: { type: 'string', arg: '<TEXT>', help: 'the prompt text' },
      ids: { type: 'string', arg: '<1,2,3>', help: 'the prompt as token ids' },
      chat: { type: 'boolean', help: 'wrap the prompt in the chat template as a user message' },
      ...SAMPLING_OPTIONS,
      json: { type: 'boolean', help: 'print one JSON object at the end' },
      ...HELP,
    },
    run: runGenerate,
  },
  chat: {
    summary: 'interactive multi-turn chat in the terminal',
    usage: 'doge-wasm chat --model <dir|url|repo-id> [--system TEXT] [options]',
    details: 'Type a message and press Enter. /reset starts over, /exit (or end of input) quits. When the conversation\n' +
      'outgrows the context, the oldest turns are dropped (the system prompt stays) to leave room for the reply.',
    options: { ...ENGINE_OPTIONS, ...SAMPLING_OPTIONS, ...HELP },
    run: runChat,
  },
  tokenize: {
    summary: 'print the token ids of a text as JSON',
    usage: 'doge-wasm tokenize --model <dir|url|repo-id> (--text TEXT | --text-file F) [--no-special]',
    details: 'Needs only tokenizer.json (and tokenizer_config.json). Prints {"ids": [...]}.\n' +
      'Takes the engine options like every command (checked, but no engine runs, so they change nothing).',
    options: {
      ...ENGINE_OPTIONS,
      text: { type: 'string', arg: '<TEXT>', help: 'the text' },
      'text-file': { type: 'string', arg: '<F>', help: 'read the text from a file' },
      'no-special': { type: 'boolean', help: 'do not add special tokens (e.g. BOS)' },
      ...HELP,
    },
    run: runTokenize,
  },
  bench: {
    summary: 'measure load, prefill and decode speed and peak memory; print one JSON object',
    usage: 'doge-wasm bench --model <dir|url|repo-id> [--threads N] [--prompt-tokens P] [--new-tokens N] [--weights f32|int8] [--json]',
    details: 'Loads the model, prefills P token ids (a fixed prompt), then decodes N tokens greedily (never stopping\n' +
      'at end-of-sequence), then prefills the prompt once more, through the public API. --json prints\n' +
      '{"prefill_tok_s", "prefill_again_tok_s", "decode_tok_s", "ttft_ms",\n' +
      '"load_ms", "load_mb_s", "peak_rss_mb", "threads", "weights", "build", "wasm_memory_mb", "weight_mb",\n' +
      '"kv_cache_mb", ...}; peak_rss_mb is the whole process (Node included), wasm_memory_mb the engine\'s memory.\n' +
      'The context defaults to P + N; with --bounded-cache and a smaller --context-length, N may be any length.',
    options: {
      ...ENGINE_OPTIONS,
      'prompt-tokens': { type: 'string', arg: '<P>', help: 'prompt length (default 256)' },
      'new-tokens': { type: 'string', arg: '<N>', help: 'tokens to decode (default 128)' },
      json: { type: 'boolean', help: 'print one JSON object (default: a readable line)' },
      ...HELP,
    },
    run: runBench,
  },
  logits: {
    summary: 'run one prefill of token ids and print the logits as JSON',
    usage: 'doge-wasm logits --model <dir|url|repo-id> --ids 5,17,42 [--threads N]',
    details: 'Prints {"shape": [S, V], "logits": [...]} (all positions, row-major) for a causal LM, or\n' +
      '{"shape": [num_labels], "logits": [...]} for a sequence-classification model. The context defaults to the\n' +
      'number of ids (with --bounded-cache, which needs more than keep_window_size, to the model\'s default).',
    options: { ...ENGINE_OPTIONS, ids: { type: 'string', arg: '<1,2,3>', help: 'comma-separated token ids' }, ...HELP },
    run: runLogits,
  },
};

function fail(code, message) {
  throw new DogeError(code, message);
}

/** Aborted when the reader of stdout goes away (e.g. `| head`): commands then stop quietly, with exit code 0. */
const stdoutClosed = new AbortController();
process.stdout.on('error', (e) => {
  if (e.code !== 'EPIPE') throw e;
  stdoutClosed.abort();
});

/** Writes to stdout unless its reader is gone. */
function out(text) {
  if (!stdoutClosed.signal.aborted) process.stdout.write(text);
}

/** Prints an error as the one line `doge-wasm: CODE: message` on stderr. */
function printError(e) {
  const line = e instanceof DogeError ? `${e.code}: ${e.message}` : `INTERNAL: ${e?.stack ?? e}`;
  process.stderr.write(`doge-wasm: ${line.split('\n')[0]}\n`);
}

function intOption(values, name, min, max) {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^-?\d+$/.test(v) || n < min || n > max) fail('BAD_ARGUMENT', `--${name} must be an integer from ${min} to ${max}, got '${v}'`);
  return n;
}

function numberOption(values, name) {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) fail('BAD_ARGUMENT', `--${name} must be a number, got '${v}'`);
  return n;
}

function parseIds(text) {
  const ids = text.split(',').map((t) => t.trim());
  if (ids.some((t) => !/^\d+$/.test(t))) fail('BAD_ARGUMENT', `--ids must be comma-separated non-negative integers, got '${text}'`);
  return ids.map(Number);
}

function modelSource(values) {
  if (values.model) return values.model;
  if (!existsSync(`${EMBEDDED_MODEL}/model.safetensors`)) fail('NOT_FOUND', `--model is required: the embedded model is missing (${EMBEDDED_MODEL})`);
  return EMBEDDED_MODEL;
}

/** A one-line progress bar on stderr, only when stderr is a terminal. */
function progressBar() {
  if (!process.stderr.isTTY) return undefined;
  const t0 = Date.now();
  return ({ file, loaded, total }) => {
    const mb = (n) => (n / 1e6).toFixed(1);
    const frac = total ? loaded / total : 0;
    const bar = '#'.repeat(Math.round(frac * 30)).padEnd(30, '.');
    const speed = mb(loaded / Math.max((Date.now() - t0) / 1000, 1e-3));
    process.stderr.write(`\r${file} [${bar}] ${mb(loaded)}${total ? `/${mb(total)}` : ''} MB ${speed} MB/s `);
    if (total && loaded >= total) process.stderr.write('\n');
  };
}

/** The value of option `name`, which must be one of `allowed` when given. */
function oneOf(values, name, allowed) {
  const v = values[name];
  if (v !== undefined && !allowed.includes(v)) fail('BAD_ARGUMENT', `--${name} must be ${allowed.join(' or ')}, got '${v}'`);
  return v;
}

/** The LoadOptions the engine options on the command line ask for. */
function loadOptions(values) {
  const build = values.build ?? 'auto';
  if (!['auto', 'threads', 'single'].includes(build)) fail('BAD_ARGUMENT', `--build must be auto, threads or single, got '${build}'`);
  const threads = intOption(values, 'threads', 1, 256);
  if (build === 'single' && threads > 1) fail('BAD_ARGUMENT', `--threads ${threads} needs the threads build: --build single runs one thread`);
  const opts = {
    threads,
    build,
    contextLength: intOption(values, 'context-length', 1, 1 << 24),
    boundedCache: values['bounded-cache'],
    batchSize: intOption(values, 'batch-size', 1, 1 << 24),
    moeRouting: oneOf(values, 'moe-routing', MOE_ROUTING),
    weights: oneOf(values, 'weights', WEIGHTS),
    hubHost: values['hub-host'],
    revision: values.revision,
    onProgress: progressBar(),
  };
  return Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
}

async function load(values) {
  const model = await loadModel(modelSource(values), loadOptions(values));
  if (values.verbose) {
    const i = model.info;
    process.stderr.write(`model: ${i.layout} layout${i.isMoe ? `, MoE routing ${i.moeRouting}` : ''}, ${i.task}, vocabulary ${i.vocabSize}; ` +
      `engine: ${i.build} build, ${i.threads} thread${i.threads > 1 ? 's' : ''} (${i.threadsReason}); ${i.weights} weights\n`);
  }
  return model;
}

function samplingOptions(values) {
  const opts = {
    maxNewTokens: intOption(values, 'max-new-tokens', 1, 1 << 24),
    temperature: numberOption(values, 'temperature'),
    topK: intOption(values, 'top-k', 0, 1 << 24),
    topP: numberOption(values, 'top-p'),
    minP: numberOption(values, 'min-p'),
    repetitionPenalty: numberOption(values, 'repetition-penalty'),
    seed: intOption(values, 'seed', 0, Number.MAX_SAFE_INTEGER),
    stop: values.stop,
  };
  return Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined));
}

function statsLine(stats) {
  const rate = stats.tokensPerSecond ? `${stats.tokensPerSecond.toFixed(1)} tok/s` : 'n/a';
  return `[${stats.generatedTokens} tokens, ${rate}, prefill ${stats.promptTokens} tokens in ${stats.prefillMs.toFixed(0)} ms, ` +
    `stop: ${stats.stopReason}, ${stats.build} build, ${stats.threads} thread${stats.threads > 1 ? 's' : ''}]`;
}

/**
 * Runs a generation, streaming its text to stdout unless `quiet`. It ends at once when stdout's reader goes away.
 * @param {(signal: AbortSignal) => import('./index.js').GenerationStream} start
 * @param {boolean} [quiet]
 * @returns {Promise<import('./index.js').GenerationResult|null>} null when stdout was closed
 */
async function streamToStdout(start, quiet) {
  if (stdoutClosed.signal.aborted) return null; // the reader went away between generations
  const generation = new AbortController(); // one per generation: each stream keeps a listener on its signal
  const abort = () => generation.abort();
  stdoutClosed.signal.addEventListener('abort', abort);
  try {
    const stream = start(generation.signal);
    for await (const piece of stream) if (!quiet) out(piece.text);
    const result = await stream.result;
    return stdoutClosed.signal.aborted ? null : result;
  } finally {
    stdoutClosed.signal.removeEventListener('abort', abort);
  }
}

async function runGenerate(values) {
  if ((values.prompt === undefined) === (values.ids === undefined)) fail('BAD_ARGUMENT', 'give exactly one of --prompt and --ids');
  if (values.chat && values.ids !== undefined) fail('BAD_ARGUMENT', '--chat takes --prompt, not --ids');
  if (values.system !== undefined && !values.chat) fail('BAD_ARGUMENT', '--system needs --chat (or the chat command)');
  const ids = values.ids !== undefined ? parseIds(values.ids) : undefined;
  const opts = samplingOptions(values);
  const model = await load(values);
  try {
    let input = ids ?? values.prompt;
    if (values.chat) input = [...(values.system ? [{ role: 'system', content: values.system }] : []), { role: 'user', content: values.prompt }];
    const result = await streamToStdout((signal) => model.generate(input, { ...opts, signal }), values.json);
    if (!result) return;
    if (values.json) out(JSON.stringify({ ids: result.ids, text: result.text, stats: result.stats }) + '\n');
    else {
      out('\n');
      process.stderr.write(statsLine(result.stats) + '\n');
    }
  } finally {
    await model.dispose();
  }
}

/** The number of tokens of the prompt the chat template makes of messages (what model.chat() prefills). */
async function chatTokens(model, messages) {
  return (await model.tokenize(await model.applyChatTemplate(messages), { addSpecialTokens: false })).length;
}

/**
 * Makes a chat fit the context before a reply, the way llama.cpp's and Ollama's chats do: drops the oldest
 * turns (a user message and its reply; the first `keep` messages, the system prompt, stay) until the prompt
 * leaves `room` tokens for the reply or only the last user message is left. Prints a note when it drops turns,
 * and an error line when even the last message does not fit (the session goes on).
 * @param {import('./index.js').DogeModel} model
 * @param {{role: string, content: string}[]} messages trimmed in place when the prompt fits, else left whole
 * @param {number} keep
 * @param {number} room tokens wanted for the reply
 * @returns {Promise<boolean>} whether the prompt fits
 */
async function fitChat(model, messages, keep, room) {
  const { contextLength, boundedCache } = model.info;
  if (boundedCache) return true; // no length limit
  const trimmed = [...messages]; // the history stays whole if even the last message cannot fit
  let tokens = await chatTokens(model, trimmed);
  let dropped = 0;
  for (; tokens + room > contextLength && trimmed.length - keep > 1; dropped++) {
    trimmed.splice(keep, 2);
    tokens = await chatTokens(model, trimmed);
  }
  if (tokens >= contextLength) {
    printError(new DogeError('CONTEXT_OVERFLOW', `this message${keep ? ' with the system prompt' : ''} is a prompt of ${tokens} tokens; ` +
      `the context holds ${contextLength} (raise --context-length)`));
    return false;
  }
  if (dropped) process.stderr.write(`(dropped the oldest ${dropped} turn${dropped > 1 ? 's' : ''} to fit the context of ${contextLength} tokens)\n`);
  messages.splice(0, messages.length, ...trimmed);
  return true;
}

async function runChat(values) {
  const opts = samplingOptions(values);
  const model = await load(values);
  if (!model.info.hasChatTemplate) {
    await model.dispose();
    fail('NO_CHAT_TEMPLATE', `${values.model}: tokenizer_config.json has no chat_template`);
  }
  const system = values.system ? [{ role: 'system', content: values.system }] : [];
  let messages = [...system];
  const room = opts.maxNewTokens ?? model.info.generationConfig?.max_new_tokens ?? 256;
  const rl = createInterface({ input: process.stdin, terminal: process.stdin.isTTY });
  const ask = () => process.stdout.isTTY && out('> ');
  process.stderr.write('Chat with the model. /reset starts over, /exit quits.\n');
  ask();
  try {
    for await (const line of rl) {
      const text = line.trim();
      if (text === '/exit') break;
      if (text === '/reset') {
        messages = [...system];
        process.stderr.write('(new conversation)\n');
      } else if (text) {
        messages.push({ role: 'user', content: text });
        if (!(await fitChat(model, messages, system.length, room))) messages.pop();
        else {
          const result = await streamToStdout((signal) => model.chat(messages, { ...opts, signal }));
          if (!result) break;
          messages.push({ role: 'assistant', content: result.text });
          out('\n');
          if (process.stderr.isTTY) process.stderr.write(statsLine(result.stats) + '\n');
        }
      }
      ask();
    }
  } finally {
    rl.close();
    await model.dispose();
  }
}

async function runTokenize(values) {
  if ((values.text === undefined) === (values['text-file'] === undefined)) fail('BAD_ARGUMENT', 'give exactly one of --text and --text-file');
  loadOptions(values); // checks the engine options, which change nothing here
  let text = values.text;
  if (text === undefined) {
    try {
      text = await readFile(values['text-file'], 'utf8');
    } catch (e) {
      fail('NOT_FOUND', `${values['text-file']}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    }
  }
  const tokenizer = await loadModelTokenizer(modelSource(values), { hubHost: values['hub-host'], revision: values.revision });
  out(JSON.stringify({ ids: tokenizer.encode(text, { addSpecialTokens: !values['no-special'] }) }) + '\n');
}

async function runLogits(values) {
  if (!values.ids) fail('BAD_ARGUMENT', '--ids is required (e.g. --ids 5,17,42)');
  const ids = parseIds(values.ids);
  // a context of just the ids keeps the KV cache small; the bounded cache needs more than keep_window_size,
  // so it keeps the model's default (max_position_embeddings)
  const fitted = values['bounded-cache'] ? undefined : String(ids.length);
  const model = await load({ ...values, 'context-length': values['context-length'] ?? fitted });
  try {
    const logits = await model.logits(ids);
    const shape = model.info.task === 'causal-lm' ? [ids.length, model.info.vocabSize] : [model.info.numLabels];
    out(JSON.stringify({ shape, logits: Array.from(logits) }) + '\n');
  } finally {
    await model.dispose();
  }
}

async function runBench(values) {
  const source = modelSource(values);
  const report = {
    model: source,
    ...(await benchModel(source, {
      ...loadOptions(values),
      promptTokens: intOption(values, 'prompt-tokens', 1, 1 << 20) ?? 256,
      newTokens: intOption(values, 'new-tokens', 2, 1 << 24) ?? 128,
    })),
    peak_rss_mb: +(process.resourceUsage().maxRSS / 1024).toFixed(1),
  };
  if (values.json) out(JSON.stringify(report) + '\n');
  else out(`prefill ${report.prefill_tok_s} tok/s, decode ${report.decode_tok_s} tok/s, first token ${report.ttft_ms} ms, ` +
    `load ${report.load_ms} ms (${report.load_mb_s} MB/s), wasm memory ${report.wasm_memory_mb} MB (weights ${report.weight_mb} MB, ` +
    `KV cache ${report.kv_cache_mb} MB), peak RSS ${report.peak_rss_mb} MB, ${report.weights} weights, ${report.build} build, ` +
    `${report.threads} thread${report.threads > 1 ? 's' : ''}\n`);
}

function help(name) {
  if (!name) {
    const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`);
    return `usage: doge-wasm <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun 'doge-wasm <command> --help' for a command's options.\n`;
  }
  const c = COMMANDS[name];
  const opts = Object.entries(c.options).map(([k, o]) => `  --${k}${o.arg ? ` ${o.arg}` : ''}\n      ${o.help}`);
  return `usage: ${c.usage}\n\n${c.summary}.\n${c.details ? `\n${c.details}\n` : ''}\noptions:\n${opts.join('\n')}\n`;
}

/** `--temperature -1` as `--temperature=-1`: parseArgs takes a value that starts with '-' only after '=', and the
 * user's number should reach the option's own check (which names what is wrong) rather than be called ambiguous. */
function attachNegatives(args, options) {
  const out = [];
  for (let i = 0; i < args.length; i++) {
    const name = /^--([\w-]+)$/.exec(args[i])?.[1];
    if (options[name]?.type === 'string' && /^-\d|^-\.\d/.test(args[i + 1] ?? '')) out.push(`${args[i]}=${args[++i]}`);
    else out.push(args[i]);
  }
  return out;
}

async function main(argv) {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    out(help(rest[0] in COMMANDS ? rest[0] : undefined));
    return;
  }
  const command = COMMANDS[name];
  if (!command) fail('BAD_ARGUMENT', `unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')})`);
  let values;
  try {
    // parseArgs takes only its own keys (type, short, multiple), and no undefined ones
    const spec = ([k, o]) => [k, Object.fromEntries(['type', 'short', 'multiple'].filter((f) => o[f] !== undefined).map((f) => [f, o[f]]))];
    const options = Object.fromEntries(Object.entries(command.options).map(spec));
    ({ values } = parseArgs({ args: attachNegatives(rest, options), options, allowPositionals: false, strict: true }));
  } catch (e) {
    fail('BAD_ARGUMENT', e.message);
  }
  if (values.help) {
    out(help(name));
    return;
  }
  await command.run(values);
}

main(process.argv.slice(2)).then(
  () => {},
  (e) => {
    printError(e);
    process.exitCode = 2;
  },
);
