/* The machine's floor: AF_UNIX ping-pong of NUL-terminated frames, both ends in C.
 *
 *   floor serve  PATH REPLY_BYTES
 *       one epoll loop; every NUL received is answered with REPLY_BYTES bytes ending in NUL.
 *   floor client PATH REQUEST_BYTES START_AT_NS DURATION_NS MAX_CALLS NPROCS RECORD
 *       NPROCS processes, each on its own connection: 20 warm-up calls, then calls from
 *       START_AT_NS (CLOCK_MONOTONIC, the clock of Python's time.monotonic_ns) until
 *       DURATION_NS later or MAX_CALLS calls. Each prints "C count elapsed_ns"; with RECORD=1
 *       (NPROCS=1 only) also "L ns" per call.
 *
 * Compiled by the benchmark at run time: gcc -O2 -o floor floor.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static struct sockaddr_un address(const char *path) {
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "path too long\n");
        exit(1);
    }
    strcpy(sa.sun_path, path);
    return sa;
}

static char *frame(size_t len, char fill) {
    char *buf = malloc(len);
    if (!buf) die("malloc");
    memset(buf, fill, len);
    buf[len - 1] = '\0';
    return buf;
}

static int serve(const char *path, size_t reply_len) {
    char *reply = frame(reply_len, 'r');
    static char buf[1 << 16];
    struct sockaddr_un sa = address(path);
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0) die("socket");
    unlink(path);
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    chmod(path, 0666);
    if (listen(ls, 1024) < 0) die("listen");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0) continue;
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) {
                close(fd);
                continue;
            }
            for (ssize_t k = 0; k < r; k++) {
                if (buf[k] == '\0' && write_all(fd, reply, reply_len) < 0) {
                    close(fd);
                    break;
                }
            }
        }
    }
}

static int call(int fd, const char *req, size_t req_len, char *buf, size_t cap) {
    if (write_all(fd, req, req_len) < 0) return -1;
    for (;;) {
        ssize_t r = read(fd, buf, cap);
        if (r <= 0) return -1;
        if (buf[r - 1] == '\0') return 0; /* ping-pong: the reply ends the data */
    }
}

static void client_one(const char *path, size_t req_len, int64_t start_at, int64_t duration,
                       long max_calls, int record) {
    struct sockaddr_un sa = address(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
    char *req = frame(req_len, 'q');
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    int64_t *lat = record ? malloc(sizeof(int64_t) * (size_t)max_calls) : NULL;
    for (int i = 0; i < 20; i++)
        if (call(fd, req, req_len, buf, cap) < 0) die("warm-up");
    struct timespec ts = {.tv_sec = start_at / 1000000000LL, .tv_nsec = start_at % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
    int64_t end_at = start_at + duration, t1 = now_ns();
    long n = 0;
    while (n < max_calls) {
        int64_t t0 = now_ns();
        if (t0 >= end_at) break;
        if (call(fd, req, req_len, buf, cap) < 0) die("call");
        t1 = now_ns();
        if (lat) lat[n] = t1 - t0;
        n++;
    }
    char line[64];
    int len = snprintf(line, sizeof line, "C %ld %lld\n", n, (long long)(t1 - start_at));
    if (write_all(1, line, (size_t)len) < 0) die("write");
    if (lat) {
        for (long i = 0; i < n; i++) printf("L %lld\n", (long long)lat[i]);
        fflush(stdout);
    }
    close(fd);
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2], (size_t)atol(argv[3]));
    if (argc == 9 && strcmp(argv[1], "client") == 0) {
        const char *path = argv[2];
        size_t req_len = (size_t)atol(argv[3]);
        int64_t start_at = atoll(argv[4]), duration = atoll(argv[5]);
        long max_calls = atol(argv[6]);
        int nprocs = atoi(argv[7]), record = atoi(argv[8]) && nprocs == 1;
        for (int i = 0; i < nprocs; i++) {
            pid_t pid = fork();
            if (pid < 0) die("fork");
            if (pid == 0) {
                client_one(path, req_len, start_at, duration, max_calls, record);
                _exit(0);
            }
        }
        int status, failed = 0;
        while (wait(&status) > 0)
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
        return failed;
    }
    fprintf(stderr, "usage: floor serve PATH REPLY_BYTES | floor client PATH REQUEST_BYTES "
                    "START_AT_NS DURATION_NS MAX_CALLS NPROCS RECORD\n");
    return 2;
}
