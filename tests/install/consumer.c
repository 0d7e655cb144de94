/* SPDX-License-Identifier: MIT */
/* consumer.c - a program built against an installed libsamm. */
#include <samm_scope.h>
#include <stdlib.h>

int main(void)
{
    int x;
    samm_scope_add(1, &x, 6, 0);
    void **p;
    uint8_t *t, *s;
    size_t n;
    if (!samm_scope_detach(1, &p, &t, &s, &n) || n != 1 || p[0] != &x) return 1;
    free(p);
    free(t);
    free(s);
    return 0;
}
