// Takes the README's screenshot of the web demo chatting with the embedded model (needs `make web`).
//   node tools/screenshot.mjs
import { chromium } from 'playwright-core';
import { fileURLToPath } from 'node:url';
import { serve } from '../web/serve.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const site = await serve({ root: `${root}build/web`, port: 0 });
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
await page.goto(`${site.url}?nosw`);
await page.waitForFunction(() => /build/.test(document.getElementById('engine-status').textContent));
await page.fill('#seed', '7');
await page.dispatchEvent('#seed', 'change');
for (const prompt of ['It is a truth universally acknowledged, that', 'The whale']) {
  await page.fill('#input', prompt);
  await page.press('#input', 'Enter');
  await page.waitForFunction(() => /stopped: \w+/.test(document.getElementById('gen-stats').textContent) && !document.getElementById('send').disabled);
}
await page.screenshot({ path: `${root}docs/screenshot.png` });
await browser.close();
await site.close();
