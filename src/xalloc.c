/* xalloc.c - the one allocation hook: libsamm's bookkeeping, large
 * objects and slab mappings all come through here.
 *
 * Plain malloc/realloc/free/mmap underneath (what the malloc family returns
 * may be free()d by anyone), plus a failure injector so tests can prove that out-of-memory
 * paths leave every structure as it was.
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "internal.h"

/* Injection state: `ok` more successes, then `fail` failures.  Disarmed
 * when `armed` is 0, which costs one relaxed load on the allocation path. */
static atomic_int armed;
static atomic_long ok_left;
static atomic_long fail_left;

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

static bool should_fail(void)
{
    if (SAMM_LIKELY(!atomic_load_explicit(&armed, memory_order_relaxed))) return false;
    if (atomic_fetch_sub(&ok_left, 1) > 0) return false;
    if (atomic_fetch_sub(&fail_left, 1) > 0) return true;
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

void *samm__map(size_t len)
{
    if (should_fail()) return NULL;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void samm__free(void *p)
{
    free(p);
}
