/* A persistent thread pool: n-1 workers plus the calling thread split a range of work items.
 * Each item is always computed the same way whoever runs it, so results do not depend on the thread count. */
#ifndef DOGE_POOL_H
#define DOGE_POOL_H

/* thread: 0..n_threads-1, for per-thread scratch buffers. */
typedef void (*PoolFn)(void *ctx, int begin, int end, int thread);
typedef struct Pool Pool;

/* Returns NULL when threads cannot be created (the caller then runs single-threaded). */
Pool *pool_new(int n_threads);
/* Runs fn over [0, n_items) in chunks that the threads claim as they come (the caller included); returns
 * when all are done. */
void pool_run(Pool *p, PoolFn fn, void *ctx, int n_items);
/* Threads in the pool (the caller included). */
int pool_threads(const Pool *p);
/* The threads that take part in the next pool_run calls: the caller and workers 1..n-1 (1: the caller alone). */
void pool_set_active(Pool *p, int n);
int pool_active(const Pool *p);
void pool_free(Pool *p);

#endif
