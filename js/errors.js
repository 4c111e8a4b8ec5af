/**
 * Errors raised by doge-wasm. Every failure the user can cause is a DogeError with a stable `code`.
 * @module errors
 */

/** Codes of the C core (DogeStatus), by number. */
const CORE_CODES = ['OK', 'BAD_CONFIG', 'BAD_SAFETENSORS', 'BAD_TENSOR', 'UNSUPPORTED_MODEL', 'OUT_OF_MEMORY', 'BAD_INPUT',
  'NON_FINITE_LOGITS'];

export class DogeError extends Error {
  /**
   * @param {string} code stable identifier, e.g. 'BAD_CONFIG', 'NOT_FOUND', 'ABORTED'
   * @param {string} message one line naming the file and the problem
   * @param {{file?: string, cause?: unknown}} [details]
   */
  constructor(code, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'DogeError';
    this.code = code;
    if (details.file !== undefined) this.file = details.file;
  }
}

/** Converts a C status number and message into a DogeError. */
export function coreError(status, message) {
  return new DogeError(CORE_CODES[status] ?? 'INTERNAL', message);
}
