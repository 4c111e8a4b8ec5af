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

/** Converts a C status number and message into a DogeError; `file` is the file the message starts with. */
export function coreError(status, message) {
  const file = /^([^\s:/\\]+\.(?:json|safetensors)): /.exec(message)?.[1];
  return new DogeError(CORE_CODES[status] ?? 'INTERNAL', message, { file });
}

/** Throws BAD_ARGUMENT unless `value` is an integer from min to max. */
export function checkInteger(name, value, min, max) {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new DogeError('BAD_ARGUMENT', `${name} must be an integer from ${min} to ${max}, got ${typeof value === 'string' ? `'${value}'` : value}`);
  }
}
