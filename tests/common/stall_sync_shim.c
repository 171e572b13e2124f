/* The sync-stall shim of tests/common/stall.rs (and scripts/disk-stall.py):
 * LD_PRELOADed into a server, it holds every fsync/fdatasync while the file
 * named by STALL_SYNC_FILE exists (only in threads whose name starts with
 * STALL_SYNC_THREAD, when set) and creates <file>.hit when it first holds one.
 * Gives up after 120 s so that a test that dies mid-stall cannot leave a server
 * stuck for good. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void maybe_stall(void) {
    const char *file = getenv("STALL_SYNC_FILE");
    struct stat st;
    if (!file || stat(file, &st) != 0) return;
    const char *only = getenv("STALL_SYNC_THREAD");
    if (only) {
        char name[32] = {0};
        pthread_getname_np(pthread_self(), name, sizeof name);
        if (strncmp(name, only, strlen(only)) != 0) return;
    }
    char hit[4096];
    snprintf(hit, sizeof hit, "%s.hit", file);
    int fd = open(hit, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
    struct timespec ms = {0, 1000000};
    for (int i = 0; i < 120000 && stat(file, &st) == 0; i++) nanosleep(&ms, NULL);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    maybe_stall();
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    maybe_stall();
    return real(fd);
}
