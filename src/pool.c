#include "pool.h"

#include <stdlib.h>

#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
#define DOGE_NO_THREADS 1
#endif

#ifndef DOGE_NO_THREADS
#include <pthread.h>
#include <stdatomic.h>

/* How long a worker (or the caller) busy-waits before sleeping on the condition variable. A decode step
 * issues one job per matmul, microseconds apart: sleeping and waking through the kernel between them costs
 * more than the work, so the threads spin first and sleep only when no job follows (between tokens). */
#define SPIN_ROUNDS 200000
#endif

struct Pool {
    int n_threads; /* including the caller */
#ifndef DOGE_NO_THREADS
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    atomic_ulong generation; /* bumped once per pool_run: the start signal */
    atomic_int pending;      /* workers still running the current job */
    atomic_int sleepers;     /* workers blocked on `start` (the caller then broadcasts) */
    atomic_int caller_asleep;
    atomic_int quit;
    PoolFn fn;
    void *ctx;
    int n_items;
#endif
};

#ifndef DOGE_NO_THREADS
static void range_of(int n_items, int n_threads, int t, int *b, int *e) {
    long per = (n_items + n_threads - 1) / n_threads;
    long lo = per * t, hi = lo + per;
    if (lo > n_items) lo = n_items;
    if (hi > n_items) hi = n_items;
    *b = (int)lo;
    *e = (int)hi;
}

typedef struct {
    Pool *pool;
    int index;
} WorkerArg;

/* Waits until the generation moves past `seen` or the pool quits. */
static void wait_for_job(Pool *p, unsigned long seen) {
    for (int i = 0; i < SPIN_ROUNDS; i++)
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
    for (;;) {
        wait_for_job(p, seen);
        if (atomic_load(&p->quit)) return NULL;
        seen = atomic_load(&p->generation);
        int b, e;
        range_of(p->n_items, p->n_threads, t, &b, &e);
        if (b < e) p->fn(p->ctx, b, e, t);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_asleep)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
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
    return p;
}

void pool_run(Pool *p, PoolFn fn, void *ctx, int n_items) {
    if (n_items <= 0) return;
#ifndef DOGE_NO_THREADS
    if (p->n_threads > 1 && n_items > 1) {
        p->fn = fn;
        p->ctx = ctx;
        p->n_items = n_items;
        atomic_store(&p->pending, p->n_threads - 1);
        atomic_fetch_add(&p->generation, 1); /* publishes fn/ctx/n_items (seq_cst) */
        if (atomic_load(&p->sleepers) > 0) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_broadcast(&p->start);
            pthread_mutex_unlock(&p->mu);
        }
        int b, e;
        range_of(n_items, p->n_threads, 0, &b, &e);
        if (b < e) fn(ctx, b, e, 0);
        for (int i = 0; i < SPIN_ROUNDS && atomic_load(&p->pending) > 0; i++) {
        }
        if (atomic_load(&p->pending) > 0) {
            pthread_mutex_lock(&p->mu);
            atomic_store(&p->caller_asleep, 1);
            while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
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
