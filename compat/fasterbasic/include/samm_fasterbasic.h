/* SPDX-License-Identifier: MIT */
/* samm_fasterbasic.h - the calls libsamm's FasterBASIC compatibility
 * library (samm_fasterbasic) adds to libsamm.
 *
 * The FasterBASIC runtime never names these: its C files include the
 * replacement samm_bridge.h, which maps the three calls whose behaviour
 * differs from libsamm's (samm_alloc_string, samm_is_enabled, samm_track)
 * onto the samm_fb_* functions below.  This header can be included
 * together with libsamm's samm.h (samm_bridge.h cannot: the two declare
 * SAMMStats).
 */
#ifndef SAMM_FASTERBASIC_H
#define SAMM_FASTERBASIC_H

#ifdef __cplusplus
extern "C" {
#endif

#ifndef SAMM_FB_API
#if defined(_WIN32)
#define SAMM_FB_API
#else
#define SAMM_FB_API __attribute__((visibility("default")))
#endif
#endif

/* The original runtime's samm_alloc_string: a 40-byte string descriptor,
 * zeroed but for refcount 1, encoding 0 (ASCII) and dirty 1, tracked as
 * SAMM_ALLOC_STRING in the calling thread's current scope while tracking
 * is enabled (untracked otherwise).  It comes from libsamm's string pool,
 * so samm_slab_pool_free(&g_string_desc_pool, d) and samm_free_object(d)
 * both free it.  NULL when memory runs out.  Any thread. */
SAMM_FB_API void *samm_fb_alloc_string(void);

/* The runtime's samm_is_enabled: whether scope tracking is on.  This is
 * libsamm's samm_is_enabled(): 1 unless samm_set_enabled(0), also before
 * samm_init and after samm_shutdown, where the original answered 0.  (The
 * program's samm_init and samm_shutdown are calls its generated code
 * makes to libsamm directly, and libsamm initialises on first use without
 * saying whether samm_init was called: this library cannot know.)  Any
 * thread. */
SAMM_FB_API int samm_fb_is_enabled(void);

#if defined(SAMM_H) || defined(SAMM_BRIDGE_H)
/* The runtime's samm_track: libsamm's, except that a SAMM_ALLOC_LIST_ATOM
 * is not tracked - its list owns it, and the LIST release frees a list's
 * atoms with it (the runtime tracks an atom in the scope that appends it,
 * which can end before the list does).  Only when the runtime defines
 * list_free_from_samm and list_atom_free_from_samm; otherwise libsamm's
 * samm_track.  Any thread.  (Declared after samm.h or samm_bridge.h.) */
SAMM_FB_API void samm_fb_track(void *ptr, SAMMAllocType type);
#endif

/* Registers the runtime's release functions with samm_register_cleanup
 * (string_release for STRING; for LIST, list_atom_free_from_samm on each
 * atom of the list - an atom holding a nested list emptied first, as the
 * nested list is tracked and freed in a scope of its own - and then
 * list_free_from_samm; list_atom_free_from_samm for LIST_ATOM; each only
 * if the program defines what it calls), and
 * installs samm_fb_error_handler as libsamm's error handler, keeping the
 * one it replaces and that one's user pointer (samm_get_error_handler) to
 * pass errors on to.  The library calls it when it is loaded (before
 * main), which does not initialise libsamm.  A program that installed a
 * handler of its own and wants the original's silence back calls it
 * again; with samm_fb_error_handler already installed it changes no
 * handler.  Any thread, but not at the same moment as another thread's
 * samm_set_error_handler (that handler could be lost). */
SAMM_FB_API void samm_fb_install(void);

/* 1 if libsamm reports `code` from `call` where the original runtime was
 * silent - the errors samm_fb_error_handler swallows:
 *   SAMM_ERR_EXIT_AT_GLOBAL from samm_exit_scope (exit at depth 0),
 *   SAMM_ERR_NOT_TRACKED from samm_retain (retain or RETAIN-to-parent of a
 *     pointer in no scope; samm_retain_parent reports as samm_retain),
 *   SAMM_ERR_BAD_ARGUMENT from samm_retain (a negative level).
 * 0 for everything else.  Any thread. */
SAMM_FB_API int samm_fb_is_silent_error(int code, const char *call);

#ifdef SAMM_H
/* The error handler samm_fb_install installs: it drops the errors
 * samm_fb_is_silent_error names, and passes every other one on to the
 * handler it replaced, with that handler's user pointer, or - when it
 * replaced libsamm's default - prints it as the default does ("samm:
 * MESSAGE in CALL"), but always on stderr: libsamm's default printer
 * cannot be called and samm_set_output cannot be read back.  Errors it
 * drops still count in samm_error_count().  (Declared only after
 * libsamm's samm.h.) */
SAMM_FB_API void samm_fb_error_handler(const SAMMError *err, void *user);
#endif

#ifdef __cplusplus
}
#endif

#endif
