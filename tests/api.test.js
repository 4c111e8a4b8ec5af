// The public API (js/index.js) end to end through the engine worker, on both wasm builds.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { spawn, spawnSync } from 'node:child_process';
import { cpus } from 'node:os';
import { writeFileSync } from 'node:fs';
import { loadModel, DogeError } from '../js/index.js';
import { RpcClient } from '../js/protocol.js';
import { writeTinyModel } from './fixtures.js';
import { startHub } from './hub-server.js';
import { tempDir } from './helpers.js';
import { threadCap } from '../js/free-cores.js';

const hubRoot = tempDir('hub');
const dir = `${hubRoot}/test-org/tiny-doge`;
writeTinyModel(dir);

const argmax = (row) => row.reduce((best, v, i) => (v > row[best] ? i : best), 0);

async function collect(stream) {
  const pieces = [];
  for await (const p of stream) pieces.push(p);
  return { pieces, result: await stream.result };
}

for (const build of ['single', 'threads']) {
  describe(`API on the ${build} build`, () => {
    let model;
    before(async () => {
      model = await loadModel(dir, { build, threads: build === 'threads' ? 2 : 1 });
    });
    after(() => model.dispose());

    test('reports what it loaded and how it runs', () => {
      assert.equal(model.info.build, build);
      assert.equal(model.info.threads, build === 'threads' ? 2 : 1);
      assert.match(model.info.threadsReason, build === 'threads' ? /SharedArrayBuffer is available/ : /single-thread build requested/);
      assert.equal(model.info.task, 'causal-lm');
      assert.equal(model.info.vocabSize, 320);
      assert.ok(model.info.hasChatTemplate);
      assert.equal(model.info.layout, 'transformers');
      assert.equal(model.info.isMoe, false);
    });

    test('greedy generation equals step-by-step argmax of logits', async () => {
      const prompt = await model.tokenize('The quick brown fox');
      const { result } = await collect(model.generate(prompt, { maxNewTokens: 12, temperature: 0, eosTokenId: [] }));
      const ids = [...prompt];
      for (let i = 0; i < 12; i++) {
        const logits = await model.logits(ids);
        ids.push(argmax(logits.subarray(logits.length - 320)));
      }
      assert.deepEqual(result.ids, ids.slice(prompt.length));
      assert.equal(result.stats.stopReason, 'length');
    });

    test('text streams token by token and adds up to the decoded ids', async () => {
      const { pieces, result } = await collect(model.generate('Hello there', { maxNewTokens: 16, temperature: 1, seed: 5, eosTokenId: [] }));
      assert.equal(pieces.length, 16);
      assert.deepEqual(pieces.map((p) => p.tokenId), result.ids);
      assert.equal(pieces.map((p) => p.text).join(''), result.text);
      assert.equal(result.text, await model.detokenize(result.ids, { skipSpecialTokens: true }));
    });

    test('the same seed gives the same text, another seed another', async () => {
      const opts = { maxNewTokens: 24, temperature: 1.2, topK: 0, eosTokenId: [] };
      const a = (await collect(model.generate('Once upon a time', { ...opts, seed: 11 }))).result;
      const b = (await collect(model.generate('Once upon a time', { ...opts, seed: 11 }))).result;
      const c = (await collect(model.generate('Once upon a time', { ...opts, seed: 12 }))).result;
      assert.deepEqual(a.ids, b.ids);
      assert.equal(a.text, b.text);
      assert.notDeepEqual(a.ids, c.ids);
      assert.equal(a.stats.seed, 11);
    });

    test('stops on eos, on a stop string, and at maxNewTokens', async () => {
      const free = (await collect(model.generate('abc', { maxNewTokens: 10, temperature: 0, eosTokenId: [] }))).result;
      const eos = free.ids[3];
      const stopped = (await collect(model.generate('abc', { maxNewTokens: 10, temperature: 0, eosTokenId: eos }))).result;
      assert.equal(stopped.stats.stopReason, 'eos');
      assert.deepEqual(stopped.ids, free.ids.slice(0, free.ids.indexOf(eos)));
      const text = free.text;
      const at = text.length > 4 ? 3 : 1;
      const stop = text.slice(at, at + 2);
      const s = (await collect(model.generate('abc', { maxNewTokens: 10, temperature: 0, eosTokenId: [], stop: ['NEVER', stop] }))).result;
      assert.equal(s.stats.stopReason, 'stop');
      assert.equal(s.text, text.slice(0, text.indexOf(stop)));
    });

    test('chat applies the template with the special tokens', async () => {
      const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi!' }];
      const prompt = await model.applyChatTemplate(messages);
      assert.equal(prompt, '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\nBe brief.<|end_of_text|>\n\n<|start_header_id|>user<|end_header_id|>\nHi!<|end_of_text|>\n\n<|start_header_id|>assistant<|end_header_id|>\n');
      const viaChat = (await collect(model.chat(messages, { maxNewTokens: 6, temperature: 0, eosTokenId: [] }))).result;
      const ids = await model.tokenize(prompt, { addSpecialTokens: false });
      assert.equal(ids.filter((t) => t === 0).length, 1, 'one bos token');
      const viaIds = (await collect(model.generate(ids, { maxNewTokens: 6, temperature: 0, eosTokenId: [] }))).result;
      assert.deepEqual(viaChat.ids, viaIds.ids);
      assert.equal(viaChat.stats.promptTokens, ids.length);
    });

    test('abort stops within one token and leaves the model usable', async () => {
      const ac = new AbortController();
      const stream = model.generate('x', { maxNewTokens: 100, temperature: 1, seed: 3, eosTokenId: [], signal: ac.signal });
      let seen = 0;
      for await (const p of stream) {
        if (p.tokenId === null) continue;
        if (++seen === 3) ac.abort();
      }
      const { stats, ids } = await stream.result;
      assert.equal(stats.stopReason, 'abort');
      assert.equal(seen, 3, 'no piece is yielded after abort');
      assert.equal(ids.length, 3);
      assert.equal(stats.generatedTokens, 3);
      const again = (await collect(model.generate('x', { maxNewTokens: 5, temperature: 0, eosTokenId: [] }))).result;
      assert.equal(again.ids.length, 5);
    });

    test('an already aborted signal ends the generation at once', async () => {
      const ac = new AbortController();
      ac.abort();
      const answers = [];
      const { pieces, result } = await watchingRpc((rpc, msg) => 'result' in msg && answers.push(msg.result),
        () => collect(model.generate('The Lord said', { maxNewTokens: 50, eosTokenId: [], signal: ac.signal })));
      assert.equal(pieces.length, 0);
      assert.deepEqual([result.stats.stopReason, result.ids, result.text, result.stats.generatedTokens], ['abort', [], '', 0]);
      assert.equal(answers[0].stats.stopReason, 'abort', 'the worker did not run the prompt');
      assert.deepEqual([answers[0].ids.length, answers[0].stats.prefillTokensPerSecond], [0, null]);
      // the protocol itself: the abort reaches the worker after the request, not before it (where it is dropped)
      const direct = await model.rpc.request('generate', { input: 'x', options: { maxNewTokens: 50, eosTokenId: [] } }, { signal: ac.signal });
      assert.equal(direct.stats.stopReason, 'abort');
      assert.ok(direct.ids.length < 50);
      assert.equal((await model.generate('x', { maxNewTokens: 4, eosTokenId: [] }).result).ids.length, 4);
    });

    test('leaving a for-await loop early aborts the generation', async () => {
      const stream = model.generate('x', { maxNewTokens: 100, temperature: 1, seed: 4, eosTokenId: [] });
      const seen = [];
      for await (const p of stream) {
        seen.push(p.tokenId);
        break;
      }
      const { stats, ids } = await stream.result;
      assert.equal(stats.stopReason, 'abort');
      assert.deepEqual(ids, seen);
      // throw() too, and return() while a next() waits for its piece
      const thrown = model.generate('x', { maxNewTokens: 100, eosTokenId: [] });
      const it = thrown[Symbol.asyncIterator]();
      await it.next();
      await assert.rejects(it.throw(new Error('caller gave up')), /caller gave up/);
      assert.equal((await thrown.result).stats.stopReason, 'abort');
      const returned = model.generate('x', { maxNewTokens: 100, eosTokenId: [] });
      const it2 = returned[Symbol.asyncIterator]();
      const waiting = it2.next();
      assert.deepEqual(await it2.return('bye'), { done: true, value: 'bye' });
      assert.equal((await waiting).done, true);
      assert.deepEqual([(await returned.result).stats.stopReason, (await returned.result).ids], ['abort', []]);
    });

    test('a signal reused for many generations keeps no listeners', async () => {
      const ac = new AbortController();
      const warnings = [];
      const onWarning = (w) => warnings.push(w.name);
      process.on('warning', onWarning);
      try {
        const streams = [];
        for (let i = 0; i < 31; i++) {
          const stream = model.generate('x', { maxNewTokens: 2, eosTokenId: [], signal: ac.signal });
          await stream.result;
          streams.push(stream);
        }
        for (let i = 0; i < 3; i++) await model.rpc.request('tokenize', { text: 'x', addSpecialTokens: true }, { signal: ac.signal });
        await assert.rejects(model.rpc.request('logits', { ids: [999] }, { signal: ac.signal }), { code: 'BAD_INPUT' });
        assert.equal(getEventListeners(ac.signal, 'abort').length, 0);
        ac.abort(); // after they all ended: changes none of them
        const { pieces, result } = await collect(streams[0]);
        assert.equal(result.stats.stopReason, 'length');
        assert.deepEqual(pieces.map((p) => p.tokenId).filter((t) => t !== null), result.ids);
        assert.equal(pieces.map((p) => p.text).join(''), result.text);
      } finally {
        process.off('warning', onWarning);
      }
      assert.deepEqual(warnings, []);
    });

    test('argument mistakes are DogeErrors with code BAD_ARGUMENT', async () => {
      const bad = (e) => e instanceof DogeError && e.code === 'BAD_ARGUMENT';
      assert.throws(() => model.generate('x', null), (e) => bad(e) && /generate\(\): options must be an object, not null/.test(e.message));
      for (const input of [123, null, undefined, true]) {
        assert.throws(() => model.generate(input), (e) => bad(e) && /generate\(\) takes text, a list of token ids or a list of/.test(e.message), String(input));
      }
      assert.throws(() => model.generate([{ role: 'user' }]), (e) => bad(e) && /list of \{role, content\} messages/.test(e.message));
      assert.throws(() => model.generate('x', { maxTokens: 5 }), (e) => bad(e) && /generate\(\): unknown option 'maxTokens' \(options: maxNewTokens,/.test(e.message));
      await assert.rejects(model.logits('abc'), (e) => bad(e) && /logits\(\) takes a list of token ids/.test(e.message));
      await assert.rejects(model.detokenize('abc'), bad);
      assert.throws(() => model.chat([{ role: 'user', content: 'hi' }], 'fast'), bad);
      assert.throws(() => model.generate('x', { signal: 'stop' }), (e) => bad(e) && /options\.signal must be an AbortSignal/.test(e.message));
      await assert.rejects(model.logits(null), (e) => bad(e) && /logits\(\) takes a list of token ids/.test(e.message));
      await assert.rejects(model.logits(5), bad);
      await assert.rejects(model.tokenize(null), bad);
      await assert.rejects(model.tokenize('x', null), bad);
      await assert.rejects(model.detokenize(undefined), bad);
      await assert.rejects(model.applyChatTemplate('hi'), bad);
      await assert.rejects(model.generate('x', { stop: () => 'a function' }).result, (e) => bad(e) && /cannot be sent to the engine worker/.test(e.message));
      assert.equal(model.rpc.pending.size, 0);
      assert.equal((await model.logits([1, 2])).length, 2 * 320, 'the model is still usable');
    });

    test('two generations at once run one after the other', async () => {
      const opts = { maxNewTokens: 8, temperature: 0, eosTokenId: [] };
      const alone = (await collect(model.generate('same prompt', opts))).result;
      const [a, b] = await Promise.all([collect(model.generate('same prompt', opts)), collect(model.generate('same prompt', opts))]);
      assert.deepEqual(a.result.ids, alone.ids);
      assert.deepEqual(b.result.ids, alone.ids);
    });

    test('bad input gives DogeErrors with codes', async () => {
      const fails = async (p, code, re) => assert.rejects(p, (e) => e instanceof DogeError && e.code === code && re.test(e.message));
      await fails(collect(model.generate('x', { temperature: -1 })), 'BAD_ARGUMENT', /temperature must be >= 0/);
      await fails(collect(model.generate('x', { topP: 0 })), 'BAD_ARGUMENT', /topP must be in \(0, 1\]/);
      await fails(collect(model.generate('x', { maxNewTokens: 0 })), 'BAD_ARGUMENT', /maxNewTokens/);
      await fails(collect(model.generate([5, 999])), 'BAD_INPUT', /token id 999 at index 1 is outside the vocabulary \[0, 320\)/);
      await fails(collect(model.generate([])), 'BAD_INPUT', /the prompt is empty/);
      await fails(collect(model.generate(new Array(200).fill(7))), 'CONTEXT_OVERFLOW', /the prompt has 200 tokens; the context holds 128/);
      await fails(model.logits([400]), 'BAD_INPUT', /outside the vocabulary/);
    });

    test('text that is not valid Unicode is refused', async () => {
      await assert.rejects(collect(model.generate('abc\ud800def')), (e) => e.code === 'BAD_INPUT' && /lone UTF-16 surrogate/.test(e.message));
      await assert.rejects(model.tokenize('\udfff'), (e) => e.code === 'BAD_INPUT');
    });

    test('generation that reaches the end of the context stops there', async () => {
      const { result } = await collect(model.generate(new Array(120).fill(9), { maxNewTokens: 50, temperature: 0, eosTokenId: [] }));
      assert.equal(result.stats.stopReason, 'context');
      assert.equal(result.ids.length, 128 - 120 + 1);
    });
  });
}

test('a list of Files loads like a directory (the browser file picker path)', async () => {
  const { readdirSync, readFileSync } = await import('node:fs');
  const files = readdirSync(dir).map((f) => new File([readFileSync(`${dir}/${f}`)], f));
  const model = await loadModel(files, { build: 'single' });
  const local = await loadModel(dir, { build: 'single' });
  assert.deepEqual(await model.logits([0, 1, 2]), await local.logits([0, 1, 2]));
  assert.ok(model.info.hasChatTemplate);
  await model.dispose();
  await local.dispose();
});

test('an original-layout MoE checkpoint loads with either routing mode, which the info reports', async () => {
  const { CASES_DIR } = await import('./helpers.js');
  const dir = `${CASES_DIR}/old_moe_legacy`;
  const hf = await loadModel(dir, { build: 'single' });
  const legacy = await loadModel(dir, { build: 'single', moeRouting: 'legacy_2025_03' });
  assert.equal(hf.info.layout, 'original');
  assert.deepEqual([hf.info.moeRouting, legacy.info.moeRouting], ['hf', 'legacy_2025_03']);
  assert.notDeepEqual(await hf.logits([1, 2, 3]), await legacy.logits([1, 2, 3]));
  await hf.dispose();
  await legacy.dispose();
  await assert.rejects(loadModel(dir, { moeRouting: 'other' }), (e) => e.code === 'BAD_ARGUMENT' && /moeRouting must be one of hf, legacy_2025_03/.test(e.message));
});

test('dispose during a generation aborts it cleanly, and another model can be loaded', async () => {
  const model = await loadModel(dir, { build: 'single' });
  const stream = model.generate('x', { maxNewTokens: 100000, temperature: 1, eosTokenId: [], seed: 1 });
  const it = stream[Symbol.asyncIterator]();
  await it.next();
  await model.dispose();
  const { stats } = await stream.result;
  assert.equal(stats.stopReason, 'abort');
  await assert.rejects(model.logits([1]), (e) => e.code === 'DISPOSED');
  const again = await loadModel(dir, { build: 'single' });
  assert.equal((await again.logits([1, 2])).length, 2 * 320);
  await again.dispose();
});

test('a worker that dies is reported, and a new model can be loaded', async () => {
  const model = await loadModel(dir, { build: 'single' });
  const stream = model.generate('x', { maxNewTokens: 100000, temperature: 1, eosTokenId: [], seed: 2 });
  const it = stream[Symbol.asyncIterator]();
  await it.next();
  model.rpc.worker.terminate(); // as if the engine crashed (e.g. the browser killed it)
  await assert.rejects(stream.result, (e) => e.code === 'WORKER_CRASHED' && /the engine worker stopped/.test(e.message));
  await assert.rejects(model.logits([1]), (e) => e.code === 'WORKER_CRASHED');
  await model.dispose();
  const again = await loadModel(dir, { build: 'single' });
  assert.equal((await again.logits([1])).length, 320);
  await again.dispose();
});

/** Runs fn while RpcClient.receive is watched: onMessage(rpc, msg) before each message is handled. */
async function watchingRpc(onMessage, fn) {
  const receive = RpcClient.prototype.receive;
  RpcClient.prototype.receive = function (msg) {
    onMessage(this, msg);
    return receive.call(this, msg);
  };
  try {
    return await fn();
  } finally {
    RpcClient.prototype.receive = receive;
  }
}

test('loadModel with an already aborted signal rejects with ABORTED and starts nothing', async () => {
  const ac = new AbortController();
  ac.abort();
  const rpcs = new Set();
  await watchingRpc((rpc) => rpcs.add(rpc), () =>
    assert.rejects(loadModel(dir, { build: 'single', signal: ac.signal }), (e) => e.code === 'ABORTED' && /: loading aborted$/.test(e.message)));
  assert.equal(rpcs.size, 0, 'no worker answered anything');
});

test('an abort that arrives after the weights are in (the answer on its way) still rejects, and frees the model', async () => {
  const ac = new AbortController();
  let loadRpc;
  const p = watchingRpc((rpc, msg) => {
    loadRpc = rpc;
    if ('result' in msg) ac.abort(); // the worker has loaded the model; its answer is on the way
  }, () => loadModel(dir, { build: 'single', signal: ac.signal }));
  p.then((m) => m.dispose(), () => {});
  await assert.rejects(p, (e) => e.code === 'ABORTED' && /loading aborted/.test(e.message));
  assert.equal(loadRpc.dead?.code, 'DISPOSED', 'the worker is gone');
});

test('an onProgress callback that throws rejects loadModel with its error and stops the load', async () => {
  const oops = new Error('progress bar broke');
  let loadRpc, calls = 0;
  const onProgress = () => {
    calls++;
    throw oops;
  };
  const p = watchingRpc((rpc) => (loadRpc = rpc), () => loadModel(dir, { build: 'single', onProgress }));
  p.then((m) => m.dispose(), () => {});
  await assert.rejects(p, (e) => e === oops);
  assert.equal(calls, 1, 'not called again once it threw');
  assert.equal(loadRpc.dead?.code, 'DISPOSED', 'the worker is gone');
  await assert.rejects(loadModel(dir, null), (e) => e.code === 'BAD_ARGUMENT' && /loadModel\(\): options must be an object/.test(e.message));
  await assert.rejects(loadModel(dir, { context: 64 }), (e) => e.code === 'BAD_ARGUMENT' && /loadModel\(\): unknown option 'context'/.test(e.message));
  await assert.rejects(loadModel('SmallDoge/Doge-20M', { hubHost: 'notaurl' }), (e) => e.code === 'BAD_ARGUMENT' && /hubHost must be an http\(s\) URL, got 'notaurl'/.test(e.message));
  await assert.rejects(loadModel(dir, { onProgress: 'log' }), (e) => e.code === 'BAD_ARGUMENT' && /onProgress must be a function/.test(e.message));
});

test('breaking out of an endless generation stops the worker', async () => {
  const model = await loadModel(dir, { build: 'single', boundedCache: true });
  try {
    const answers = [];
    const stream = model.generate('x', { maxNewTokens: 20000, eosTokenId: [] }); // seconds of work
    await watchingRpc((rpc, msg) => 'result' in msg && answers.push(msg.result), async () => {
      for await (const p of stream) break;
      await stream.result;
    });
    assert.equal((await stream.result).stats.stopReason, 'abort');
    assert.equal(answers[0].stats.stopReason, 'abort', 'the worker stopped too');
    assert.equal((await model.generate('x', { maxNewTokens: 3, eosTokenId: [] }).result).ids.length, 3);
  } finally {
    await model.dispose();
  }
});

test('a script that breaks out of an endless generation ends (the worker stops)', () => {
  const script = `${tempDir('break')}/break.mjs`;
  writeFileSync(script, `
    import { loadModel } from ${JSON.stringify(new URL('../js/index.js', import.meta.url).href)};
    const model = await loadModel(${JSON.stringify(dir)}, { build: 'single', boundedCache: true });
    for await (const p of model.generate('x', { maxNewTokens: 100000000, eosTokenId: [] })) break;
    console.log('broke out');
  `);
  const run = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 30000 });
  assert.equal(run.signal, null, 'the process ended by itself');
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'broke out');
});

test('a tokenizer larger than the model vocabulary is refused', async () => {
  const small = tempDir('smallvocab');
  writeTinyModel(small, { vocab: 200 });
  await assert.rejects(loadModel(small, { build: 'single' }), (e) => e.code === 'BAD_TOKENIZER' &&
    /tokenizer\.json has 271 tokens but the model's vocabulary \(config\.json vocab_size\) is 200/.test(e.message));
});

describe('loading over HTTP in the hub layout', () => {
  let hub;
  before(async () => {
    hub = await startHub(hubRoot);
  });
  after(() => hub.close());

  test('a repo id resolves to <host>/<id>/resolve/main/<file>, with progress', async () => {
    const events = [];
    const model = await loadModel('test-org/tiny-doge', { hubHost: hub.url, onProgress: (p) => events.push(p) });
    try {
      assert.ok(hub.requests.includes('/test-org/tiny-doge/resolve/main/model.safetensors'));
      assert.ok(hub.requests.includes('/test-org/tiny-doge/resolve/main/tokenizer.json'));
      const w = events.filter((e) => e.file === 'model.safetensors');
      assert.ok(w.length >= 2);
      for (let i = 1; i < w.length; i++) assert.ok(w[i].loaded >= w[i - 1].loaded, 'monotone');
      assert.equal(w.at(-1).loaded, w.at(-1).total);
      const local = await loadModel(dir, { build: 'single' });
      const ids = [0, 5, 77, 9];
      assert.deepEqual(await model.logits(ids), await local.logits(ids));
      await local.dispose();
    } finally {
      await model.dispose();
    }
  });

  test('a URL prefix and a revision work too; a missing repo is NOT_FOUND', async () => {
    const model = await loadModel(`${hub.url}/test-org/tiny-doge/resolve/v1`);
    assert.equal(model.info.vocabSize, 320);
    await model.dispose();
    const rev = await loadModel('test-org/tiny-doge', { hubHost: hub.url, revision: 'abc123' });
    assert.ok(hub.requests.includes('/test-org/tiny-doge/resolve/abc123/model.safetensors'));
    await rev.dispose();
    await assert.rejects(loadModel('test-org/missing', { hubHost: hub.url }), (e) => e.code === 'NOT_FOUND' && /config\.json/.test(e.message));
  });

  test('a model too large for wasm memory is refused before its weights download', async () => {
    const big = `${hubRoot}/test-org/huge`;
    writeTinyModel(big);
    const { writeFileSync, readFileSync } = await import('node:fs');
    const config = JSON.parse(readFileSync(`${big}/config.json`, 'utf8'));
    writeFileSync(`${big}/config.json`, JSON.stringify({ ...config, vocab_size: 32768, hidden_size: 32768, num_hidden_layers: 8 }));
    const before = hub.requests.length;
    await assert.rejects(loadModel('test-org/huge', { hubHost: hub.url }), (e) => e.code === 'OUT_OF_MEMORY' &&
      /config\.json: the model needs [\d.]+ GiB of f32 weights; wasm memory holds at most 4 GiB/.test(e.message));
    assert.ok(!hub.requests.slice(before).some((u) => u.endsWith('model.safetensors')), 'no weight download started');
  });

  test('abort during loading rejects with ABORTED', async () => {
    const slow = await startHub(hubRoot, { chunkDelayMs: 5 });
    const ac = new AbortController();
    const onProgress = (e) => e.file === 'model.safetensors' && e.loaded > 0 && ac.abort();
    const p = loadModel('test-org/tiny-doge', { hubHost: slow.url, signal: ac.signal, onProgress });
    p.then((m) => m.dispose(), () => {});
    await assert.rejects(p, (e) => e.code === 'ABORTED' && /model\.safetensors: (loading )?aborted/.test(e.message));
    await slow.close();
  });
});

test('batchSize: a long prompt runs in pieces, with the same tokens and less memory', async () => {
  const wide = `${hubRoot}/wide`; // 12 KB of activations per token: 35 MB for the whole prompt at once
  writeTinyModel(wide, { hidden: 128, inter: 1024 });
  const ids = Array.from({ length: 3000 }, (_, i) => 3 + ((i * 7) % 60));
  const run = async (batchSize) => {
    const model = await loadModel(wide, { build: 'single', contextLength: 3010, batchSize });
    try {
      assert.equal(model.info.batchSize, batchSize ?? 256);
      const { ids: out, stats } = await model.generate(ids, { maxNewTokens: 3, temperature: 0, eosTokenId: [] }).result;
      return { out, memory: stats.memoryBytes };
    } finally {
      await model.dispose();
    }
  };
  const whole = await run(4096), pieces = await run(undefined), small = await run(7);
  assert.deepEqual(pieces.out, whole.out);
  assert.deepEqual(small.out, whole.out);
  assert.ok(whole.memory - pieces.memory > 3e6, `whole prompt ${whole.memory} B, in pieces ${pieces.memory} B`);
  await assert.rejects(loadModel(dir, { batchSize: 0 }), { code: 'BAD_ARGUMENT' });
});

test('the activations of a full batch are taken at load: a first long prompt finds them ready', async () => {
  const wide = `${hubRoot}/wide-reserve`; // 80 KB of activations per token: 20 MB for a batch of 256, past the heap's slack
  writeTinyModel(wide, { hidden: 128, inter: 8192, layers: 1, maxPos: 600 });
  for (const build of ['single', 'threads']) {
    const model = await loadModel(wide, { build, contextLength: 600 });
    try {
      const memory = async (length) => (await model.generate(Array.from({ length }, (_, i) => 3 + (i % 60)), { maxNewTokens: 1, eosTokenId: [] }).result).stats.memoryBytes;
      const short = await memory(1), batch = await memory(256), long = await memory(520);
      assert.equal(batch, short, `${build}: memory grew from ${short} to ${batch} B on the first 256-token prompt`);
      assert.equal(long, short, `${build}: a prompt of several batches runs in the same memory`);
    } finally {
      await model.dispose();
    }
  }
});

test('threadCap: a thread for each core left free (more than half free counts), at least one', () => {
  assert.deepEqual([[0.3, 2], [1.05, 2], [1.45, 2], [1.6, 2], [2, 2], [3.9, 2], [3.4, 8], [7.5, 8]].map(([free, threads]) => threadCap(free, threads)),
    [1, 1, 1, 2, 2, 2, 3, 8]);
});

const cores = cpus().length;
test('threads back off from the cores other processes keep busy, and come back when they are free (Node)',
  { skip: (cores < 2 || cores > 16) && `${cores} cores: none to fill, or too many` }, async () => {
    const ids = Array.from({ length: 8 }, (_, i) => 3 + i);
    const decodeThreads = async (model) => (await model.generate(ids, { maxNewTokens: 120, temperature: 0, eosTokenId: [] }).result).stats.decodeThreads;
    const busy = Array.from({ length: cores - 1 }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
    let model;
    try {
      model = await loadModel(dir, { build: 'threads', threads: 2 });
      await new Promise((r) => setTimeout(r, 300)); // the next reading (the generation's first) covers them
      assert.equal(await decodeThreads(model), 1, 'one core left: every step on one thread, no probe on two');
    } finally {
      for (const p of busy) p.kill('SIGKILL');
    }
    await new Promise((r) => setTimeout(r, 400)); // the next reading covers mostly idle cores
    assert.ok((await decodeThreads(model)) > 1, 'cores free again: steps on both threads (at least the probe\'s)');
    await model.dispose();
  });
