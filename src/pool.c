#include "pool.h"

#include <stdlib.h>

#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
#define DOGE_NO_THREADS 1
#endif

#ifndef DOGE_NO_THREADS
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

/* How long a worker (or the caller) busy-waits before sleeping on a condition variable. A decode step issues
 * one job per matmul, microseconds apart: sleeping and waking through the kernel between them costs more than
 * the work, so the threads spin first and sleep only when no job follows (between tokens). */
#define SPIN_ROUNDS 200000

/* A job: items [0, n_items) handed out in chunks. Two slots, by generation parity, so that a late worker
 * reading the previous job's slot never sees the next job's fields being written. */
typedef struct {
    _Atomic(PoolFn) fn;
    _Atomic(void *) ctx;
    atomic_int n_items, chunk;
    atomic_int threads; /* threads 0..threads-1 take part (pool_set_active when the job started) */
} Job;
#endif

struct Pool {
    int n_threads; /* including the caller */
    int active;    /* threads that take part in pool_run: the caller and workers 1..active-1 (pool_set_active) */
#ifndef DOGE_NO_THREADS
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    Job job[2];
    /* Work is claimed, not assigned: (generation << 32 | next item), advanced by compare-and-swap. A worker
     * that is not running when a job starts (its core taken by another process) claims nothing, and the caller
     * does its share instead of waiting for it: two threads never wait on a thread that is not running. */
    _Atomic uint64_t claim;
    atomic_int done_items;   /* items finished in the current job */
    atomic_ulong generation; /* the start signal */
    atomic_int sleepers;     /* workers blocked on `start` */
    atomic_int caller_asleep;
    atomic_int quit;
#endif
};

#ifndef DOGE_NO_THREADS
typedef struct {
    Pool *pool;
    int index;
} WorkerArg;

/* Claims and runs chunks of job `gen` until none are left (or a later job has started); returns how many
 * chunks it ran. */
static int run_claims(Pool *p, unsigned long gen, int thread) {
    const Job *j = &p->job[gen & 1];
    for (int ran = 0;; ran++) {
        uint64_t c = atomic_load(&p->claim);
        if ((c >> 32) != (gen & 0xffffffffu)) return ran; /* a later job: this one is done */
        const int n = atomic_load_explicit(&j->n_items, memory_order_relaxed);
        const int begin = (int)(c & 0xffffffffu);
        if (begin >= n) return ran;
        const int chunk = atomic_load_explicit(&j->chunk, memory_order_relaxed);
        const int end = n - begin < chunk ? n : begin + chunk;
        const PoolFn fn = atomic_load_explicit(&j->fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&j->ctx, memory_order_relaxed);
        /* the job's fields were read before the claim: a successful claim proves they were still this job's */
        if (!atomic_compare_exchange_weak(&p->claim, &c, (c & ~(uint64_t)0xffffffffu) | (uint64_t)end)) {
            ran--;
            continue;
        }
        fn(ctx, begin, end, thread);
        if (atomic_fetch_add(&p->done_items, end - begin) + (end - begin) == n && atomic_load(&p->caller_asleep)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

/* Waits until the generation moves past `seen` or the pool quits, spinning for `spin` rounds first. */
static void wait_for_job(Pool *p, unsigned long seen, int spin) {
    for (int i = 0; i < spin; i++)
        if (atomic_load(&p->generation) != seen || atomic_load(&p->quit)) return;
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    /* seq_cst: either the caller sees sleepers > 0 after publishing the job, or we see the new generation */
    while (atomic_load(&p->generation) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->start, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
}

static void *worker_main(void *arg) {
    WorkerArg *wa = arg;
    Pool *p = wa->pool;
    int t = wa->index;
    free(wa);
    unsigned long seen = 0;
    int missed = 0; /* jobs in a row that were over before this thread got to them */
    for (;;) {
        /* A thread that keeps arriving late has no core of its own (another process holds it): spinning would
         * only take time from the caller, so it spins less and sleeps sooner. */
        wait_for_job(p, seen, SPIN_ROUNDS >> (missed < 16 ? missed : 16));
        if (atomic_load(&p->quit)) return NULL;
        seen = atomic_load(&p->generation);
        /* a worker left out of this job (a thread cap) counts as late: it soon sleeps instead of spinning */
        const int included = t < atomic_load_explicit(&p->job[seen & 1].threads, memory_order_relaxed);
        missed = included && run_claims(p, seen, t) ? 0 : missed + 1;
    }
}
#endif

Pool *pool_new(int n_threads) {
    Pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = 1;
#ifndef DOGE_NO_THREADS
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            free(p);
            return NULL;
        }
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->start, NULL);
        pthread_cond_init(&p->done, NULL);
        /* A thread that cannot be started (e.g. the wasm pthread pool is used up) is not an error: results do
         * not depend on the thread count, so the pool runs with the threads it got. */
        for (int t = 1; t < n_threads; t++) {
            WorkerArg *wa = malloc(sizeof *wa);
            if (!wa) break;
            wa->pool = p;
            wa->index = t;
            if (pthread_create(&p->workers[t - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                break;
            }
            p->n_threads = t + 1;
        }
    }
#else
    (void)n_threads;
#endif
    p->active = p->n_threads;
    return p;
}

void pool_run(Pool *p, PoolFn fn, void *ctx, int n_items) {
    if (n_items <= 0) return;
#ifndef DOGE_NO_THREADS
    if (p->active > 1 && n_items > 1) {
        const unsigned long gen = atomic_load(&p->generation) + 1;
        Job *j = &p->job[gen & 1];
        /* about 4 chunks per thread: balance without a claim per item */
        const int chunk = (n_items + 4 * p->active - 1) / (4 * p->active);
        atomic_store_explicit(&j->fn, fn, memory_order_relaxed);
        atomic_store_explicit(&j->ctx, ctx, memory_order_relaxed);
        atomic_store_explicit(&j->n_items, n_items, memory_order_relaxed);
        atomic_store_explicit(&j->chunk, chunk, memory_order_relaxed);
        atomic_store_explicit(&j->threads, p->active, memory_order_relaxed);
        atomic_store(&p->done_items, 0);
        atomic_store(&p->claim, (uint64_t)(gen & 0xffffffffu) << 32); /* publishes the job (seq_cst) */
        atomic_store(&p->generation, gen);
        if (atomic_load(&p->sleepers) > 0) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_broadcast(&p->start);
            pthread_mutex_unlock(&p->mu);
        }
        run_claims(p, gen, 0);
        /* every item is claimed; wait for the chunks still running on other threads */
        for (int i = 0; i < SPIN_ROUNDS && atomic_load(&p->done_items) < n_items; i++) {
        }
        if (atomic_load(&p->done_items) < n_items) {
            pthread_mutex_lock(&p->mu);
            atomic_store(&p->caller_asleep, 1);
            while (atomic_load(&p->done_items) < n_items) pthread_cond_wait(&p->done, &p->mu);
            atomic_store(&p->caller_asleep, 0);
            pthread_mutex_unlock(&p->mu);
        }
        return;
    }
#else
    (void)p;
#endif
    fn(ctx, 0, n_items, 0);
}

int pool_threads(const Pool *p) { return p->n_threads; }

int pool_active(const Pool *p) { return p->active; }

void pool_set_active(Pool *p, int n) { p->active = n < 1 ? 1 : n > p->n_threads ? p->n_threads : n; }

void pool_free(Pool *p) {
    if (!p) return;
#ifndef DOGE_NO_THREADS
    if (p->workers) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->quit, 1);
        pthread_cond_broadcast(&p->start);
        pthread_mutex_unlock(&p->mu);
        for (int t = 1; t < p->n_threads; t++) pthread_join(p->workers[t - 1], NULL);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->start);
        pthread_cond_destroy(&p->done);
        free(p->workers);
    }
#endif
    free(p);
}
