// Renders bench/results.json (tools/bench/run.mjs) as a Markdown report with the targets of issue #6 and an
// SVG bar chart of decode speeds.

/** The middle value (the lower one of an even count: always one of the values). */
export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

const fmt = (x, d = 1) => (x === undefined || x === null || Number.isNaN(x) ? '–' : Number(x).toFixed(d));

function byLabel(results, model) {
  const map = new Map();
  for (const r of results.runs) if (r.model === model && !r.error) map.set(r.label, r);
  return map;
}

/** [what, measured ratio, target, pass] for the doge-20m runs. */
export function targets(results) {
  const m = byLabel(results, 'doge-20m');
  const dec = (l) => m.get(l)?.decode_tok_s;
  const pre = (l) => m.get(l)?.prefill_tok_s;
  const ratio = (a, b) => (a && b ? a / b : undefined);
  const wllama = Math.max(dec('wllama chromium f32 1t') ?? 0, dec('wllama chromium q8_0 1t') ?? 0) || undefined;
  const rows = [
    ['f32 decode vs the plain C loop in wasm (Node)', ratio(dec('doge-wasm node single f32 1t'), dec('plain-c node f32 1t')), 1.3],
    ['int8 decode vs llama.cpp Q8_0 native (both driven from Node)', ratio(dec('doge-wasm node single int8 1t'), dec('llama.cpp native q8_0 1t')), 1.0],
    ["int8 decode vs llama.cpp Q8_0 native (llama.cpp's own timer: no sampling, no JS)", ratio(dec('doge-wasm node single int8 1t'), m.get('llama.cpp native q8_0 1t')?.llama_decode_tok_s), 1.0],
    ['int8 decode vs onnxruntime-web (Node)', ratio(dec('doge-wasm node single int8 1t'), dec('onnxruntime-web node f32 1t')), 3.0],
    ['int8 decode vs wllama (Chromium, its faster of F32/Q8_0)', ratio(dec('doge-wasm node single int8 1t'), wllama), 5.0],
    ['wasm f32 decode vs the native build', ratio(dec('doge-wasm node single f32 1t'), dec('doge-native f32 1t')), 0.8],
    ['f32 prefill (P = 256) vs f32 decode', ratio(pre('doge-wasm node single f32 1t'), dec('doge-wasm node single f32 1t')), 4.0],
    ['int8 prefill (P = 256) vs int8 decode', ratio(pre('doge-wasm node single int8 1t'), dec('doge-wasm node single int8 1t')), 4.0],
    ['int8 prefill of the prompt again (P = 256) vs int8 decode', ratio(m.get('doge-wasm node single int8 1t')?.prefill_again_tok_s, dec('doge-wasm node single int8 1t')), 4.0],
    ['2 threads vs 1, f32 decode (pthreads build)', ratio(dec('doge-wasm node threads f32 2t'), dec('doge-wasm node threads f32 1t')), 1.0],
    ['2 threads vs 1, int8 decode (pthreads build)', ratio(dec('doge-wasm node threads int8 2t'), dec('doge-wasm node threads int8 1t')), 1.0],
    ['2 threads vs 1, int8 decode, another process holding a core (512 tokens)', ratio(dec('doge-wasm node threads int8 2t one core busy'), dec('doge-wasm node threads int8 1t one core busy')), 1.0],
    ['2 threads vs 1, f32 prefill (pthreads build)', ratio(pre('doge-wasm node threads f32 2t'), pre('doge-wasm node threads f32 1t')), 1.5],
    ['2 threads vs 1, int8 prefill (pthreads build)', ratio(pre('doge-wasm node threads int8 2t'), pre('doge-wasm node threads int8 1t')), 1.5],
  ];
  return rows.map(([what, got, want]) => [what, got, want, got === undefined ? null : got >= want]);
}

/** The busy-core pair beyond its medians: runs of the two alternate, so the ratio of each 2-thread run to the
 * 1-thread run next to it cancels slow spells that last longer than a run; and how many threads the 2-thread
 * runs' steps actually used. */
function busyPair(results) {
  const m = byLabel(results, 'doge-20m');
  const one = m.get('doge-wasm node threads int8 1t one core busy'), two = m.get('doge-wasm node threads int8 2t one core busy');
  if (!one?.decode_runs || !two?.decode_runs) return '';
  const ratios = two.decode_runs.map((x, i) => x / one.decode_runs[i]).sort((a, b) => a - b);
  const mid = median(ratios);
  const threads = two.decode_threads_runs ? `; the 2-thread runs' decoding steps ran on ${fmt(Math.min(...two.decode_threads_runs), 2)}-` +
    `${fmt(Math.max(...two.decode_threads_runs), 2)} threads on average (1.00: the same work as 1 thread)` : '';
  return `\nWith one core busy, the 2-thread run over the 1-thread run next to it: median ${fmt(mid, 2)}x, ` +
    `${fmt(ratios[0], 2)}-${fmt(ratios[ratios.length - 1], 2)}x over ${ratios.length} pairs${threads}.\n`;
}

/** Engine memory against weights + KV cache + 32 MB, and the bounded cache's memory over a long generation. */
function memoryChecks(results) {
  const lines = [];
  for (const r of results.runs) {
    if (r.error || r.wasm_memory_mb === undefined) continue;
    const budget = r.weight_mb + r.kv_cache_mb + 32;
    lines.push(`| ${r.model} | ${r.label} | ${fmt(r.wasm_memory_mb)} | ${fmt(r.weight_mb)} | ${fmt(r.kv_cache_mb)} | ${fmt(budget)} | ${r.wasm_memory_mb <= budget ? 'yes' : '**no**'} |`);
  }
  const long = results.runs.filter((r) => r.long && !r.error);
  let flat = '';
  if (long.length === 2) {
    const [a, b] = long;
    flat = `\nBounded cache (keep_window_size + 256 = 2304 slots), int8, doge-20m: the engine's wasm memory is ` +
      `${fmt(a.wasm_memory_mb)} MB after ${a.new_tokens} generated tokens and ${fmt(b.wasm_memory_mb)} MB after ${b.new_tokens} ` +
      `(flat: **${b.wasm_memory_mb === a.wasm_memory_mb ? 'yes' : 'no'}**; decode ${fmt(a.decode_tok_s)} and ${fmt(b.decode_tok_s)} tok/s, ` +
      `the latter attending to keep_window_size = 2048 keys per step). The process's peak RSS (${fmt(a.peak_rss_mb)} and ` +
      `${fmt(b.peak_rss_mb)} MB) also counts garbage the JS heaps have not collected yet; \`make soak\` measures resident ` +
      `memory after forced collections.\n`;
  }
  return `| model | run | wasm memory MB | weights MB | KV cache MB | budget MB | within |\n|---|---|---|---|---|---|---|\n${lines.join('\n')}\n${flat}`;
}

export function renderMarkdown(results) {
  const models = [...new Set(results.runs.map((r) => r.model))];
  let md = `# doge-wasm benchmark\n\n${results.date}, ${results.cpu}, ${results.cores} cores, Node ${results.node}; ` +
    `median of ${results.repeat} runs (decode and prefill each${results.busy_repeat ? `; ${results.busy_repeat} for the pair with one core busy` : ''}). Random-weight checkpoints with the dimensions of the released models ` +
    `(tools/bench/make_checkpoint.mjs); prompt 256 token ids, 128 greedy new tokens; "prefill again" is the same prompt once more in the same process (the first prompt after loading also pays one-time costs). Written by \`make bench\`.\n\n`;
  md += '## Targets (doge-20m, issue #6)\n\n| target | measured | wanted | met |\n|---|---|---|---|\n';
  for (const [what, got, want, ok] of targets(results)) md += `| ${what} | ${fmt(got, 2)}x | >= ${want}x | ${ok === null ? 'not measured' : ok ? 'yes' : '**no**'} |\n`;
  const par = results.parallel;
  if (par && !par.error) {
    md += `\nThe 2-thread targets assume two free cores. On this machine two single-thread doge-wasm processes at once ` +
      `get ${fmt(par.prefill_scaling, 2)}x the prefill and ${fmt(par.decode_scaling, 2)}x the decode throughput of one alone ` +
      `(2.00x = two independent cores): the ceiling for any 2-thread speed-up here.\n`;
  }
  md += busyPair(results);
  for (const model of models) {
    md += `\n## ${model}\n\n| runtime | decode tok/s | prefill tok/s | prefill again tok/s | first token ms | load ms | decode threads | decode runs |\n|---|---|---|---|---|---|---|---|\n`;
    for (const r of results.runs.filter((x) => x.model === model && !x.long)) {
      md += r.error ? `| ${r.label} | failed: ${r.error.replace(/\|/g, '/')} | | | | | | |\n`
        : `| ${r.label} | ${fmt(r.decode_tok_s)} | ${fmt(r.prefill_tok_s)} | ${fmt(r.prefill_again_tok_s)} | ${fmt(r.ttft_ms)} | ${fmt(r.load_ms)} | ${fmt(r.decode_threads, 2)} | ${(r.decode_runs ?? []).map((x) => fmt(x)).join(', ')} |\n`;
    }
  }
  md += `\n## Memory\n\n${memoryChecks(results)}`;
  return md;
}

export function renderSvg(results) {
  const runs = results.runs.filter((r) => !r.error && !r.long && r.decode_tok_s);
  const barH = 16, gap = 4, left = 330, width = 900;
  const max = Math.max(...runs.map((r) => r.decode_tok_s));
  const height = 40 + runs.length * (barH + gap);
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const bars = runs.map((r, i) => {
    const y = 30 + i * (barH + gap), w = ((width - left - 80) * r.decode_tok_s) / max;
    const ours = r.label.startsWith('doge-');
    return `<text x="${left - 6}" y="${y + 12}" text-anchor="end">${esc(`${r.model} ${r.label}`)}</text>` +
      `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${ours ? '#c8702a' : '#7a8793'}"/>` +
      `<text x="${left + w + 4}" y="${y + 12}">${fmt(r.decode_tok_s)}</text>`;
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">` +
    `<text x="10" y="18" font-size="13">decode tokens/s (greedy, 1 token per step), ${esc(results.cpu)}, ${esc(results.date.slice(0, 10))}</text>` +
    `${bars.join('')}</svg>\n`;
}
