/* SPDX-License-Identifier: MIT */
/* thread.c - a thread's context: the one thread-local pointer, the empty
 * context every new thread starts with (its fields make every fast path
 * fail, so the first call of a thread lands here), the start and the end
 * of a thread in one function each, the registry of contexts, and the
 * order of locks around fork().
 *
 * Contexts are never freed: a thread that ends leaves its context for the
 * next thread to reuse, because other threads may still hold pointers to
 * it (a slab's owner field, read by a remote free).
 */
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------------------
 * The empty context: limit 0 (enter is slow), floor at the top (exit is
 * slow), a frame without room (track is slow), direct tables pointing at
 * an empty slab (allocation is slow).  Nothing ever writes to it.
 * ---------------------------------------------------------------------- */
static samm_frame empty_frame;
static _Atomic uint32_t empty_word; /* SAMM_META_FREE */

samm_tld samm__tld_empty = {
    .cur = &empty_frame,
    .limit = 0,
    .floor = UINTPTR_MAX,
    .last_alloc = &samm__tomb,
    .last_meta = &empty_word,
    .direct = {[0 ... SAMM_DIRECT - 1] = &samm__slab_empty},
    .pdirect = {[0 ... SAMM_POOLS - 1] = &samm__slab_empty},
};

SAMM_TLS samm_tld *samm__tld = &samm__tld_empty;

/* ------------------------------------------------------------------------
 * Registry of contexts
 * ---------------------------------------------------------------------- */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static samm_tld *all;         /* every context made, in use or not */
static samm_counters retired; /* what ended threads counted        */
static pthread_key_t exit_key;

static void thread_exit(void *arg);

static void atfork_prepare(void);
static void atfork_parent(void);
static void atfork_child(void);

void samm__thread_process_init(void)
{
    if (pthread_key_create(&exit_key, thread_exit) != 0)
        samm__report(SAMM_ERR_OUT_OF_MEMORY, "samm_init", NULL,
                     "cannot create the thread-exit key; ending threads keep their scopes");
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void samm__tld_each(void (*fn)(samm_tld *t, void *arg), void *arg)
{
    pthread_mutex_lock(&registry_lock);
    for (samm_tld *t = all; t; t = t->next_all)
        if (t->in_use) fn(t, arg);
    pthread_mutex_unlock(&registry_lock);
}

bool samm__on_some_stack(uintptr_t p)
{
    bool hit = false;
    pthread_mutex_lock(&registry_lock);
    for (samm_tld *t = all; t && !hit; t = t->next_all)
        hit = t->in_use && p >= t->stack_lo && p < t->stack_hi;
    pthread_mutex_unlock(&registry_lock);
    return hit;
}

void samm__tld_sum_retired(samm_counters *into)
{
    samm__counters_add(into, &retired);
}

/* Records the calling thread's stack in t, under the registry lock that
 * samm__on_some_stack reads it under. */
static void stack_bounds(samm_tld *t)
{
    pthread_attr_t attr;
    void *base;
    size_t size;
    uintptr_t lo = 0, hi = 0;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        if (pthread_attr_getstack(&attr, &base, &size) == 0) {
            lo = (uintptr_t)base;
            hi = (uintptr_t)base + size;
        }
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_lock(&registry_lock);
    t->stack_lo = lo;
    t->stack_hi = hi;
    t->tid = (long)syscall(SYS_gettid); /* for reports: read under the lock */
    pthread_mutex_unlock(&registry_lock);
}

/* A context for a thread: an unused one, or a new one.  Registered and
 * marked in use; its owner installs it. */
static samm_tld *tld_new(const char *call)
{
    pthread_mutex_lock(&registry_lock);
    samm_tld *t = all;
    while (t && t->in_use)
        t = t->next_all;
    if (t == NULL) {
        t = samm__calloc(1, sizeof *t);
        if (t) {
            t->next_all = all;
            all = t;
        }
    }
    if (t) {
        t->in_use = true;
        t->gen++;
        t->is_worker = false; /* under the lock: reports read it */
    }
    pthread_mutex_unlock(&registry_lock);
    if (t == NULL) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "out of memory for a thread's context");
        return NULL;
    }
    if (!samm__scopes_init(t, call)) {
        pthread_mutex_lock(&registry_lock);
        t->in_use = false;
        pthread_mutex_unlock(&registry_lock);
        return NULL;
    }
    t->last_alloc = &samm__tomb;
    t->last_meta = &empty_word;
    t->exited = 0;
    t->phantom = 0;
    t->exiting = false;
    t->site = NULL;
    /* The generation first: a switch after it is seen at the next refresh. */
    t->sites_gen = atomic_load(&samm__sites_gen);
    for (int p = 0; p < SAMM_POOLS; p++)
        samm__heap_set_active(t, p, NULL);
    return t;
}

/* The calling thread starts using t. */
static void install(samm_tld *t)
{
    t->phantom = samm__phantom_early;
    samm__phantom_early = 0;
    stack_bounds(t);
    samm__tld = t;
    pthread_setspecific(exit_key, t);
    samm__tld_refresh(t);
}

samm_tld *samm__tld_attach(const char *call)
{
    samm__ensure_init();
    samm_tld *t = samm__tld;
    if (t != &samm__tld_empty) return t;
    if ((t = tld_new(call)) == NULL) return NULL;
    install(t);
    return t;
}

/* For the cleanup worker: a context made by the thread that starts it. */
samm_tld *samm__tld_prepare(const char *call)
{
    samm__ensure_init();
    samm_tld *t = tld_new(call);
    if (t) {
        pthread_mutex_lock(&registry_lock);
        t->is_worker = true;
        pthread_mutex_unlock(&registry_lock);
    }
    return t;
}

void samm__tld_install(samm_tld *t)
{
    install(t);
}

void samm__tld_unprepare(samm_tld *t)
{
    pthread_mutex_lock(&registry_lock);
    samm__scopes_release(t);
    t->in_use = false;
    pthread_mutex_unlock(&registry_lock);
}

/* Clears a context's counters once they were added to `retired`. */
static void counters_retire(samm_tld *t)
{
    samm__counters_add(&retired, &t->ctr);
    memset(&t->ctr, 0, sizeof t->ctr);
}

/* The end of a thread, in order: its scopes are unwound (destructors run),
 * the batches it queued finish and their memory comes back, its slabs go
 * to the system or to other threads, its counts join the totals.  Then the
 * context waits for the next thread. */
static void thread_exit(void *arg)
{
    samm_tld *t = arg;
    if (t == NULL || t != samm__tld) return;
    t->exiting = true;
    samm__snap_answer(t); /* a report waiting for this thread */
    if (t->cur->depth + t->phantom > 0)
        samm__report(SAMM_ERR_SCOPE_IMBALANCE, "thread exit", NULL,
                     "thread ended with %d scope(s) open; cleaning them",
                     t->cur->depth + t->phantom);
    samm__unwind_all(t, "thread exit");
    if (t->submitted) {
        samm__worker_wait_own(t);
        samm__take_mail(t, "thread exit");
    }
    samm__heap_abandon(t);
    samm__publish_all(t);
    samm__tld = &samm__tld_empty;
    pthread_mutex_lock(&registry_lock);
    counters_retire(t);
    samm__scopes_release(t);
    t->submitted = 0;
    SAMM_ASSERT(LOAD(&t->nmail) == 0 && t->inflight == 0);
    samm__snap_answer(t); /* asked since: "ended" (no request comes after) */
    t->in_use = false;
    pthread_mutex_unlock(&registry_lock);
}

/* ------------------------------------------------------------------------
 * fork(): every lock of the library is taken before fork and released on
 * both sides, in one fixed order (errors last: they are reported while
 * the others are held).  The child unlocks rather than re-initialises, as
 * the forking thread owns the locks in the child too.  Then the contexts
 * of threads that do not exist in the child give up their slabs.
 * ---------------------------------------------------------------------- */
static void atfork_prepare(void)
{
    samm__report_atfork_prepare();
    samm__init_atfork_prepare();
    samm__worker_atfork_prepare();
    pthread_mutex_lock(&registry_lock);
    samm__heap_atfork_prepare();
    samm__slab_atfork_prepare();
    samm__error_atfork_prepare();
    samm__report_leaves_prepare();
}

static void atfork_release(void)
{
    samm__report_leaves_release();
    samm__error_atfork_release();
    samm__slab_atfork_release();
    samm__heap_atfork_release();
    pthread_mutex_unlock(&registry_lock);
}

static void atfork_parent(void)
{
    atfork_release();
    samm__worker_atfork_parent();
    samm__init_atfork_release();
    samm__report_atfork_release();
}

static void atfork_child(void)
{
    atfork_release();
    samm__worker_atfork_child();
    samm__init_atfork_release();
    samm__report_atfork_release();
    samm_tld *self = samm__tld;
    for (samm_tld *t = all; t; t = t->next_all) {
        if (!t->in_use || t == self) continue;
        samm__scopes_orphan(t);
        samm__heap_disown(t);
        counters_retire(t);
        samm__scopes_release(t);
        LOAD(&t->nmail);
        atomic_store(&t->nmail, 0);
        t->submitted = 0;
        t->in_use = false;
    }
    if (self != &samm__tld_empty) {
        self->submitted = 0;
        stack_bounds(self);
    }
}
