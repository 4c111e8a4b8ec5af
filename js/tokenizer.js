/**
 * Text <-> token ids for a model: tokenizer.json through @huggingface/tokenizers, the chat template of
 * tokenizer_config.json through @huggingface/jinja, and incremental decoding that never splits a character.
 * @module tokenizer
 */
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { DogeError } from './errors.js';
import { readJson } from './sources.js';

/**
 * The tokenizer of a model source (tokenizer.json + tokenizer_config.json); null when it ships none.
 * @param {import('./sources.js').ModelSource} source
 */
export async function loadTokenizer(source) {
  const json = await readJson(source, 'tokenizer.json', { code: 'BAD_TOKENIZER', optional: true });
  if (json === null) return null;
  const config = await readJson(source, 'tokenizer_config.json', { code: 'BAD_TOKENIZER', optional: true });
  return new TextTokenizer(json, config);
}

const tokenText = (t) => (t && typeof t === 'object' ? t.content : t) ?? null;

export class TextTokenizer {
  /**
   * @param {object} tokenizerJson parsed tokenizer.json
   * @param {object|null} tokenizerConfig parsed tokenizer_config.json
   */
  constructor(tokenizerJson, tokenizerConfig) {
    const model = tokenizerJson?.model?.type;
    if (!['BPE', 'WordPiece', 'Unigram', 'WordLevel'].includes(model)) {
      throw new DogeError('BAD_TOKENIZER', `tokenizer.json: unsupported or missing model type '${model}'`, { file: 'tokenizer.json' });
    }
    this.config = tokenizerConfig ?? {};
    try {
      this.tok = new Tokenizer(tokenizerJson, this.config);
    } catch (e) {
      throw new DogeError('BAD_TOKENIZER', `tokenizer.json: ${e.message}`, { file: 'tokenizer.json', cause: e });
    }
    /** Special token strings (bos_token, eos_token, ...) as the chat template sees them. */
    this.specialTokens = {};
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
      const text = tokenText(this.config[key]);
      if (text !== null) this.specialTokens[key] = text;
    }
    this.chatTemplate = this.resolveTemplate(this.config.chat_template);
    this.specialIds = new Set([...this.tok.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
  }

  resolveTemplate(t) {
    if (!t) return null;
    if (typeof t === 'string') return t;
    if (Array.isArray(t)) return t.find((x) => x.name === 'default')?.template ?? t[0]?.template ?? null;
    return null;
  }

  /** Id of a token string, or undefined. */
  tokenId(text) {
    return text == null ? undefined : this.tok.token_to_id(text);
  }

  get vocabSize() {
    return this.tok.get_vocab(true).size;
  }

  /** @param {string} text @param {{addSpecialTokens?: boolean}} [opts] @returns {number[]} */
  encode(text, { addSpecialTokens = true } = {}) {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /**
   * @param {number[]} ids
   * @param {{skipSpecialTokens?: boolean, cleanUpSpaces?: boolean}} [opts] cleanUpSpaces: transformers'
   *   clean_up_tokenization_spaces (" ," -> ","); default from tokenizer_config.json, else off as in
   *   transformers >= 4.45
   */
  decode(ids, { skipSpecialTokens = false, cleanUpSpaces = this.config.clean_up_tokenization_spaces ?? false } = {}) {
    if (ids.length === 0) return '';
    return this.tok.decode(ids, { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: cleanUpSpaces });
  }

  /**
   * Renders messages with the model's chat template, the way transformers' apply_chat_template does.
   * @param {{role: string, content: string}[]} messages
   */
  applyChatTemplate(messages, { addGenerationPrompt = true } = {}) {
    if (!this.chatTemplate) throw new DogeError('NO_CHAT_TEMPLATE', 'tokenizer_config.json has no chat_template', { file: 'tokenizer_config.json' });
    try {
      return new Template(this.chatTemplate).render({
        messages,
        add_generation_prompt: addGenerationPrompt,
        ...this.specialTokens,
      });
    } catch (e) {
      throw new DogeError('BAD_TEMPLATE', `tokenizer_config.json: the chat template failed to render: ${e.message}`, { file: 'tokenizer_config.json', cause: e });
    }
  }

  /** A decoder for a growing list of ids that returns only complete new text (see StreamDecoder). */
  streamDecoder() {
    return new StreamDecoder(this);
  }
}

/** Tokens of left context a StreamDecoder keeps when it trims its window, and the window that makes it trim. */
const STREAM_CONTEXT = 4;
const STREAM_WINDOW = 16;
/** Bytes of the longest UTF-8 character: a U+FFFD still there after this many more tokens is in the text. */
const UTF8_MAX_BYTES = 4;

/**
 * Incremental detokenization with two offsets (as text-generation-inference does): text is decoded with a
 * few tokens of left context so that leading-space rules apply as in a full decode, and held back while it
 * ends in U+FFFD (a character whose bytes have not all arrived; for at most UTF8_MAX_BYTES tokens, after which
 * the bytes are invalid and U+FFFD is what a full decode gives too). The window of ids decoded grows from
 * STREAM_CONTEXT to STREAM_WINDOW tokens before it is trimmed, so that the text decoded so far is the text of
 * the window up to the last piece, kept rather than decoded again: about one decode a token instead of two.
 */
export class StreamDecoder {
  constructor(tokenizer) {
    this.tokenizer = tokenizer;
    this.ids = [];
    this.prefix = 0; // the window's first id
    this.read = 0; // ids up to here are in `text` (and were returned)
    this.text = ''; // decode(ids[prefix:read])
  }

  /** The text of the window's ids up to `end` (default: all pushed). */
  windowText(end = this.ids.length) {
    return this.tokenizer.decode(this.ids.slice(this.prefix, end), { skipSpecialTokens: true });
  }

  /** @param {number} id @returns {string} the new complete text (may be empty) */
  push(id) {
    this.ids.push(id);
    const after = this.windowText();
    const grown = after.length > this.text.length;
    const waiting = this.ids.length - this.read < UTF8_MAX_BYTES;
    if (waiting && (!grown || after.endsWith('\uFFFD'))) return '';
    const piece = grown ? after.slice(this.text.length) : '';
    this.read = this.ids.length;
    this.text = after;
    if (this.read - this.prefix >= STREAM_WINDOW) {
      this.prefix = this.read - STREAM_CONTEXT;
      this.text = this.windowText(this.read);
    }
    return piece;
  }

  /** The text of the ids pushed but not returned yet (a character whose bytes never all came: U+FFFD). */
  flush() {
    const rest = this.windowText().slice(this.text.length);
    this.read = this.ids.length;
    this.text += rest;
    return rest;
  }
}
