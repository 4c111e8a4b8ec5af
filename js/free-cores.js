/**
 * How many cores other processes leave to this one, from the operating system's CPU accounting (Node only:
 * browsers do not tell). A step on a core another process keeps busy loses to one thread; the core's timing
 * probe finds that out by losing a few steps, the accounting tells it before any step runs.
 * @module free-cores
 */

/** Shorter intervals are left to the next reading: the OS counts CPU time in ticks of 10 ms, so a busy core
 * reads as 0.8-1.2 cores over 100 ms, which still rounds to one (threadCap). */
const MIN_INTERVAL_MS = 100;

/**
 * Starts watching; null where the OS does not tell (browsers).
 * @returns {Promise<{read: () => number|null}|null>} read(): the cores this process could have used since the
 *   last reading (its own use plus what no process used), or null when too little time has passed
 */
export async function watchFreeCores() {
  if (typeof process === 'undefined' || !process.versions?.node) return null;
  const os = await import('node:os');
  // Held to some of the machine's cores (taskset, a container's cpuset), this process would count the other
  // cores' load against itself: the timing probe alone decides then. (A CPU quota is not seen: every core
  // looks free, and again the probe decides.)
  // Some platforms list no cores: nothing to tell.
  const cores = os.cpus().length;
  if (!cores || (os.availableParallelism && os.availableParallelism() !== cores)) return null;
  const sample = () => {
    let busy = 0;
    for (const { times: t } of os.cpus()) busy += t.user + t.nice + t.sys + t.irq;
    const own = process.cpuUsage(); // the whole process, every thread, in microseconds
    return { at: performance.now(), busy, own: (own.user + own.system) / 1000 };
  };
  let last = sample();
  return {
    read() {
      if (performance.now() - last.at < MIN_INTERVAL_MS) return null; // checked first: reading costs ~40 us
      const now = sample();
      const others = Math.max(0, now.busy - last.busy - (now.own - last.own)) / (now.at - last.at); // cores other processes kept busy
      last = now;
      return Math.max(1, cores - others);
    },
  };
}

/**
 * The threads a session may use when `free` cores are left to this process: one per free core, a core more
 * than half free counting as free (a core shared with a lighter process is for the timing probe to judge), at
 * least 1, at most `threads`.
 * @param {number} free @param {number} threads
 */
export function threadCap(free, threads) {
  return Math.max(1, Math.min(threads, Math.floor(free + 0.5)));
}
