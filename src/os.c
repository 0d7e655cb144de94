/* SPDX-License-Identifier: MIT */
/* os.c - what libsamm takes from the system: malloc'd bookkeeping, mapped
 * memory for blocks, the page size; the one place every allocation passes
 * through, with the failure injector the tests and `make fuzz` use; and the
 * run-time side of the tool hooks (ASan found in the program).
 */
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "track.h"

/* ------------------------------------------------------------------------
 * Failure injection: `ok` more successes, then `fail` failures.  Disarmed
 * (`armed` 0) it costs one relaxed load per allocation, and allocations
 * are slow paths.  SAMM_FAIL_AT=k (options.c) arms it for the k-th.
 * ---------------------------------------------------------------------- */
static atomic_int armed;
static atomic_long ok_left;
static atomic_long fail_left;
static atomic_uint_fast64_t allocations;
static atomic_uint_fast64_t failed; /* failures injected */

void samm__fail_after(long ok, long fail)
{
    atomic_store(&ok_left, ok);
    atomic_store(&fail_left, fail);
    atomic_store(&armed, 1);
}

void samm__fail_reset(void)
{
    atomic_store(&armed, 0);
}

uint64_t samm__alloc_count(void)
{
    return atomic_load(&allocations);
}

uint64_t samm__fail_count(void)
{
    return atomic_load(&failed);
}

static bool should_fail(void)
{
    atomic_fetch_add_explicit(&allocations, 1, RELAXED);
    if (SAMM_LIKELY(!atomic_load_explicit(&armed, RELAXED))) return false;
    if (atomic_fetch_sub(&ok_left, 1) > 0) return false;
    if (atomic_fetch_sub(&fail_left, 1) > 0) {
        atomic_fetch_add(&failed, 1);
        return true;
    }
    atomic_store(&armed, 0);
    return false;
}

void *samm__malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n);
}

void *samm__calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n, size);
}

void *samm__realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n);
}

void samm__free(void *p)
{
    free(p);
}

/* ------------------------------------------------------------------------
 * Mapped memory
 * ---------------------------------------------------------------------- */
static size_t page_size = 4096;

/* Once per process, before any other thread can use libsamm. */
void samm__os_init(void)
{
    long v = sysconf(_SC_PAGESIZE);
    page_size = v >= 4096 && v <= (long)(SAMM_SLAB_SIZE / 4) ? (size_t)v : 4096;
}

size_t samm__os_page_size(void)
{
    return page_size;
}

void *samm__os_map(size_t len, size_t align)
{
    SAMM_ASSERT(align != 0 && (align & (align - 1)) == 0 && align <= SAMM_SLAB_SIZE);
    if (should_fail() || len > SIZE_MAX - align) return NULL;
    size_t over = align > page_size ? align : 0;
    char *raw = mmap(NULL, len + over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    if (over == 0) return raw;
    /* Over-mapped by `align`: trim to an aligned range. */
    uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = start - (uintptr_t)raw;
    if (head) munmap(raw, head);
    if (over - head) munmap((char *)start + len, over - head);
    return (void *)start;
}

void samm__os_unmap(void *p, size_t len)
{
    if (p && len) munmap(p, len);
}

void samm__os_decommit(void *p, size_t len)
{
    if (len) madvise(p, len, MADV_DONTNEED);
}

/* ------------------------------------------------------------------------
 * Run-time ASan: a program built with -fsanitize=address carries these;
 * a release libsamm then poisons free slots from its slow paths.
 * ---------------------------------------------------------------------- */
extern void __asan_poison_memory_region(void const volatile *addr, size_t size)
    __attribute__((weak));
extern void __asan_unpoison_memory_region(void const volatile *addr, size_t size)
    __attribute__((weak));

bool samm__asan_live;
#ifdef SAMM_TRACK_VALGRIND
bool samm__on_valgrind;
#endif

void samm__track_init(void)
{
    samm__asan_live = __asan_poison_memory_region != NULL && __asan_unpoison_memory_region != NULL;
#ifdef SAMM_TRACK_VALGRIND
    samm__on_valgrind = RUNNING_ON_VALGRIND;
#endif
}

void samm__asan_poison(const void *p, size_t n)
{
    if (__asan_poison_memory_region) __asan_poison_memory_region(p, n);
}

void samm__asan_unpoison(const void *p, size_t n)
{
    if (__asan_unpoison_memory_region) __asan_unpoison_memory_region(p, n);
}
