/* test_pool_asan.c - (AddressSanitizer builds only) a pooled object used
 * after it was released is reported by ASan: free slots are poisoned.
 */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "internal.h"

/* Runs `use` in a child with stderr captured; returns its wait status. */
static int run_child(void (*use)(void), char *err, size_t cap)
{
    int fd[2];
    REQUIRE(pipe(fd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        use();
        _exit(0);
    }
    close(fd[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(fd[0], err + len, cap - 1 - len)) > 0 && len + (size_t)n < cap - 1)
        len += (size_t)n;
    if (n > 0) len += (size_t)n;
    err[len] = 0;
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static void use_after_release(void)
{
    volatile char *p = samm__obj_alloc(64, "t");
    p[0] = 1;
    samm__mem_release((void *)p, "t");
    p[8] = 2;
}

static void use_while_live(void)
{
    volatile char *p = samm__obj_alloc(64, "t");
    p[63] = 1;
    samm__mem_release((void *)p, "t");
}

static void test_use_after_free_reported(void)
{
    static char err[65536];
    int status = run_child(use_after_release, err, sizeof err);
    CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
    CHECK(strstr(err, "use-after-poison") || strstr(err, "use-after-free"));
    status = run_child(use_while_live, err, sizeof err);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(strstr(err, "AddressSanitizer") == NULL);
}

int main(void)
{
    RUN(test_use_after_free_reported);
    return check_exit();
}
