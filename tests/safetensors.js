// A minimal safetensors reader/writer for building deliberately broken checkpoints in tests.
import { readFileSync, writeFileSync } from 'node:fs';

export function readSafetensors(path) {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const data = buf.subarray(8 + n);
  const tensors = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    tensors[name] = { dtype: t.dtype, shape: t.shape, bytes: data.subarray(t.data_offsets[0], t.data_offsets[1]) };
  }
  return tensors;
}

export function writeSafetensors(path, tensors) {
  const header = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([len, Buffer.from(json), ...Object.values(tensors).map((t) => t.bytes)]));
}
