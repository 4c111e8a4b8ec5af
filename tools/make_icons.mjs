// Renders web/icons/icon.svg to the PNG sizes the web manifest lists, with Debian's Chromium, and a maskable
// variant: the background to every edge and the drawing scaled into the safe zone (the circle of 80 % of the
// width that every launcher mask keeps).
//   node tools/make_icons.mjs
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('../web/icons/', import.meta.url));
const svg = readFileSync(`${dir}icon.svg`, 'utf8');
const [, open, background, drawing] = /^(<svg[^>]*>)\s*(<rect[^>]*\/>)(.*)<\/svg>\s*$/s.exec(svg);
const fill = /fill="([^"]+)"/.exec(background)[1];
const maskable = `${open}<rect width="512" height="512" fill="${fill}"/>` +
  `<g transform="translate(256 256) scale(0.8) translate(-256 -256)">${drawing}</g></svg>`;

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
for (const [name, image, size] of [['icon-192', svg, 192], ['icon-512', svg, 512], ['icon-maskable-512', maskable, 512]]) {
  const page = await browser.newPage({ viewport: { width: size, height: size } });
  await page.setContent(`<style>body{margin:0}svg{width:${size}px;height:${size}px;display:block}</style>${image}`);
  await page.screenshot({ path: `${dir}${name}.png`, omitBackground: true });
  await page.close();
}
await browser.close();
