/* SPDX-License-Identifier: MIT */
/* worker.c - background cleanup: a bounded ring of batches, a worker thread
 * that runs their destructors and hooks, the reply to each batch's owner
 * (its mailbox, in its context), exact samm_wait, and what fork() needs
 * (no held lock, no dead worker in the child).
 *
 * Why replies: a slot freed by a thread that does not own its slab costs an
 * atomic on a cache line the owner keeps writing, so a worker that freed
 * memory itself made background mode several times slower than inline.
 * The worker leaves default releases to the owner: it parks the pointers at
 * the end of the batch's own array, puts the batch in the owner's mailbox
 * and pokes the owner's exit floor, so the owner's next scope exit (or
 * samm_wait) takes the slow path, frees them in bulk where the slabs are
 * owned, and reuses the arrays for its frames.
 */
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

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

void samm__worker_set_capacity(size_t batches)
{
    pthread_mutex_lock(&lock);
    limit = batches ? batches : 1;
    pthread_mutex_unlock(&lock);
}

/* What could not go back to its owner is released here. */
static void release_here(samm_tld *w, samm_batch *b)
{
    samm__release_deferred(w, b, "samm_exit_scope (cleanup worker)");
    samm__heap_flush_remote(w);
    samm__batch_free_arrays(b);
}

/* Called with the lock held: b goes to its owner's mailbox, whose exit
 * floor is poked; false when the mailbox is full. */
static bool reply(samm_batch *b)
{
    samm_tld *o = b->owner;
    size_t n = LOAD(&o->nmail);
    if (n >= SAMM_MAILBOX_CAP) return false;
    o->mail[n] = *b;
    atomic_store(&o->nmail, n + 1);
    STORE(&o->floor, UINTPTR_MAX);
    return true;
}

static void *worker_main(void *arg)
{
    samm_tld *w = arg;
    samm__tld_install(w);
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

        bool back = b.owner != NULL;
        samm__clean(w, &b, back, "samm_exit_scope (cleanup worker)");
        samm__publish(w);

        pthread_mutex_lock(&lock);
        if (back && !reply(&b)) {
            pthread_mutex_unlock(&lock);
            release_here(w, &b);
            pthread_mutex_lock(&lock);
        } else if (!back) {
            samm__batch_free_arrays(&b);
        }
        busy = false;
        completed++;
        pthread_cond_broadcast(&done_cv);
    }
    pthread_mutex_unlock(&lock);
    samm__heap_flush_remote(w);
    return NULL;
}

/* Called with the lock held. */
static bool ensure_running(void)
{
    if (running) return true;
    stopping = false;
    samm_tld *w = samm__tld_prepare("samm_exit_scope");
    if (w == NULL) return false;
    w->is_worker = true;
    if (pthread_create(&thread, NULL, worker_main, w) != 0) {
        samm__tld_unprepare(w);
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

bool samm__worker_submit(samm_tld *t, const samm_batch *b)
{
    pthread_mutex_lock(&lock);
    bool ok = !t->is_worker && ring_room() && ensure_running();
    if (ok) {
        ring[(head + len) % ring_cap] = *b;
        len++;
        submitted++;
        t->submitted++;
        if (len > high_water) high_water = len;
        pthread_cond_signal(&work_cv);
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

size_t samm__mail_take(samm_tld *t, samm_batch *out)
{
    if (LOAD(&t->nmail) == 0) return 0;
    pthread_mutex_lock(&lock);
    size_t n = LOAD(&t->nmail);
    for (size_t i = 0; i < n; i++)
        out[i] = t->mail[i];
    atomic_store(&t->nmail, 0);
    pthread_mutex_unlock(&lock);
    return n;
}

void samm__worker_wait(void)
{
    samm_tld *t = samm__tld;
    /* A hook running on the worker cannot wait for itself. */
    if (t != &samm__tld_empty && t->is_worker) return;
    pthread_mutex_lock(&lock);
    uint64_t target = submitted;
    if (completed < target && !running) ensure_running(); /* e.g. in a fork child */
    while (completed < target && running)
        pthread_cond_wait(&done_cv, &lock);
    pthread_mutex_unlock(&lock);
}

void samm__worker_stop(void)
{
    samm_tld *t = samm__tld;
    if (t != &samm__tld_empty && t->is_worker) return;
    pthread_mutex_lock(&lock);
    if (!running) {
        pthread_mutex_unlock(&lock);
        return;
    }
    stopping = true;
    pthread_cond_broadcast(&work_cv);
    pthread_t th = thread;
    pthread_mutex_unlock(&lock);
    pthread_join(th, NULL);

    pthread_mutex_lock(&lock);
    running = false;
    stopping = false;
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
    samm_tld *t = samm__tld;
    bool on_worker = t != &samm__tld_empty && t->is_worker;
    pthread_mutex_lock(&lock);
    fork_hold = true;
    while (busy && !on_worker)
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
