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

/**
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
  const check = (ok, what) => {
    if (!ok) throw new DogeError('BAD_ARGUMENT', `invalid generation option: ${what}`);
  };
  check(Number.isInteger(o.maxNewTokens) && o.maxNewTokens >= 1, `maxNewTokens must be an integer >= 1, got ${o.maxNewTokens}`);
  check(typeof o.temperature === 'number' && o.temperature >= 0 && Number.isFinite(o.temperature), `temperature must be >= 0, got ${o.temperature}`);
  check(Number.isInteger(o.topK) && o.topK >= 0, `topK must be an integer >= 0, got ${o.topK}`);
  check(typeof o.topP === 'number' && o.topP > 0 && o.topP <= 1, `topP must be in (0, 1], got ${o.topP}`);
  check(typeof o.minP === 'number' && o.minP >= 0 && o.minP <= 1, `minP must be in [0, 1], got ${o.minP}`);
  check(typeof o.repetitionPenalty === 'number' && o.repetitionPenalty > 0 && Number.isFinite(o.repetitionPenalty), `repetitionPenalty must be > 0, got ${o.repetitionPenalty}`);
  check(Number.isInteger(o.seed) && o.seed >= 0, `seed must be a non-negative integer, got ${o.seed}`);
  check(o.stop.every((s) => typeof s === 'string' && s.length > 0), 'stop must be a non-empty string or a list of them');
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
 */
export async function runGeneration({ engine, session, vocabSize, tokenizer, promptIds, opts, emit, aborted }) {
  if (promptIds.length === 0) throw new DogeError('BAD_INPUT', 'the prompt is empty (no tokens)');
  if (promptIds.length >= session.nCtx && !session.bounded) {
    throw new DogeError('CONTEXT_OVERFLOW', `the prompt has ${promptIds.length} tokens; the context holds ${session.nCtx} (raise contextLength)`);
  }
  session.reset();
  const sampler = new WasmSampler(engine, vocabSize, opts);
  const decoder = tokenizer?.streamDecoder();
  const stops = new StopMatcher(opts.stop);
  const ids = [];
  let text = '';
  let stopReason = 'length';
  try {
    sampler.accept(promptIds); // transformers penalizes prompt tokens too
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
        lastYield = performance.now();
      }
      if (aborted()) {
        stopReason = 'abort';
        break;
      }
      next = session.next([next], sampler);
    }
    const tail = stopReason === 'stop' ? '' : stops.flush();
    if (tail) {
      text += tail;
      emit({ text: tail, tokenId: null }); // text held back for a possible stop string
    }
    const decodeMs = performance.now() - t1;
    return {
      text,
      ids,
      stats: {
        promptTokens: promptIds.length,
        generatedTokens: ids.length,
        prefillMs: t1 - t0,
        decodeMs,
        prefillTokensPerSecond: (promptIds.length / (t1 - t0)) * 1000,
        tokensPerSecond: ids.length > 1 ? ((ids.length - 1) / decodeMs) * 1000 : null,
        stopReason,
        seed: opts.seed,
        build: engine.info.build,
        threads: engine.info.threads,
        memoryBytes: engine.memoryBytes,
      },
    };
  } finally {
    sampler.free();
  }
}
