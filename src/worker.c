/* worker.c - background cleanup: a bounded ring of detached batches, one
 * worker thread that runs their destructors and hooks, per-thread
 * mailboxes that carry finished batches back to the threads that made
 * them, exact samm_wait, and what fork() needs (no held lock, no dead
 * worker in the child).
 *
 * Why mailboxes: a slot freed by a thread that does not own its slab costs
 * an atomic on a cache line the owner keeps writing, so a worker that
 * frees memory itself makes background mode several times slower than
 * inline.  The worker therefore leaves default releases to the owner: it
 * parks the pointers at the end of the batch's own array, and the owner
 * frees them in bulk, locally, when it next submits a batch (inside the
 * lock it takes anyway) or waits, and reuses the arrays for its frames.
 */
#include <pthread.h>
#include <stdlib.h>

#include "internal.h"

#define MAILBOX_CAP 32

struct samm_mailbox {
    samm_batch done[MAILBOX_CAP];
    size_t n;
    struct samm_mailbox *next; /* all mailboxes, for shutdown */
};

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
static samm_mailbox *mailboxes;

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

void samm__batch_free_arrays(samm_batch *b)
{
    free(b->ptrs);
    free(b->types);
    free(b->sc);
}

void samm__batch_release_deferred(samm_batch *b, const char *call)
{
    samm__mem_release_many(b->ptrs + b->count - b->nrelease, b->nrelease, call);
}

/* What the worker could not park in a mailbox it releases itself. */
static void release_here(samm_batch *b)
{
    samm__batch_release_deferred(b, "samm_exit_scope (cleanup worker)");
    samm__pool_flush();
    samm__batch_free_arrays(b);
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

        b.nrelease = samm__clean(b.ptrs, b.types, b.count, "samm_exit_scope (cleanup worker)",
                                 b.mbox != NULL);

        pthread_mutex_lock(&lock);
        if (b.mbox != NULL && b.mbox->n < MAILBOX_CAP) {
            b.mbox->done[b.mbox->n++] = b;
        } else {
            pthread_mutex_unlock(&lock);
            release_here(&b);
            pthread_mutex_lock(&lock);
        }
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

/* Called with the lock held. */
static size_t take_done(samm_mailbox *mb, samm_batch *out)
{
    size_t n = mb ? mb->n : 0;
    for (size_t i = 0; i < n; i++)
        out[i] = mb->done[i];
    if (mb) mb->n = 0;
    return n;
}

bool samm__worker_submit(const samm_batch *b, samm_batch *done, size_t *n_done)
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
    *n_done = take_done(b->mbox, done);
    pthread_mutex_unlock(&lock);
    return ok;
}

samm_mailbox *samm__mailbox_new(void)
{
    samm_mailbox *mb = samm__calloc(1, sizeof *mb);
    if (mb == NULL) return NULL; /* the worker then releases this thread's memory itself */
    pthread_mutex_lock(&lock);
    mb->next = mailboxes;
    mailboxes = mb;
    pthread_mutex_unlock(&lock);
    return mb;
}

size_t samm__mailbox_take(samm_mailbox *mb, samm_batch *done)
{
    pthread_mutex_lock(&lock);
    size_t n = take_done(mb, done);
    pthread_mutex_unlock(&lock);
    return n;
}

/* The owner is ending: everything it queued is finished (it waited), and
 * what is left in its mailbox has been taken. */
void samm__mailbox_delete(samm_mailbox *mb)
{
    if (mb == NULL) return;
    pthread_mutex_lock(&lock);
    for (samm_mailbox **p = &mailboxes; *p; p = &(*p)->next) {
        if (*p == mb) {
            *p = mb->next;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    samm__free(mb);
}

/* Shutdown: batches parked for threads that will not come back for them
 * (or not before the leak report) are released by the caller. */
void samm__mailbox_drain_all(void)
{
    samm_batch done[MAILBOX_CAP];
    for (;;) {
        size_t n = 0;
        pthread_mutex_lock(&lock);
        for (samm_mailbox *mb = mailboxes; mb && n == 0; mb = mb->next)
            n = take_done(mb, done);
        pthread_mutex_unlock(&lock);
        if (n == 0) return;
        for (size_t i = 0; i < n; i++)
            release_here(&done[i]);
    }
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
