#include "pool.h"

#include <stdlib.h>

#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
#define DOGE_NO_THREADS 1
#endif

#ifndef DOGE_NO_THREADS
#include <pthread.h>
#endif

struct Pool {
    int n_threads; /* including the caller */
#ifndef DOGE_NO_THREADS
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    unsigned long generation; /* bumped once per pool_run */
    int pending;              /* workers still running the current job */
    int quit;
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

static void *worker_main(void *arg) {
    WorkerArg *wa = arg;
    Pool *p = wa->pool;
    int t = wa->index;
    free(wa);
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->generation == seen && !p->quit) pthread_cond_wait(&p->start, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        PoolFn fn = p->fn;
        void *ctx = p->ctx;
        int n = p->n_items;
        pthread_mutex_unlock(&p->mu);
        int b, e;
        range_of(n, p->n_threads, t, &b, &e);
        if (b < e) fn(ctx, b, e, t);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
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
        pthread_mutex_lock(&p->mu);
        p->fn = fn;
        p->ctx = ctx;
        p->n_items = n_items;
        p->pending = p->n_threads - 1;
        p->generation++;
        pthread_cond_broadcast(&p->start);
        pthread_mutex_unlock(&p->mu);
        int b, e;
        range_of(n_items, p->n_threads, 0, &b, &e);
        if (b < e) fn(ctx, b, e, 0);
        pthread_mutex_lock(&p->mu);
        while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
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
        p->quit = 1;
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
