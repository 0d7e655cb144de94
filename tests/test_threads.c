/* test_threads.c - libsamm under threads: per-thread scope stacks with no
 * cross-talk, cleanup at thread exit (open scopes reported, global scope
 * silent), destructors that use scopes on the cleanup worker, exact
 * samm_wait, and a full queue that falls back to inline cleanup.
 *
 * Every test runs in both cleanup modes.  Objects carry an owner (the test
 * thread that made them), an id and a "doomed" flag that the owner sets just
 * before the scope holding the object is exited: a destructor that runs on
 * an object not doomed, or (inline) on another thread than its owner, is
 * cross-talk.  Per-id destructor counts prove "exactly once".
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixtures.h"
#include "internal.h"

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

static _Thread_local int my_tid; /* 0 on threads the tests did not make (the worker) */

static atomic_uint next_id;
static atomic_uchar destroyed[MAX_IDS];
static atomic_long dtor_calls;
static atomic_long bad_magic, not_doomed, wrong_thread, bad_id;

static void reset_objects(void)
{
    unsigned n = atomic_load(&next_id);
    for (unsigned i = 0; i < n && i < MAX_IDS; i++)
        atomic_store_explicit(&destroyed[i], 0, memory_order_relaxed);
    atomic_store(&next_id, 0);
    atomic_store(&dtor_calls, 0);
    atomic_store(&bad_magic, 0);
    atomic_store(&not_doomed, 0);
    atomic_store(&wrong_thread, 0);
    atomic_store(&bad_id, 0);
}

/* Common destructor checks; true when the object looks sane. */
static bool dtor_common(Obj *o)
{
    if (o->magic != MAGIC_LIVE) {
        atomic_fetch_add(&bad_magic, 1);
        return false;
    }
    if (!atomic_load_explicit(&o->doomed, memory_order_acquire)) atomic_fetch_add(&not_doomed, 1);
    /* Inline: only the owner's own scope exit may clean it.  Background:
     * the worker (my_tid 0) or the owner itself (queue-full fallback). */
    int me = my_tid;
    bool ok =
        atomic_load(&g_mode) == SAMM_CLEANUP_INLINE ? me == o->owner : (me == o->owner || me == 0);
    if (!ok) atomic_fetch_add(&wrong_thread, 1);
    if (o->id >= MAX_IDS)
        atomic_fetch_add(&bad_id, 1);
    else
        atomic_fetch_add(&destroyed[o->id], 1);
    atomic_fetch_add(&dtor_calls, 1);
    o->magic = MAGIC_DEAD;
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

static void stats(SAMMStats *s)
{
    samm_get_stats(s);
}

/* ------------------------------------------------------------------------
 * 1. Four threads, each with its own nested scopes up to depth ~50.
 * ---------------------------------------------------------------------- */
typedef struct {
    int tid;
    int max_level;
    int rounds;
    long bad_depth;
    long bad_inline; /* inline mode: something not cleaned (or cleaned) at the exit */
    long tracked;
    Obj *from_grand[64]; /* [level]: what level+2 retained by 2 into it */
} NestCtx;

/* Enters scope `level` (depth base+level), makes objects there, recurses,
 * keeps the object the callee returned, retains one of its own to the
 * caller and exits.  Returns the retained object (now in the caller's scope). */
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
    if (atomic_load(&g_mode) == SAMM_CLEANUP_INLINE) {
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
        /* The level-1 scope also holds what level 3 retained by 2. */
        Obj *g = c->from_grand[1];
        if (g) {
            doom(g);
            ids[1] = g->id;
            c->from_grand[1] = NULL;
        }
        samm_exit_scope();
        if (samm_scope_depth() != 0) c->bad_depth++;
        if (atomic_load(&g_mode) == SAMM_CLEANUP_INLINE &&
            (destroyed_count(ids[0]) != 1 || destroyed_count(ids[1]) != 1))
            c->bad_inline++;
    }
    return NULL;
}

static void test_nested_threads(void)
{
    enum { NT = 4 };
    reset_objects();
    int e0 = errors_total();
    SAMMStats s0, s1;
    stats(&s0);
    pthread_t th[NT];
    NestCtx ctx[NT];
    for (int i = 0; i < NT; i++) {
        ctx[i] = (NestCtx){.tid = i + 1, .max_level = 50, .rounds = scale(100, 40)};
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
    stats(&s1);
    CHECK_EQ(ids_not_once(), 0);
    CHECK_EQ(atomic_load(&dtor_calls), (long)atomic_load(&next_id));
    CHECK_EQ(atomic_load(&dtor_calls), tracked);
    check_clean_dtors();
    CHECK_EQ(s1.objects_cleaned - s0.objects_cleaned, (uint64_t)tracked);
    CHECK_EQ(s1.objects_tracked - s0.objects_tracked, (uint64_t)tracked);
    CHECK(s1.peak_scope_depth >= 50);
    CHECK_EQ(samm_scope_depth(), 0);
    CHECK_EQ(errors_total(), e0);
}

/* ------------------------------------------------------------------------
 * 2. Threads that end with objects still tracked.
 * ---------------------------------------------------------------------- */
static atomic_long inner_made, inner_destroyed, nest_dtor_bad;
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

/* A destructor that uses scopes itself, wherever it runs: enter, allocate,
 * track, retain within its own nest, exit, and check its depth moves only
 * by its own calls. */
static void nesting_dtor(void *p)
{
    Obj *o = p;
    dtor_common(o);
    int d0 = samm_scope_depth();
    samm_enter_scope();
    if (samm_scope_depth() != d0 + 1) atomic_fetch_add(&nest_dtor_bad, 1);
    Obj *a = samm_alloc_object(sizeof(Obj));
    a->vtable = inner_vtable;
    a->magic = MAGIC_LIVE;
    samm_track_object(a);
    atomic_fetch_add(&inner_made, 1);
    samm_enter_scope();
    Obj *b = samm_alloc_object(sizeof(Obj));
    b->vtable = inner_vtable;
    b->magic = MAGIC_LIVE;
    samm_track_object(b);
    atomic_fetch_add(&inner_made, 1);
    samm_retain_parent(b);
    long before = tl_inner_destroyed;
    samm_exit_scope(); /* b survives: it went to the outer nested scope */
    if (tl_inner_destroyed != before || b->magic != MAGIC_LIVE) atomic_fetch_add(&nest_dtor_bad, 1);
    if (samm_scope_depth() != d0 + 1) atomic_fetch_add(&nest_dtor_bad, 1);
    samm_wait();       /* must not deadlock, on the worker or off it */
    samm_exit_scope(); /* a and b: on the worker this is inline, so done now */
    if (samm__on_worker_thread() || atomic_load(&g_mode) == SAMM_CLEANUP_INLINE) {
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

static void run_exit_threads(int n, int open_scopes, bool nesting)
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
}

static void test_thread_exit_global_scope_only(void)
{
    reset_objects();
    int imb = errors(SAMM_ERR_SCOPE_IMBALANCE), e0 = errors_total();
    SAMMStats s0, s1;
    stats(&s0);
    run_exit_threads(3, 0, false);
    stats(&s1);
    CHECK_EQ(errors(SAMM_ERR_SCOPE_IMBALANCE), imb); /* silent */
    CHECK_EQ(errors_total(), e0);
    CHECK_EQ(s1.objects_cleaned - s0.objects_cleaned, (uint64_t)atomic_load(&next_id));
}

static void test_thread_exit_open_scopes(void)
{
    reset_objects();
    int imb = errors(SAMM_ERR_SCOPE_IMBALANCE), e0 = errors_total();
    run_exit_threads(4, 3, false);
    CHECK_EQ(errors(SAMM_ERR_SCOPE_IMBALANCE), imb + 4); /* one per thread */
    CHECK_EQ(errors_total(), e0 + 4);
}

/* Open scopes at thread exit whose destructors use scopes themselves. */
static void test_thread_exit_nesting_destructors(void)
{
    reset_objects();
    atomic_store(&inner_made, 0);
    atomic_store(&inner_destroyed, 0);
    atomic_store(&nest_dtor_bad, 0);
    int imb = errors(SAMM_ERR_SCOPE_IMBALANCE), e0 = errors_total();
    run_exit_threads(2, 2, true);
    CHECK_EQ(errors(SAMM_ERR_SCOPE_IMBALANCE), imb + 2);
    CHECK_EQ(errors_total(), e0 + 2);
    CHECK_EQ(atomic_load(&inner_made), 2 * atomic_load(&dtor_calls));
    CHECK_EQ(atomic_load(&inner_destroyed), atomic_load(&inner_made));
    CHECK_EQ(atomic_load(&nest_dtor_bad), 0);
}

/* ------------------------------------------------------------------------
 * 3. Destructors that use scopes, on the worker: the main thread's depth
 *    must not move (DESIGN §5 item 5).
 * ---------------------------------------------------------------------- */
static void test_worker_destructors_use_scopes(void)
{
    reset_objects();
    my_tid = 100;
    atomic_store(&inner_made, 0);
    atomic_store(&inner_destroyed, 0);
    atomic_store(&nest_dtor_bad, 0);
    int e0 = errors_total();
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
    CHECK_EQ(ids_not_once(), 0);
    check_clean_dtors();
    samm_exit_scope();
    samm_exit_scope();
    samm_exit_scope();
    CHECK_EQ(samm_scope_depth(), 0);
    CHECK_EQ(errors_total(), e0);
}

/* ------------------------------------------------------------------------
 * 4. samm_wait is exact: it returns only after every destructor of every
 *    batch queued before it has completed (no polling in the test).
 * ---------------------------------------------------------------------- */
static atomic_long sleepers_done;
/* The first sleeper destructor of a batch says so: the test then knows the
 * cleaner has taken the batch (the queue is empty) without polling. */
static pthread_mutex_t started_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t started_cv = PTHREAD_COND_INITIALIZER;
static int sleepers_started;

static void wait_started(int n)
{
    pthread_mutex_lock(&started_lock);
    while (sleepers_started < n)
        pthread_cond_wait(&started_cv, &started_lock);
    pthread_mutex_unlock(&started_lock);
}

static void sleeper_dtor(void *p)
{
    Obj *o = p;
    int ms = o->sleep_ms;
    dtor_common(o);
    pthread_mutex_lock(&started_lock);
    sleepers_started++;
    pthread_cond_broadcast(&started_cv);
    pthread_mutex_unlock(&started_lock);
    sleep_ms(ms);
    atomic_fetch_add(&sleepers_done, 1); /* after the sleep: "completed" */
}
DTOR_VTABLE(sleeper_vtable, sleeper_dtor);

static void make_sleepers(int n, int ms)
{
    samm_enter_scope();
    for (int i = 0; i < n; i++) {
        Obj *o = new_tracked(sleeper_vtable);
        o->sleep_ms = ms;
        doom(o);
    }
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

static void test_wait_is_exact(void)
{
    reset_objects();
    my_tid = 100;
    atomic_store(&sleepers_done, 0);
    int e0 = errors_total();
    bool inl = atomic_load(&g_mode) == SAMM_CLEANUP_INLINE;

    /* One batch of 20 sleepers: the worker takes it at once, so the queue
     * is empty long before the batch is done. */
    pthread_mutex_lock(&started_lock);
    sleepers_started = 0;
    pthread_mutex_unlock(&started_lock);
    double t0 = now_ms();
    make_sleepers(20, 2);
    double t_exit = now_ms() - t0;
    if (inl) CHECK_EQ(atomic_load(&sleepers_done), 20);
    wait_started(1); /* the batch is being cleaned, nothing is queued */
    samm_wait();
    CHECK_EQ(atomic_load(&sleepers_done), 20);
    CHECK(now_ms() - t0 >= 38.0);   /* 20 x 2 ms really happened before wait returned */
    if (!inl) CHECK(t_exit < 38.0); /* ...and not in samm_exit_scope */

    /* Several batches, and a second thread waiting at the same time. */
    make_sleepers(5, 2);
    make_sleepers(5, 2);
    make_sleepers(5, 2);
    make_sleepers(5, 2);
    WaiterCtx w = {0};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, waiter_thread, &w) == 0);
    samm_wait();
    CHECK_EQ(atomic_load(&sleepers_done), 40);
    pthread_join(th, NULL);
    CHECK_EQ(w.seen, 40);

    /* Nothing queued: returns at once. */
    t0 = now_ms();
    samm_wait();
    CHECK(now_ms() - t0 < 1000.0);
    CHECK_EQ(ids_not_once(), 0);
    check_clean_dtors();
    CHECK_EQ(errors_total(), e0);
}

/* ------------------------------------------------------------------------
 * 5. Many threads, one-batch queue: background mode falls back to inline
 *    cleanup when the queue is full, and nothing is lost or doubled.
 * ---------------------------------------------------------------------- */
typedef struct {
    int tid;
    int scopes;
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
            o->spin = 2000; /* keeps the worker busy so the queue fills */
            doom(o);
        }
        c->made += 4;
        samm_exit_scope();
        if (samm_scope_depth() != 0) c->bad_depth++;
    }
    return NULL;
}

static void test_full_queue_fallback(void)
{
    enum { NT = 8 };
    reset_objects();
    int e0 = errors_total();
    SAMMStats s0, s1;
    samm_wait();
    stats(&s0);
    samm__worker_set_capacity(1);
    pthread_t th[NT];
    FloodCtx ctx[NT];
    for (int i = 0; i < NT; i++) {
        ctx[i] = (FloodCtx){.tid = 20 + i, .scopes = scale(2000, 200)};
        REQUIRE(pthread_create(&th[i], NULL, flood_thread, &ctx[i]) == 0);
    }
    long made = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        made += ctx[i].made;
        CHECK_EQ(ctx[i].bad_depth, 0);
    }
    samm_wait();
    samm__worker_set_capacity(1024);
    stats(&s1);
    CHECK_EQ(atomic_load(&dtor_calls), made);
    CHECK_EQ(ids_not_once(), 0);
    check_clean_dtors();
    CHECK_EQ(s1.objects_cleaned - s0.objects_cleaned, (uint64_t)made);
    uint64_t fallbacks = s1.inline_fallbacks - s0.inline_fallbacks;
    if (atomic_load(&g_mode) == SAMM_CLEANUP_BACKGROUND) {
        CHECK(fallbacks > 0);
        CHECK(fallbacks < (uint64_t)NT * (uint64_t)ctx[0].scopes); /* the worker did some */
        CHECK(s1.cleanup_batches - s0.cleanup_batches == (uint64_t)NT * (uint64_t)ctx[0].scopes);
    } else {
        CHECK_EQ(fallbacks, 0);
    }
    CHECK_EQ(errors_total(), e0);
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
    Obj *o = p;
    dtor_common(o);
    Obj *s = samm_alloc_object(sizeof(Obj));
    s->vtable = inner_vtable;
    s->magic = MAGIC_LIVE;
    samm_track_object(s);
    atomic_fetch_add(&strays_made, 1);
}
DTOR_VTABLE(stray_maker_vtable, stray_maker_dtor);

static void test_shutdown_cleans_cleaner_scopes(void)
{
    int mode = atomic_load(&g_mode);
    reset_objects();
    atomic_store(&strays_made, 0);
    atomic_store(&inner_destroyed, 0);
    atomic_store(&nest_dtor_bad, 0);
    int e0 = errors_total();
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
    CHECK_EQ(errors_total(), e0);
    check_clean_dtors();
    samm_init();
    set_mode(mode);
    CHECK_EQ(samm_scope_depth(), 0);
}

/* ------------------------------------------------------------------------
 * 7. Thread churn: many short threads; counters of exited threads are kept,
 *    their frames released, their objects cleaned.
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

static void test_thread_churn(void)
{
    reset_objects();
    int e0 = errors_total();
    SAMMStats s0, s1;
    samm_wait();
    stats(&s0);
    const int waves = scale(40, 8), per_wave = 8;
    for (int w = 0; w < waves; w++) {
        pthread_t th[8];
        for (int i = 0; i < per_wave; i++)
            REQUIRE(pthread_create(&th[i], NULL, churn_thread, (void *)(intptr_t)(200 + i)) == 0);
        for (int i = 0; i < per_wave; i++)
            pthread_join(th[i], NULL);
    }
    samm_wait();
    stats(&s1);
    long n = (long)waves * per_wave * 6;
    CHECK_EQ(atomic_load(&dtor_calls), n);
    CHECK_EQ(ids_not_once(), 0);
    check_clean_dtors();
    CHECK_EQ(s1.objects_cleaned - s0.objects_cleaned, (uint64_t)n);
    CHECK_EQ(s1.objects_tracked - s0.objects_tracked, (uint64_t)n);
    CHECK_EQ(s1.scopes_entered - s0.scopes_entered, (uint64_t)waves * per_wave);
    CHECK_EQ(s1.scopes_exited - s0.scopes_exited, (uint64_t)waves * per_wave);
    CHECK_EQ(errors_total(), e0);
}

int main(void)
{
    double t0 = suite_begin(count_error);
    my_tid = 100;
    RUN_BOTH(test_nested_threads);
    RUN_BOTH(test_thread_exit_global_scope_only);
    RUN_BOTH(test_thread_exit_open_scopes);
    RUN_BOTH(test_thread_exit_nesting_destructors);
    RUN_BOTH(test_worker_destructors_use_scopes);
    RUN_BOTH(test_wait_is_exact);
    RUN_BOTH(test_full_queue_fallback);
    RUN_BOTH(test_shutdown_cleans_cleaner_scopes);
    RUN_BOTH(test_thread_churn);
    return suite_end("test_threads", t0);
}
