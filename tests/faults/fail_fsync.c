/* An LD_PRELOAD shim that makes fsync(2) and fdatasync(2) fail with EIO for files
 * under one directory, as a failing disk does, so tests can fault a real broker.
 *
 *   POTOK_FAIL_FSYNC_DIR      the directory (an absolute, resolved path)
 *   POTOK_FAIL_FSYNC_TRIGGER  a file: calls fail only while it exists
 *   POTOK_FAIL_FSYNC_LOG      a file: every call under the directory appends a line
 *                             "<call> <ok|EIO> <path>"
 *
 * Build: cc -shared -fPIC -o fail_fsync.so fail_fsync.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 1: fail the call; 0: pass it on. Logs calls on files under the directory. */
static int intercept(int fd, const char *call) {
    const char *dir = getenv("POTOK_FAIL_FSYNC_DIR");
    if (dir == NULL || *dir == '\0') return 0;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 0) return 0;
    path[n] = '\0';
    size_t len = strlen(dir);
    if (strncmp(path, dir, len) != 0 || (path[len] != '/' && path[len] != '\0')) return 0;
    const char *trigger = getenv("POTOK_FAIL_FSYNC_TRIGGER");
    int fail = trigger != NULL && access(trigger, F_OK) == 0;
    const char *log = getenv("POTOK_FAIL_FSYNC_LOG");
    if (log != NULL) {
        int out = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (out >= 0) {
            dprintf(out, "%s %s %s\n", call, fail ? "EIO" : "ok", path);
            close(out);
        }
    }
    return fail;
}

int fsync(int fd) {
    if (intercept(fd, "fsync")) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    if (intercept(fd, "fdatasync")) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
