// The page side of tools/bench/ours_browser.mjs: exposes the same benchmark as `doge-wasm bench` to Playwright.
import { benchModel } from '../../../js/bench.js';

window.dogeBench = (url, options) => benchModel(url, options);
document.getElementById('status').textContent = `ready${self.crossOriginIsolated ? ' (cross-origin isolated)' : ''}`;
