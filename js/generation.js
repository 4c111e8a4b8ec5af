/**
 * Generation options (with defaults from generation_config.json, as transformers reads them) and the
 * token loop that runs inside the worker: sample in C, decode text incrementally, stop on eos, stop
 * strings, max tokens, a full context or abort.
 * @module generation
 */
import { DogeError } from './errors.js';
import { WasmSampler } from './wasm-engine.js';
import { yieldToEvents } from './protocol.js';

/** How often generation lets other messages (an abort) in: every token cost a few percent of decoding. */
const YIELD_EVERY_MS = 4;

const asList = (v) => (v === undefined || v === null ? [] : Array.isArray(v) ? v : [v]);

/** The numeric options: their generation_config.json key (null: none), the check, and what it wants. */
const OPTION_CHECKS = {
  maxNewTokens: ['max_new_tokens', (v) => Number.isInteger(v) && v >= 1, 'an integer >= 1'],
  temperature: ['temperature', (v) => typeof v === 'number' && v >= 0 && Number.isFinite(v), '>= 0'],
  topK: ['top_k', (v) => Number.isInteger(v) && v >= 0, 'an integer >= 0'],
  topP: ['top_p', (v) => typeof v === 'number' && v > 0 && v <= 1, 'in (0, 1]'],
  minP: ['min_p', (v) => typeof v === 'number' && v >= 0 && v <= 1, 'in [0, 1]'],
  repetitionPenalty: ['repetition_penalty', (v) => typeof v === 'number' && v > 0 && Number.isFinite(v), '> 0'],
  seed: [null, (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer'],
};

/**
 * Options given win over generation_config.json; a bad value is BAD_ARGUMENT when given, BAD_CONFIG (naming
 * the file) when it came from the file.
 * @param {object} options user options (camelCase)
 * @param {object} gen generation_config.json (may be {})
 * @param {object} config config.json
 */
export function resolveOptions(options = {}, gen = {}, config = {}) {
  const sampling = gen.do_sample === true;
  const o = {
    maxNewTokens: options.maxNewTokens ?? gen.max_new_tokens ?? 256,
    temperature: options.temperature ?? (sampling ? gen.temperature ?? 1.0 : 0),
    topK: options.topK ?? gen.top_k ?? 50,
    topP: options.topP ?? gen.top_p ?? 1.0,
    minP: options.minP ?? gen.min_p ?? 0,
    repetitionPenalty: options.repetitionPenalty ?? gen.repetition_penalty ?? 1.0,
    seed: options.seed ?? Math.floor(Math.random() * 2 ** 32),
    stop: asList(options.stop),
    eos: new Set(asList(options.eosTokenId ?? gen.eos_token_id ?? config.eos_token_id)),
  };
  for (const [name, [key, ok, want]] of Object.entries(OPTION_CHECKS)) {
    if (ok(o[name])) continue;
    if (options[name] === undefined && key) { // the value came from the model's file, not from the caller
      throw new DogeError('BAD_CONFIG', `generation_config.json: ${key} must be ${want}, got ${JSON.stringify(gen[key])}`, { file: 'generation_config.json' });
    }
    throw new DogeError('BAD_ARGUMENT', `invalid generation option: ${name} must be ${want}, got ${o[name]}`);
  }
  if (!o.stop.every((s) => typeof s === 'string' && s.length > 0)) {
    throw new DogeError('BAD_ARGUMENT', 'invalid generation option: stop must be a non-empty string or a list of them');
  }
  return o;
}

/** Holds back text that might be the start of a stop string, and cuts the text at the first one. */
export class StopMatcher {
  constructor(stops) {
    this.stops = stops;
    this.pending = '';
  }

  /** @returns {{text: string, stopped: boolean}} text that is safe to emit now */
  push(piece) {
    this.pending += piece;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.pending.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      const text = this.pending.slice(0, cut);
      this.pending = '';
      return { text, stopped: true };
    }
    let hold = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > hold; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    const text = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { text, stopped: false };
  }

  flush() {
    const text = this.pending;
    this.pending = '';
    return text;
  }
}

/** The stats of a generation; times in ms (0 and rates null for a step that did not run). */
function generationStats(engine, session, opts, promptTokens, generatedTokens, prefillMs, decodeMs, stopReason) {
  return {
    promptTokens,
    generatedTokens,
    prefillMs,
    decodeMs,
    prefillTokensPerSecond: prefillMs > 0 ? (promptTokens / prefillMs) * 1000 : null,
    tokensPerSecond: generatedTokens > 1 ? ((generatedTokens - 1) / decodeMs) * 1000 : null,
    stopReason,
    seed: opts.seed,
    build: engine.info.build,
    threads: engine.info.threads,
    decodeThreads: session.meanThreads,
    memoryBytes: engine.memoryBytes,
  };
}

/**
 * Runs one generation on a fresh KV cache.
 * @param {object} a
 * @param {import('./wasm-engine.js').Engine} a.engine
 * @param {import('./wasm-engine.js').WasmSession} a.session
 * @param {number} a.vocabSize
 * @param {import('./tokenizer.js').TextTokenizer|null} a.tokenizer
 * @param {number[]} a.promptIds
 * @param {ReturnType<typeof resolveOptions>} a.opts
 * @param {(piece: {text: string, tokenId: number}) => void} a.emit
 * @param {() => boolean} a.aborted
 * @param {() => void} [a.adaptThreads] called before the prompt and now and then while decoding: may change the
 *   session's thread cap
 */
export async function runGeneration({ engine, session, vocabSize, tokenizer, promptIds, opts, emit, aborted, adaptThreads }) {
  if (promptIds.length === 0) throw new DogeError('BAD_INPUT', 'the prompt is empty (no tokens)');
  if (promptIds.length > session.nCtx && !session.bounded) {
    throw new DogeError('CONTEXT_OVERFLOW', `the prompt has ${promptIds.length} tokens; the context holds ${session.nCtx} (raise contextLength)`);
  }
  session.reset();
  adaptThreads?.();
  const sampler = new WasmSampler(engine, vocabSize, opts);
  const decoder = tokenizer?.streamDecoder();
  const stops = new StopMatcher(opts.stop);
  const ids = [];
  let text = '';
  let stopReason = 'length';
  try {
    sampler.accept(promptIds); // transformers penalizes prompt tokens too
    if (aborted()) return { text: '', ids: [], stats: generationStats(engine, session, opts, promptIds.length, 0, 0, 0, 'abort') }; // nothing run
    const t0 = performance.now();
    let next = session.next(promptIds, sampler);
    const t1 = performance.now();
    let lastYield = t1;
    for (;;) {
      if (opts.eos.has(next)) {
        stopReason = 'eos';
        break;
      }
      ids.push(next);
      sampler.accept([next]);
      const { text: piece, stopped } = stops.push(decoder ? decoder.push(next) : '');
      text += piece;
      emit({ text: piece, tokenId: next });
      if (stopped) {
        stopReason = 'stop';
        break;
      }
      if (ids.length >= opts.maxNewTokens) break;
      if (session.pos >= session.nCtx && !session.bounded) {
        stopReason = 'context';
        break;
      }
      if (performance.now() - lastYield >= YIELD_EVERY_MS) { // let a queued abort in, without a yield per token
        await yieldToEvents();
        adaptThreads?.();
        lastYield = performance.now();
      }
      if (aborted()) {
        stopReason = 'abort';
        break;
      }
      next = session.next([next], sampler);
    }
    let tail = '';
    if (stopReason !== 'stop') {
      // the bytes of a character cut short (by the token limit, eos or abort) decode to U+FFFD, as a full decode gives
      const last = stops.push(decoder ? decoder.flush() : '');
      tail = last.text + (last.stopped ? '' : stops.flush());
      if (last.stopped) stopReason = 'stop';
    }
    if (tail) {
      text += tail;
      emit({ text: tail, tokenId: null }); // text held back for a possible stop string
    }
    const decodeMs = performance.now() - t1;
    return { text, ids, stats: generationStats(engine, session, opts, promptIds.length, ids.length, t1 - t0, decodeMs, stopReason) };
  } finally {
    sampler.free();
  }
}
