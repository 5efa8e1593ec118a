/*
 * echo_load.c: the load generator of the networking benchmarks.
 *
 * The servers under test run on the event loop being measured, so the
 * client must not: it is this small program on plain epoll, started by the
 * workload as a separate process.  It is written to be much cheaper per
 * request than any of the servers, so that their speed, not its own, sets
 * the pace (compare the reference C server's number with the others).
 *
 *   echo_load tcp HOST PORT CONNS SIZE REQUESTS [TIMEOUT]
 *   echo_load unix PATH CONNS SIZE REQUESTS [TIMEOUT]
 *   echo_load udp HOST PORT CONNS SIZE REQUESTS [TIMEOUT]
 *   echo_load sink HOST PORT 1 SIZE 1 [TIMEOUT]
 *
 * Echo modes open CONNS connections (UDP: connected sockets) and share
 * REQUESTS among them.  Each connection sends a SIZE-byte message, waits
 * for the whole echo, compares it byte for byte with what it sent, and
 * only then sends the next one.  Messages are windows of a fixed
 * pseudo-random pattern at a different offset each time, so an echo of the
 * wrong message, a reordering or a dropped chunk does not compare equal.
 *
 * Sink mode (bulk throughput) opens one connection, sends SIZE as 8 bytes
 * big-endian and reads SIZE bytes, checking that byte p is p % 251.
 *
 * The clock runs from before the first connect to the last verified byte.
 * Success prints one line, "requests=N bytes=B elapsed=SECONDS cpu=SECONDS"
 * (cpu: this process's user + system time, for comparison), and exits
 * 0; any error (refused, reset, early EOF, a wrong byte, the TIMEOUT,
 * default 60 s) is printed on stderr and exits 1.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum mode { M_TCP, M_UNIX, M_UDP, M_SINK };

/* Message offsets cycle through this many positions of the pattern. */
#define OFFSETS 256

typedef struct {
    int fd;
    long todo;       /* requests left to start, this one included */
    size_t sent;     /* bytes of the current message sent */
    size_t received; /* bytes of the current message received */
    unsigned offset; /* pattern offset of the current message */
    int want_out;    /* EPOLLOUT registered */
    unsigned char *rbuf;
} conn_t;

static enum mode mode;
static size_t size;
static const unsigned char *pattern;
static int epfd;
static long done_requests;
static unsigned long long done_bytes;

static void
die(const char *what)
{
    fprintf(stderr, "echo_load: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void
fail(const char *message)
{
    fprintf(stderr, "echo_load: %s\n", message);
    exit(1);
}

static double
now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int
open_socket(const char *host, const char *port_or_path)
{
    int fd;
    if (mode == M_UNIX) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (strlen(port_or_path) >= sizeof(sun.sun_path)) {
            fail("unix path too long");
        }
        strcpy(sun.sun_path, port_or_path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0) {
            die("socket");
        }
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
            die("connect");
        }
    }
    else {
        struct sockaddr_in sin = {.sin_family = AF_INET};
        sin.sin_port = htons((uint16_t)atoi(port_or_path));
        if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
            fail("HOST must be a numeric IPv4 address");
        }
        fd = socket(AF_INET, mode == M_UDP ? SOCK_DGRAM : SOCK_STREAM, 0);
        if (fd < 0) {
            die("socket");
        }
        if (mode != M_UDP) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        /* A blocking connect: the kernel completes the handshake from the
           listen backlog, whether or not the server has called accept. */
        if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
            die("connect");
        }
    }
    return fd;
}

static void
watch(conn_t *c, int op, int out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0)};
    ev.data.ptr = c;
    if (epoll_ctl(epfd, op, c->fd, &ev) < 0) {
        die("epoll_ctl");
    }
    c->want_out = out;
}

/* Send what can be sent of the current message; returns 1 when all is. */
static int
pump_out(conn_t *c)
{
    while (c->sent < size) {
        ssize_t n = send(c->fd, pattern + c->offset + c->sent,
                         size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return 0;
            }
            die("send");
        }
        c->sent += (size_t)n;
    }
    return 1;
}

/* Start the next message, or finish the connection; returns 0 when done. */
static int
next_message(conn_t *c)
{
    if (c->todo == 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        return 0;
    }
    c->todo--;
    c->sent = c->received = 0;
    c->offset = (c->offset + 97) % OFFSETS;
    int all = pump_out(c);
    if (all == c->want_out) {
        watch(c, EPOLL_CTL_MOD, !all);
    }
    return 1;
}

/* Handle readiness of one echo connection; returns 0 when it is done. */
static int
on_ready(conn_t *c, uint32_t events)
{
    if ((events & EPOLLOUT) && pump_out(c)) {
        watch(c, EPOLL_CTL_MOD, 0);
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
        return 1;
    }
    for (;;) {
        size_t room = mode == M_UDP ? size + 1 : size - c->received;
        ssize_t n = recv(c->fd, c->rbuf + c->received, room, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return 1;
            }
            die("recv");
        }
        if (n == 0 && mode != M_UDP) {
            fail("the server closed a connection early");
        }
        if (mode == M_UDP && (size_t)n != size) {
            fail("an echoed datagram has the wrong size");
        }
        c->received += (size_t)n;
        if (c->received > c->sent) {
            fail("received more bytes than were sent");
        }
        if (c->received < size) {
            continue;
        }
        if (memcmp(c->rbuf, pattern + c->offset, size) != 0) {
            fail("an echoed message differs from the one sent");
        }
        done_requests++;
        done_bytes += size;
        /* Nothing more can arrive before the server has read the next
           message: back to epoll rather than a recv() bound to fail. */
        return next_message(c);
    }
}

static double
run_echo(const char *host, const char *where, int conns, long requests,
         double timeout)
{
    conn_t *cs = calloc((size_t)conns, sizeof(conn_t));
    if (cs == NULL) {
        fail("out of memory");
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        die("epoll_create1");
    }
    double start = now();
    int live = 0;
    for (int i = 0; i < conns; i++) {
        conn_t *c = &cs[i];
        c->todo = requests / conns + (i < requests % conns);
        c->offset = (unsigned)(i * 13) % OFFSETS;
        c->rbuf = malloc(size + 1);
        if (c->rbuf == NULL) {
            fail("out of memory");
        }
        c->fd = open_socket(host, where);
        if (c->todo == 0) {
            close(c->fd);
            continue;
        }
        int flags = fcntl(c->fd, F_GETFL);
        if (flags < 0 || fcntl(c->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
            die("fcntl");
        }
        watch(c, EPOLL_CTL_ADD, 0);
        next_message(c);
        live++;
    }
    struct epoll_event events[64];
    while (live > 0) {
        int n = epoll_wait(epfd, events, 64, 200);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            if (!on_ready(events[i].data.ptr, events[i].events)) {
                live--;
            }
        }
        if (now() - start > timeout) {
            fprintf(stderr, "echo_load: timed out: %ld of %ld requests done\n",
                    done_requests, requests);
            exit(1);
        }
    }
    return now() - start;
}

static double
run_sink(const char *host, const char *port, double timeout)
{
    double start = now();
    int fd = open_socket(host, port);
    unsigned char header[8];
    uint64_t total = size;
    for (int i = 7; i >= 0; i--) {
        header[i] = (unsigned char)(total & 0xff);
        total >>= 8;
    }
    if (send(fd, header, sizeof(header), MSG_NOSIGNAL) != sizeof(header)) {
        die("send");
    }
    struct timeval tv = {.tv_sec = (time_t)timeout + 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    static unsigned char buf[1 << 18];
    size_t pos = 0;
    while (pos < size) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("recv");
        }
        if (n == 0) {
            fprintf(stderr, "echo_load: EOF after %zu of %zu bytes\n", pos,
                    size);
            exit(1);
        }
        if (pos + (size_t)n > size) {
            fail("the server sent more bytes than asked for");
        }
        unsigned r = (unsigned)(pos % 251);
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != r) {
                fail("a received byte differs from the expected pattern");
            }
            if (++r == 251) {
                r = 0;
            }
        }
        pos += (size_t)n;
        if (now() - start > timeout) {
            fail("timed out");
        }
    }
    double elapsed = now() - start;
    close(fd);
    done_requests = 1;
    done_bytes = size;
    return elapsed;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: echo_load tcp|udp|sink HOST PORT CONNS SIZE REQUESTS"
            " [TIMEOUT]\n"
            "       echo_load unix PATH CONNS SIZE REQUESTS [TIMEOUT]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
    }
    const char *host = NULL;
    int arg = 2;
    if (strcmp(argv[1], "tcp") == 0) {
        mode = M_TCP;
    }
    else if (strcmp(argv[1], "udp") == 0) {
        mode = M_UDP;
    }
    else if (strcmp(argv[1], "sink") == 0) {
        mode = M_SINK;
    }
    else if (strcmp(argv[1], "unix") == 0) {
        mode = M_UNIX;
    }
    else {
        usage();
    }
    if (mode != M_UNIX) {
        if (argc < 3) {
            usage();
        }
        host = argv[arg++];
    }
    if (argc != arg + 4 && argc != arg + 5) {
        usage();
    }
    const char *where = argv[arg++];
    int conns = atoi(argv[arg++]);
    long sz = atol(argv[arg++]);
    long requests = atol(argv[arg++]);
    double timeout = argc > arg ? atof(argv[arg]) : 60.0;
    if (conns < 1 || sz < 1 || requests < 1 || timeout <= 0) {
        fail("CONNS, SIZE, REQUESTS and TIMEOUT must be positive");
    }
    if (mode == M_UDP && sz > 65507) {
        fail("a UDP message is at most 65507 bytes");
    }
    size = (size_t)sz;

    double elapsed;
    if (mode == M_SINK) {
        elapsed = run_sink(host, where, timeout);
    }
    else {
        unsigned char *p = malloc(size + OFFSETS);
        if (p == NULL) {
            fail("out of memory");
        }
        /* A fixed xorshift sequence: no short period to hide a misplaced
           chunk. */
        uint32_t x = 2463534242u;
        for (size_t i = 0; i < size + OFFSETS; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            p[i] = (unsigned char)x;
        }
        pattern = p;
        elapsed = run_echo(host, where, conns, requests, timeout);
    }
    /* Its own CPU time, to compare with the server's: a client that is
       busy all the time would be measuring itself. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                 ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("requests=%ld bytes=%llu elapsed=%.9f cpu=%.6f\n", done_requests,
           done_bytes, elapsed, cpu);
    return 0;
}
