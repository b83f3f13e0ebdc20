/*
 * loadgen.c — the compiled load generator of the jsonservice benchmarks.
 *
 * A Python load generator tops out near 520k lines/s on a small machine, below what a bare
 * Twisted LineReceiver echo can serve, so near the top it is the ceiling and flatters every
 * ratio. This one is plain C (epoll, non-blocking sockets, libc only) and stays well below
 * its core at those rates; it prints its own CPU use so the harness can show that.
 *
 * Throughput mode: C connections to a loopback address, each keeping D requests in flight
 * (pipelined). Requests come from a file (or stdin), one per line, and are sent round-robin
 * from a pre-built buffer: every reply line counted (by '\n', never parsed) frees one slot,
 * which is refilled at once. After a warm-up, a window of S seconds is measured; then the
 * requests still in flight are drained, so the counts can be checked: replies == requests.
 *
 * Latency mode (--latency): one connection, one request in flight; p50/p99 round trips.
 *
 * Output: one JSON line on stdout. Fatal errors: {"error": "..."} and exit status 1.
 *
 * Build: cc -O2 -Wall -Wextra -o loadgen loadgen.c   (the harness does it: bench/cloadgen.py)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Bounds: everything this program does is limited in count and time. */
#define MAX_CONNECTIONS 10000
#define MAX_INFLIGHT 100000
#define MAX_SECONDS 600.0
#define MAX_REQUEST_FILE (64L << 20)
#define MAX_SAMPLES (1L << 24)   /* latency samples kept (64 MiB of longs at most) */
#define DRAIN_SECONDS 5.0        /* after the window: how long to wait for the last replies */
#define RECV_SIZE (1 << 18)
#define MAX_EVENTS 256
#define MAX_ERRORS 5

/* ---- small helpers ---------------------------------------------------------------------- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double own_cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
         + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* User+system CPU seconds of another process (the server), or -1 if unknown. */
static double proc_cpu_seconds(long pid)
{
    char path[64], buf[1024];
    unsigned long utime, stime;
    if (pid <= 0)
        return -1.0;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1.0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may contain anything: skip past it */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1.0;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds all cores have spent busy since boot (first line of /proc/stat), or -1. */
static double machine_busy_seconds(void)
{
    unsigned long long t[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1.0;
    int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
                     &t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7]);
    fclose(f);
    if (got != 8)
        return -1.0;
    /* user nice system idle iowait irq softirq steal: all but idle and iowait are busy */
    return (double)(t[0] + t[1] + t[2] + t[5] + t[6] + t[7]) / (double)sysconf(_SC_CLK_TCK);
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void fatal(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("{\"error\": ");
    json_string(msg);
    printf("}\n");
    exit(1);
}

static char errors[MAX_ERRORS][160];
static int nerrors;

static void note_error(const char *what, int err)
{
    if (nerrors < MAX_ERRORS)
        snprintf(errors[nerrors], sizeof errors[0], "%s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
    nerrors++;
}

/* ---- the requests: one buffer, stored twice so any run of requests is one slice ---------- */

struct ring {
    char *buf;     /* the requests, concatenated, then the same again */
    size_t *off;   /* off[i]: byte offset of request i in buf, 0 <= i <= 2 * count */
    size_t count;  /* distinct requests (at least the in-flight window) */
    size_t len;    /* bytes of one copy */
};

static void load_requests(struct ring *r, const char *path, size_t window)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        fatal("cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, size = 0;
    char *text = malloc(cap);
    for (;;) {
        if (size == cap) {
            cap *= 2;
            text = realloc(text, cap);
        }
        if (!text)
            fatal("out of memory reading requests");
        size_t n = fread(text + size, 1, cap - size, f);
        if (n == 0)
            break;
        size += n;
        if (size > MAX_REQUEST_FILE)
            fatal("request file larger than %ld bytes", MAX_REQUEST_FILE);
    }
    if (f != stdin)
        fclose(f);
    if (size && text[size - 1] != '\n') { /* a last line without newline still counts */
        if (size == cap && !(text = realloc(text, cap + 1)))
            fatal("out of memory reading requests");
        text[size++] = '\n';
    }
    size_t lines = 0;
    for (size_t i = 0; i < size; i++)
        lines += text[i] == '\n';
    if (lines == 0)
        fatal("no request lines in %s", path);

    /* Repeat the lines until one copy holds at least the window, so that what a connection
       has queued (at most `window` requests) is always less than one copy: contiguous. */
    size_t copies = (window + lines - 1) / lines;
    r->count = lines * copies;
    r->len = size * copies;
    r->buf = malloc(2 * r->len);
    r->off = malloc((2 * r->count + 1) * sizeof *r->off);
    if (!r->buf || !r->off)
        fatal("out of memory building the request buffer");
    for (size_t c = 0; c < 2 * copies; c++)
        memcpy(r->buf + c * size, text, size);
    size_t k = 0;
    r->off[k++] = 0;
    for (size_t i = 0; i < 2 * r->len; i++)
        if (r->buf[i] == '\n')
            r->off[k++] = i + 1;
    free(text);
}

/* ---- connections --------------------------------------------------------------------- */

static struct sockaddr_storage server;
static socklen_t server_len;

/* Only loopback targets: 127.0.0.0/8 or ::1. */
static void parse_address(const char *host, int port)
{
    struct sockaddr_in *v4 = (struct sockaddr_in *)&server;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&server;
    memset(&server, 0, sizeof server);
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        if ((ntohl(v4->sin_addr.s_addr) >> 24) != 127)
            fatal("%s is not a loopback address", host);
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        server_len = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr))
            fatal("%s is not a loopback address", host);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        server_len = sizeof *v6;
    } else {
        fatal("not an IP address: %s (use 127.0.0.1 or ::1)", host);
    }
}

/* A connected, blocking socket with TCP_NODELAY (connect gives up after 10 s). */
static int open_connection(void)
{
    int fd = socket(server.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fatal("socket: %s", strerror(errno));
    struct timeval tv = {10, 0};
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&server, server_len) < 0)
        fatal("connect: %s", strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

struct conn {
    int fd;              /* -1 once closed */
    size_t next;         /* ring index of the next request to queue */
    size_t wpos;         /* offset in ring.buf of the first byte not yet written (< ring.len) */
    size_t wbytes;       /* bytes queued, not yet written */
    long outstanding;    /* requests queued, reply not yet counted */
    int want_write;      /* EPOLLOUT is registered */
};

static struct ring ring;
static int epfd;
static long long total_sent, total_received, received_bytes;
static long long in_flight; /* over all open connections */
static int open_conns;

static void watch(struct conn *c, int write)
{
    struct epoll_event ev = {.events = EPOLLIN | (write ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_write = write;
}

static void close_conn(struct conn *c, const char *why, int err)
{
    note_error(why, err);
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    in_flight -= c->outstanding; /* those replies will never come */
    open_conns--;
    c->outstanding = 0;
    c->wbytes = 0;
}

/* Write what is queued; if the socket is full, ask for EPOLLOUT. */
static void flush(struct conn *c)
{
    while (c->wbytes) {
        ssize_t n = send(c->fd, ring.buf + c->wpos, c->wbytes, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            close_conn(c, "send", errno);
            return;
        }
        c->wpos += (size_t)n;
        if (c->wpos >= ring.len)
            c->wpos -= ring.len;
        c->wbytes -= (size_t)n;
    }
    if ((c->wbytes > 0) != c->want_write)
        watch(c, c->wbytes > 0);
}

/* Queue the next k requests of the ring (they follow the ones already queued). */
static void queue(struct conn *c, size_t k)
{
    c->wbytes += ring.off[c->next + k] - ring.off[c->next];
    c->next = (c->next + k) % ring.count;
    c->outstanding += (long)k;
    in_flight += (long long)k;
    total_sent += (long long)k;
}

static size_t count_lines(const char *p, size_t n)
{
    size_t lines = 0;
    const char *end = p + n;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        lines++;
        p++;
    }
    return lines;
}

/* Read once; count reply lines; refill that many slots if still sending. */
static void on_readable(struct conn *c, char *buf, int sending)
{
    ssize_t n = recv(c->fd, buf, RECV_SIZE, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            close_conn(c, "recv", errno);
        return;
    }
    if (n == 0) {
        close_conn(c, "server closed a connection", 0);
        return;
    }
    size_t lines = count_lines(buf, (size_t)n);
    received_bytes += n;
    if ((long)lines > c->outstanding) {
        close_conn(c, "more reply lines than requests", 0);
        return;
    }
    total_received += (long long)lines;
    c->outstanding -= (long)lines;
    in_flight -= (long long)lines;
    if (sending && lines) {
        queue(c, lines);
        flush(c);
    }
}

/* ---- the two modes -------------------------------------------------------------------- */

struct window {
    double wall, own, server, machine;
    long long replies, bytes;
};

static void mark(struct window *w, long server_pid)
{
    w->wall = now();
    w->own = own_cpu_seconds();
    w->server = proc_cpu_seconds(server_pid);
    w->machine = machine_busy_seconds();
    w->replies = total_received;
    w->bytes = received_bytes;
}

/* Print the CPU fractions (of one core) over the window: this loader, the server, the rest. */
static void print_cpu(const struct window *a, const struct window *b, double elapsed)
{
    double own = (b->own - a->own) / elapsed;
    printf("\"cpu_seconds\": %.4f, \"loader_cpu\": %.4f", b->own - a->own, own);
    if (a->server >= 0 && b->server >= 0 && a->machine >= 0 && b->machine >= 0) {
        double server = (b->server - a->server) / elapsed;
        double other = (b->machine - a->machine) / elapsed - own - server;
        printf(", \"server_cpu\": %.4f, \"other_cpu\": %.4f", server, other > 0 ? other : 0.0);
    } else {
        printf(", \"server_cpu\": null, \"other_cpu\": null");
    }
}

static void print_errors(void)
{
    printf("\"error_count\": %d, \"errors\": [", nerrors);
    for (int i = 0; i < nerrors && i < MAX_ERRORS; i++) {
        if (i)
            printf(", ");
        json_string(errors[i]);
    }
    printf("]");
}


static void run_throughput(int nconns, size_t inflight, double warmup, double duration, long server_pid)
{
    char *buf = malloc(RECV_SIZE);
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    struct epoll_event events[MAX_EVENTS];
    if (!buf || !conns)
        fatal("out of memory");
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        fatal("epoll_create1: %s", strerror(errno));
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->fd = open_connection();
        if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0)
            fatal("fcntl: %s", strerror(errno));
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
            fatal("epoll_ctl: %s", strerror(errno));
        open_conns++;
    }
    for (int i = 0; i < nconns; i++) {
        queue(&conns[i], inflight);
        flush(&conns[i]);
    }

    enum { WARMING, MEASURING, DRAINING } phase = WARMING;
    struct window w0, w1;
    double deadline = now() + warmup;
    for (;;) {
        double t = now();
        if (phase == WARMING && t >= deadline) {
            mark(&w0, server_pid);
            phase = MEASURING;
            deadline = w0.wall + duration;
        }
        if (phase == MEASURING && t >= deadline) {
            mark(&w1, server_pid);
            phase = DRAINING; /* stop refilling; wait for what is in flight */
            deadline = t + DRAIN_SECONDS;
        }
        if (open_conns == 0 || (phase == DRAINING && (in_flight == 0 || t >= deadline)))
            break;
        int timeout_ms = (int)((deadline - t) * 1000.0) + 1;
        int n = epoll_wait(epfd, events, MAX_EVENTS, timeout_ms < 200 ? timeout_ms : 200);
        if (n < 0 && errno != EINTR)
            fatal("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c->fd >= 0 && (events[i].events & EPOLLOUT))
                flush(c);
            if (c->fd >= 0 && (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                on_readable(c, buf, phase != DRAINING);
        }
    }
    if (phase == WARMING) /* every connection failed before the window: an empty one */
        mark(&w0, server_pid);
    if (phase != DRAINING)
        mark(&w1, server_pid);
    int drained = in_flight == 0;
    for (int i = 0; i < nconns; i++)
        if (conns[i].fd >= 0)
            close(conns[i].fd);
    close(epfd);

    double elapsed = w1.wall - w0.wall;
    long long replies = w1.replies - w0.replies;
    printf("{\"loader\": \"c\", \"mode\": \"throughput\", \"connections\": %d, \"inflight\": %zu, ",
           nconns, inflight);
    printf("\"replies\": %lld, \"bytes\": %lld, \"elapsed\": %.6f, \"rate\": %.1f, ", replies,
           w1.bytes - w0.bytes, elapsed, elapsed > 0 ? (double)replies / elapsed : 0.0);
    print_cpu(&w0, &w1, elapsed > 0 ? elapsed : 1e-9);
    printf(", \"sent\": %lld, \"received\": %lld, \"drained\": %s, \"count_ok\": %s, ", total_sent,
           total_received, drained ? "true" : "false",
           drained && nerrors == 0 && total_sent == total_received ? "true" : "false");
    print_errors();
    printf("}\n");
    free(buf);
    free(conns);
}

static int compare_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* The sample at fraction p of the sorted samples, in microseconds (as bench/loadgen.py does). */
static double percentile(const long *sorted, size_t count, double p)
{
    if (count == 0)
        return 0.0;
    size_t i = (size_t)(p * (double)count);
    return (double)sorted[i < count ? i : count - 1] / 1000.0;
}

static void run_latency(double warmup, double duration, long server_pid)
{
    char *buf = malloc(RECV_SIZE);
    size_t cap = 1 << 16, count = 0;
    long *samples = malloc(cap * sizeof *samples);
    if (!buf || !samples)
        fatal("out of memory");
    int fd = open_connection(); /* blocking, with 10 s send/receive timeouts */
    struct window w0, w1;
    int measuring = 0;
    double deadline = now() + warmup;
    for (size_t i = 0;; i = (i + 1) % ring.count) {
        double t = now();
        if (!measuring && t >= deadline) {
            mark(&w0, server_pid);
            measuring = 1;
            deadline = w0.wall + duration;
        } else if (measuring && t >= deadline) {
            break;
        }
        struct timespec begin, end;
        const char *request = ring.buf + ring.off[i];
        size_t left = ring.off[i + 1] - ring.off[i];
        clock_gettime(CLOCK_MONOTONIC, &begin);
        while (left) {
            ssize_t n = send(fd, request, left, MSG_NOSIGNAL);
            if (n < 0)
                fatal("send: %s", strerror(errno));
            request += n;
            left -= (size_t)n;
        }
        for (;;) { /* one reply line, and nothing after it */
            ssize_t n = recv(fd, buf, RECV_SIZE, 0);
            if (n <= 0)
                fatal("recv: %s", n ? strerror(errno) : "server closed the connection");
            received_bytes += n;
            char *nl = memchr(buf, '\n', (size_t)n);
            if (nl && nl != buf + n - 1)
                fatal("server sent more than one line for one request");
            if (nl)
                break;
        }
        clock_gettime(CLOCK_MONOTONIC, &end);
        total_sent++;
        total_received++;
        if (measuring && count < (size_t)MAX_SAMPLES) {
            if (count == cap && !(samples = realloc(samples, (cap *= 2) * sizeof *samples)))
                fatal("out of memory");
            samples[count++] = (end.tv_sec - begin.tv_sec) * 1000000000L + (end.tv_nsec - begin.tv_nsec);
        }
    }
    mark(&w1, server_pid);
    close(fd);
    qsort(samples, count, sizeof *samples, compare_long);
    double sum = 0;
    for (size_t i = 0; i < count; i++)
        sum += (double)samples[i];
    double elapsed = w1.wall - w0.wall;
    printf("{\"loader\": \"c\", \"mode\": \"latency\", \"count\": %zu, \"p50_us\": %.2f, \"p99_us\": %.2f, "
           "\"mean_us\": %.2f, \"rate\": %.1f, \"bytes\": %lld, \"elapsed\": %.6f, ",
           count, percentile(samples, count, 0.50), percentile(samples, count, 0.99), count ? sum / (double)count / 1000.0 : 0.0,
           elapsed > 0 ? (double)(w1.replies - w0.replies) / elapsed : 0.0, w1.bytes - w0.bytes, elapsed);
    print_cpu(&w0, &w1, elapsed > 0 ? elapsed : 1e-9);
    printf(", ");
    print_errors();
    printf("}\n");
    free(buf);
    free(samples);
}

/* ---- command line --------------------------------------------------------------------- */

static const char usage[] =
    "usage: loadgen --port PORT --requests FILE|- [--host 127.0.0.1|::1]\n"
    "               [--connections C] [--inflight D] [--warmup S] [--duration S]\n"
    "               [--server-pid PID] [--latency]\n"
    "Throughput: C connections x D pipelined requests, reply lines counted over S seconds.\n"
    "--latency: one connection, one request in flight, p50/p99 round trips.\n"
    "Requests: one per line (used round-robin). Prints one JSON line.\n";

static double number(const char *name, const char *text, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "%s: %s is not a number in [%g, %g]\n%s", name, text, lo, hi, usage);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *requests = NULL;
    int port = 0, nconns = 1, latency = 0;
    size_t inflight = 1;
    double warmup = 0.2, duration = 1.0;
    long server_pid = 0;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(opt, "--latency") == 0) {
            latency = 1;
            continue;
        }
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (!val) {
            fprintf(stderr, "%s needs a value\n%s", opt, usage);
            return 2;
        }
        i++;
        if (strcmp(opt, "--host") == 0)
            host = val;
        else if (strcmp(opt, "--port") == 0)
            port = (int)number(opt, val, 1, 65535);
        else if (strcmp(opt, "--requests") == 0)
            requests = val;
        else if (strcmp(opt, "--connections") == 0)
            nconns = (int)number(opt, val, 1, MAX_CONNECTIONS);
        else if (strcmp(opt, "--inflight") == 0)
            inflight = (size_t)number(opt, val, 1, MAX_INFLIGHT);
        else if (strcmp(opt, "--warmup") == 0)
            warmup = number(opt, val, 0, MAX_SECONDS);
        else if (strcmp(opt, "--duration") == 0)
            duration = number(opt, val, 0.01, MAX_SECONDS);
        else if (strcmp(opt, "--server-pid") == 0)
            server_pid = (long)number(opt, val, 0, 1e9);
        else {
            fprintf(stderr, "unknown option %s\n%s", opt, usage);
            return 2;
        }
    }
    if (!port || !requests) {
        fputs(usage, stderr);
        return 2;
    }
    parse_address(host, port);
    load_requests(&ring, requests, latency ? 1 : inflight);
    if (latency)
        run_latency(warmup, duration, server_pid);
    else
        run_throughput(nconns, inflight, warmup, duration, server_pid);
    return 0;
}
