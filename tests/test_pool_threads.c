/* test_pool_threads.c - the allocation layer across threads: remote frees
 * and their batching, thread exit with live objects (abandoned slabs),
 * many threads at once, and fork() with objects live in the parent.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "fixtures.h"
#include "internal.h"

static SAMMPoolStats pstats(int i)
{
    SAMMPoolStats s;
    REQUIRE(samm_get_pool_stats(i, &s) == 0);
    return s;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static size_t duplicates(void **v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_ptr);
    size_t dup = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] == v[i - 1]) dup++;
    return dup;
}

enum { N = 20000 };
static void *objs[N];

static void *release_all(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    for (size_t i = 0; i < n; i++)
        samm__mem_release(objs[i], "t");
    samm__pool_flush();
    return NULL;
}

static void test_remote_free(void)
{
    capture_on();
    for (size_t i = 0; i < N; i++) {
        objs[i] = samm__obj_alloc(i % 2 ? 64 : 100, "t");
        memset(objs[i], 0x77, 64);
    }
    uint64_t slabs64 = pstats(1).slabs, slabs128 = pstats(2).slabs;
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, release_all, (void *)(uintptr_t)N) == 0);
    pthread_join(t, NULL);
    CHECK_EQ(pstats(1).in_use + pstats(2).in_use, 0);

    /* The owner takes the remote frees back: no new slabs, all zeroed. */
    size_t not_zero = 0;
    for (size_t i = 0; i < N; i++) {
        objs[i] = samm__obj_alloc(i % 2 ? 64 : 100, "t");
        for (int b = 0; b < 64; b++)
            if (((char *)objs[i])[b]) {
                not_zero++;
                break;
            }
    }
    CHECK_EQ(not_zero, 0);
    CHECK_EQ(pstats(1).slabs, slabs64);
    CHECK_EQ(pstats(2).slabs, slabs128);

    /* A remote double free is caught by the slot state. */
    pthread_create(&t, NULL, release_all, (void *)(uintptr_t)N);
    pthread_join(t, NULL);
    CHECK_EQ(captured.count, 0);
    pthread_create(&t, NULL, release_all, (void *)(uintptr_t)1);
    pthread_join(t, NULL);
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_DOUBLE_FREE);
    CHECK(is_double_free_message(objs[0]));
    CHECK_EQ(duplicates(objs, N), 0);
    capture_off();
}

static void *alloc_and_exit(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < 1000; i++)
        objs[i] = samm__obj_alloc(200, "t");
    return NULL; /* the pool's thread key abandons the heap */
}

static void test_thread_exit(void)
{
    capture_on();
    uint64_t slabs = pstats(3).slabs;
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, alloc_and_exit, NULL) == 0);
    pthread_join(t, NULL);
    CHECK_EQ(pstats(3).in_use, 1000);
    CHECK(pstats(3).slabs > slabs);
    for (size_t i = 0; i < 1000; i++)
        samm__mem_release(objs[i], "t");
    samm__pool_flush();
    CHECK_EQ(pstats(3).in_use, 0);
    CHECK_EQ(captured.count, 0);
    samm_trim(); /* abandoned slabs, now empty, go back */
    CHECK_EQ(pstats(3).slabs, slabs);
    samm__mem_release(objs[5], "t");
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_DOUBLE_FREE);
    capture_off();
}

/* A thread ends with half-used slabs; the next thread that needs a slab of
 * that pool adopts them instead of mapping new ones. */
static void *alloc_free_half(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < 1000; i++)
        objs[i] = samm__obj_alloc(200, "t");
    for (size_t i = 0; i < 1000; i += 2)
        samm__mem_release(objs[i], "t");
    return NULL;
}

static void *objs2[500];

static void *alloc_500(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < 500; i++)
        objs2[i] = samm__obj_alloc(256, "t");
    return NULL;
}

static void test_adopt(void)
{
    capture_on();
    uint64_t slabs0 = pstats(3).slabs;
    pthread_t t;
    pthread_create(&t, NULL, alloc_free_half, NULL);
    pthread_join(t, NULL);
    uint64_t slabs1 = pstats(3).slabs;
    CHECK(slabs1 > slabs0);
    CHECK_EQ(pstats(3).in_use, 500);
    pthread_create(&t, NULL, alloc_500, NULL);
    pthread_join(t, NULL);
    CHECK_EQ(pstats(3).slabs, slabs1); /* adopted, nothing new mapped */
    static void *all[1000];
    for (size_t i = 0; i < 500; i++) {
        all[i] = objs[2 * i + 1];
        all[500 + i] = objs2[i];
    }
    CHECK_EQ(duplicates(all, 1000), 0);
    for (size_t i = 0; i < 1000; i++)
        samm__mem_release(all[i], "t");
    samm__pool_flush();
    samm_trim();
    CHECK_EQ(pstats(3).in_use, 0);
    CHECK_EQ(pstats(3).slabs, slabs0);
    CHECK_EQ(captured.count, 0);
    capture_off();
}

/* Threads pass objects round a ring: each frees what its neighbour made. */
enum { THREADS = 4, ROUNDS = 50, BATCH = 200 };
static void *ring[THREADS][BATCH];
static pthread_barrier_t barrier;
static atomic_int ring_errors;

static void *ring_worker(void *arg)
{
    int me = (int)(uintptr_t)arg, prev = (me + THREADS - 1) % THREADS;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < BATCH; i++) {
            size_t size = (size_t)(16 << ((i + r) % 7));
            unsigned char *p = samm__obj_alloc(size, "t");
            if (!p || p[0] || p[size - 1]) atomic_fetch_add(&ring_errors, 1);
            if (p) memset(p, me + 1, size);
            ring[me][i] = p;
        }
        pthread_barrier_wait(&barrier);
        for (int i = 0; i < BATCH; i++) {
            unsigned char *p = ring[prev][i];
            if (p && p[0] != prev + 1) atomic_fetch_add(&ring_errors, 1);
            samm__mem_release(p, "t");
        }
        samm__pool_flush();
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

static void test_ring(void)
{
    capture_on();
    pthread_t t[THREADS];
    pthread_barrier_init(&barrier, NULL, THREADS);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, ring_worker, (void *)(uintptr_t)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&barrier);
    CHECK_EQ(atomic_load(&ring_errors), 0);
    CHECK_EQ(captured.count, 0);
    uint64_t in_use = 0;
    for (int p = 0; p < SAMM_POOL_COUNT; p++)
        in_use += pstats(p).in_use;
    CHECK_EQ(in_use, 0);
    capture_off();
}

/* The cleanup worker's pattern: one thread allocates batches, another frees
 * them (remotely) while the first goes on allocating.  The allocating
 * thread must take the remotely freed slots back rather than grow; the
 * queue holds more than a slab's worth, so slabs fill up before their
 * slots come back. */
enum { PC_BATCH = 1000, PC_BATCHES = 200, PC_DEPTH = 4 };
static void *pc_queue[PC_DEPTH][PC_BATCH];
static int pc_head, pc_tail; /* batches produced / consumed */
static pthread_mutex_t pc_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pc_cond = PTHREAD_COND_INITIALIZER;

static void *consumer(void *arg)
{
    (void)arg;
    static void *batch[PC_BATCH];
    for (int b = 0; b < PC_BATCHES; b++) {
        pthread_mutex_lock(&pc_lock);
        while (pc_head == pc_tail)
            pthread_cond_wait(&pc_cond, &pc_lock);
        memcpy(batch, pc_queue[pc_tail % PC_DEPTH], sizeof batch);
        pc_tail++;
        pthread_cond_broadcast(&pc_cond);
        pthread_mutex_unlock(&pc_lock);
        for (int i = 0; i < PC_BATCH; i++)
            samm__mem_release(batch[i], "t");
        samm__pool_flush();
    }
    return NULL;
}

static void test_producer_consumer(void)
{
    capture_on();
    uint64_t slabs = pstats(1).slabs;
    pthread_t t;
    pthread_create(&t, NULL, consumer, NULL);
    static void *batch[PC_BATCH];
    size_t dirty = 0;
    for (int b = 0; b < PC_BATCHES; b++) {
        for (int i = 0; i < PC_BATCH; i++) {
            unsigned char *p = samm__obj_alloc(64, "t");
            if (p[0] || p[63]) dirty++;
            memset(p, 0xEE, 64);
            batch[i] = p;
        }
        pthread_mutex_lock(&pc_lock);
        while (pc_head - pc_tail == PC_DEPTH)
            pthread_cond_wait(&pc_cond, &pc_lock);
        memcpy(pc_queue[pc_head % PC_DEPTH], batch, sizeof batch);
        pc_head++;
        pthread_cond_broadcast(&pc_cond);
        pthread_mutex_unlock(&pc_lock);
    }
    pthread_join(t, NULL);
    CHECK_EQ(dirty, 0);
    CHECK_EQ(pstats(1).in_use, 0);
    /* 200,000 objects would need 209 slabs; about 6 slabs are in flight. */
    CHECK(pstats(1).slabs - slabs <= 40);
    CHECK_EQ(captured.count, 0);
    capture_off();
}

/* A thread that holds a heap while the process forks. */
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static int hold_state;
static void *held[100];

static void *holder(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++)
        held[i] = samm__obj_alloc(32, "t");
    pthread_mutex_lock(&hold_lock);
    hold_state = 1;
    pthread_cond_broadcast(&hold_cond);
    while (hold_state != 2)
        pthread_cond_wait(&hold_cond, &hold_lock);
    pthread_mutex_unlock(&hold_lock);
    for (int i = 0; i < 100; i++)
        samm__mem_release(held[i], "t");
    return NULL;
}

static int child_checks(void)
{
    int bad = 0;
    /* The parent's objects, and the other thread's (its heap is gone). */
    for (size_t i = 0; i < N; i++)
        samm__mem_release(objs[i], "t");
    for (int i = 0; i < 100; i++)
        samm__mem_release(held[i], "t");
    samm__pool_flush();
    for (int p = 0; p < SAMM_POOL_COUNT; p++)
        if (pstats(p).in_use) bad |= 1;
    void *v[1000];
    for (int i = 0; i < 1000; i++)
        if (!(v[i] = samm__obj_alloc(64, "t"))) bad |= 2;
    if (duplicates(v, 1000)) bad |= 4;
    for (int i = 0; i < 1000; i++)
        samm__mem_release(v[i], "t");
    capture_on();
    samm__mem_release(v[0], "t");
    if (captured.count != 1 || captured.code != SAMM_ERR_DOUBLE_FREE) bad |= 8;
    samm_trim();
    if (pstats(0).slabs || pstats(1).slabs) bad |= 16;
    return bad;
}

static void test_fork(void)
{
    for (size_t i = 0; i < N; i++)
        objs[i] = samm__obj_alloc(i % 2 ? 64 : 100, "t");
    pthread_t t;
    pthread_create(&t, NULL, holder, NULL);
    pthread_mutex_lock(&hold_lock);
    while (hold_state != 1)
        pthread_cond_wait(&hold_cond, &hold_lock);
    pthread_mutex_unlock(&hold_lock);

    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) _exit(child_checks());
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);

    pthread_mutex_lock(&hold_lock);
    hold_state = 2;
    pthread_cond_broadcast(&hold_cond);
    pthread_mutex_unlock(&hold_lock);
    pthread_join(t, NULL);
    /* The parent's objects are untouched by the child. */
    for (size_t i = 0; i < N; i++)
        samm__mem_release(objs[i], "t");
    CHECK_EQ(pstats(1).in_use + pstats(2).in_use + pstats(0).in_use, 0);
}

int main(void)
{
    pthread_atfork(samm__pool_atfork_prepare, samm__pool_atfork_parent, samm__pool_atfork_child);
    RUN(test_remote_free);
    RUN(test_thread_exit);
    RUN(test_adopt);
    RUN(test_ring);
    RUN(test_producer_consumer);
    RUN(test_fork);
    return check_exit();
}
