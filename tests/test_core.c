/* SPDX-License-Identifier: MIT */
/* test_core.c - the samm.h contract on one thread: lifecycle, scopes,
 * track/untrack/retain, destructors, hooks, statistics.  Misuse has its own
 * file (test_misuse.c).  Most cases run in both cleanup modes.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixtures.h"
#include "internal.h"

/* ------------------------------------------------------------------------
 * Fixtures: objects whose destructor (vtable slot 3) counts; errors are
 * captured by capture_fn (fixtures.h).
 * ---------------------------------------------------------------------- */
typedef struct Obj {
    const dtor_fn *vtable;
    int id;
    int dtor_runs;
} Obj;

static atomic_int destroyed;
static atomic_int destroyed_ids_sum;
static void obj_dtor(void *p)
{
    Obj *o = p;
    o->dtor_runs++;
    atomic_fetch_add(&destroyed, 1);
    atomic_fetch_add(&destroyed_ids_sum, o->id);
}
DTOR_VTABLE(obj_vtable, obj_dtor);

static Obj *new_obj(int id)
{
    Obj *o = samm_alloc_object(sizeof *o);
    REQUIRE(o != NULL);
    o->vtable = obj_vtable;
    o->id = id;
    return o;
}

static Obj *tracked_obj(int id)
{
    Obj *o = new_obj(id);
    samm_track_object(o);
    return o;
}

/* Waits for background cleanup, then returns the destructor count. */
static int dtors(void)
{
    samm_wait();
    return atomic_load(&destroyed);
}

static void setup(void)
{
    capture_on();
}

/* ------------------------------------------------------------------------
 * Scopes and destructors
 * ---------------------------------------------------------------------- */
TEST(calls_before_init)
{
    samm_shutdown();
    CHECK_EQ(samm_scope_depth(), 0); /* auto-initialises */
    samm_enter_scope();
    Obj *o = tracked_obj(1);
    CHECK(o != NULL);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1);
}

TEST_BOTH(scopes_and_depth)
{
    CHECK_EQ(samm_scope_depth(), 0);
    samm_enter_scope();
    CHECK_EQ(samm_scope_depth(), 1);
    samm_enter_scope();
    samm_enter_scope();
    CHECK_EQ(samm_scope_depth(), 3);
    samm_exit_scope();
    samm_exit_scope();
    samm_exit_scope();
    CHECK_EQ(samm_scope_depth(), 0);
    CHECK_EQ(captured.count, 0);
}

TEST_BOTH(destructors_run_once)
{
    samm_enter_scope();
    for (int i = 0; i < 5; i++)
        tracked_obj(i + 1);
    CHECK_EQ(atomic_load(&destroyed), 0); /* nothing before exit */
    samm_exit_scope();
    CHECK_EQ(dtors(), 5);
    CHECK_EQ(atomic_load(&destroyed_ids_sum), 15);
}

TEST_BOTH(no_vtable_no_destructor)
{
    /* No vtable, or no destructor in slot 3: memory is still released. */
    samm_enter_scope();
    Obj *a = new_obj(1);
    a->vtable = NULL;
    samm_track_object(a);
    static const dtor_fn empty_vtable[SAMM_VTABLE_DESTRUCTOR_SLOT + 1];
    Obj *b = new_obj(2);
    b->vtable = empty_vtable;
    samm_track_object(b);
    samm_exit_scope();
    CHECK_EQ(dtors(), 0);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_freed, 2);
}

static int hook_order[64], hook_n;
static void ordering_hook(void *p)
{
    hook_order[hook_n++] = ((Obj *)p)->id;
    samm_free_object(p);
}

TEST_BOTH(newest_first)
{
    samm_register_cleanup((SAMMAllocType)9, ordering_hook);
    samm_enter_scope();
    for (int i = 1; i <= 4; i++)
        samm_track(new_obj(i), (SAMMAllocType)9);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(hook_n, 4);
    for (int i = 0; i < 4 && i < hook_n; i++)
        CHECK_EQ(hook_order[i], 4 - i);
}

/* Newest first also after entries left the middle of the scope (untrack,
 * free, retain): the others keep their order. */
TEST_BOTH(newest_first_after_removals)
{
    samm_register_cleanup((SAMMAllocType)9, ordering_hook);
    samm_enter_scope();
    samm_enter_scope();
    Obj *o[8];
    for (int i = 0; i < 8; i++) {
        o[i] = new_obj(i + 1);
        samm_track(o[i], (SAMMAllocType)9);
    }
    samm_untrack(o[0]);       /* A of the A, B, C */
    samm_free_object(o[3]);   /* a DELETE */
    samm_retain_parent(o[5]); /* returned to the caller */
    samm_exit_scope();
    samm_wait();
    static const int want[] = {8, 7, 5, 3, 2};
    CHECK_EQ(hook_n, 5);
    for (int i = 0; i < 5 && i < hook_n; i++)
        CHECK_EQ(hook_order[i], want[i]);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(hook_n, 6);
    CHECK_EQ(hook_order[5], 6);
    samm_free_object(o[0]);
}

/* Many removals in one scope: tombstones are compacted, order is kept, and
 * the scope holds no more than it should. */
TEST_BOTH(removals_compact)
{
    samm_register_cleanup((SAMMAllocType)9, ordering_hook);
    samm_enter_scope();
    Obj *keep[40];
    int nkeep = 0;
    for (int i = 1; i <= 2000; i++) {
        Obj *x = new_obj(i);
        samm_track(x, (SAMMAllocType)9);
        if (i % 50 == 0 && nkeep < 40)
            keep[nkeep++] = x;
        else
            samm_free_object(x);
    }
    (void)keep;
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(hook_n, 40);
    for (int i = 0; i < hook_n; i++)
        CHECK_EQ(hook_order[i], (40 - i) * 50);
}

TEST_BOTH(null_is_ignored)
{
    samm_track(NULL, SAMM_ALLOC_OBJECT);
    samm_track_object(NULL);
    samm_untrack(NULL);
    samm_retain(NULL, 1);
    samm_free_object(NULL);
    CHECK_EQ(captured.count, 0);
}

TEST_BOTH(disabled)
{
    samm_set_enabled(0);
    CHECK_EQ(samm_is_enabled(), 0);
    samm_enter_scope();
    CHECK_EQ(samm_scope_depth(), 0);
    Obj *o = new_obj(1); /* allocation still works */
    samm_track_object(o);
    samm_exit_scope(); /* no-op, not an error */
    CHECK_EQ(captured.count, 0);
    samm_set_enabled(1);
    CHECK_EQ(samm_is_enabled(), 1);
    samm_enter_scope();
    samm_exit_scope();
    CHECK_EQ(dtors(), 0); /* o was never tracked */
    samm_free_object(o);
}

/* Disabled in the middle of a scope: track is a no-op from then on, exit
 * too; enabled again, the scope is there as it was. */
TEST_BOTH(disabled_mid_scope)
{
    samm_enter_scope();
    tracked_obj(1);
    samm_set_enabled(0);
    Obj *o = new_obj(2);
    samm_track_object(o);
    samm_exit_scope();
    CHECK_EQ(samm_scope_depth(), 1);
    samm_set_enabled(1);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1);
    samm_free_object(o);
}

TEST_BOTH(untrack)
{
    samm_enter_scope();
    Obj *kept = tracked_obj(1);
    tracked_obj(2);
    samm_untrack(kept);
    samm_untrack(kept); /* not tracked any more: ignored */
    CHECK_EQ(captured.count, 0);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1);
    CHECK_EQ(kept->dtor_runs, 0);
    CHECK_EQ(kept->id, 1); /* still ours and intact */
    samm_free_object(kept);
}

TEST_BOTH(untrack_searches_outward)
{
    samm_enter_scope();
    Obj *outer = tracked_obj(3);
    samm_enter_scope();
    samm_untrack(outer);
    samm_exit_scope();
    samm_exit_scope();
    CHECK_EQ(dtors(), 0);
    samm_free_object(outer);
}

TEST_BOTH(delete_inside_scope)
{
    samm_enter_scope();
    Obj *a = tracked_obj(1);
    tracked_obj(2);
    /* DELETE a: the program runs the destructor, then frees. */
    obj_dtor(a);
    samm_free_object(a);
    samm_exit_scope();
    CHECK_EQ(dtors(), 2); /* a once (by hand), b once (by the scope) */
    CHECK_EQ(captured.count, 0);
}

TEST_BOTH(retain_levels)
{
    samm_enter_scope(); /* 1 */
    samm_enter_scope(); /* 2 */
    samm_enter_scope(); /* 3 */
    samm_enter_scope(); /* 4 */
    Obj *o = tracked_obj(7);
    samm_retain_parent(o); /* -> 3 */
    samm_exit_scope();     /* 4 */
    CHECK_EQ(dtors(), 0);
    samm_retain(o, 2); /* 3 -> 1 */
    samm_exit_scope(); /* 3 */
    samm_exit_scope(); /* 2 */
    CHECK_EQ(dtors(), 0);
    samm_exit_scope(); /* 1: o dies here */
    CHECK_EQ(dtors(), 1);
}

TEST_BOTH(retain_chain_to_global)
{
    samm_enter_scope();
    samm_enter_scope();
    samm_enter_scope();
    Obj *c = tracked_obj(8);
    samm_retain_parent(c);
    samm_exit_scope();
    samm_retain_parent(c);
    samm_exit_scope();
    samm_retain_parent(c); /* into the global scope */
    samm_exit_scope();
    CHECK_EQ(dtors(), 0);
    samm_retain(c, 5); /* at global already: stays there */
    samm_untrack(c);   /* found in the global scope */
    samm_free_object(c);
    CHECK_EQ(captured.count, 0);
}

TEST_BOTH(retain_clamped_and_level_zero)
{
    samm_enter_scope();
    Obj *g = tracked_obj(9);
    samm_retain(g, 1000);
    samm_exit_scope();
    CHECK_EQ(dtors(), 0);
    samm_enter_scope();
    tracked_obj(10);
    Obj *z = tracked_obj(11);
    samm_retain(z, 0);
    samm_exit_scope();
    CHECK_EQ(dtors(), 2);
    samm_untrack(g);
    samm_free_object(g);
}

TEST_BOTH(retain_misuse)
{
    Obj *u = new_obj(11);
    samm_retain(u, 1);
    CHECK_EQ(captured.code, SAMM_ERR_NOT_TRACKED);
    CHECK(captured.ptr == u);
    samm_enter_scope();
    samm_track_object(u);
    samm_retain(u, -1);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1);
    CHECK_EQ(captured.count, 2);
    expect_errors(2);
}

/* Hooks may enter scopes, allocate and track: they run in the cleaning
 * thread's own scope context. */
static atomic_int nested_made;
static void spawning_hook(void *p)
{
    samm_enter_scope();
    for (int i = 0; i < 3; i++) {
        tracked_obj(100);
        atomic_fetch_add(&nested_made, 1);
    }
    samm_exit_scope();
    samm_free_object(p);
}

TEST_BOTH(hooks_enter_scopes)
{
    samm_register_cleanup((SAMMAllocType)42, spawning_hook);
    samm_enter_scope();
    int depth_before = samm_scope_depth();
    for (int i = 0; i < 10; i++)
        samm_track(new_obj(i), (SAMMAllocType)42);
    tracked_obj(1); /* a plain object beside them */
    samm_exit_scope();
    CHECK_EQ(samm_scope_depth(), depth_before - 1);
    CHECK_EQ(dtors(), 31);
    CHECK_EQ(atomic_load(&nested_made), 30);
}

TEST_BOTH(hook_registration)
{
    /* NULL restores the default: a host type's default release frees the
     * memory and runs no destructor (only OBJECT has one). */
    samm_register_cleanup((SAMMAllocType)42, spawning_hook);
    samm_register_cleanup((SAMMAllocType)42, NULL);
    samm_enter_scope();
    samm_track(new_obj(5), (SAMMAllocType)42);
    samm_exit_scope();
    CHECK_EQ(dtors(), 0);
    CHECK_EQ(atomic_load(&nested_made), 0);
    samm_register_cleanup((SAMMAllocType)300, NULL);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    expect_errors(1);
}

/* Stores into a samm_alloc block before the scope exits reach its hook:
 * the header must not tell the compiler that the block escapes nowhere
 * (GCC's `malloc` attribute did, and -O2 dropped these stores). */
typedef struct Handle {
    long value;
    long check;
} Handle;
static atomic_long seen_sum;

static void handle_hook(void *p)
{
    Handle *h = p;
    atomic_fetch_add(&seen_sum, h->value * 1000 + h->check);
    samm_free_object(h); /* a hook replaces the default release */
}

static __attribute__((noinline)) void fill_handle(long value)
{
    samm_enter_scope();
    Handle *h = samm_alloc(sizeof *h, (SAMMAllocType)43);
    REQUIRE(h != NULL);
    h->value = value;
    h->check = 7;
    samm_exit_scope();
}

static void other_handler(const SAMMError *e, void *user)
{
    (void)e;
    (void)user;
}

TEST(error_handler_get)
{
    void *user = NULL;
    CHECK(samm_get_error_handler(&user) == capture_fn); /* setup's */
    int token;
    samm_set_error_handler(other_handler, &token);
    CHECK(samm_get_error_handler(&user) == other_handler);
    CHECK(user == &token);
    CHECK(samm_get_error_handler(NULL) == other_handler);
    samm_set_error_handler(NULL, NULL);
    CHECK(samm_get_error_handler(&user) == NULL);
    CHECK(user == NULL);
}

TEST_BOTH(alloc_stores_reach_hook)
{
    samm_register_cleanup((SAMMAllocType)43, handle_hook);
    for (int i = 1; i <= 10; i++)
        fill_handle(i);
    samm_wait();
    CHECK_EQ(atomic_load(&seen_sum), 55 * 1000 + 10 * 7);
}

/* A destructor that allocates and cleans in a scope of its own (on a
 * worker in background mode): after samm_wait the statistics are exact,
 * the worker's allocations included. */
static void allocating_dtor(void *p)
{
    (void)p;
    samm_enter_scope();
    void *tmp = samm_alloc_string();
    REQUIRE(tmp != NULL);
    samm_track_string(tmp);
    samm_exit_scope();
    atomic_fetch_add(&destroyed, 1);
}
DTOR_VTABLE(allocating_vtable, allocating_dtor);

TEST_BOTH(stats_exact_after_wait)
{
    samm_enter_scope();
    for (int i = 0; i < 5; i++) {
        Obj *o = samm_alloc_object(sizeof *o);
        REQUIRE(o != NULL);
        o->vtable = allocating_vtable;
        samm_track_object(o);
    }
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(atomic_load(&destroyed), 5);
    SAMMPoolStats ps;
    CHECK_EQ(samm_get_pool_stats(6, &ps), 0); /* the string pool */
    CHECK_EQ(ps.allocations, 5);
    CHECK_EQ(ps.frees, 5);
    CHECK_EQ(ps.in_use, 0);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_allocated, 10);
    CHECK_EQ(st.objects_freed, 10);
    CHECK_EQ(st.total_bytes_freed, st.total_bytes_allocated);
}

/* Depth is limited only by memory: a million nested scopes (fewer under
 * valgrind, where each level costs much more time, not more memory). */
TEST(deep_scopes)
{
    const int depth = scale(1000000, 100000);
    for (int d = 1; d <= depth; d++) {
        samm_enter_scope();
        if (d % 1000 == 0) tracked_obj(d);
    }
    CHECK_EQ(samm_scope_depth(), depth);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.peak_scope_depth, depth);
    for (int d = depth; d >= 1; d--) {
        samm_exit_scope();
        if (d % 1000 == 0) CHECK_EQ(atomic_load(&destroyed), (depth - d) / 1000 + 1);
    }
    CHECK_EQ(samm_scope_depth(), 0);
    CHECK_EQ(dtors(), depth / 1000);
}

/* Retain from deep down to the global scope, and an untrack that searches
 * all the way out. */
TEST(deep_retain_and_untrack)
{
    Obj *o = tracked_obj(1);
    const int depth = scale(200000, 20000);
    for (int d = 1; d <= depth; d++)
        samm_enter_scope();
    Obj *r = tracked_obj(2);
    samm_retain(r, depth);
    samm_untrack(o);
    for (int d = 1; d <= depth; d++)
        samm_exit_scope();
    CHECK_EQ(dtors(), 0);
    samm_free_object(o);
    samm_untrack(r);
    samm_free_object(r);
    CHECK_EQ(captured.count, 0);
}

TEST_BOTH(large_scope_free_random)
{
    enum { N = 5000 };
    static Obj *objs[N];
    samm_enter_scope();
    for (int i = 0; i < N; i++)
        objs[i] = tracked_obj(1);
    srand(7);
    for (int i = N - 1; i > 0; i--) {
        int j = rand() % (i + 1);
        Obj *t = objs[i];
        objs[i] = objs[j];
        objs[j] = t;
    }
    for (int i = 0; i < N / 2; i++)
        samm_free_object(objs[i]); /* DELETE without destructor */
    samm_exit_scope();
    CHECK_EQ(dtors(), N - N / 2);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_freed, N);
}

/* ------------------------------------------------------------------------
 * Allocation with tracking, descriptors
 * ---------------------------------------------------------------------- */
TEST_BOTH(samm_alloc_tracks)
{
    samm_enter_scope();
    Obj *o = samm_alloc(sizeof(Obj), SAMM_ALLOC_OBJECT);
    REQUIRE(o != NULL);
    CHECK(((uintptr_t)o & 15) == 0);
    CHECK(o->vtable == NULL && o->id == 0);
    o->vtable = obj_vtable;
    char *g = samm_alloc(3000, SAMM_ALLOC_GENERIC);
    REQUIRE(g != NULL);
    memset(g, 1, 3000);
    char *h = samm_alloc(100000, SAMM_ALLOC_GENERIC);
    REQUIRE(h != NULL);
    memset(h, 1, 100000);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_freed, 3);
    CHECK(samm_alloc(8, (SAMMAllocType)256) == NULL);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    expect_errors(1);
}

/* samm_alloc(size, STRING | LIST | LIST_ATOM) takes a descriptor slot when
 * the size fits, an object slot when it does not. */
TEST(samm_alloc_descriptors)
{
    static const struct {
        SAMMAllocType type;
        int pool;
        size_t fits;
    } kinds[] = {
        {SAMM_ALLOC_STRING, 6, 40}, {SAMM_ALLOC_LIST, 7, 32}, {SAMM_ALLOC_LIST_ATOM, 8, 24}};
    for (size_t k = 0; k < 3; k++) {
        SAMMPoolStats before, after;
        samm_get_pool_stats(kinds[k].pool, &before);
        samm_enter_scope();
        void *d = samm_alloc(kinds[k].fits, kinds[k].type);
        void *big = samm_alloc(kinds[k].fits + 1, kinds[k].type);
        REQUIRE(d && big);
        samm_get_pool_stats(kinds[k].pool, &after);
        CHECK_EQ(after.allocations - before.allocations, 1);
        CHECK_EQ(after.in_use - before.in_use, 1);
        samm_exit_scope();
        samm_get_pool_stats(kinds[k].pool, &after);
        CHECK_EQ(after.in_use, before.in_use);
    }
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.total_bytes_allocated, 40 + 64 + 32 + 64 + 24 + 32);
    CHECK_EQ(st.total_bytes_freed, st.total_bytes_allocated);
}

/* When tracking runs out of memory, samm_alloc gives NULL, not a leak. */
TEST(samm_alloc_out_of_memory)
{
    samm_enter_scope();
    for (int i = 0; i < SAMM_FRAME_INITIAL_CAP; i++)
        tracked_obj(1); /* the frame is full: the next track grows it */
    samm__fail_after(0, 1);
    void *p = samm_alloc(16, SAMM_ALLOC_GENERIC);
    samm__fail_reset();
    CHECK(p == NULL);
    CHECK_EQ(captured.code, SAMM_ERR_OUT_OF_MEMORY);
    samm_exit_scope();
    CHECK_EQ(dtors(), SAMM_FRAME_INITIAL_CAP);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_allocated, st.objects_freed);
    expect_errors(1);
}

TEST_BOTH(descriptors)
{
    samm_enter_scope();
    void *s = samm_alloc_string();
    void *l = samm_alloc_list();
    void *a = samm_alloc_list_atom();
    REQUIRE(s && l && a);
    CHECK(((uint64_t *)s)[4] == 0); /* 40 bytes, zeroed */
    samm_track_string(s);
    samm_track_list(l);
    samm_track(a, SAMM_ALLOC_LIST_ATOM);
    samm_exit_scope();
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.strings_tracked, 1);
    CHECK_EQ(st.strings_cleaned, 1);
    CHECK_EQ(st.cleaned_by_type[SAMM_ALLOC_LIST], 1);
    CHECK_EQ(st.cleaned_by_type[SAMM_ALLOC_LIST_ATOM], 1);
    CHECK_EQ(st.total_bytes_allocated, 40 + 32 + 24);
    CHECK_EQ(st.total_bytes_freed, 40 + 32 + 24);
}

/* ------------------------------------------------------------------------
 * Statistics, errors, modes, lifecycle
 * ---------------------------------------------------------------------- */
/* One batch mixing objects, default-released strings and a hooked type
 * in the middle: every entry cleaned once, newest first, and counted under
 * its own type (the cleaner counts OBJECT entries apart from the rest). */
static atomic_int hooked_seen;
static void counting_hook(void *p)
{
    atomic_fetch_add(&hooked_seen, 1);
    samm_free_object(p);
}

TEST_BOTH(cleaned_by_type_mixed_batch)
{
    samm_register_cleanup((SAMMAllocType)44, counting_hook);
    samm_enter_scope();
    for (int i = 0; i < 5; i++)
        tracked_obj(i);
    for (int i = 0; i < 3; i++) {
        void *s = samm_alloc_string();
        REQUIRE(s != NULL);
        samm_track_string(s);
    }
    for (int i = 0; i < 4; i++)
        samm_track(samm_alloc_object(48), (SAMMAllocType)44);
    for (int i = 5; i < 12; i++)
        tracked_obj(i);
    samm_exit_scope();
    CHECK_EQ(dtors(), 12);
    CHECK_EQ(atomic_load(&hooked_seen), 4);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.cleaned_by_type[SAMM_ALLOC_OBJECT], 12);
    CHECK_EQ(st.cleaned_by_type[SAMM_ALLOC_STRING], 3);
    CHECK_EQ(st.cleaned_by_type[44], 4);
    CHECK_EQ(st.objects_cleaned, 19);
    CHECK_EQ(st.objects_freed, st.objects_allocated);
    CHECK_EQ(st.total_bytes_freed, st.total_bytes_allocated);
}

TEST_BOTH(stats_exact)
{
    samm_enter_scope();
    samm_enter_scope();
    for (int i = 0; i < 10; i++)
        tracked_obj(1);
    Obj *r = tracked_obj(2);
    samm_retain_parent(r);
    Obj *u = tracked_obj(3);
    samm_untrack(u);
    samm_free_object(u);
    samm_exit_scope();
    samm_exit_scope();
    SAMMStats b;
    samm_get_stats(&b);
    CHECK_EQ(b.scopes_entered, 2);
    CHECK_EQ(b.scopes_exited, 2);
    CHECK_EQ(b.objects_tracked, 12);
    CHECK_EQ(b.objects_cleaned, 11);
    CHECK_EQ(b.cleaned_by_type[SAMM_ALLOC_OBJECT], 11);
    CHECK_EQ(b.cleanup_batches, 2);
    CHECK_EQ(b.retain_calls, 1);
    CHECK_EQ(b.objects_allocated, 12);
    CHECK_EQ(b.objects_freed, 12);
    CHECK_EQ(b.total_bytes_allocated, 12 * 32);
    CHECK_EQ(b.total_bytes_freed, 12 * 32);
    CHECK_EQ(b.current_scope_depth, 0);
    CHECK_EQ(b.peak_scope_depth, 2);
    CHECK_EQ(b.background_worker_active, background());
}

/* Open scopes count as entered and not exited; objects in them as tracked
 * and not cleaned. */
TEST(stats_with_open_scopes)
{
    samm_enter_scope();
    samm_enter_scope();
    tracked_obj(1);
    tracked_obj(2);
    samm_track_string(samm_alloc_string());
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.scopes_entered, 2);
    CHECK_EQ(st.scopes_exited, 0);
    CHECK_EQ(st.objects_tracked, 3);
    CHECK_EQ(st.strings_tracked, 1);
    CHECK_EQ(st.objects_cleaned, 0);
    CHECK_EQ(st.current_scope_depth, 2);
    samm_exit_scope();
    samm_exit_scope();
}

/* Timing is measured only when asked for. */
TEST(stats_timing_only_when_asked)
{
    samm_enter_scope();
    for (int i = 0; i < 1000; i++)
        tracked_obj(1);
    samm_exit_scope();
    SAMMStats st;
    samm_get_stats(&st);
    CHECK(st.total_cleanup_time_ms == 0.0);
    samm_set_timing(1);
    for (int r = 0; r < 50 && st.total_cleanup_time_ms == 0.0; r++) {
        samm_enter_scope();
        for (int i = 0; i < 1000; i++)
            tracked_obj(1);
        samm_exit_scope();
        samm_get_stats(&st);
    }
    CHECK(st.total_cleanup_time_ms > 0.0);
    samm_set_timing(0);
}

TEST(host_bytes_apart)
{
    samm_record_bytes_freed(1000);
    void *p = samm_alloc_object(100);
    samm_free_object(p);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.host_bytes_freed, 1000);
    CHECK_EQ(st.total_bytes_allocated, 128);
    CHECK_EQ(st.total_bytes_freed, 128);
}

TEST(error_handler)
{
    /* The handler returns the previous one and NULL restores the default. */
    samm_error_fn prev = samm_set_error_handler(NULL, NULL);
    CHECK(prev == capture_fn);
    CHECK(samm_set_error_handler(capture_fn, NULL) == NULL);
    uint64_t before = samm_error_count();
    samm_exit_scope();
    CHECK_EQ(samm_error_count(), before + 1);
    CHECK(strstr(captured.message, "exit at depth 0") != NULL);
    CHECK(strcmp(captured.call, "samm_exit_scope") == 0);
    CHECK(strcmp(samm_error_name(SAMM_ERR_DOUBLE_FREE), "double free") == 0);
    CHECK(strcmp(samm_error_name(SAMM_ERR_DOUBLE_TRACK), "double track") == 0);
    expect_errors(1);
}

TEST_BOTH(mode_switch)
{
    CHECK_EQ(samm_get_cleanup_mode(), test_mode());
    samm_set_cleanup_mode((SAMMCleanupMode)7);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    CHECK_EQ(samm_get_cleanup_mode(), test_mode());
    /* Switch in the middle of a scope: nothing is lost either way. */
    samm_enter_scope();
    tracked_obj(1);
    samm_set_cleanup_mode(test_mode() == SAMM_CLEANUP_INLINE ? SAMM_CLEANUP_BACKGROUND
                                                             : SAMM_CLEANUP_INLINE);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1);
    expect_errors(1);
}

TEST_BOTH(shutdown_and_reinit)
{
    /* Objects in the global scope and in open scopes die at shutdown. */
    tracked_obj(1);
    tracked_obj(2);
    samm_enter_scope();
    tracked_obj(3);
    samm_shutdown();
    CHECK_EQ(atomic_load(&destroyed), 3);
    CHECK_EQ(captured.code, SAMM_ERR_SCOPE_IMBALANCE);
    CHECK_EQ(samm_scope_depth(), 0); /* auto-initialised again */
    samm_shutdown();
    samm_shutdown(); /* idempotent */
    samm_init();
    samm_init();
    samm_set_cleanup_mode(test_mode());
    samm_enter_scope();
    tracked_obj(4);
    samm_exit_scope();
    CHECK_EQ(dtors(), 4);
    expect_errors(1);
}

/* SAMM_* variables: a flag is off when unset, empty, 0, off, no or false
 * (the original turned tracing on for SAMM_TRACE=0). */
TEST(option_flags)
{
    static const char *const off[] = {"", "0", "off", "OFF", "no", "false"};
    for (size_t i = 0; i < sizeof off / sizeof *off; i++) {
        setenv("SAMM_TEST_FLAG", off[i], 1);
        CHECK(!samm__env_flag("SAMM_TEST_FLAG"));
    }
    unsetenv("SAMM_TEST_FLAG");
    CHECK(!samm__env_flag("SAMM_TEST_FLAG"));
    setenv("SAMM_TEST_FLAG", "1", 1);
    CHECK(samm__env_flag("SAMM_TEST_FLAG"));
    setenv("SAMM_TEST_FLAG", "yes", 1);
    CHECK(samm__env_flag("SAMM_TEST_FLAG"));
    unsetenv("SAMM_TEST_FLAG");
}

TEST(option_values)
{
    samm_shutdown();
    setenv("SAMM_CLEANUP", "background", 1);
    setenv("SAMM_TRACE", "0", 1);
    setenv("SAMM_QUEUE_BATCHES", "16", 1);
    samm_init();
    CHECK_EQ(samm_get_cleanup_mode(), SAMM_CLEANUP_BACKGROUND);
    CHECK(!samm__opt.trace);
    CHECK_EQ(samm__opt.queue_batches, 16);
    samm_shutdown();
    setenv("SAMM_CLEANUP", "sometimes", 1);
    setenv("SAMM_QUEUE_BATCHES", "lots", 1);
    samm_init();
    CHECK_EQ(samm_get_cleanup_mode(), SAMM_CLEANUP_AUTO); /* reported, then the default */
    CHECK_EQ(samm__opt.queue_batches, 1024);
    CHECK_EQ(captured.count, 2);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    unsetenv("SAMM_TRACE");
    unsetenv("SAMM_QUEUE_BATCHES");
    samm_shutdown();
    setenv("SAMM_CLEANUP", "Inline", 1);
    samm_init();
    CHECK_EQ(samm_get_cleanup_mode(), SAMM_CLEANUP_INLINE);
    unsetenv("SAMM_CLEANUP");
    expect_errors(2);
}

/* ------------------------------------------------------------------------
 * The scope guards
 * ---------------------------------------------------------------------- */
/* Each way of leaving a SAMM_AUTO_SCOPE block exits its scope once. */
TEST_BOTH(auto_scope_break_continue)
{
    int rounds = 0;
    for (int i = 0; i < 5; i++) {
        SAMM_AUTO_SCOPE;
        tracked_obj(i);
        CHECK_EQ(samm_scope_depth(), 1);
        rounds++;
        if (i == 1) continue; /* the loop's continue, not the guard's */
        if (i == 3) break;
    }
    CHECK_EQ(rounds, 4); /* the loop ran as written: 0, 1, 2, 3 */
    CHECK_EQ(samm_scope_depth(), 0);
    CHECK_EQ(dtors(), 4);
}

static int leave_by_return(int n)
{
    SAMM_AUTO_SCOPE;
    tracked_obj(n);
    if (n > 0) return samm_scope_depth();
    return -1;
}

TEST_BOTH(auto_scope_return_goto)
{
    CHECK_EQ(leave_by_return(1), 1);
    CHECK_EQ(samm_scope_depth(), 0);
    CHECK_EQ(dtors(), 1);
    int d = -1;
    {
        SAMM_AUTO_SCOPE;
        tracked_obj(2);
        d = samm_scope_depth();
        goto out;
    }
out:
    CHECK_EQ(d, 1);
    CHECK_EQ(samm_scope_depth(), 0);
    CHECK_EQ(dtors(), 2);
}

/* Guards nest (unique names: this file builds with -Wshadow -Werror). */
TEST_BOTH(scope_guards_nest)
{
    SAMM_SCOPE
    {
        tracked_obj(1);
        SAMM_SCOPE
        {
            SAMM_AUTO_SCOPE;
            tracked_obj(2);
            CHECK_EQ(samm_scope_depth(), 3);
            {
                SAMM_AUTO_SCOPE;
                CHECK_EQ(samm_scope_depth(), 4);
            }
        }
        CHECK_EQ(samm_scope_depth(), 1);
        CHECK_EQ(dtors(), 1);
    }
    CHECK_EQ(samm_scope_depth(), 0);
    CHECK_EQ(dtors(), 2);
}

/* SAMM_SCOPE's documented limit: a break inside leaves the SAMM_SCOPE
 * block (its one-pass loop), not the loop around it. */
TEST(scope_break_leaves_the_block)
{
    int rounds = 0;
    for (int i = 0; i < 3; i++) {
        SAMM_SCOPE
        {
            rounds++;
            break;
        }
    }
    CHECK_EQ(rounds, 3);
    CHECK_EQ(samm_scope_depth(), 0);
}

/* ------------------------------------------------------------------------
 * ABI and version
 * ---------------------------------------------------------------------- */
/* A program built against the original header has a 136-byte SAMMStats:
 * nothing past it is written. */
TEST(stats_abi_original_size)
{
    struct {
        unsigned char v1[SAMM_STATS_V1_SIZE];
        unsigned char guard[2048];
    } caller;
    memset(&caller, 0xA5, sizeof caller);
    samm_enter_scope();
    tracked_obj(1);
    samm_exit_scope();
    (samm_get_stats)((SAMMStats *)(void *)&caller); /* the symbol, not the macro */
    for (size_t i = 0; i < sizeof caller.guard; i++)
        if (caller.guard[i] != 0xA5) {
            CHECK_EQ(i, sizeof caller.guard); /* first byte written past it */
            break;
        }
    uint64_t exited;
    memcpy(&exited, caller.v1 + offsetof(SAMMStats, scopes_exited), sizeof exited);
    CHECK_EQ(exited, 1);
    /* The sized call writes what it is given, and says how much. */
    memset(&caller, 0xA5, sizeof caller);
    CHECK_EQ(samm_get_stats_sized((SAMMStats *)(void *)&caller, 24), 24);
    CHECK_EQ(caller.v1[24], 0xA5);
    SAMMStats full;
    CHECK_EQ(samm_get_stats_sized(&full, sizeof full + 100), sizeof full);
}

TEST(version)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", SAMM_VERSION_MAJOR, SAMM_VERSION_MINOR,
             SAMM_VERSION_PATCH);
    CHECK(strcmp(samm_version(), want) == 0);
    CHECK(strcmp(samm_version(), SAMM_VERSION_STRING) == 0);
    CHECK_EQ(samm_version_number(), SAMM_VERSION_NUMBER);
    CHECK_EQ(samm_version_number(),
             SAMM_VERSION_MAJOR * 10000 + SAMM_VERSION_MINOR * 100 + SAMM_VERSION_PATCH);
}

CHECK_MAIN(setup)
