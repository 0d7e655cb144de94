/* SPDX-License-Identifier: MIT */
/* track.h - what libsamm tells memory tools about its blocks.
 *
 * A free slot is poisoned (AddressSanitizer) or made inaccessible
 * (Valgrind memcheck), so a use after free or after scope exit of a pooled
 * block is reported like one of a malloc block.  Compiled in only with the
 * CMake option SAMM_TOOL_HOOKS (on in the test builds, off in release):
 * the release fast paths contain none of it.
 *
 * A release libsamm linked into a program built with -fsanitize=address
 * still notices ASan at run time through weak references to its interface
 * (samm__asan_live); allocation then takes the slow path, which poisons
 * and unpoisons, and release paths check the flag once per batch.
 */
#ifndef SAMM_TRACK_H
#define SAMM_TRACK_H

#include <stdbool.h>
#include <stddef.h>

#ifndef SAMM_TOOL_HOOKS
#define SAMM_TOOL_HOOKS 0
#endif

/* Run-time ASan, resolved once at init: true when the program carries the
 * ASan runtime. */
extern bool samm__asan_live;
void samm__track_init(void);
void samm__asan_poison(const void *p, size_t n);
void samm__asan_unpoison(const void *p, size_t n);

#if SAMM_TOOL_HOOKS
#if defined(__SANITIZE_ADDRESS__)
#define SAMM_TRACK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SAMM_TRACK_ASAN 1
#endif
#endif
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define SAMM_TRACK_VALGRIND 1
#endif
#endif
#endif

#ifdef SAMM_TRACK_ASAN
#include <sanitizer/asan_interface.h>
#define SAMM_TRACK_ASAN_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SAMM_TRACK_ASAN_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SAMM_TRACK_ASAN_POISON(p, n) ((void)(p), (void)(n))
#define SAMM_TRACK_ASAN_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#ifdef SAMM_TRACK_VALGRIND
extern bool samm__on_valgrind;
#define SAMM_TRACK_VG(stmt)                                                                        \
    do {                                                                                           \
        if (samm__on_valgrind) (void)(stmt);                                                       \
    } while (0)
#else
#define SAMM_TRACK_VG(stmt) ((void)0)
#endif

/* The hooks, compiled in or not: these may sit on fast paths, because in
 * release builds they are empty. */
#define SAMM_HOOK_ALLOC(p, n)                                                                      \
    do {                                                                                           \
        SAMM_TRACK_ASAN_UNPOISON((p), (n));                                                        \
        SAMM_TRACK_VG(VALGRIND_MAKE_MEM_UNDEFINED((p), (n)));                                      \
    } while (0)
#define SAMM_HOOK_ALLOC_ZERO(p, n)                                                                 \
    do {                                                                                           \
        SAMM_TRACK_ASAN_UNPOISON((p), (n));                                                        \
        SAMM_TRACK_VG(VALGRIND_MAKE_MEM_DEFINED((p), (n)));                                        \
    } while (0)
#define SAMM_HOOK_FREE(p, n)                                                                       \
    do {                                                                                           \
        SAMM_TRACK_ASAN_POISON((p), (n));                                                          \
        SAMM_TRACK_VG(VALGRIND_MAKE_MEM_NOACCESS((p), (n)));                                       \
    } while (0)
/* libsamm's own access to the link word inside a free slot. */
#define SAMM_HOOK_LINK_OPEN(p)                                                                     \
    do {                                                                                           \
        SAMM_TRACK_ASAN_UNPOISON((p), sizeof(void *));                                             \
        SAMM_TRACK_VG(VALGRIND_MAKE_MEM_DEFINED((p), sizeof(void *)));                             \
    } while (0)
#define SAMM_HOOK_LINK_CLOSE(p)                                                                    \
    do {                                                                                           \
        SAMM_TRACK_ASAN_POISON((p), sizeof(void *));                                               \
        SAMM_TRACK_VG(VALGRIND_MAKE_MEM_NOACCESS((p), sizeof(void *)));                            \
    } while (0)

/* Slow paths and per-batch loops also serve ASan found at run time, which
 * the compiled hooks do not cover in a release build. */
#ifdef SAMM_TRACK_ASAN
#define SAMM_RUNTIME_ASAN 0
#else
#define SAMM_RUNTIME_ASAN samm__asan_live
#endif

static inline void samm_tool_alloc(void *p, size_t n)
{
    SAMM_HOOK_ALLOC(p, n);
    if (SAMM_RUNTIME_ASAN) samm__asan_unpoison(p, n);
}

/* A block handed out that is known to be zero (fresh pages). */
static inline void samm_tool_alloc_zero(void *p, size_t n)
{
    SAMM_HOOK_ALLOC_ZERO(p, n);
    if (SAMM_RUNTIME_ASAN) samm__asan_unpoison(p, n);
}

static inline void samm_tool_free(void *p, size_t n)
{
    SAMM_HOOK_FREE(p, n);
    if (SAMM_RUNTIME_ASAN) samm__asan_poison(p, n);
}

static inline void samm_tool_link_open(void *p)
{
    SAMM_HOOK_LINK_OPEN(p);
    if (SAMM_RUNTIME_ASAN) samm__asan_unpoison(p, sizeof(void *));
}

static inline void samm_tool_link_close(void *p)
{
    SAMM_HOOK_LINK_CLOSE(p);
    if (SAMM_RUNTIME_ASAN) samm__asan_poison(p, sizeof(void *));
}

/* Whether slow paths have anything to tell a tool. */
static inline bool samm_tool_any(void)
{
    return SAMM_TOOL_HOOKS || samm__asan_live;
}

#endif /* SAMM_TRACK_H */
