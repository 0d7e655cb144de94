/* SPDX-License-Identifier: MIT */
/* test_threads.c - libsamm under threads: per-thread scope stacks with no
 * cross-talk, cleanup at thread exit, destructors that use scopes on the
 * cleanup worker, exact samm_wait, a full queue, memory coming back to its
 * owner, objects freed by threads that do not own them, and stack pointers.
 *
 * Objects carry an owner (the test thread that made them), an id and a
 * "doomed" flag that the owner sets just before the scope holding the object
 * is exited: a destructor that runs on an object not doomed, or (inline) on
 * another thread than its owner, is cross-talk.  Per-id destructor counts
 * prove "exactly once".
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "fixtures.h"

/* ------------------------------------------------------------------------
 * Objects
 * ---------------------------------------------------------------------- */
#define MAGIC_LIVE 0x0b7ec7u
#define MAGIC_DEAD 0xdeadu
#define MAX_IDS (1u << 20)

typedef struct Obj {
    const dtor_fn *vtable; /* first word: vtable[3] is the destructor */
    uint32_t magic;
    uint32_t id;
    int owner;         /* test thread number that created it (1..) */
    atomic_int doomed; /* owner: "the scope holding me is being exited" */
    int sleep_ms;      /* sleeper objects */
    int spin;          /* busy work in the destructor */
} Obj;
_Static_assert(sizeof(Obj) == 32, "Obj fills a 32-byte slot (pool 0)");

static _Thread_local int my_tid; /* 0 on threads the tests did not make (the worker) */

static atomic_uint next_id;
static atomic_uchar destroyed[MAX_IDS];
static atomic_long dtor_calls;
static atomic_long bad_magic, not_doomed, wrong_thread, bad_id;

/* Common destructor checks; true when the object looks sane. */
static bool dtor_common(Obj *o)
{
    if (o->magic != MAGIC_LIVE) {
        atomic_fetch_add(&bad_magic, 1);
        return false;
    }
    if (!atomic_load_explicit(&o->doomed, memory_order_acquire)) atomic_fetch_add(&not_doomed, 1);
    /* Inline: only the owner's own scope exit may clean it.  Background:
     * the worker (my_tid 0) or the owner itself (queue-full fallback, or
     * its thread's end). */
    int me = my_tid;
    bool bg = samm_get_cleanup_mode() == SAMM_CLEANUP_BACKGROUND;
    bool ok = bg ? me == o->owner || me == 0 : me == o->owner;
    if (!ok) atomic_fetch_add(&wrong_thread, 1);
    if (o->id >= MAX_IDS)
        atomic_fetch_add(&bad_id, 1);
    else
        atomic_fetch_add(&destroyed[o->id], 1);
    o->magic = MAGIC_DEAD;
    atomic_fetch_add(&dtor_calls, 1); /* last: a poller sees a finished destructor */
    return true;
}

static void plain_dtor(void *p)
{
    Obj *o = p;
    int spin = o->spin;
    dtor_common(o);
    for (volatile int i = 0; i < spin; i++) {
    }
}
DTOR_VTABLE(plain_vtable, plain_dtor);

static Obj *new_obj(const dtor_fn *vt)
{
    Obj *o = samm_alloc_object(sizeof(Obj));
    REQUIRE(o != NULL);
    REQUIRE(((uintptr_t)o & 15) == 0);
    o->vtable = vt;
    o->magic = MAGIC_LIVE;
    o->id = atomic_fetch_add(&next_id, 1);
    REQUIRE(o->id < MAX_IDS);
    o->owner = my_tid;
    return o;
}

static Obj *new_tracked(const dtor_fn *vt)
{
    Obj *o = new_obj(vt);
    samm_track_object(o);
    return o;
}

static void doom(Obj *o)
{
    atomic_store_explicit(&o->doomed, 1, memory_order_release);
}

static int destroyed_count(uint32_t id)
{
    return atomic_load(&destroyed[id]);
}

/* Every id handed out so far was destroyed exactly once. */
static long ids_not_once(void)
{
    unsigned n = atomic_load(&next_id);
    long bad = 0;
    for (unsigned i = 0; i < n; i++)
        if (atomic_load(&destroyed[i]) != 1) bad++;
    return bad;
}

static void check_clean_dtors(void)
{
    CHECK_EQ(atomic_load(&bad_magic), 0);
    CHECK_EQ(atomic_load(&not_doomed), 0);
    CHECK_EQ(atomic_load(&wrong_thread), 0);
    CHECK_EQ(atomic_load(&bad_id), 0);
}

static uint64_t pool_in_use(int pool)
{
    SAMMPoolStats ps;
    REQUIRE(samm_get_pool_stats(pool, &ps) == 0);
    return ps.in_use;
}

/* Polls `counter` until it reaches `want` or 20 s pass; true if reached. */
static bool poll_until(atomic_long *counter, long want)
{
    double t0 = now_ms();
    while (atomic_load(counter) < want) {
        if (now_ms() - t0 > 20000.0) return false;
        sleep_ms(1);
    }
    return true;
}

/* A gate a destructor can be held at: the test knows the cleaner has taken
 * the batch (gate_wait_started) and decides when it may go on. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_started, gate_open;

static void gate_wait_started(int n)
{
    pthread_mutex_lock(&gate_lock);
    while (gate_started < n)
        pthread_cond_wait(&gate_cv, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

static void gate_release(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_lock);
}

static void gate_dtor(void *p)
{
    dtor_common(p);
    pthread_mutex_lock(&gate_lock);
    gate_started++;
    pthread_cond_broadcast(&gate_cv);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}
DTOR_VTABLE(gate_vtable, gate_dtor);

static void setup(void)
{
    my_tid = 100;
    samm_set_error_handler(count_error, NULL);
}

/* ------------------------------------------------------------------------
 * 1. Four threads, each with its own nested scopes 50 deep.
 * ---------------------------------------------------------------------- */
typedef struct {
    int tid;
    int max_level;
    int rounds;
    long bad_depth;
    long bad_inline; /* something cleaned too early, or (inline) not at the exit */
    long tracked;
    Obj *from_grand[64]; /* [level]: what level+2 retained by 2 into it */
} NestCtx;

/* Enters scope `level`, makes objects there, recurses, keeps the object the
 * callee returned, retains one of its own to the caller and exits.  Returns
 * the retained object (now in the caller's scope). */
static Obj *nest(NestCtx *c, int level)
{
    samm_enter_scope();
    if (samm_scope_depth() != level) c->bad_depth++;
    Obj *local[4];
    for (int i = 0; i < 4; i++)
        local[i] = new_tracked(plain_vtable);
    c->tracked += 4;
    /* local[3] goes to the grandparent (if there is one above the wrapper). */
    bool to_grand = level >= 3;
    if (to_grand) {
        samm_retain(local[3], 2);
        c->from_grand[level - 2] = local[3];
    }
    Obj *child = NULL;
    if (level < c->max_level) {
        child = nest(c, level + 1);
        if (samm_scope_depth() != level) c->bad_depth++;
        /* The callee's result is alive, ours and in our scope now. */
        if (child->magic != MAGIC_LIVE || child->owner != c->tid || destroyed_count(child->id))
            c->bad_inline++;
    }
    samm_retain_parent(local[0]);
    uint32_t doomed_ids[5];
    int nd = 0;
    Obj *g = c->from_grand[level];
    if (g) {
        if (g->magic != MAGIC_LIVE || destroyed_count(g->id)) c->bad_inline++;
        doom(g);
        doomed_ids[nd++] = g->id;
        c->from_grand[level] = NULL;
    }
    doom(local[1]);
    doomed_ids[nd++] = local[1]->id;
    doom(local[2]);
    doomed_ids[nd++] = local[2]->id;
    if (!to_grand) {
        doom(local[3]);
        doomed_ids[nd++] = local[3]->id;
    }
    if (child) {
        doom(child);
        doomed_ids[nd++] = child->id;
    }
    uint32_t kept = local[0]->id;
    samm_exit_scope();
    if (samm_scope_depth() != level - 1) c->bad_depth++;
    if (!background()) {
        for (int i = 0; i < nd; i++)
            if (destroyed_count(doomed_ids[i]) != 1) c->bad_inline++;
    }
    if (destroyed_count(kept) != 0) c->bad_inline++;
    return local[0];
}

static void *nest_thread(void *arg)
{
    NestCtx *c = arg;
    my_tid = c->tid;
    if (samm_scope_depth() != 0) c->bad_depth++;
    for (int r = 0; r < c->rounds; r++) {
        samm_enter_scope(); /* level 1: catches what level 2 returns and level 3 sends up 2 */
        Obj *top = nest(c, 2);
        if (top->owner != c->tid || top->magic != MAGIC_LIVE) c->bad_inline++;
        doom(top);
        uint32_t ids[2] = {top->id, top->id};
        Obj *g = c->from_grand[1];
        if (g) {
            doom(g);
            ids[1] = g->id;
            c->from_grand[1] = NULL;
        }
        samm_exit_scope();
        if (samm_scope_depth() != 0) c->bad_depth++;
        if (!background() && (destroyed_count(ids[0]) != 1 || destroyed_count(ids[1]) != 1))
            c->bad_inline++;
    }
    return NULL;
}

TEST_BOTH(nested_threads)
{
    enum { NT = 4 };
    SAMMStats s0, s1;
    samm_get_stats(&s0);
    pthread_t th[NT];
    NestCtx ctx[NT];
    for (int i = 0; i < NT; i++) {
        ctx[i] = (NestCtx){.tid = i + 1, .max_level = 50, .rounds = scale(100, 10)};
        REQUIRE(pthread_create(&th[i], NULL, nest_thread, &ctx[i]) == 0);
    }
    long tracked = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(ctx[i].bad_depth, 0);
        CHECK_EQ(ctx[i].bad_inline, 0);
        tracked += ctx[i].tracked;
    }
    samm_wait();
    samm_get_stats(&s1);
    CHECK_EQ(ids_not_once(), 0);
    CHECK_EQ(atomic_load(&dtor_calls), (long)atomic_load(&next_id));
    CHECK_EQ(atomic_load(&dtor_calls), tracked);
    check_clean_dtors();
    CHECK_EQ(s1.objects_cleaned - s0.objects_cleaned, (uint64_t)tracked);
    CHECK_EQ(s1.objects_tracked - s0.objects_tracked, (uint64_t)tracked);
    CHECK_EQ(s1.objects_freed - s0.objects_freed, (uint64_t)tracked);
    CHECK_EQ(s1.scopes_entered - s0.scopes_entered, (uint64_t)NT * ctx[0].rounds * 50);
    CHECK_EQ(s1.scopes_exited - s0.scopes_exited, (uint64_t)NT * ctx[0].rounds * 50);
    CHECK_EQ(s1.peak_scope_depth, 50);
    CHECK_EQ(samm_scope_depth(), 0);
}

/* ------------------------------------------------------------------------
 * 2. Threads that end with objects still tracked.
 * ---------------------------------------------------------------------- */
static atomic_long inner_made, inner_destroyed, nest_dtor_bad, nest_dtor_on_worker;
/* Per thread as well: other threads' destructors run at the same time. */
static _Thread_local long tl_inner_destroyed;
static void inner_dtor(void *p)
{
    Obj *o = p;
    if (o->magic != MAGIC_LIVE) atomic_fetch_add(&nest_dtor_bad, 1);
    o->magic = MAGIC_DEAD;
    atomic_fetch_add(&inner_destroyed, 1);
    tl_inner_destroyed++;
}
DTOR_VTABLE(inner_vtable, inner_dtor);

static Obj *new_inner(void)
{
    Obj *a = samm_alloc_object(sizeof(Obj));
    REQUIRE(a != NULL);
    a->vtable = inner_vtable;
    a->magic = MAGIC_LIVE;
    samm_track_object(a);
    atomic_fetch_add(&inner_made, 1);
    return a;
}

/* A destructor that uses scopes itself, wherever it runs: enter, allocate,
 * track, retain within its own nest, exit, and check its depth moves only
 * by its own calls. */
static void nesting_dtor(void *p)
{
    Obj *o = p;
    dtor_common(o);
    int d0 = samm_scope_depth();
    /* On the worker: the worker's own scope stack, at its global scope. */
    if (my_tid == 0) {
        atomic_fetch_add(&nest_dtor_on_worker, 1);
        if (d0 != 0) atomic_fetch_add(&nest_dtor_bad, 1);
    }
    samm_enter_scope();
    if (samm_scope_depth() != d0 + 1) atomic_fetch_add(&nest_dtor_bad, 1);
    new_inner();
    samm_enter_scope();
    Obj *b = new_inner();
    samm_retain_parent(b);
    long before = tl_inner_destroyed;
    samm_exit_scope(); /* b survives: it went to the outer nested scope */
    if (tl_inner_destroyed != before || b->magic != MAGIC_LIVE) atomic_fetch_add(&nest_dtor_bad, 1);
    if (samm_scope_depth() != d0 + 1) atomic_fetch_add(&nest_dtor_bad, 1);
    samm_wait();       /* must not deadlock, on the worker or off it */
    samm_exit_scope(); /* a and b: on the worker this is inline, so done now */
    if (my_tid == 0 || !background()) {
        if (tl_inner_destroyed != before + 2) atomic_fetch_add(&nest_dtor_bad, 1);
    }
    if (samm_scope_depth() != d0) atomic_fetch_add(&nest_dtor_bad, 1);
}
DTOR_VTABLE(nesting_vtable, nesting_dtor);

typedef struct {
    int tid;
    int open_scopes; /* scopes left open at exit */
    int per_level;   /* objects per open scope and in the global scope */
    bool nesting;    /* use nesting destructors */
    long made;
} ExitCtx;

static void *exit_thread(void *arg)
{
    ExitCtx *c = arg;
    my_tid = c->tid;
    const dtor_fn *vt = c->nesting ? nesting_vtable : plain_vtable;
    /* Balanced work first: nothing of it may be left at exit. */
    samm_enter_scope();
    for (int i = 0; i < c->per_level; i++)
        doom(new_tracked(vt));
    c->made += c->per_level;
    samm_exit_scope();
    /* The global scope (depth 0). */
    for (int i = 0; i < c->per_level; i++)
        doom(new_tracked(vt));
    c->made += c->per_level;
    for (int l = 0; l < c->open_scopes; l++) {
        samm_enter_scope();
        for (int i = 0; i < c->per_level; i++) {
            Obj *o = new_tracked(vt);
            doom(o);
            if (i == 0 && l > 0) samm_retain_parent(o);
        }
        c->made += c->per_level;
    }
    return NULL; /* with c->open_scopes scopes open */
}

static long run_exit_threads(int n, int open_scopes, bool nesting)
{
    pthread_t th[8];
    ExitCtx ctx[8];
    for (int i = 0; i < n; i++) {
        ctx[i] = (ExitCtx){
            .tid = 10 + i, .open_scopes = open_scopes, .per_level = 6, .nesting = nesting};
        REQUIRE(pthread_create(&th[i], NULL, exit_thread, &ctx[i]) == 0);
    }
    long made = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        made += ctx[i].made;
    }
    samm_wait();
    CHECK_EQ(atomic_load(&dtor_calls), made);
    CHECK_EQ(ids_not_once(), 0);
    check_clean_dtors();
    return made;
}

TEST_BOTH(thread_exit_global_scope_only)
{
    SAMMStats s0, s1;
    samm_get_stats(&s0);
    long made = run_exit_threads(3, 0, false);
    samm_get_stats(&s1);
    CHECK_EQ(errors_total(), 0); /* the global scope is cleaned silently */
    CHECK_EQ(s1.objects_cleaned - s0.objects_cleaned, (uint64_t)made);
    CHECK_EQ(s1.objects_freed - s0.objects_freed, (uint64_t)made);
    CHECK_EQ(pool_in_use(0), 0);
}

TEST_BOTH(thread_exit_open_scopes)
{
    SAMMStats s0, s1;
    samm_get_stats(&s0);
    long made = run_exit_threads(4, 3, false);
    samm_get_stats(&s1);
    CHECK_EQ(errors(SAMM_ERR_SCOPE_IMBALANCE), 4); /* one per thread */
    CHECK_EQ(errors_total(), 4);
    CHECK_EQ(s1.objects_cleaned - s0.objects_cleaned, (uint64_t)made);
    CHECK_EQ(s1.scopes_entered - s0.scopes_entered, 4 * (1 + 3));
    CHECK_EQ(s1.scopes_exited - s0.scopes_exited, 4 * (1 + 3));
    CHECK_EQ(pool_in_use(0), 0);
    expect_errors(4);
}

/* Open scopes at thread exit whose destructors use scopes themselves. */
TEST_BOTH(thread_exit_nesting_destructors)
{
    long made = run_exit_threads(2, 2, true);
    CHECK_EQ(errors(SAMM_ERR_SCOPE_IMBALANCE), 2);
    CHECK_EQ(errors_total(), 2);
    CHECK_EQ(atomic_load(&inner_made), 2 * made);
    CHECK_EQ(atomic_load(&inner_destroyed), 2 * made);
    CHECK_EQ(atomic_load(&nest_dtor_bad), 0);
    CHECK_EQ(pool_in_use(0), 0);
    expect_errors(2);
}

/* ------------------------------------------------------------------------
 * 3. Destructors that use scopes and allocate, on the worker: their scope
 *    stack is the worker's own, the program thread's depth does not move.
 * ---------------------------------------------------------------------- */
TEST_BOTH(worker_destructors_use_scopes)
{
    const int batches = scale(40, 8), per = 25;
    samm_enter_scope();
    samm_enter_scope();
    samm_enter_scope(); /* depth 3 */
    long bad_depth = 0;
    for (int b = 0; b < batches; b++) {
        samm_enter_scope(); /* 4 */
        for (int i = 0; i < per; i++)
            doom(new_tracked(nesting_vtable));
        samm_exit_scope(); /* background: the worker runs them now */
        if (samm_scope_depth() != 3) bad_depth++;
        /* Meanwhile this thread keeps using scopes. */
        for (int k = 0; k < 200; k++) {
            samm_enter_scope();
            if (samm_scope_depth() != 4) bad_depth++;
            samm_enter_scope();
            if (samm_scope_depth() != 5) bad_depth++;
            samm_exit_scope();
            samm_exit_scope();
            if (samm_scope_depth() != 3) bad_depth++;
        }
    }
    samm_wait();
    CHECK_EQ(bad_depth, 0);
    CHECK_EQ(samm_scope_depth(), 3);
    long n = (long)batches * per;
    CHECK_EQ(atomic_load(&dtor_calls), n);
    CHECK_EQ(atomic_load(&inner_made), 2 * n);
    CHECK_EQ(atomic_load(&inner_destroyed), 2 * n);
    CHECK_EQ(atomic_load(&nest_dtor_bad), 0);
    CHECK_EQ(atomic_load(&nest_dtor_on_worker), background() ? n : 0);
    CHECK_EQ(ids_not_once(), 0);
    check_clean_dtors();
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.current_scope_depth, 3);
    /* The destructors' scopes (two each) were entered on the cleaning
     * thread; this thread's 3 + batches * 401 on its own. */
    CHECK_EQ(st.scopes_entered, 3 + (uint64_t)batches * 401 + 2 * (uint64_t)n);
    CHECK_EQ(st.peak_scope_depth, 5); /* inline too: the exit leaves depth 4 first */
    samm_exit_scope();
    samm_exit_scope();
    samm_exit_scope();
    CHECK_EQ(samm_scope_depth(), 0);
    CHECK_EQ(errors_total(), 0);
}

/* ------------------------------------------------------------------------
 * 4. samm_wait is exact: it returns only after every destructor of every
 *    batch queued before it has returned.  Sleeping destructors make an
 *    early return visible; a gate holds the first batch so that the queue
 *    is empty while the batch is still being cleaned.
 * ---------------------------------------------------------------------- */
static atomic_long sleepers_done;

static void sleeper_dtor(void *p)
{
    Obj *o = p;
    int ms = o->sleep_ms;
    dtor_common(o);
    sleep_ms(ms);
    atomic_fetch_add(&sleepers_done, 1); /* after the sleep: "returned" */
}
DTOR_VTABLE(sleeper_vtable, sleeper_dtor);

static void make_sleepers(int n, int ms, bool gated)
{
    samm_enter_scope();
    for (int i = 0; i < n; i++) {
        Obj *o = new_tracked(sleeper_vtable);
        o->sleep_ms = ms;
        doom(o);
    }
    if (gated) doom(new_tracked(gate_vtable)); /* newest: cleaned first */
    samm_exit_scope();
}

typedef struct {
    long seen;
} WaiterCtx;
static void *waiter_thread(void *arg)
{
    WaiterCtx *w = arg;
    samm_wait();
    w->seen = atomic_load(&sleepers_done);
    return NULL;
}

TEST_BOTH(wait_is_exact)
{
    bool bg = background();
    if (!bg) gate_release(); /* inline: the gate would hold this thread */

    /* One batch of 20 sleepers behind a gate: the worker takes the batch,
     * so the queue is empty long before the batch is done. */
    make_sleepers(20, 2, true);
    if (bg) {
        gate_wait_started(1);                     /* the batch is being cleaned, nothing queued */
        CHECK_EQ(atomic_load(&sleepers_done), 0); /* exit did not run them */
        gate_release();
    } else {
        CHECK_EQ(atomic_load(&sleepers_done), 20); /* inline: done by the exit */
    }
    samm_wait();
    CHECK_EQ(atomic_load(&sleepers_done), 20);

    /* Several batches, and a second thread waiting at the same time. */
    for (int b = 0; b < 4; b++)
        make_sleepers(5, 2, false);
    WaiterCtx w = {0};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, waiter_thread, &w) == 0);
    samm_wait();
    CHECK_EQ(atomic_load(&sleepers_done), 40);
    pthread_join(th, NULL);
    CHECK_EQ(w.seen, 40);

    CHECK_EQ(ids_not_once(), 0);
    CHECK_EQ(atomic_load(&dtor_calls), 41);
    check_clean_dtors();
    CHECK_EQ(errors_total(), 0);
}

/* Batches queued by other threads, which stay alive (a thread's end
 * waits for its own batches): samm_wait on this thread waits for them. */
static pthread_mutex_t queued_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queued_cv = PTHREAD_COND_INITIALIZER;
static int queued_threads;
static bool queued_go;

static void *sleeper_thread(void *arg)
{
    my_tid = (int)(intptr_t)arg;
    make_sleepers(10, 2, false);
    pthread_mutex_lock(&queued_lock);
    queued_threads++;
    pthread_cond_broadcast(&queued_cv);
    while (!queued_go)
        pthread_cond_wait(&queued_cv, &queued_lock);
    pthread_mutex_unlock(&queued_lock);
    return NULL;
}

TEST_BOTH(wait_covers_other_threads)
{
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        REQUIRE(pthread_create(&th[i], NULL, sleeper_thread, (void *)(intptr_t)(30 + i)) == 0);
    pthread_mutex_lock(&queued_lock);
    while (queued_threads < 3)
        pthread_cond_wait(&queued_cv, &queued_lock);
    pthread_mutex_unlock(&queued_lock);
    /* All three batches were queued (or, inline, cleaned) before this. */
    samm_wait();
    CHECK_EQ(atomic_load(&sleepers_done), 30);
    pthread_mutex_lock(&queued_lock);
    queued_go = true;
    pthread_cond_broadcast(&queued_cv);
    pthread_mutex_unlock(&queued_lock);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(ids_not_once(), 0);
    check_clean_dtors();
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_freed, 30);
    CHECK_EQ(errors_total(), 0);
}

/* ------------------------------------------------------------------------
 * 5. A full queue: the exiting thread cleans inline, counted in
 *    inline_fallbacks; nothing is lost or cleaned twice.  The queue holds
 *    one batch (SAMM_QUEUE_BATCHES=1 at init) and a gate holds the worker,
 *    so which batches fall back is exact; then a flood with the gate open.
 * ---------------------------------------------------------------------- */
typedef struct {
    int tid;
    int scopes;
    int spin;
    long made;
    long bad_depth;
} FloodCtx;

static void *flood_thread(void *arg)
{
    FloodCtx *c = arg;
    my_tid = c->tid;
    for (int s = 0; s < c->scopes; s++) {
        samm_enter_scope();
        for (int i = 0; i < 4; i++) {
            Obj *o = new_tracked(plain_vtable);
            o->spin = c->spin; /* keeps the worker busy so the queue fills */
            doom(o);
        }
        c->made += 4;
        samm_exit_scope();
        if (samm_scope_depth() != 0) c->bad_depth++;
    }
    return NULL;
}

static long flood(int nt, int scopes, int spin)
{
    pthread_t th[8];
    FloodCtx ctx[8];
    for (int i = 0; i < nt; i++) {
        ctx[i] = (FloodCtx){.tid = 20 + i, .scopes = scopes, .spin = spin};
        REQUIRE(pthread_create(&th[i], NULL, flood_thread, &ctx[i]) == 0);
    }
    long made = 0;
    for (int i = 0; i < nt; i++) {
        pthread_join(th[i], NULL);
        made += ctx[i].made;
        CHECK_EQ(ctx[i].bad_depth, 0);
    }
    return made;
}

TEST_BOTH(full_queue_fallback)
{
    bool bg = background();
    samm_shutdown();
    setenv("SAMM_QUEUE_BATCHES", "1", 1);
    samm_init();
    unsetenv("SAMM_QUEUE_BATCHES");
    samm_set_cleanup_mode(test_mode());
    if (!bg) gate_release();

    SAMMStats s0, s1, s2;
    samm_get_stats(&s0);
    /* The worker takes the gate's batch and stops there. */
    samm_enter_scope();
    doom(new_tracked(gate_vtable));
    samm_exit_scope();
    if (bg) gate_wait_started(1);
    /* One batch fits in the queue... */
    samm_enter_scope();
    Obj *queued[4];
    for (int i = 0; i < 4; i++)
        doom(queued[i] = new_tracked(plain_vtable));
    uint32_t qid = queued[0]->id;
    samm_exit_scope();
    CHECK_EQ(destroyed_count(qid), bg ? 0 : 1);
    /* ...the next ones do not: cleaned inline, by whichever thread exits. */
    samm_enter_scope();
    Obj *fell = new_tracked(plain_vtable);
    doom(fell);
    uint32_t fid = fell->id;
    samm_exit_scope();
    CHECK_EQ(destroyed_count(fid), 1);
    const int nt = 4, scopes = scale(200, 40);
    long made = flood(nt, scopes, 0);
    /* Every thread's batch fell back: their destructors all ran already. */
    CHECK_EQ(atomic_load(&dtor_calls), (bg ? 1 : 1 + 4) + 1 + made);
    CHECK_EQ(destroyed_count(qid), bg ? 0 : 1);
    gate_release();
    samm_wait();
    samm_get_stats(&s1);
    long total = 1 + 4 + 1 + made;
    CHECK_EQ(atomic_load(&dtor_calls), total);
    CHECK_EQ(s1.objects_cleaned - s0.objects_cleaned, (uint64_t)total);
    CHECK_EQ(s1.objects_freed - s0.objects_freed, (uint64_t)total);
    CHECK_EQ(s1.cleanup_batches - s0.cleanup_batches, 3 + (uint64_t)nt * scopes);
    CHECK_EQ(s1.inline_fallbacks - s0.inline_fallbacks, bg ? 1 + (uint64_t)nt * scopes : 0);
    CHECK_EQ(s1.queue_high_water, bg ? 1 : 0);

    /* A flood with the gate open: some fall back, some not; none lost. */
    long made2 = flood(nt, scale(1000, 100), 2000);
    samm_wait();
    samm_get_stats(&s2);
    total += made2;
    CHECK_EQ(atomic_load(&dtor_calls), total);
    CHECK_EQ(s2.objects_cleaned - s0.objects_cleaned, (uint64_t)total);
    CHECK_EQ(s2.objects_freed - s0.objects_freed, (uint64_t)total);
    CHECK_EQ(s2.cleanup_batches - s1.cleanup_batches, (uint64_t)nt * scale(1000, 100));
    if (!bg) CHECK_EQ(s2.inline_fallbacks, 0);
    CHECK(s2.queue_high_water <= 1);
    CHECK_EQ(ids_not_once(), 0);
    check_clean_dtors();
    CHECK_EQ(pool_in_use(0), 0);
    CHECK_EQ(errors_total(), 0);
}

/* ------------------------------------------------------------------------
 * 6. A destructor that tracks an object without entering a scope tracks it
 *    in the cleaning thread's current scope: the worker's global scope in
 *    background mode, the exiting thread's enclosing scope inline.  Either
 *    way samm_shutdown cleans it, silently (no imbalance, no leak).
 * ---------------------------------------------------------------------- */
static atomic_long strays_made;
static void stray_maker_dtor(void *p)
{
    dtor_common(p);
    Obj *s = samm_alloc_object(sizeof(Obj));
    REQUIRE(s != NULL);
    s->vtable = inner_vtable;
    s->magic = MAGIC_LIVE;
    samm_track_object(s);
    atomic_fetch_add(&strays_made, 1);
}
DTOR_VTABLE(stray_maker_vtable, stray_maker_dtor);

TEST_BOTH(shutdown_cleans_cleaner_scopes)
{
    samm_enter_scope();
    for (int i = 0; i < 10; i++)
        doom(new_tracked(stray_maker_vtable));
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(atomic_load(&dtor_calls), 10);
    CHECK_EQ(atomic_load(&strays_made), 10);
    CHECK_EQ(atomic_load(&inner_destroyed), 0); /* nobody has exited their scope yet */
    CHECK_EQ(samm_scope_depth(), 0);
    samm_shutdown();
    CHECK_EQ(atomic_load(&inner_destroyed), 10);
    CHECK_EQ(atomic_load(&nest_dtor_bad), 0);
    CHECK_EQ(errors_total(), 0);
    check_clean_dtors();
    samm_init();
    samm_set_cleanup_mode(test_mode());
    CHECK_EQ(samm_scope_depth(), 0);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_allocated, st.objects_freed);
}

/* ------------------------------------------------------------------------
 * 7. Thread churn: many short threads; counters of ended threads are kept,
 *    their objects cleaned.
 * ---------------------------------------------------------------------- */
static void *churn_thread(void *arg)
{
    my_tid = (int)(intptr_t)arg;
    doom(new_tracked(plain_vtable)); /* global scope */
    samm_enter_scope();
    for (int i = 0; i < 5; i++)
        doom(new_tracked(plain_vtable));
    samm_exit_scope();
    return NULL;
}

TEST_BOTH(thread_churn)
{
    SAMMStats s0, s1;
    samm_get_stats(&s0);
    const int waves = scale(40, 8), per_wave = 8;
    for (int w = 0; w < waves; w++) {
        pthread_t th[8];
        for (int i = 0; i < per_wave; i++)
            REQUIRE(pthread_create(&th[i], NULL, churn_thread, (void *)(intptr_t)(200 + i)) == 0);
        for (int i = 0; i < per_wave; i++)
            pthread_join(th[i], NULL);
    }
    samm_wait();
    samm_get_stats(&s1);
    long n = (long)waves * per_wave * 6;
    CHECK_EQ(atomic_load(&dtor_calls), n);
    CHECK_EQ(ids_not_once(), 0);
    check_clean_dtors();
    CHECK_EQ(s1.objects_cleaned - s0.objects_cleaned, (uint64_t)n);
    CHECK_EQ(s1.objects_tracked - s0.objects_tracked, (uint64_t)n);
    CHECK_EQ(s1.objects_allocated - s0.objects_allocated, (uint64_t)n);
    CHECK_EQ(s1.objects_freed - s0.objects_freed, (uint64_t)n);
    CHECK_EQ(s1.scopes_entered - s0.scopes_entered, (uint64_t)waves * per_wave);
    CHECK_EQ(s1.scopes_exited - s0.scopes_exited, (uint64_t)waves * per_wave);
    CHECK_EQ(pool_in_use(0), 0);
    CHECK_EQ(errors_total(), 0);
}

/* ------------------------------------------------------------------------
 * 8. Background mode: the worker runs the destructors, the memory goes
 *    back on the owning thread at its next scope exit - even of an empty
 *    scope - and not before.
 * ---------------------------------------------------------------------- */
static void *wait_thread(void *arg)
{
    (void)arg;
    samm_wait(); /* returns once the worker has finished (and replied) */
    return NULL;
}

TEST(background_memory_returns_at_empty_exit)
{
    samm_set_cleanup_mode(SAMM_CLEANUP_BACKGROUND);
    const int n = 200;
    uint64_t base = pool_in_use(0);
    samm_enter_scope();
    for (int i = 0; i < n; i++)
        doom(new_tracked(plain_vtable));
    CHECK_EQ(pool_in_use(0), base + n);
    samm_exit_scope();
    /* The destructors run on the worker; poll (samm_wait would release). */
    CHECK(poll_until(&dtor_calls, n));
    CHECK_EQ(atomic_load(&dtor_calls), n);
    /* Another thread's samm_wait returns once the batch is finished and
     * sent back; that thread owns none of the memory, so it stays put. */
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, wait_thread, NULL) == 0);
    pthread_join(th, NULL);
    CHECK_EQ(pool_in_use(0), base + n); /* still ours, waiting for us */
    /* The next exit of an empty scope releases it. */
    samm_enter_scope();
    samm_exit_scope();
    CHECK_EQ(pool_in_use(0), base);
    /* And the slots are reused: no new slab for the same again. */
    SAMMPoolStats p0, p1;
    samm_get_pool_stats(0, &p0);
    samm_enter_scope();
    for (int i = 0; i < n; i++)
        doom(new_tracked(plain_vtable));
    samm_exit_scope();
    samm_get_pool_stats(0, &p1);
    CHECK_EQ(p1.slabs, p0.slabs);
    CHECK(poll_until(&dtor_calls, 2 * n));
    /* samm_wait releases it too. */
    samm_wait();
    CHECK_EQ(pool_in_use(0), base);
    CHECK_EQ(ids_not_once(), 0);
    check_clean_dtors();
    CHECK_EQ(errors_total(), 0);
}

/* A thread that exits no scope after its batch: its end releases the
 * memory (no leak at shutdown, counts exact). */
static void *one_batch_thread(void *arg)
{
    my_tid = (int)(intptr_t)arg;
    samm_enter_scope();
    for (int i = 0; i < 50; i++)
        doom(new_tracked(plain_vtable));
    samm_exit_scope();
    return NULL; /* the worker may still be cleaning */
}

TEST(background_memory_returns_at_thread_end)
{
    samm_set_cleanup_mode(SAMM_CLEANUP_BACKGROUND);
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        REQUIRE(pthread_create(&th[i], NULL, one_batch_thread, (void *)(intptr_t)(40 + i)) == 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    /* Joined: the threads' ends waited for their batches. */
    CHECK_EQ(atomic_load(&dtor_calls), 150);
    CHECK_EQ(pool_in_use(0), 0);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_allocated, 150);
    CHECK_EQ(st.objects_freed, 150);
    CHECK_EQ(ids_not_once(), 0);
    check_clean_dtors();
    CHECK_EQ(errors_total(), 0);
}

/* ------------------------------------------------------------------------
 * 9. Objects tracked by one thread and freed (or untracked, or retained)
 *    by another: reported SAMM_ERR_NOT_OWNER and left alone; the owner's
 *    scope exit cleans them exactly once.
 * ---------------------------------------------------------------------- */
typedef struct {
    Obj *victim;
    int own_entries; /* entries the intruder tracks in its own scope first */
} IntruderCtx;

static void *intruder_thread(void *arg)
{
    IntruderCtx *c = arg;
    my_tid = 50;
    samm_enter_scope();
    /* Entries of its own, at the same indexes as the victim's. */
    for (int i = 0; i < c->own_entries; i++)
        doom(new_tracked(plain_vtable));
    samm_free_object(c->victim);
    samm_untrack(c->victim);
    samm_retain(c->victim, 1);
    samm_exit_scope();
    return NULL;
}

TEST_BOTH(free_by_other_thread_not_owner)
{
    const int n = 8;
    samm_enter_scope();
    Obj *objs[8];
    for (int i = 0; i < n; i++)
        objs[i] = new_tracked(plain_vtable);
    long before = atomic_load(&dtor_calls);
    /* One victim in the middle of the scope, one at its end; intruders
     * with no scope entries and with as many as the owner. */
    Obj *victims[] = {objs[3], objs[7]};
    for (int v = 0; v < 2; v++) {
        for (int own = 0; own <= n; own += n) {
            IntruderCtx c = {victims[v], own};
            pthread_t th;
            REQUIRE(pthread_create(&th, NULL, intruder_thread, &c) == 0);
            pthread_join(th, NULL);
        }
    }
    samm_wait();
    /* Reported, and left alone: not freed, not destroyed, still tracked. */
    CHECK_EQ(errors(SAMM_ERR_NOT_OWNER), 2 * 2 * 3);
    CHECK_EQ(errors_total(), 2 * 2 * 3);
    for (int i = 0; i < n; i++)
        CHECK(objs[i]->magic == MAGIC_LIVE);
    CHECK_EQ(atomic_load(&dtor_calls), before + 2 * n); /* the intruders' own */
    /* The owner can still untrack and retain them: they are its own. */
    samm_enter_scope();
    samm_retain(objs[0], 0);
    samm_exit_scope();
    for (int i = 0; i < n; i++)
        doom(objs[i]);
    uint32_t id3 = objs[3]->id, id7 = objs[7]->id;
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(destroyed_count(id3), 1);
    CHECK_EQ(destroyed_count(id7), 1);
    CHECK_EQ(atomic_load(&dtor_calls), before + 3 * n);
    CHECK_EQ(ids_not_once(), 0);
    check_clean_dtors();
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_freed, st.objects_allocated);
    CHECK_EQ(st.double_free_attempts, 0);
    expect_errors(2 * 2 * 3);
}

/* Freeing an object of a batch the worker is cleaning (background) or of
 * the batch being cleaned by this very exit (a destructor freeing its
 * sibling, either mode): reported, and the batch still cleans it once. */
static Obj *sibling;
static void sibling_freeing_dtor(void *p)
{
    dtor_common(p);
    samm_free_object(sibling); /* older: not cleaned yet */
}
DTOR_VTABLE(sibling_freeing_vtable, sibling_freeing_dtor);

TEST_BOTH(free_in_cleaning_batch_not_owner)
{
    samm_enter_scope();
    sibling = new_tracked(plain_vtable);
    doom(sibling);
    uint32_t sid = sibling->id;
    doom(new_tracked(sibling_freeing_vtable));
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(errors(SAMM_ERR_NOT_OWNER), 1);
    CHECK_EQ(destroyed_count(sid), 1);
    CHECK_EQ(atomic_load(&dtor_calls), 2);

    if (background()) {
        /* The worker holds a batch at the gate; this thread frees an older
         * object of it. */
        samm_enter_scope();
        Obj *old = new_tracked(plain_vtable);
        doom(old);
        uint32_t oid = old->id;
        doom(new_tracked(gate_vtable));
        samm_exit_scope();
        gate_wait_started(1);
        samm_free_object(old);
        samm_untrack(old);
        CHECK_EQ(errors(SAMM_ERR_NOT_OWNER), 3);
        CHECK_EQ(destroyed_count(oid), 0);
        gate_release();
        samm_wait();
        CHECK_EQ(destroyed_count(oid), 1);
        expect_errors(2);
    }
    CHECK_EQ(ids_not_once(), 0);
    check_clean_dtors();
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_freed, st.objects_allocated);
    CHECK_EQ(st.double_free_attempts, 0);
    expect_errors(1);
}

/* ------------------------------------------------------------------------
 * 10. Untracked objects allocated by one thread and freed by another
 *     (remote frees): silent, exact, and the slots come back to the owner.
 * ---------------------------------------------------------------------- */
typedef struct {
    void **ptrs;
    int n;
} FreeCtx;

static void *freer_thread(void *arg)
{
    FreeCtx *c = arg;
    for (int i = 0; i < c->n; i++)
        samm_free_object(c->ptrs[i]);
    return NULL;
}

/* Sizes across the small classes and the descriptor pools. */
static void *alloc_kind(int i)
{
    switch (i % 5) {
    case 0:
        return samm_alloc_object(24);
    case 1:
        return samm_alloc_object(100);
    case 2:
        return samm_alloc_string();
    case 3:
        return samm_alloc_list_atom();
    default:
        return samm_alloc_object(3000);
    }
}

TEST(remote_free_untracked)
{
    const int n = scale(10000, 4000);
    void **ptrs = malloc((size_t)n * sizeof *ptrs);
    REQUIRE(ptrs != NULL);
    for (int i = 0; i < n; i++) {
        ptrs[i] = alloc_kind(i);
        REQUIRE(ptrs[i] != NULL);
    }
    SAMMStats s0;
    samm_get_stats(&s0);
    CHECK_EQ(s0.objects_allocated, n);
    /* Two freers at once, interleaved halves. */
    FreeCtx c[2] = {{ptrs, n / 2}, {ptrs + n / 2, n - n / 2}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        REQUIRE(pthread_create(&th[i], NULL, freer_thread, &c[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    /* The owner takes them back (statistics collect). */
    SAMMStats s1;
    samm_get_stats(&s1);
    CHECK_EQ(s1.objects_freed, n);
    CHECK_EQ(s1.total_bytes_freed, s1.total_bytes_allocated);
    for (int p = 0; p < SAMM_POOL_COUNT; p++)
        CHECK_EQ(pool_in_use(p), 0);
    /* The same again: the slots freed remotely are reused. */
    for (int i = 0; i < n; i++)
        ptrs[i] = alloc_kind(i);
    for (int i = 0; i < n; i++)
        samm_free_object(ptrs[i]);
    samm_get_stats(&s1);
    CHECK_EQ(s1.objects_allocated, 2 * (uint64_t)n);
    CHECK_EQ(s1.objects_freed, 2 * (uint64_t)n);
    CHECK_EQ(s1.foreign_frees, 0);
    CHECK_EQ(s1.double_free_attempts, 0);
    free(ptrs);
    CHECK_EQ(errors_total(), 0);
}

/* Producers allocate while consumers free what they made: the producers'
 * refills collect remote frees (the path a remote free's hint drives). */
#define HANDOFF 256
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    void *slots[HANDOFF];
    int head, len;
    bool done;          /* the producer made its last */
    bool consumer_gone; /* the consumer ended (its frees are all pushed out) */
} Channel;

static void chan_put(Channel *ch, void *p)
{
    pthread_mutex_lock(&ch->lock);
    while (ch->len == HANDOFF)
        pthread_cond_wait(&ch->cv, &ch->lock);
    ch->slots[(ch->head + ch->len) % HANDOFF] = p;
    ch->len++;
    pthread_cond_broadcast(&ch->cv);
    pthread_mutex_unlock(&ch->lock);
}

static void *chan_get(Channel *ch)
{
    pthread_mutex_lock(&ch->lock);
    while (ch->len == 0 && !ch->done)
        pthread_cond_wait(&ch->cv, &ch->lock);
    void *p = NULL;
    if (ch->len) {
        p = ch->slots[ch->head];
        ch->head = (ch->head + 1) % HANDOFF;
        ch->len--;
        pthread_cond_broadcast(&ch->cv);
    }
    pthread_mutex_unlock(&ch->lock);
    return p;
}

typedef struct {
    Channel *ch;
    int n;
    long bad;
} PCtx;

static void *producer_thread(void *arg)
{
    PCtx *c = arg;
    for (int i = 0; i < c->n; i++) {
        long *p = samm_alloc_object(32);
        REQUIRE(p != NULL);
        if (p[0] != 0 || p[3] != 0) c->bad++; /* zeroed, even when reused */
        p[0] = i;
        p[3] = -i;
        chan_put(c->ch, p);
    }
    /* Stay alive until the consumer has ended: every remote free reaches
     * a slab this thread still owns (see remote_free_after_owner_ended). */
    pthread_mutex_lock(&c->ch->lock);
    c->ch->done = true;
    pthread_cond_broadcast(&c->ch->cv);
    while (!c->ch->consumer_gone)
        pthread_cond_wait(&c->ch->cv, &c->ch->lock);
    pthread_mutex_unlock(&c->ch->lock);
    return NULL;
}

static void *consumer_thread(void *arg)
{
    PCtx *c = arg;
    long *p;
    while ((p = chan_get(c->ch)) != NULL) {
        if (p[0] != -p[3]) c->bad++;
        samm_free_object(p);
    }
    return NULL;
}

TEST(remote_free_producer_consumer)
{
    enum { PAIRS = 2 };
    /* Far more than the live slots (HANDOFF): 32-byte slots, about 2000
     * per slab, so each producer refills many times from remote frees. */
    const int n = scale(100000, 20000);
    Channel ch[PAIRS];
    PCtx prod[PAIRS], cons[PAIRS];
    pthread_t tp[PAIRS], tc[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        memset(&ch[i], 0, sizeof ch[i]);
        pthread_mutex_init(&ch[i].lock, NULL);
        pthread_cond_init(&ch[i].cv, NULL);
        prod[i] = (PCtx){.ch = &ch[i], .n = n};
        cons[i] = (PCtx){.ch = &ch[i]};
        REQUIRE(pthread_create(&tc[i], NULL, consumer_thread, &cons[i]) == 0);
        REQUIRE(pthread_create(&tp[i], NULL, producer_thread, &prod[i]) == 0);
    }
    for (int i = 0; i < PAIRS; i++) {
        pthread_join(tc[i], NULL);
        pthread_mutex_lock(&ch[i].lock);
        ch[i].consumer_gone = true;
        pthread_cond_broadcast(&ch[i].cv);
        pthread_mutex_unlock(&ch[i].lock);
        pthread_join(tp[i], NULL);
        CHECK_EQ(prod[i].bad, 0);
        CHECK_EQ(cons[i].bad, 0);
        pthread_mutex_destroy(&ch[i].lock);
        pthread_cond_destroy(&ch[i].cv);
    }
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_allocated, (uint64_t)PAIRS * n);
    CHECK_EQ(st.objects_freed, (uint64_t)PAIRS * n);
    SAMMPoolStats ps;
    samm_get_pool_stats(0, &ps);
    CHECK_EQ(ps.in_use, 0);
    /* Reuse, not growth: a producer never needs more than a few slabs when
     * the consumer's frees come back to it. */
    CHECK(ps.peak_in_use <= 4 * HANDOFF + 4096);
    CHECK_EQ(errors_total(), 0);
}

/* The owner ended before the frees: its slabs were left to the others;
 * the remote frees land there and the counts still add up (no leak is
 * reported at shutdown). */
static void *alloc_and_end_thread(void *arg)
{
    FreeCtx *c = arg;
    for (int i = 0; i < c->n; i++) {
        c->ptrs[i] = alloc_kind(i);
        REQUIRE(c->ptrs[i] != NULL);
    }
    return NULL;
}

TEST(remote_free_after_owner_ended)
{
    const int n = scale(5000, 1000);
    void **ptrs = malloc((size_t)n * sizeof *ptrs);
    REQUIRE(ptrs != NULL);
    FreeCtx c = {ptrs, n};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, alloc_and_end_thread, &c) == 0);
    pthread_join(th, NULL);
    for (int i = 0; i < n; i++)
        samm_free_object(ptrs[i]);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_allocated, n);
    CHECK_EQ(st.objects_freed, n);
    CHECK_EQ(st.double_free_attempts, 0);
    for (int p = 0; p < SAMM_POOL_COUNT; p++)
        CHECK_EQ(pool_in_use(p), 0);
    free(ptrs);
    CHECK_EQ(errors_total(), 0);
}

/* ------------------------------------------------------------------------
 * 11. Stack addresses tracked as GENERIC: foreign pointers that cannot be
 *     malloc blocks.  Reported, never passed to free() (which would abort),
 *     also when the cleanup worker releases them.
 * ---------------------------------------------------------------------- */
#define STACK_PTRS 64

static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cv = PTHREAD_COND_INITIALIZER;
static char *parked_buf;
static bool park_done;

/* Tracks 64 addresses of its own stack, exits the scope (the worker
 * releases them in background mode) and waits; then lends its stack to the
 * main thread until told to end. */
static void *stack_thread(void *arg)
{
    (void)arg;
    _Alignas(16) char buf[STACK_PTRS * 16];
    memset(buf, 0, sizeof buf);
    samm_enter_scope();
    for (int i = 0; i < STACK_PTRS; i++)
        samm_track(buf + 16 * i, SAMM_ALLOC_GENERIC);
    samm_exit_scope();
    samm_wait();
    pthread_mutex_lock(&park_lock);
    parked_buf = buf;
    pthread_cond_broadcast(&park_cv);
    while (!park_done)
        pthread_cond_wait(&park_cv, &park_lock);
    parked_buf = NULL;
    pthread_mutex_unlock(&park_lock);
    /* Still intact: nothing wrote to (or freed) the buffer. */
    for (size_t i = 0; i < sizeof buf; i++)
        if (buf[i] != 0) return (void *)1;
    return NULL;
}

TEST_BOTH(stack_pointers_not_freed)
{
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, stack_thread, NULL) == 0);
    pthread_mutex_lock(&park_lock);
    while (parked_buf == NULL)
        pthread_cond_wait(&park_cv, &park_lock);
    char *buf = parked_buf;
    pthread_mutex_unlock(&park_lock);
    CHECK_EQ(errors(SAMM_ERR_FOREIGN_POINTER), STACK_PTRS);

    /* This thread tracks addresses on the other thread's stack, which is
     * alive (parked), aligned as malloc blocks are; the scope exit hands
     * them to the worker (background). */
    samm_enter_scope();
    for (int i = 0; i < STACK_PTRS; i++)
        samm_track(buf + 16 * i, SAMM_ALLOC_GENERIC);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(errors(SAMM_ERR_FOREIGN_POINTER), 2 * STACK_PTRS);

    pthread_mutex_lock(&park_lock);
    park_done = true;
    pthread_cond_broadcast(&park_cv);
    pthread_mutex_unlock(&park_lock);
    void *bad = NULL;
    pthread_join(th, &bad);
    CHECK(bad == NULL);

    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.foreign_frees, 0);
    CHECK_EQ(st.objects_cleaned, 2 * STACK_PTRS);
    CHECK_EQ(errors_total(), 2 * STACK_PTRS);
    expect_errors(2 * STACK_PTRS);
}

/* Issue 9, case 3 as first seen: 64 one-pointer scopes of stack addresses
 * queued behind a slow batch, so they all come back to a full mailbox and
 * the worker releases some of them itself: none is passed to free(). */
static void slow_free_hook(void *p)
{
    sleep_ms(200);
    free(p);
}

TEST(stack_pointers_full_mailbox)
{
    _Alignas(16) char buf[STACK_PTRS * 16];
    memset(buf, 0, sizeof buf);
    samm_set_cleanup_mode(SAMM_CLEANUP_BACKGROUND);
    samm_register_cleanup((SAMMAllocType)9, slow_free_hook);
    samm_enter_scope();
    void *m = malloc(32);
    REQUIRE(m != NULL);
    samm_track(m, (SAMMAllocType)9);
    samm_exit_scope();
    for (int i = 0; i < STACK_PTRS; i++) {
        samm_enter_scope();
        samm_track(buf + 16 * i, SAMM_ALLOC_GENERIC);
        samm_exit_scope();
    }
    samm_wait();
    CHECK_EQ(errors(SAMM_ERR_FOREIGN_POINTER), STACK_PTRS);
    for (size_t i = 0; i < sizeof buf; i++)
        CHECK_EQ(buf[i], 0);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.foreign_frees, 0);
    CHECK_EQ(st.objects_cleaned, STACK_PTRS + 1);
    expect_errors(STACK_PTRS);
}

/* ------------------------------------------------------------------------
 * Auto mode and several workers
 * ---------------------------------------------------------------------- */
static pthread_t main_thread;
static atomic_int ran_here, ran_elsewhere;
static atomic_int spin_us;

static void where_dtor(void *p)
{
    (void)p;
    if (pthread_equal(pthread_self(), main_thread))
        atomic_fetch_add(&ran_here, 1);
    else
        atomic_fetch_add(&ran_elsewhere, 1);
    int us = atomic_load(&spin_us);
    if (us > 0) {
        double t0 = now_ms();
        while (now_ms() - t0 < us / 1000.0) {
        }
    }
}
DTOR_VTABLE(where_vtable, where_dtor);

static void where_scope(int n)
{
    samm_enter_scope();
    for (int i = 0; i < n; i++) {
        Obj *o = samm_alloc_object(sizeof *o);
        REQUIRE(o != NULL);
        o->vtable = where_vtable;
        samm_track_object(o);
    }
    samm_exit_scope();
}

/* Cheap destructors: auto mode keeps them on the thread that exits the
 * scope, before samm_exit_scope returns.  Under valgrind or TSan even a
 * cheap destructor costs hundreds of nanoseconds, so there only the count
 * is checked: every object cleaned once, all of them by samm_wait. */
TEST(auto_cheap_stays_inline)
{
    main_thread = pthread_self();
    samm_set_cleanup_mode(SAMM_CLEANUP_AUTO);
    bool timed = !ON_VALGRIND() && !SAMM_TEST_TSAN;
    for (int r = 0; r < 200; r++) {
        where_scope(100);
        if (timed) CHECK_EQ(atomic_load(&ran_here), (r + 1) * 100);
    }
    samm_wait();
    CHECK_EQ(atomic_load(&ran_here) + atomic_load(&ran_elsewhere), 200 * 100);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_cleaned, 200 * 100);
    if (timed) {
        CHECK_EQ(atomic_load(&ran_elsewhere), 0);
        CHECK_EQ(st.background_worker_active, 0); /* never needed */
    }
}

/* Destructors of 50 us: once auto mode has timed a batch, the next ones go
 * to a worker; all of them run, once. */
TEST(auto_expensive_goes_to_workers)
{
    main_thread = pthread_self();
    samm_set_cleanup_mode(SAMM_CLEANUP_AUTO);
    atomic_store(&spin_us, 50);
    const int scopes = scale(40, 8);
    for (int r = 0; r < scopes; r++)
        where_scope(10);
    samm_wait();
    CHECK_EQ(atomic_load(&ran_here) + atomic_load(&ran_elsewhere), scopes * 10);
    CHECK(atomic_load(&ran_elsewhere) > 0);
    CHECK(atomic_load(&ran_here) >= 10); /* the timed batches */
}

/* Three workers clean three batches at once: each destructor waits for the
 * other two (a timeout fails the case instead of hanging it). */
static pthread_mutex_t meet_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t meet_cv = PTHREAD_COND_INITIALIZER;
static int meet_n;
static atomic_int met, missed;

static void meeting_dtor(void *p)
{
    (void)p;
    pthread_mutex_lock(&meet_lock);
    meet_n++;
    pthread_cond_broadcast(&meet_cv);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    while (meet_n < 3) {
        if (pthread_cond_timedwait(&meet_cv, &meet_lock, &until) != 0) break;
    }
    if (meet_n >= 3)
        atomic_fetch_add(&met, 1);
    else
        atomic_fetch_add(&missed, 1);
    pthread_mutex_unlock(&meet_lock);
}
DTOR_VTABLE(meeting_vtable, meeting_dtor);

static void *meeting_thread(void *arg)
{
    (void)arg;
    samm_enter_scope();
    Obj *o = samm_alloc_object(sizeof *o);
    REQUIRE(o != NULL);
    o->vtable = meeting_vtable;
    samm_track_object(o);
    samm_exit_scope();
    return NULL;
}

TEST(workers_run_in_parallel)
{
    CHECK(samm_set_workers(3) > 0);
    CHECK_EQ(samm_get_workers(), 3);
    samm_set_cleanup_mode(SAMM_CLEANUP_BACKGROUND);
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        REQUIRE(pthread_create(&th[i], NULL, meeting_thread, NULL) == 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    samm_wait();
    CHECK_EQ(atomic_load(&met), 3);
    CHECK_EQ(atomic_load(&missed), 0);
}

/* A pinned type's destructor runs on the exiting thread in background
 * mode; an unpinned one in the same mode on a worker; a batch mixing both
 * is cleaned inline whole. */
static void pinned_scope(SAMMAllocType type, int n)
{
    samm_enter_scope();
    for (int i = 0; i < n; i++) {
        Obj *o = samm_alloc_object(sizeof *o);
        REQUIRE(o != NULL);
        o->vtable = where_vtable;
        samm_track(o, type);
    }
    samm_exit_scope();
}

static void where_hook(void *p)
{
    where_dtor(p);
    samm_free_object(p);
}

TEST(pinned_type_stays_inline)
{
    capture_on();
    main_thread = pthread_self();
    samm_set_cleanup_mode(SAMM_CLEANUP_BACKGROUND);
    samm_register_cleanup((SAMMAllocType)50, where_hook);
    CHECK_EQ(samm_pin_type((SAMMAllocType)50, 1), 0);
    CHECK_EQ(samm_pin_type((SAMMAllocType)50, 1), 1);
    pinned_scope((SAMMAllocType)50, 10);
    CHECK_EQ(atomic_load(&ran_here), 10); /* before samm_exit_scope returned */
    pinned_scope(SAMM_ALLOC_OBJECT, 10);  /* not pinned: a worker's */
    samm_wait();
    CHECK_EQ(atomic_load(&ran_elsewhere), 10);
    /* one pinned entry keeps the whole batch on this thread */
    samm_enter_scope();
    for (int i = 0; i < 5; i++) {
        Obj *o = samm_alloc_object(sizeof *o);
        REQUIRE(o != NULL);
        o->vtable = where_vtable;
        samm_track(o, i == 2 ? (SAMMAllocType)50 : SAMM_ALLOC_OBJECT);
    }
    samm_exit_scope();
    CHECK_EQ(atomic_load(&ran_here), 15);
    CHECK_EQ(samm_pin_type((SAMMAllocType)50, 0), 1);
    pinned_scope((SAMMAllocType)50, 10); /* unpinned again */
    samm_wait();
    CHECK_EQ(atomic_load(&ran_elsewhere), 20);
    CHECK_EQ(samm_pin_type((SAMMAllocType)300, 1), -1);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_cleaned, 35);
    expect_errors(1);
}

TEST(workers_argument)
{
    capture_on();
    int dflt = samm_get_workers();
    CHECK(dflt >= 1 && dflt <= 8);
    CHECK_EQ(samm_set_workers(-1), -1);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    CHECK_EQ(samm_set_workers(65), -1);
    CHECK_EQ(samm_set_workers(2), dflt);
    CHECK_EQ(samm_get_workers(), 2);
    CHECK_EQ(samm_set_workers(0), 2);
    CHECK_EQ(samm_get_workers(), dflt);
    expect_errors(2);
}

/* samm_wait is exact with several workers and several program threads. */
static void *many_scopes(void *arg)
{
    (void)arg;
    for (int r = 0; r < 20; r++)
        where_scope(5);
    return NULL;
}

TEST(wait_exact_many_workers)
{
    capture_on();
    main_thread = pthread_self();
    samm_set_workers(4);
    samm_set_cleanup_mode(SAMM_CLEANUP_BACKGROUND);
    atomic_store(&spin_us, 200);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&th[i], NULL, many_scopes, NULL) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    samm_wait();
    CHECK_EQ(atomic_load(&ran_here) + atomic_load(&ran_elsewhere), 4 * 20 * 5);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_cleaned, 4 * 20 * 5);
    CHECK_EQ(st.objects_tracked, 4 * 20 * 5);
    SAMMPoolStats ps;
    samm_get_pool_stats(0, &ps); /* pool 0: 32-byte objects */
    CHECK_EQ(ps.in_use, 0);      /* every object's memory is back after the wait */
    CHECK_EQ(captured.count, 0);
}

CHECK_MAIN(setup)
