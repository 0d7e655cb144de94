/* SPDX-License-Identifier: MIT */
/* scope_storage.c - the scope-storage ABI on its own: a frame per depth,
 * entries added, one removed, the rest detached and released with free().
 */
#include <stdio.h>
#include <stdlib.h>

#include "samm_scope.h"

int main(void)
{
    static int objects[5];
    samm_scope_ensure_init();
    for (int i = 0; i < 5; i++)
        samm_scope_add(1, &objects[i], 6, 0);
    samm_scope_remove(1, &objects[2], NULL, NULL);

    void **ptrs;
    uint8_t *types, *sc;
    size_t count;
    if (samm_scope_detach(1, &ptrs, &types, &sc, &count)) {
        printf("depth 1 held %zu entries after one remove:\n", count);
        for (size_t i = 0; i < count; i++)
            printf("  object #%td (type %u)\n", (int *)ptrs[i] - objects, types[i]);
        free(ptrs);
        free(types);
        free(sc);
    }
    printf("negative depth is reported, not a crash:\n");
    samm_scope_add(-1, &objects[0], 0, 0);
    return 0;
}
