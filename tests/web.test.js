// The web demo in real Chromium (Debian's, driven by playwright-core): streaming chat with the embedded
// model, Stop, New chat (also during a reply), settings (kept across reloads), offline reload through the
// service worker, the single-thread fallback without COOP/COEP, and loading by repo id from a local server in
// the hub layout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { serve } from '../web/serve.mjs';
import { startHub } from './hub-server.js';
import { writeTinyModel } from './fixtures.js';
import { ROOT, tempDir } from './helpers.js';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const hubRoot = tempDir('webhub');
writeTinyModel(`${hubRoot}/test-org/tiny-doge`);
writeTinyModel(`${hubRoot}/test-org/corrupt`);
const st = `${hubRoot}/test-org/corrupt/model.safetensors`;
writeFileSync(st, readFileSync(st).subarray(0, 5000)); // truncated

let browser;
let site;
let hub;
before(async () => {
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  site = await serve({ root: `${ROOT}build/web`, port: 0 });
  hub = await startHub(hubRoot);
});
after(async () => {
  await browser?.close();
  await site?.close();
  await hub?.close();
});

async function openPage(url, context) {
  const ctx = context ?? (await browser.newContext());
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error('pageerror:', e.message));
  await page.goto(url);
  return page;
}

const loaded = (page) => page.waitForSelector('body[data-engine="ready"]', { timeout: 60000 });
const finished = (page) => page.waitForFunction(() => /stopped: \w+/.test(document.getElementById('gen-stats').textContent) && !document.getElementById('send').disabled, null, { timeout: 60000 });
async function setting(page, id, value) {
  await page.fill(`#${id}`, String(value));
  await page.dispatchEvent(`#${id}`, 'change');
}
/** Deterministic replies for the tests that count tokens: greedy, continuing the text (no early eos). */
async function greedy(page) {
  await setting(page, 'temperature', 0);
  await page.selectOption('#mode', 'complete');
}
async function ask(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
  await finished(page);
  const messages = await page.$$eval('.message .text', (els) => els.map((e) => e.textContent));
  return { reply: messages.at(-1), stats: await page.textContent('#gen-stats'), messages };
}

test('the embedded model streams its reply into the page as it is generated', async () => {
  const page = await openPage(`${site.url}?nosw`);
  await loaded(page);
  assert.match(await page.textContent('#engine-status'), /pthreads build, \d+ threads?/);
  await greedy(page);
  await setting(page, 'max-new-tokens', 300); // pieces reach the page in batches of at most 10 ms
  // count text updates of the reply while it streams
  await page.evaluate(() => {
    window.updates = 0;
    new MutationObserver(() => window.updates++).observe(document.getElementById('messages'), { subtree: true, characterData: true, childList: true });
  });
  const { reply, stats } = await ask(page, 'The whale');
  assert.ok(reply.length > 0, 'a reply');
  assert.match(stats, /\d+ tokens, [\d.]+ tok\/s/);
  assert.ok((await page.evaluate(() => window.updates)) >= 5, 'the reply arrived in several updates');
  await page.context().close();
});

test('temperature 0 gives the same reply twice; New chat clears; settings take effect', async () => {
  const page = await openPage(`${site.url}?nosw`);
  await loaded(page);
  await greedy(page);
  await setting(page, 'max-new-tokens', 8);
  const a = await ask(page, 'In the beginning');
  await page.click('#new-chat');
  assert.equal(await page.$$eval('.message', (els) => els.length), 0, 'New chat clears');
  const b = await ask(page, 'In the beginning');
  assert.equal(a.reply, b.reply);
  assert.ok(a.reply.startsWith('In the beginning'), 'complete mode continues the text');
  assert.match(a.stats, /^8 tokens/);
  await setting(page, 'max-new-tokens', 3);
  await page.click('#new-chat');
  assert.match((await ask(page, 'In the beginning')).stats, /^3 tokens/);
  await page.context().close();
});

/** Clicks button `id` (or, for 'Escape', presses that key) the moment the first generated token shows (the
 * embedded model is fast enough to finish a reply otherwise); window.clicked records whether the reply was still
 * streaming, its tokens then, and the messages' aria-busy. */
function clickAtFirstToken(page, id) {
  return page.evaluate((id) => {
    const stats = document.getElementById('gen-stats');
    new MutationObserver((_, obs) => {
      if (/^[1-9]\d* tokens/.test(stats.textContent)) {
        obs.disconnect();
        window.clicked = { streaming: !document.getElementById('stop').disabled, tokens: parseInt(stats.textContent, 10),
          busy: document.getElementById('messages').getAttribute('aria-busy') };
        if (id === 'Escape') document.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true }));
        else document.getElementById(id).click();
      }
    }).observe(stats, { childList: true, characterData: true, subtree: true });
  }, id);
}

test('New chat during a reply drops that reply: the next prompt starts a fresh chat', async () => {
  const page = await openPage(`${site.url}?nosw`);
  await loaded(page);
  await page.selectOption('#mode', 'chat');
  await setting(page, 'temperature', 0);
  await setting(page, 'max-new-tokens', 3);
  const promptTokens = (stats) => Number(/prompt (\d+) tokens/.exec(stats)[1]);
  const fresh = promptTokens((await ask(page, 'Hello')).stats);
  await page.click('#new-chat');
  await setting(page, 'temperature', 1);
  await setting(page, 'max-new-tokens', 2000);
  await clickAtFirstToken(page, 'new-chat');
  await page.fill('#input', 'Tell me a long story');
  await page.press('#input', 'Enter');
  await page.waitForFunction(() => !document.getElementById('send').disabled, null, { timeout: 60000 });
  assert.equal(await page.evaluate(() => window.clicked.streaming), true, 'New chat was pressed during the reply');
  assert.equal(await page.$$eval('.message', (els) => els.length), 0, 'the new chat is empty');
  const oldStats = await page.textContent('#gen-stats');
  await setting(page, 'temperature', 0);
  await setting(page, 'max-new-tokens', 3);
  const { stats, messages } = await ask(page, 'Hello');
  assert.equal(promptTokens(stats), fresh, 'the same prompt as in a fresh chat');
  assert.equal(messages.length, 2);
  assert.equal(oldStats, '', 'the old reply did not report into the new chat');
  await page.context().close();
});

test('the user\'s settings persist across reloads; the model\'s defaults fill the others; Defaults from the model resets', async () => {
  const page = await openPage(`${site.url}?nosw&hub=${encodeURIComponent(hub.url)}`);
  await loaded(page);
  const values = () => page.$$eval('#temperature, #top-k, #top-p, #max-new-tokens', (els) => els.map((e) => e.value));
  assert.deepEqual(await values(), ['0.8', '50', '0.9', '200'], 'doge-mini\'s generation_config.json');
  await setting(page, 'temperature', 0.3);
  await setting(page, 'top-p', 0.5);
  await page.reload();
  await loaded(page);
  assert.deepEqual(await values(), ['0.3', '50', '0.5', '200'], 'kept across a reload');
  // another model: its defaults (greedy, max 256 new tokens) apply only where the user changed nothing
  await page.selectOption('#model-select', 'custom');
  await page.fill('#custom-model', 'test-org/tiny-doge');
  await page.click('#load-button');
  await page.waitForFunction(() => /vocabulary 320/.test(document.getElementById('model-info').textContent), null, { timeout: 60000 });
  assert.deepEqual(await values(), ['0.3', '50', '0.5', '256']);
  await page.click('#reset-settings');
  assert.deepEqual(await values(), ['0', '50', '1', '256'], 'the model\'s defaults again');
  await page.reload(); // the embedded model again
  await loaded(page);
  assert.deepEqual(await values(), ['0.8', '50', '0.9', '200'], 'no longer the user\'s after the reset');
  await page.context().close();
});

test('Stop (and the Escape key) aborts the generation at once; screen readers wait for the whole reply', async () => {
  const page = await openPage(`${site.url}?nosw`);
  await loaded(page);
  await setting(page, 'temperature', 1);
  await setting(page, 'max-new-tokens', 2000);
  for (const how of ['stop', 'Escape']) {
    await clickAtFirstToken(page, how);
    await page.fill('#input', 'Tell me a long story');
    await page.press('#input', 'Enter');
    await finished(page);
    const stopped = parseInt(await page.textContent('#gen-stats'), 10);
    const at = await page.evaluate(() => window.clicked);
    assert.ok(stopped <= at.tokens + 1, `${stopped} tokens after ${how}`);
    assert.match(await page.textContent('#gen-stats'), /stopped: abort/);
    assert.deepEqual([at.busy, await page.getAttribute('#messages', 'aria-busy')], ['true', 'false'], 'aria-busy while the reply streams');
  }
  // still usable
  await greedy(page);
  await setting(page, 'max-new-tokens', 4);
  assert.match((await ask(page, 'The whale')).stats, /^4 tokens/);
  await page.context().close();
});

test('the manifest\'s icons exist at their stated sizes; the maskable one is opaque to its corners', async () => {
  const page = await openPage(site.url);
  const icons = await page.evaluate(async () => {
    const manifest = await (await fetch(document.querySelector('link[rel="manifest"]').href)).json();
    return Promise.all(manifest.icons.map(async (icon) => {
      const img = new Image();
      img.src = icon.src;
      await img.decode();
      const canvas = new OffscreenCanvas(img.naturalWidth, img.naturalHeight);
      const g = canvas.getContext('2d');
      g.drawImage(img, 0, 0);
      return { ...icon, width: img.naturalWidth, height: img.naturalHeight, cornerAlpha: g.getImageData(0, 0, 1, 1).data[3] };
    }));
  });
  for (const icon of icons.filter((i) => i.sizes !== 'any')) assert.equal(`${icon.width}x${icon.height}`, icon.sizes, icon.src);
  const maskable = icons.filter((i) => i.purpose?.split(' ').includes('maskable'));
  assert.ok(maskable.length > 0 && maskable.every((i) => i.purpose === 'maskable' && i.cornerAlpha === 255), JSON.stringify(maskable));
  assert.ok(icons.some((i) => !i.purpose && i.sizes === '512x512'), 'an icon for any purpose at 512x512');
  await page.context().close();
});

test('served without COOP/COEP, the single-thread build runs and says so', async () => {
  const plain = await serve({ root: `${ROOT}build/web`, port: 0, isolation: false });
  const page = await openPage(`${plain.url}?nosw`);
  await loaded(page);
  assert.match(await page.textContent('#engine-status'), /single-thread build \(SharedArrayBuffer is not available \(the page is not cross-origin isolated\)\)/);
  await greedy(page);
  await setting(page, 'max-new-tokens', 4);
  assert.match((await ask(page, 'The whale')).stats, /^4 tokens/);
  await page.context().close();
  await plain.close();
});

test('a repo id loads from a hub-layout server with progress; a corrupt model shows an error and the page keeps working', async () => {
  const page = await openPage(`${site.url}?nosw&noautoload&hub=${encodeURIComponent(hub.url)}`);
  await page.selectOption('#model-select', 'custom');
  await page.fill('#custom-model', 'test-org/tiny-doge');
  await page.click('#load-button');
  await loaded(page);
  assert.match(await page.textContent('#progress'), /model\.safetensors: 0\.4 of 0\.4 MB \(100%\), [\d.]+ MB\/s/);
  assert.match(await page.textContent('#model-info'), /vocabulary 320/);
  await page.fill('#custom-model', 'test-org/corrupt');
  await page.click('#load-button');
  await page.waitForFunction(() => !document.getElementById('error').hidden);
  assert.match(await page.textContent('#error'), /^BAD_SAFETENSORS: model\.safetensors: the file is truncated/);
  await page.selectOption('#model-select', 'embedded');
  await page.selectOption('#weights', 'int8');
  await page.click('#load-button');
  await loaded(page);
  assert.match(await page.textContent('#model-info'), /int8 weights \([\d.]+ MB\)/);
  await greedy(page);
  await setting(page, 'max-new-tokens', 3);
  assert.match((await ask(page, 'The whale')).stats, /^3 tokens/);
  await page.context().close();
});

test('offline: after one visit the page loads and generates with the server gone', async () => {
  const server = await serve({ root: `${ROOT}build/web`, port: 0 });
  const context = await browser.newContext();
  const page = await openPage(server.url, context);
  await loaded(page);
  await page.waitForFunction(async () => {
    const reg = await navigator.serviceWorker.ready;
    return !!reg.active && (await caches.keys()).some((k) => k.startsWith('doge-app-'));
  }, null, { timeout: 60000 });
  await server.close();
  await context.setOffline(true);
  await page.reload();
  await loaded(page);
  await greedy(page);
  await setting(page, 'max-new-tokens', 5);
  assert.match((await ask(page, 'The whale')).stats, /^5 tokens/);
  assert.match(await page.textContent('#offline-status'), /offline/);
  await context.close();
});

/** A page in a fresh browser context, controlled by the service worker, with hub repo `repo` chosen. */
async function serviceWorkerPage(repo) {
  const context = await browser.newContext();
  const page = await openPage(`${site.url}?noautoload&hub=${encodeURIComponent(hub.url)}`, context);
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.reload(); // now controlled by the service worker
  await page.selectOption('#model-select', 'custom');
  await page.fill('#custom-model', repo);
  return { context, page };
}

test('a hub model is stored in Cache Storage and listed with its size', async () => {
  const { context, page } = await serviceWorkerPage('test-org/tiny-doge');
  await page.click('#load-button');
  await loaded(page);
  // the service worker finishes storing a file just after the page has read it: ask until it is listed
  for (let i = 0; i < 100 && !/tiny-doge \(0\.\d MB\)/.test(await page.textContent('#cache-list')); i++) {
    await page.click('#cache-refresh');
    await page.waitForTimeout(100);
  }
  assert.match(await page.textContent('#cache-list'), /tiny-doge \(0\.\d MB\)/);
  const before = hub.log.length;
  await page.click('#load-button'); // second load: from the cache
  await loaded(page);
  const asked = hub.log.slice(before);
  assert.deepEqual(asked.filter((r) => !r.startsWith('HEAD ')), [], `files came from the cache (the hub was only asked whether they changed): ${asked}`);
  await page.click('#cache-list button');
  await page.waitForFunction(() => !/tiny-doge/.test(document.getElementById('cache-list').textContent));
  await context.close();
});

test('a hub repo missing at first loads once it exists (a cached 404 answers only offline); dragged text is not a model', async () => {
  const { context, page } = await serviceWorkerPage('test-org/later');
  await page.click('#load-button');
  await page.waitForFunction(() => !document.getElementById('error').hidden);
  assert.match(await page.textContent('#error'), /^NOT_FOUND/);
  writeTinyModel(`${hubRoot}/test-org/later`); // uploaded since
  await page.click('#load-button');
  await loaded(page);
  assert.match(await page.textContent('#model-info'), /vocabulary 320/);
  // text dropped on the page: no folder load, no error
  await page.evaluate(() => {
    const data = new DataTransfer();
    data.setData('text/plain', 'some words');
    document.getElementById('input').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
  });
  assert.equal(await page.inputValue('#model-select'), 'custom');
  assert.equal(await page.isHidden('#error'), true);
  await context.close();
});

test('a cached hub model is downloaded again once the repo has changed', async () => {
  writeTinyModel(`${hubRoot}/test-org/changing`, { seed: 1 });
  const { context, page } = await serviceWorkerPage('test-org/changing');
  await page.click('#load-button');
  await loaded(page);
  const weights = '/test-org/changing/resolve/main/model.safetensors';
  const gets = () => hub.log.filter((r) => r === `GET ${weights}`).length;
  for (let i = 0; i < 100 && !/changing \(0\.\d MB\)/.test(await page.textContent('#cache-list')); i++) {
    await page.click('#cache-refresh');
    await page.waitForTimeout(100);
  }
  await page.click('#load-button');
  await loaded(page);
  assert.equal(gets(), 1, 'unchanged: served from the cache');
  writeTinyModel(`${hubRoot}/test-org/changing`, { seed: 2 }); // re-uploaded: same size, another content and ETag
  await page.click('#load-button');
  await loaded(page);
  assert.equal(gets(), 2, 'changed: downloaded again');
  await context.close();
});
