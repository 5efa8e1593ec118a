/*
 * echo_uv.c: the reference echo server of the networking benchmarks,
 * written directly against libuv with no Python anywhere.
 *
 *   echo_uv tcp HOST PORT     (PORT 0: the kernel picks one)
 *   echo_uv unix PATH
 *   echo_uv udp HOST PORT
 *
 * It prints "READY <port>" (0 for unix) on stdout once it listens and runs
 * until its stdin reaches EOF, so it cannot outlive the workload that
 * started it; then it prints "cpu=<seconds>", its CPU time since READY.  It is the ceiling the Python servers are compared with: the
 * same libuv the loops are built on, with none of the interpreter's cost.
 *
 * Stream connections read into one buffer of their own and answer each
 * read with uv_try_write(); only what the socket does not take at once is
 * copied into a uv_write() request.  While such a request is pending,
 * reading stops, so the echo keeps its order and memory stays bounded.
 * Datagrams are answered with uv_udp_try_send(), or a copied uv_udp_send()
 * when the socket buffer is full.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define READ_SIZE 65536

typedef struct {
    uv_stream_t *stream; /* the uv_tcp_t or uv_pipe_t, allocated with us */
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    char buf[READ_SIZE];
} conn_t;

typedef struct {
    uv_write_t req;
    conn_t *conn;
    char data[];
} write_req_t;

typedef struct {
    uv_udp_send_t req;
    char data[];
} send_req_t;

static uv_loop_t *loop;
static int is_unix;
static char udp_buf[65536];
static double ready_cpu;

static void
check(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "echo_uv: %s: %s\n", what, uv_strerror(rc));
        exit(1);
    }
}

static void
on_conn_close(uv_handle_t *handle)
{
    free(handle->data);
}

static void
on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = handle->data;
    (void)suggested;
    *buf = uv_buf_init(c->buf, READ_SIZE);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void
on_write(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    conn_t *c = w->conn;
    free(w);
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)c->stream)) {
            uv_close((uv_handle_t *)c->stream, on_conn_close);
        }
        return;
    }
    if (!uv_is_closing((uv_handle_t *)c->stream)) {
        check(uv_read_start(c->stream, on_alloc, on_read), "uv_read_start");
    }
}

static void
on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = stream->data;
    if (nread < 0) {
        uv_close((uv_handle_t *)stream, on_conn_close);
        return;
    }
    if (nread == 0) {
        return;
    }
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
    int n = uv_try_write(stream, &out, 1);
    if (n == UV_EAGAIN) {
        n = 0;
    }
    if (n < 0) {
        uv_close((uv_handle_t *)stream, on_conn_close);
        return;
    }
    if (n == nread) {
        return;
    }
    size_t rest = (size_t)nread - (size_t)n;
    write_req_t *w = malloc(sizeof(*w) + rest);
    if (w == NULL) {
        fprintf(stderr, "echo_uv: out of memory\n");
        exit(1);
    }
    w->conn = c;
    memcpy(w->data, buf->base + n, rest);
    out = uv_buf_init(w->data, (unsigned)rest);
    check(uv_write(&w->req, stream, &out, 1, on_write), "uv_write");
    uv_read_stop(stream);
}

static void
on_connection(uv_stream_t *server, int status)
{
    check(status, "connection");
    conn_t *c = malloc(sizeof(*c));
    if (c == NULL) {
        fprintf(stderr, "echo_uv: out of memory\n");
        exit(1);
    }
    if (is_unix) {
        check(uv_pipe_init(loop, &c->h.pipe, 0), "uv_pipe_init");
        c->stream = (uv_stream_t *)&c->h.pipe;
    }
    else {
        check(uv_tcp_init(loop, &c->h.tcp), "uv_tcp_init");
        c->stream = (uv_stream_t *)&c->h.tcp;
    }
    c->stream->data = c;
    if (uv_accept(server, c->stream) < 0) {
        uv_close((uv_handle_t *)c->stream, on_conn_close);
        return;
    }
    if (!is_unix) {
        uv_tcp_nodelay(&c->h.tcp, 1);
    }
    check(uv_read_start(c->stream, on_alloc, on_read), "uv_read_start");
}

static void
on_udp_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(udp_buf, sizeof(udp_buf));
}

static void
on_udp_sent(uv_udp_send_t *req, int status)
{
    (void)status;
    free(req);
}

static void
on_udp_recv(uv_udp_t *udp, ssize_t nread, const uv_buf_t *buf,
            const struct sockaddr *addr, unsigned flags)
{
    (void)flags;
    if (nread < 0 || addr == NULL) {
        return;
    }
    uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
    int rc = uv_udp_try_send(udp, &out, 1, addr);
    if (rc != UV_EAGAIN) {
        return;
    }
    send_req_t *s = malloc(sizeof(*s) + (size_t)nread);
    if (s == NULL) {
        return;
    }
    memcpy(s->data, buf->base, (size_t)nread);
    out = uv_buf_init(s->data, (unsigned)nread);
    if (uv_udp_send(&s->req, udp, &out, 1, addr, on_udp_sent) < 0) {
        free(s);
    }
}

static void
on_stdin_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    static char sink[256];
    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(sink, sizeof(sink));
}

static double
cpu_seconds(void)
{
    uv_rusage_t ru;
    if (uv_getrusage(&ru) < 0) {
        return 0.0;
    }
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void
on_stdin_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)stream;
    (void)buf;
    if (nread < 0) {
        /* The workload is done with us (or gone): report the CPU time
           spent serving, from READY on. */
        printf("cpu=%.6f\n", cpu_seconds() - ready_cpu);
        fflush(stdout);
        exit(0);
    }
}

static void
usage(void)
{
    fprintf(stderr, "usage: echo_uv tcp|udp HOST PORT | echo_uv unix PATH\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    static uv_tcp_t tcp_server;
    static uv_pipe_t pipe_server;
    static uv_udp_t udp_server;
    static uv_pipe_t stdin_pipe;
    struct sockaddr_in sin;
    int port = 0;

    loop = uv_default_loop();
    if (argc == 3 && strcmp(argv[1], "unix") == 0) {
        is_unix = 1;
        check(uv_pipe_init(loop, &pipe_server, 0), "uv_pipe_init");
        check(uv_pipe_bind(&pipe_server, argv[2]), "uv_pipe_bind");
        check(uv_listen((uv_stream_t *)&pipe_server, 1024, on_connection),
              "uv_listen");
    }
    else if (argc == 4 && (strcmp(argv[1], "tcp") == 0 ||
                           strcmp(argv[1], "udp") == 0)) {
        check(uv_ip4_addr(argv[2], atoi(argv[3]), &sin), "uv_ip4_addr");
        struct sockaddr_in bound;
        int len = sizeof(bound);
        if (argv[1][0] == 't') {
            check(uv_tcp_init(loop, &tcp_server), "uv_tcp_init");
            check(uv_tcp_bind(&tcp_server, (struct sockaddr *)&sin, 0),
                  "uv_tcp_bind");
            check(uv_listen((uv_stream_t *)&tcp_server, 1024, on_connection),
                  "uv_listen");
            check(uv_tcp_getsockname(&tcp_server, (struct sockaddr *)&bound,
                                     &len),
                  "uv_tcp_getsockname");
        }
        else {
            check(uv_udp_init(loop, &udp_server), "uv_udp_init");
            check(uv_udp_bind(&udp_server, (struct sockaddr *)&sin, 0),
                  "uv_udp_bind");
            check(uv_udp_recv_start(&udp_server, on_udp_alloc, on_udp_recv),
                  "uv_udp_recv_start");
            check(uv_udp_getsockname(&udp_server, (struct sockaddr *)&bound,
                                     &len),
                  "uv_udp_getsockname");
        }
        port = ntohs(bound.sin_port);
    }
    else {
        usage();
    }

    check(uv_pipe_init(loop, &stdin_pipe, 0), "uv_pipe_init");
    check(uv_pipe_open(&stdin_pipe, 0), "uv_pipe_open");
    check(uv_read_start((uv_stream_t *)&stdin_pipe, on_stdin_alloc,
                        on_stdin_read),
          "uv_read_start");

    ready_cpu = cpu_seconds();
    printf("READY %d\n", port);
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
