/* SPDX-License-Identifier: MIT */
/* bloom.c - the Bloom filter over addresses of freed large objects, which
 * answers samm_is_probably_freed (the original runtime's question).  It
 * decides nothing: which pointer is freed, and which is a double free, is
 * known exactly from the slot words.
 */
#include <stdlib.h>

#include "internal.h"

/* As in the original runtime: a 64 KiB bit array and 7 hash functions. */
#define BLOOM_BYTES 65536u
#define BLOOM_BITS (BLOOM_BYTES * 8u)
#define BLOOM_WORDS (BLOOM_BYTES / 8u)
#define BLOOM_K 7

/* Allocated on the first insert; never freed, so readers need no lock. */
static _Atomic(atomic_uint_fast64_t *) bloom_bits;
static atomic_uint_fast64_t bloom_inserted;
static atomic_uint_fast64_t bloom_queries;
static atomic_uint_fast64_t bloom_positives;

/* splitmix64's finaliser: both halves of the result serve as the two base
 * hashes of double hashing (h1 + i*h2). */
static uint64_t mix(const void *ptr)
{
    uint64_t z = (uint64_t)(uintptr_t)ptr;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static atomic_uint_fast64_t *bits_get(void)
{
    atomic_uint_fast64_t *b = atomic_load_explicit(&bloom_bits, memory_order_acquire);
    if (b) return b;
    b = samm__calloc(BLOOM_WORDS, sizeof *b);
    if (!b) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, "samm_free_object", NULL,
                     "out of memory for the Bloom filter; freed addresses are not recorded");
        return NULL;
    }
    atomic_uint_fast64_t *expected = NULL;
    if (!atomic_compare_exchange_strong(&bloom_bits, &expected, b)) {
        samm__free(b);
        b = expected;
    }
    return b;
}

void samm__bloom_add(const void *ptr)
{
    atomic_uint_fast64_t *b = bits_get();
    if (!b) return;
    uint64_t h = mix(ptr);
    uint32_t h1 = (uint32_t)h, h2 = (uint32_t)(h >> 32) | 1u;
    for (uint32_t i = 0; i < BLOOM_K; i++) {
        uint32_t bit = (h1 + i * h2) % BLOOM_BITS;
        uint_fast64_t mask = (uint_fast64_t)1 << (bit % 64);
        /* Addresses recur (malloc reuses them): skip the locked OR when the
         * bit is already set. */
        if (!(atomic_load_explicit(&b[bit / 64], memory_order_relaxed) & mask))
            atomic_fetch_or_explicit(&b[bit / 64], mask, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&bloom_inserted, 1, memory_order_relaxed);
}

bool samm__bloom_query(const void *ptr)
{
    atomic_fetch_add_explicit(&bloom_queries, 1, memory_order_relaxed);
    atomic_uint_fast64_t *b = atomic_load_explicit(&bloom_bits, memory_order_acquire);
    if (!b) return false;
    uint64_t h = mix(ptr);
    uint32_t h1 = (uint32_t)h, h2 = (uint32_t)(h >> 32) | 1u;
    for (uint32_t i = 0; i < BLOOM_K; i++) {
        uint32_t bit = (h1 + i * h2) % BLOOM_BITS;
        uint64_t w = atomic_load_explicit(&b[bit / 64], memory_order_relaxed);
        if (!(w & ((uint64_t)1 << (bit % 64)))) return false;
    }
    atomic_fetch_add_explicit(&bloom_positives, 1, memory_order_relaxed);
    return true;
}

/* e^-x for x >= 0 without libm (so that static users need no -lm): halve
 * x until it is small, sum the Taylor series, square back up. */
static double exp_neg(double x)
{
    int halvings = 0;
    while (x > 0.5) {
        x /= 2;
        halvings++;
    }
    double term = 1, sum = 1;
    for (int i = 1; i < 16; i++) {
        term *= -x / i;
        sum += term;
    }
    while (halvings--)
        sum *= sum;
    return sum;
}

double samm__bloom_fp_rate(void)
{
    double n = (double)atomic_load_explicit(&bloom_inserted, memory_order_relaxed);
    if (n == 0) return 0;
    double fill = 1 - exp_neg(BLOOM_K * n / BLOOM_BITS);
    double rate = 1;
    for (int i = 0; i < BLOOM_K; i++)
        rate *= fill;
    return rate;
}

/* The expected number of false positives among the queries made so far if
 * none of the queried addresses had really been freed (queries x current
 * rate), capped at the number of positive answers: an upper estimate. */
uint64_t samm__bloom_fp_estimate(void)
{
    double q = (double)atomic_load_explicit(&bloom_queries, memory_order_relaxed);
    uint64_t pos = atomic_load_explicit(&bloom_positives, memory_order_relaxed);
    uint64_t est = (uint64_t)(q * samm__bloom_fp_rate() + 0.5);
    return est < pos ? est : pos;
}

size_t samm__bloom_memory(void)
{
    return atomic_load_explicit(&bloom_bits, memory_order_acquire) ? BLOOM_BYTES : 0;
}

int samm_is_probably_freed(void *ptr)
{
    return ptr && samm__bloom_query(ptr) ? 1 : 0;
}
