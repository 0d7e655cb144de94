/* worker.c - background cleanup: a bounded ring of detached batches, one
 * worker thread that cleans them, exact samm_wait, array recycling, and
 * what fork() needs (no held lock, no dead worker in the child).
 */
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

/* Cleaned batches' arrays are kept for the mutators to reuse, so background
 * mode does not pay three mallocs per scope; beyond this many they are
 * released with free(), as the seed design's consumer does. */
#define RECYCLE_MAX 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cv = PTHREAD_COND_INITIALIZER; /* queue non-empty, or stop */
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER; /* a batch finished        */

static samm_batch *ring;
static size_t ring_cap; /* allocated slots */
static size_t limit = 1024;
static size_t head, len;
static uint64_t submitted, completed; /* batches; wait() compares them */
static uint64_t high_water;
static bool running, stopping, busy, fork_hold;
static pthread_t thread;
static SAMM_TLS bool is_worker;

static samm_batch recycled[RECYCLE_MAX];
static size_t n_recycled;

bool samm__on_worker_thread(void)
{
    return is_worker;
}

void samm__worker_set_capacity(size_t batches)
{
    pthread_mutex_lock(&lock);
    limit = batches ? batches : 1;
    pthread_mutex_unlock(&lock);
}

static void release_arrays(samm_batch *b)
{
    free(b->ptrs);
    free(b->types);
    free(b->sc);
}

static void *worker_main(void *unused)
{
    (void)unused;
    is_worker = true;
    pthread_mutex_lock(&lock);
    for (;;) {
        while ((len == 0 || fork_hold) && !stopping)
            pthread_cond_wait(&work_cv, &lock);
        if (len == 0 && stopping) break;
        samm_batch b = ring[head];
        head = (head + 1) % ring_cap;
        len--;
        busy = true;
        pthread_mutex_unlock(&lock);

        samm__clean(b.ptrs, b.types, b.count, "samm_exit_scope (cleanup worker)");
        samm__pool_flush();

        pthread_mutex_lock(&lock);
        if (n_recycled < RECYCLE_MAX)
            recycled[n_recycled++] = b;
        else
            release_arrays(&b);
        busy = false;
        completed++;
        pthread_cond_broadcast(&done_cv);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* Called with the lock held. */
static bool ensure_running(void)
{
    if (running) return true;
    stopping = false;
    if (pthread_create(&thread, NULL, worker_main, NULL) != 0) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, "samm_exit_scope", NULL,
                     "cannot start the cleanup worker; cleaning inline");
        return false;
    }
    running = true;
    return true;
}

/* Called with the lock held: room for one more batch in the ring. */
static bool ring_room(void)
{
    if (len >= limit) return false;
    if (len < ring_cap) return true;
    size_t cap = ring_cap ? ring_cap * 2 : 64;
    if (cap > limit) cap = limit;
    samm_batch *r = samm__malloc(cap * sizeof *r);
    if (r == NULL) return false;
    for (size_t i = 0; i < len; i++)
        r[i] = ring[(head + i) % ring_cap];
    samm__free(ring);
    ring = r;
    ring_cap = cap;
    head = 0;
    return true;
}

bool samm__worker_submit(const samm_batch *b)
{
    pthread_mutex_lock(&lock);
    bool ok = !is_worker && ring_room() && ensure_running();
    if (ok) {
        ring[(head + len) % ring_cap] = *b;
        len++;
        submitted++;
        if (len > high_water) high_water = len;
        pthread_cond_signal(&work_cv);
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

bool samm__worker_recycled(samm_batch *out)
{
    pthread_mutex_lock(&lock);
    bool ok = n_recycled > 0;
    if (ok) *out = recycled[--n_recycled];
    pthread_mutex_unlock(&lock);
    return ok;
}

void samm__worker_wait(void)
{
    /* A hook running on the worker cannot wait for itself. */
    if (is_worker) return;
    pthread_mutex_lock(&lock);
    uint64_t target = submitted;
    if (completed < target && !running) ensure_running(); /* e.g. in a fork child */
    while (completed < target && running)
        pthread_cond_wait(&done_cv, &lock);
    pthread_mutex_unlock(&lock);
}

void samm__worker_stop(void)
{
    if (is_worker) return;
    pthread_mutex_lock(&lock);
    if (!running) {
        pthread_mutex_unlock(&lock);
        return;
    }
    stopping = true;
    pthread_cond_broadcast(&work_cv);
    pthread_t t = thread;
    pthread_mutex_unlock(&lock);
    pthread_join(t, NULL);

    pthread_mutex_lock(&lock);
    running = false;
    stopping = false;
    for (size_t i = 0; i < n_recycled; i++)
        release_arrays(&recycled[i]);
    n_recycled = 0;
    samm__free(ring);
    ring = NULL;
    ring_cap = head = len = 0;
    pthread_mutex_unlock(&lock);
}

bool samm__worker_active(void)
{
    pthread_mutex_lock(&lock);
    bool r = running;
    pthread_mutex_unlock(&lock);
    return r;
}

uint64_t samm__worker_high_water(void)
{
    pthread_mutex_lock(&lock);
    uint64_t r = high_water;
    pthread_mutex_unlock(&lock);
    return r;
}

/* ------------------------------------------------------------------------
 * fork(): the parent's worker finishes the batch in hand and takes no new
 * one, so the child inherits a consistent queue; the child, which has no
 * worker thread, starts one when it next needs it.
 * ---------------------------------------------------------------------- */
void samm__worker_atfork_prepare(void)
{
    pthread_mutex_lock(&lock);
    fork_hold = true;
    while (busy && !is_worker)
        pthread_cond_wait(&done_cv, &lock);
}

void samm__worker_atfork_parent(void)
{
    fork_hold = false;
    pthread_cond_broadcast(&work_cv);
    pthread_mutex_unlock(&lock);
}

void samm__worker_atfork_child(void)
{
    fork_hold = false;
    running = false;
    stopping = false;
    busy = false;
    pthread_mutex_unlock(&lock);
    pthread_cond_init(&work_cv, NULL);
    pthread_cond_init(&done_cv, NULL);
}
