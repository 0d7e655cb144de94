/* SPDX-License-Identifier: MIT */
/* worker.c - background cleanup: a bounded ring of batches, the worker
 * threads (SAMM_WORKERS of them, started when first needed) that run their
 * destructors and hooks, the reply to each batch's owner (its mailbox, in
 * its context), exact samm_wait, and what fork() needs (no held lock, no
 * dead worker in the child).
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
#include <unistd.h>

#include "internal.h"

#define MAX_WORKERS 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cv = PTHREAD_COND_INITIALIZER; /* queue non-empty, or stop */
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER; /* a batch finished        */

static samm_batch *ring;
static size_t ring_cap; /* allocated slots */
static size_t limit = 1024;
static size_t head;
static _Atomic size_t len; /* batches waiting (read unlocked by auto mode) */
/* Batches are numbered as they are queued; the ring hands them out in that
 * order, but several workers finish them in any.  samm_wait waits until
 * every batch up to its number has been taken and none of them is still
 * being cleaned. */
static uint64_t submitted, completed;
static uint64_t next_out = 1;          /* number of the next batch to take */
static uint64_t cleaning[MAX_WORKERS]; /* what each worker cleans, or 0   */
static uint64_t high_water;
static int nrunning, nbusy, target; /* workers started, cleaning, wanted */
static int nsleeping;               /* workers waiting on work_cv        */
static _Atomic bool stopping;
static bool fork_hold;
static pthread_t threads[MAX_WORKERS];

/* The default number of workers: one less than the CPUs (the program keeps
 * one), at least one, at most eight. */
static int default_workers(void)
{
    static int n; /* sysconf reads /sys each time: once is enough */
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN) - 1;
        n = c < 1 ? 1 : c > 8 ? 8 : (int)c;
    }
    return n;
}

void samm__worker_set_capacity(size_t batches)
{
    pthread_mutex_lock(&lock);
    limit = batches ? batches : 1;
    pthread_mutex_unlock(&lock);
}

size_t samm__worker_backlog(void)
{
    return atomic_load_explicit(&len, RELAXED);
}

int samm__worker_target(void)
{
    pthread_mutex_lock(&lock);
    int n = target ? target : default_workers();
    pthread_mutex_unlock(&lock);
    return n;
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
/* Called with the lock held: every batch numbered up to `seq` is done. */
static bool done_up_to(uint64_t seq)
{
    if (next_out <= seq) return false;
    for (int i = 0; i < nrunning; i++)
        if (cleaning[i] != 0 && cleaning[i] <= seq) return false;
    return true;
}

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

/* How long an idle worker looks at the queue before it sleeps: waking a
 * sleeping thread costs a system call on each side, more than cleaning a
 * batch of cheap destructors, so a steady stream never sleeps. */
#define SPIN_ROUNDS 10000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

typedef struct {
    samm_tld *w;
    int index;
} worker_arg;
static worker_arg worker_args[MAX_WORKERS];

static void *worker_main(void *arg)
{
    worker_arg *a = arg;
    samm_tld *w = a->w;
    int me = a->index;
    samm__tld_install(w);
    pthread_mutex_lock(&lock);
    for (;;) {
        if (len == 0 && !stopping) {
            pthread_mutex_unlock(&lock);
            for (int i = 0; i < SPIN_ROUNDS && atomic_load_explicit(&len, RELAXED) == 0 &&
                            !atomic_load_explicit(&stopping, RELAXED);
                 i++)
                cpu_relax();
            pthread_mutex_lock(&lock);
        }
        while ((len == 0 || fork_hold) && !stopping) {
            nsleeping++;
            pthread_cond_wait(&work_cv, &lock);
            nsleeping--;
        }
        if (len == 0 && stopping) break;
        samm_batch b = ring[head];
        head = (head + 1) % ring_cap;
        atomic_store_explicit(&len, len - 1, RELAXED);
        next_out = b.seq + 1;
        cleaning[me] = b.seq;
        nbusy++;
        pthread_mutex_unlock(&lock);

        bool back = b.owner != NULL;
        uint64_t t0 = b.timed ? samm__now_ns() : 0;
        samm__clean(w, &b, back, "samm_exit_scope (cleanup worker)");
        if (b.timed && b.count > b.ntomb) {
            uint64_t per = (samm__now_ns() - t0) / (b.count - b.ntomb);
            b.entry_ns = per ? (uint32_t)(per < UINT32_MAX ? per : UINT32_MAX) : 1;
        }
        /* All of it, the blocks its active slabs handed out included:
         * nothing else publishes a worker's counts before it stops, and
         * samm_wait promises exact statistics after it returns. */
        samm__publish_all(w);

        pthread_mutex_lock(&lock);
        if (back && !reply(&b)) {
            pthread_mutex_unlock(&lock);
            release_here(w, &b);
            pthread_mutex_lock(&lock);
        } else if (!back) {
            samm__batch_free_arrays(&b);
        }
        if (back) b.owner->inflight--;
        cleaning[me] = 0;
        nbusy--;
        completed++;
        pthread_cond_broadcast(&done_cv);
    }
    pthread_mutex_unlock(&lock);
    samm__heap_flush_remote(w);
    return NULL;
}

/* Called with the lock held: the wanted number of workers runs (at least
 * one, or false). */
static bool ensure_running(void)
{
    int want = target ? target : default_workers();
    if (nrunning >= want) return true;
    stopping = false;
    while (nrunning < want) {
        samm_tld *w = samm__tld_prepare("samm_exit_scope");
        if (w == NULL) break;
        worker_args[nrunning] = (worker_arg){w, nrunning};
        cleaning[nrunning] = 0;
        if (pthread_create(&threads[nrunning], NULL, worker_main, &worker_args[nrunning]) != 0) {
            samm__tld_unprepare(w);
            samm__report(SAMM_ERR_OUT_OF_MEMORY, "samm_exit_scope", NULL,
                         "cannot start a cleanup worker");
            break;
        }
        nrunning++;
    }
    return nrunning > 0;
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
        samm_batch *slot = &ring[(head + len) % ring_cap];
        *slot = *b;
        slot->seq = ++submitted;
        atomic_store_explicit(&len, len + 1, RELAXED);
        t->submitted++;
        t->inflight++;
        if (len > high_water) high_water = len;
        if (nsleeping) pthread_cond_signal(&work_cv);
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
    uint64_t want = submitted;
    if (!done_up_to(want) && nrunning == 0) ensure_running(); /* e.g. in a fork child */
    while (!done_up_to(want) && nrunning > 0)
        pthread_cond_wait(&done_cv, &lock);
    pthread_mutex_unlock(&lock);
}

void samm__worker_wait_own(samm_tld *t)
{
    pthread_mutex_lock(&lock);
    if (t->inflight && nrunning == 0) ensure_running();
    while (t->inflight && nrunning > 0)
        pthread_cond_wait(&done_cv, &lock);
    pthread_mutex_unlock(&lock);
}

void samm__worker_stop(void)
{
    samm_tld *t = samm__tld;
    if (t != &samm__tld_empty && t->is_worker) return;
    pthread_mutex_lock(&lock);
    if (nrunning == 0) {
        pthread_mutex_unlock(&lock);
        return;
    }
    stopping = true;
    pthread_cond_broadcast(&work_cv);
    int n = nrunning;
    pthread_t th[MAX_WORKERS];
    for (int i = 0; i < n; i++)
        th[i] = threads[i];
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);

    pthread_mutex_lock(&lock);
    nrunning = 0;
    stopping = false;
    samm__free(ring);
    ring = NULL;
    ring_cap = head = 0;
    atomic_store_explicit(&len, 0, RELAXED);
    pthread_mutex_unlock(&lock);
}

int samm_set_workers(int n)
{
    samm__ensure_init();
    if (n < 0 || n > MAX_WORKERS) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_set_workers", NULL, "%d workers is outside 0..%d",
                     n, MAX_WORKERS);
        return -1;
    }
    samm_tld *t = samm__tld;
    if (t != &samm__tld_empty && t->is_worker) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_set_workers", NULL,
                     "cannot change the workers from a cleanup hook");
        return -1;
    }
    pthread_mutex_lock(&lock);
    int old = target ? target : default_workers();
    target = n;
    bool fewer = nrunning > (n ? n : default_workers());
    pthread_mutex_unlock(&lock);
    /* Fewer: the running ones finish what is queued and stop; the wanted
     * number starts again when needed. */
    if (fewer) samm__worker_stop();
    return old;
}

int samm_get_workers(void)
{
    samm__ensure_init();
    return samm__worker_target();
}

bool samm__worker_active(void)
{
    pthread_mutex_lock(&lock);
    bool r = nrunning > 0;
    pthread_mutex_unlock(&lock);
    return r;
}

void samm__worker_set_target(int n)
{
    pthread_mutex_lock(&lock);
    target = n;
    pthread_mutex_unlock(&lock);
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
    /* A fork from a hook on a worker: that worker is busy, the others
     * finish theirs. */
    while (nbusy > (on_worker ? 1 : 0))
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
    for (int i = 0; i < nrunning; i++)
        cleaning[i] = 0;
    nrunning = 0;
    nbusy = 0;
    nsleeping = 0;
    stopping = false;
    pthread_mutex_unlock(&lock);
    pthread_cond_init(&work_cv, NULL);
    pthread_cond_init(&done_cv, NULL);
}
