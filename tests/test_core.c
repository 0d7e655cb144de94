/* test_core.c - the samm.h contract on one thread: lifecycle, scopes,
 * track/untrack/retain, destructors, hooks, errors, statistics.  Every test
 * runs in both cleanup modes.
 */
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

static void reset_counts(void)
{
    samm_wait();
    atomic_store(&destroyed, 0);
    atomic_store(&destroyed_ids_sum, 0);
    captured.count = 0;
    captured.code = 0;
}

/* ------------------------------------------------------------------------
 * Tests
 * ---------------------------------------------------------------------- */
static void test_scopes_and_depth(void)
{
    reset_counts();
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

    /* Exit at the global scope is reported and ignored. */
    samm_exit_scope();
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_EXIT_AT_GLOBAL);
    CHECK(strcmp(captured.call, "samm_exit_scope") == 0);
    CHECK_EQ(samm_scope_depth(), 0);
    samm_enter_scope();
    Obj *o = tracked_obj(1);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1);
    (void)o;
}

static void test_destructors_run_once_newest_first(void)
{
    reset_counts();
    samm_enter_scope();
    for (int i = 0; i < 5; i++)
        tracked_obj(i + 1);
    CHECK_EQ(atomic_load(&destroyed), 0); /* nothing before exit */
    samm_exit_scope();
    CHECK_EQ(dtors(), 5);
    CHECK_EQ(atomic_load(&destroyed_ids_sum), 15);

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
    CHECK_EQ(dtors(), 5);
}

static int hook_order[8], hook_n;
static void ordering_hook(void *p)
{
    hook_order[hook_n++] = ((Obj *)p)->id;
    samm_free_object(p);
}

static void test_cleanup_order(void)
{
    reset_counts();
    hook_n = 0;
    samm_register_cleanup((SAMMAllocType)9, ordering_hook);
    samm_enter_scope();
    for (int i = 1; i <= 4; i++) {
        Obj *o = new_obj(i);
        samm_track(o, (SAMMAllocType)9);
    }
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(hook_n, 4);
    for (int i = 0; i < 4 && i < hook_n; i++)
        CHECK_EQ(hook_order[i], 4 - i); /* newest first */
    samm_register_cleanup((SAMMAllocType)9, NULL);
}

/* Misuse that reaches cleanup is reported and survived: a stack address
 * tracked as a heap object, an object tracked twice, an object freed by
 * hand while still tracked on another thread's behalf. */
static void test_misuse_at_cleanup(void)
{
    reset_counts();
    long on_stack[2] = {1, 2};
    samm_enter_scope();
    samm_track(on_stack, SAMM_ALLOC_GENERIC);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_FOREIGN_POINTER);
    CHECK(captured.ptr == on_stack);
    CHECK_EQ(on_stack[0] + on_stack[1], 3); /* untouched */

    /* Tracked twice: the second release is a double free, reported; the
     * slot is not handed out twice afterwards. */
    captured.count = 0;
    samm_enter_scope();
    Obj *o = tracked_obj(5);
    samm_track(o, SAMM_ALLOC_GENERIC);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(dtors(), 1);
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_DOUBLE_FREE);
    void *a = samm_alloc_object(sizeof(Obj)), *b = samm_alloc_object(sizeof(Obj));
    CHECK(a != b);
    samm_free_object(a);
    samm_free_object(b);

    /* samm_free_object twice on an untracked object. */
    captured.count = 0;
    void *c = samm_alloc_object(100);
    samm_free_object(c);
    samm_free_object(c);
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_DOUBLE_FREE);
    CHECK(strstr(captured.message, "double free of") != NULL);
}

static void test_null_and_disabled(void)
{
    reset_counts();
    samm_track(NULL, SAMM_ALLOC_OBJECT);
    samm_track_object(NULL);
    samm_untrack(NULL);
    samm_retain(NULL, 1);
    samm_free_object(NULL);
    CHECK_EQ(captured.count, 0);

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

static void test_untrack(void)
{
    reset_counts();
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

    /* Untrack searches the innermost scope outward. */
    samm_enter_scope();
    Obj *outer = tracked_obj(3);
    samm_enter_scope();
    samm_untrack(outer);
    samm_exit_scope();
    samm_exit_scope();
    CHECK_EQ(dtors(), 1);
    samm_free_object(outer);
}

static void test_delete_inside_scope(void)
{
    reset_counts();
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

static void test_retain(void)
{
    reset_counts();
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

    /* A chain through three levels, one level at a time. */
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
    CHECK_EQ(dtors(), 1);
    samm_untrack(c); /* found in the global scope */
    samm_free_object(c);

    /* Past the global scope: clamped. */
    samm_enter_scope();
    Obj *g = tracked_obj(9);
    samm_retain(g, 1000);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1);
    samm_retain(g, 5); /* at global already: stays there */
    CHECK_EQ(captured.count, 0);
    samm_untrack(g);
    samm_free_object(g);

    /* Level 0 keeps it where it is. */
    samm_enter_scope();
    Obj *z = tracked_obj(10);
    samm_retain(z, 0);
    samm_exit_scope();
    CHECK_EQ(dtors(), 2);

    /* Misuse is reported. */
    Obj *u = new_obj(11);
    samm_retain(u, 1);
    CHECK_EQ(captured.code, SAMM_ERR_NOT_TRACKED);
    CHECK(captured.ptr == u);
    samm_enter_scope();
    samm_track_object(u);
    samm_retain(u, -1);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    samm_exit_scope();
    CHECK_EQ(dtors(), 3);
    CHECK_EQ(captured.count, 2);
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

static void test_hooks_enter_scopes(void)
{
    reset_counts();
    atomic_store(&nested_made, 0);
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
    samm_register_cleanup((SAMMAllocType)42, NULL);

    /* NULL restores the default release (destructor + memory). */
    /* Without a hook, a host type's default release frees the memory and
     * runs no destructor (only OBJECT has one). */
    samm_enter_scope();
    samm_track(new_obj(5), (SAMMAllocType)42);
    samm_exit_scope();
    CHECK_EQ(dtors(), 31);
    samm_register_cleanup((SAMMAllocType)300, NULL);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
}

/* Depth is limited only by memory: a million nested scopes (fewer under
 * valgrind, where each level costs much more time, not more memory). */
static void test_deep_scopes(void)
{
    reset_counts();
    const int depth = scale(1000000, 100000);
    for (int d = 1; d <= depth; d++) {
        samm_enter_scope();
        if (d % 1000 == 0) tracked_obj(1);
    }
    CHECK_EQ(samm_scope_depth(), depth);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK(st.peak_scope_depth >= depth);
    for (int d = depth; d >= 1; d--)
        samm_exit_scope();
    CHECK_EQ(samm_scope_depth(), 0);
    CHECK_EQ(dtors(), depth / 1000);
}

static void test_large_scope_untrack_random(void)
{
    reset_counts();
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
}

static void test_samm_alloc(void)
{
    reset_counts();
    samm_enter_scope();
    Obj *o = samm_alloc(sizeof(Obj), SAMM_ALLOC_OBJECT);
    REQUIRE(o != NULL);
    CHECK(((uintptr_t)o & 15) == 0);
    CHECK(o->vtable == NULL && o->id == 0);
    o->vtable = obj_vtable;
    char *g = samm_alloc(3000, SAMM_ALLOC_GENERIC);
    REQUIRE(g != NULL);
    memset(g, 1, 3000);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1);
    CHECK(samm_alloc(8, (SAMMAllocType)256) == NULL);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);

    /* When tracking runs out of memory, samm_alloc gives NULL, not a leak. */
    samm_enter_scope();
    int filled = 0;
    do {
        tracked_obj(1); /* fill the frame to its capacity */
        filled++;
    } while (samm__frame_get((size_t)samm_scope_depth())->count <
             samm__frame_get((size_t)samm_scope_depth())->cap);
    samm__fail_after(0, 1);
    void *p = samm_alloc(16, SAMM_ALLOC_GENERIC);
    samm__fail_reset();
    CHECK(p == NULL);
    CHECK_EQ(captured.code, SAMM_ERR_OUT_OF_MEMORY);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1 + filled);
}

static void test_descriptors(void)
{
    reset_counts();
    samm_enter_scope();
    void *s = samm_alloc_string();
    void *l = samm_alloc_list();
    void *a = samm_alloc_list_atom();
    REQUIRE(s && l && a);
    CHECK(((uint64_t *)s)[4] == 0); /* 40 bytes, zeroed */
    samm_track_string(s);
    samm_track_list(l);
    samm_track(a, SAMM_ALLOC_LIST_ATOM);
    SAMMStats before;
    samm_get_stats(&before);
    samm_exit_scope();
    samm_wait();
    SAMMStats after;
    samm_get_stats(&after);
    CHECK_EQ(after.strings_cleaned - before.strings_cleaned, 1);
    CHECK_EQ(after.cleaned_by_type[SAMM_ALLOC_LIST] - before.cleaned_by_type[SAMM_ALLOC_LIST], 1);
    CHECK_EQ(after.cleaned_by_type[SAMM_ALLOC_LIST_ATOM] -
                 before.cleaned_by_type[SAMM_ALLOC_LIST_ATOM],
             1);
}

static void test_stats_exact(void)
{
    reset_counts();
    SAMMStats a, b;
    samm_get_stats(&a);
    samm_enter_scope();
    samm_enter_scope();
    for (int i = 0; i < 10; i++)
        tracked_obj(1);
    Obj *r = tracked_obj(2);
    samm_retain_parent(r);
    samm_exit_scope();
    samm_exit_scope();
    samm_wait();
    samm_get_stats(&b);
    CHECK_EQ(b.scopes_entered - a.scopes_entered, 2);
    CHECK_EQ(b.scopes_exited - a.scopes_exited, 2);
    CHECK_EQ(b.objects_tracked - a.objects_tracked, 11);
    CHECK_EQ(b.objects_cleaned - a.objects_cleaned, 11);
    CHECK_EQ(b.cleaned_by_type[SAMM_ALLOC_OBJECT] - a.cleaned_by_type[SAMM_ALLOC_OBJECT], 11);
    CHECK_EQ(b.cleanup_batches - a.cleanup_batches, 2);
    CHECK_EQ(b.retain_calls - a.retain_calls, 1);
    CHECK_EQ(b.objects_allocated - a.objects_allocated, 11);
    CHECK_EQ(b.objects_freed - a.objects_freed, 11);
    CHECK_EQ(b.current_scope_depth, 0);
    CHECK(b.peak_scope_depth >= 2);
    CHECK(b.total_cleanup_time_ms >= 0.0);
}

static void test_error_handler(void)
{
    /* The handler returns the previous one and NULL restores the default. */
    samm_error_fn prev = samm_set_error_handler(NULL, NULL);
    CHECK(prev == capture_fn);
    CHECK(samm_set_error_handler(capture_fn, NULL) == NULL);
    reset_counts();
    uint64_t before = samm_error_count();
    samm_exit_scope();
    CHECK_EQ(samm_error_count(), before + 1);
    CHECK(strstr(captured.message, "exit at depth 0") != NULL);
    CHECK(strcmp(samm_error_name(SAMM_ERR_DOUBLE_FREE), "double free") == 0);
}

static void test_mode_switch(void)
{
    reset_counts();
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
    samm_set_cleanup_mode(test_mode());
}

static void test_shutdown_and_reinit(void)
{
    reset_counts();
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
    samm_set_error_handler(capture_fn, NULL);
    samm_set_cleanup_mode(test_mode());
    samm_enter_scope();
    tracked_obj(4);
    samm_exit_scope();
    CHECK_EQ(dtors(), 4);
}

/* SAMM_* variables: a flag is off when unset, empty, 0, off, no or false
 * (the original turned tracing on for SAMM_TRACE=0). */
static void test_options(void)
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

    samm_options o;
    setenv("SAMM_CLEANUP", "background", 1);
    setenv("SAMM_TRACE", "0", 1);
    setenv("SAMM_QUEUE_BATCHES", "16", 1);
    samm__options_read(&o);
    CHECK_EQ(o.cleanup_mode, SAMM_CLEANUP_BACKGROUND);
    CHECK(!o.trace);
    CHECK_EQ(o.queue_batches, 16);
    captured.count = 0;
    setenv("SAMM_CLEANUP", "sometimes", 1);
    setenv("SAMM_QUEUE_BATCHES", "lots", 1);
    samm__options_read(&o);
    CHECK_EQ(o.cleanup_mode, SAMM_CLEANUP_INLINE); /* reported, then the default */
    CHECK_EQ(o.queue_batches, 1024);
    CHECK_EQ(captured.count, 2);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    unsetenv("SAMM_CLEANUP");
    unsetenv("SAMM_TRACE");
    unsetenv("SAMM_QUEUE_BATCHES");
}

static void run_all(void)
{
    RUN(test_options);
    RUN(test_scopes_and_depth);
    RUN(test_destructors_run_once_newest_first);
    RUN(test_cleanup_order);
    RUN(test_null_and_disabled);
    RUN(test_misuse_at_cleanup);
    RUN(test_untrack);
    RUN(test_delete_inside_scope);
    RUN(test_retain);
    RUN(test_hooks_enter_scopes);
    RUN(test_deep_scopes);
    RUN(test_large_scope_untrack_random);
    RUN(test_samm_alloc);
    RUN(test_descriptors);
    RUN(test_stats_exact);
    RUN(test_error_handler);
    RUN(test_mode_switch);
    RUN(test_shutdown_and_reinit);
}

int main(void)
{
    /* Calls before samm_init work (auto-initialisation). */
    CHECK_EQ(samm_scope_depth(), 0);
    samm_init();
    samm_set_error_handler(capture_fn, NULL);
    for (int m = 0; m < 2; m++) {
        set_mode(m);
        printf("-- cleanup mode: %s\n", mode_name(m));
        run_all();
    }
    samm_shutdown();
    return check_exit();
}
