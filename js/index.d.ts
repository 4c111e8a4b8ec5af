// Types of the doge-wasm public API (js/index.js).

/** Every failure the user can cause. `code` is stable: BAD_CONFIG, BAD_SAFETENSORS, BAD_TENSOR,
 * UNSUPPORTED_MODEL, OUT_OF_MEMORY, BAD_INPUT, BAD_ARGUMENT, BAD_TOKENIZER, BAD_TEMPLATE, NO_TOKENIZER,
 * NO_CHAT_TEMPLATE, CONTEXT_OVERFLOW, NOT_FOUND, NETWORK, IO_ERROR, ABORTED, UNSUPPORTED_RUNTIME,
 * WORKER_CRASHED, DISPOSED, NON_FINITE_LOGITS. */
export class DogeError extends Error {
  constructor(code: string, message: string, details?: { file?: string; cause?: unknown });
  readonly code: string;
  /** The file the error is about, when there is one. */
  readonly file?: string;
}

export interface Progress {
  file: string;
  loaded: number;
  /** null when the server sends no Content-Length */
  total: number | null;
}

export interface LoadOptions {
  /** Engine threads (default 1). More than 1 needs SharedArrayBuffer. */
  threads?: number;
  /** 'auto' (default) runs the pthreads build where SharedArrayBuffer works, else the single-thread build. */
  build?: 'auto' | 'threads' | 'single';
  /** KV cache size in tokens (default max_position_embeddings). */
  contextLength?: number;
  /** Keep the KV cache at contextLength tokens forever: when it is full, evict the keys the dynamic mask can
   * never attend to again (all but the keep_window_size keys with the largest bias). Results are exactly
   * those of an unbounded cache; generation and prompts have no length limit. Needs a causal LM in the
   * transformers layout and contextLength > keep_window_size (BAD_INPUT otherwise). Default false. */
  boundedCache?: boolean;
  /** Prompts longer than this many tokens run through the model in pieces of this many (default 256, like
   * llama.cpp's micro-batch), so the activations' memory is sized by the piece, not the prompt; the
   * activations of one piece are allocated at load. Results do not depend on it. MoE models and sequence
   * classifiers run every call whole. */
  batchSize?: number;
  /** Host that repo ids resolve against (default https://huggingface.co). */
  hubHost?: string;
  /** Hub revision (default 'main'). */
  revision?: string;
  /** CDMoE routing of MoE models: 'hf' (default; transformers 4.57) or 'legacy_2025_03', the original code of
   * 2025-03-13..04-14 that some original-layout MoE checkpoints were trained with (not validated on real weights). */
  moeRouting?: 'hf' | 'legacy_2025_03';
  /** Weight format in memory: 'f32' (default; exact) or 'int8' (the embedding, head and projection matrices
   * quantized while loading, one scale per 32 values: about 3.5x less memory and faster decoding). */
  weights?: 'f32' | 'int8';
  /** Resumed downloads: retries (default 5), backoffMs (250, doubling), stallMs (30000). */
  download?: { retries?: number; backoffMs?: number; stallMs?: number };
  /** Called as weight bytes arrive. If it throws, the load stops and loadModel rejects with that error. */
  onProgress?: (p: Progress) => void;
  /** Aborted already or at any point before loadModel settles: it rejects with ABORTED and no worker stays. */
  signal?: AbortSignal;
}

export interface GenerateOptions {
  /** default: generation_config.max_new_tokens, else 256 */
  maxNewTokens?: number;
  /** 0 = greedy; default generation_config.temperature when do_sample, else 0 */
  temperature?: number;
  /** default generation_config.top_k, else 50 (0 = off) */
  topK?: number;
  /** (0, 1], default 1 */
  topP?: number;
  /** [0, 1], default 0 */
  minP?: number;
  /** > 0, default 1 */
  repetitionPenalty?: number;
  /** non-negative integer; the same seed gives the same text. Default: random (reported in stats). */
  seed?: number;
  /** Stop when any of these strings appears; the text is cut before it. */
  stop?: string | string[];
  /** End-of-sequence ids (default generation_config / config eos_token_id); [] never stops on eos. */
  eosTokenId?: number | number[];
  /** Ends the stream at once (at the start if it is aborted already); result.stats.stopReason is then
   * 'abort'. One signal may serve any number of generations: aborting it affects only those still running. */
  signal?: AbortSignal;
}

export interface Piece {
  text: string;
  /** null for text held back for a possible stop string and released at the end */
  tokenId: number | null;
}

export interface GenerationStats {
  promptTokens: number;
  generatedTokens: number;
  prefillMs: number;
  decodeMs: number;
  /** null when the prompt was not run (a generation aborted before it started) */
  prefillTokensPerSecond: number | null;
  tokensPerSecond: number | null;
  stopReason: 'eos' | 'stop' | 'length' | 'context' | 'abort';
  seed: number;
  build: 'threads' | 'single';
  threads: number;
  /** the mean number of threads the decoding steps ran on (1 to threads; fewer while other processes keep
   * cores busy or when one thread was timed faster; 0 when nothing was decoded) */
  decodeThreads: number;
  /** bytes of wasm memory at the end (its peak: wasm memory never shrinks) */
  memoryBytes: number;
}

export interface GenerationResult {
  text: string;
  ids: number[];
  stats: GenerationStats;
}

export class GenerationStream implements AsyncIterable<Piece> {
  /** Leaving a `for await` loop early (break, return, an exception: the iterator's return() or throw())
   * aborts the generation like options.signal: `result` then has stopReason 'abort'. */
  [Symbol.asyncIterator](): AsyncIterator<Piece>;
  readonly result: Promise<GenerationResult>;
}

export interface Message {
  role: 'system' | 'user' | 'assistant' | string;
  content: string;
}

export interface ModelInfo {
  task: 'causal-lm' | 'sequence-classification';
  vocabSize: number;
  numLabels: number;
  maxPositionEmbeddings: number;
  contextLength: number;
  /** the bounded KV cache is on */
  boundedCache: boolean;
  /** prompts run in pieces of this many tokens */
  batchSize: number;
  tiedHead: boolean;
  /** checkpoint layout: 'transformers' (HF 4.57), 'original' (remote-code era) or 'mid' (small-doge converter) */
  layout: 'transformers' | 'original' | 'mid';
  isMoe: boolean;
  moeRouting: 'hf' | 'legacy_2025_03';
  /** weight format in memory */
  weights: 'f32' | 'int8';
  /** bytes of weight memory */
  weightBytes: number;
  /** bytes of the KV cache (and the dynamic-mask bias cache) */
  kvCacheBytes: number;
  build: 'threads' | 'single';
  threads: number;
  /** why that build was chosen */
  threadsReason: string;
  hasTokenizer: boolean;
  hasChatTemplate: boolean;
  bosTokenId: number | null;
  eosTokenId: number | number[] | null;
  generationConfig: Record<string, unknown>;
}

/** Arguments of the wrong type (options that are not an object, a prompt that is not text, ids or messages,
 * ids that are not a list, text that is not a string) are DogeError BAD_ARGUMENT: thrown by generate() and
 * chat(), a rejection of the others. */
export class DogeModel {
  readonly info: ModelInfo;
  generate(input: string | number[] | Message[], options?: GenerateOptions): GenerationStream;
  chat(messages: Message[], options?: GenerateOptions): GenerationStream;
  tokenize(text: string, options?: { addSpecialTokens?: boolean }): Promise<number[]>;
  detokenize(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): Promise<string>;
  applyChatTemplate(messages: Message[], options?: { addGenerationPrompt?: boolean }): Promise<string>;
  /** [S, V] row-major for a causal LM, [numLabels] for a sequence classifier */
  logits(ids: ArrayLike<number>): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/** A directory (Node), a URL prefix, a hub repo id, or the model's files: `File`s or `{name, blob}` pairs. */
export type ModelSourceInput = string | Iterable<File | { name: string; blob: Blob }>;

export function loadModel(source: ModelSourceInput, options?: LoadOptions): Promise<DogeModel>;

export interface Tokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], options?: { skipSpecialTokens?: boolean; cleanUpSpaces?: boolean }): string;
  applyChatTemplate(messages: Message[], options?: { addGenerationPrompt?: boolean }): string;
}

export function loadModelTokenizer(source: ModelSourceInput, options?: { hubHost?: string; revision?: string }): Promise<Tokenizer>;

/** Whether this runtime can run the pthreads build (SharedArrayBuffer usable). */
export function threadsSupported(): boolean;
