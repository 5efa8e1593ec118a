/*
 * stream.c: stream transports over uv_stream_t (TCP and Unix sockets,
 * pipes).
 *
 * StreamTransport is the per-byte half of cloop's socket transport: write,
 * the read callbacks, close/abort and flow-control accounting.  The
 * per-connection half (construction bookkeeping, extra info, repr, error
 * reporting, the finaliser) is the Python subclass in loop/_stream.py,
 * which is what the loop actually instantiates.  The semantics are those
 * of asyncio's _SelectorSocketTransport; stock asyncio is the oracle.
 * ReadPipeTransport and WritePipeTransport are the same code over a
 * uv_pipe_t (subclassed in loop/_pipe.py) with the differences of
 * asyncio's _UnixReadPipeTransport and _UnixWritePipeTransport: EOF ends
 * a read pipe, write_eof() closes a write pipe, and the messages differ.
 *
 * The types derive from asyncio's transport classes so isinstance()
 * checks hold: the socket and write-pipe types from
 * asyncio.transports._FlowControlMixin (a Transport, and what the
 * sendfile fallback requires), the read-pipe type from ReadTransport.
 * asyncio.BaseTransport declares __slots__ = ('_extra',), so the C struct
 * starts with that slot right after the object header, followed by room
 * for _FlowControlMixin's four slots, which the C members of the same
 * names shadow (they are never used).  Module init checks the bases'
 * layouts and refuses to import if they differ.
 *
 * The transport keeps the Python socket object (asyncio's _sock) and gives
 * libuv a dup() of its fd: uv_close() closes libuv's copy and
 * _call_connection_lost() closes the socket, so neither closes the other's
 * descriptor.  The uv handle is allocated separately.  The object pins
 * itself (a strong reference it holds on itself) while reading is started,
 * for each write or shutdown request in flight and from uv_close() to the
 * close callback, as asyncio's selector keeps a reading transport alive
 * through its handles.  A transport that dies with its handle open (only
 * possible while it is neither reading nor writing) detaches the handle
 * and lets the close callback free it.
 *
 * Reads go to a per-transport buffer allocated on the first read and are
 * copied into an exactly sized bytes, or go straight into the buffer of an
 * asyncio.BufferedProtocol.  No exception ever leaves a libuv callback:
 * protocol errors go to the transport's _fatal_error() (asyncio's
 * semantics), SystemExit and KeyboardInterrupt are stashed on the loop.
 */
#include "cloop.h"

#include <structmember.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <stdlib.h>
#include <unistd.h>

/* Bytes read per read() at most (asyncio's max_size for sockets). */
#define CL_STREAM_READ_SIZE (256 * 1024)
/* A read of at least this many bytes is delivered inside the poll when
 * asyncio's order allows (on_stream_read()): used while it is still in
 * the cache, about 10% faster 100 KiB echoes (10 KiB: 0-9%, 4 KiB:
 * even).  1 KiB Unix echoes lost 4-6%, so small reads stay queued: the
 * poll's reads and the pass's callbacks then each run in a loop of their
 * own. */
#define CL_DIRECT_MIN 4096
/* After a read this big, a read delivered inside the poll asks the
 * kernel how much is waiting (FIONREAD) and reads it straight into a
 * bytes object of that size instead of the arena: one system call for a
 * copy of the whole read, 8-13% faster 100 KiB echoes. */
#define CL_BIG_READ (64 * 1024)
/* The loop's read arena.  Turning each read into bytes when it is
 * delivered, one after another, lets the allocator reuse one block
 * instead of keeping a turn's worth of reads alive at once (which, past
 * glibc's 128 KiB trim threshold, made every turn grow the heap again:
 * 2-3x slower 100 KiB echoes).  A read is only started with room for a
 * whole CL_STREAM_READ_SIZE: one cut short by the arena's end split
 * messages in two (a read and a write more, and a late echo). */
#define CL_READ_ARENA (1024 * 1024)
/* asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES */
#define CL_CONNLOST_WRITES 5
/* The most bytes one uv_buf_t is given (its length is an unsigned int). */
#define CL_MAX_BUF ((Py_ssize_t)1 << 30)

/* A subprocess pipe that fills up is grown to this size once (Linux's
 * default pipe-max-size), while at most CL_PIPE_GROW_MAX grown pipes of
 * the process are open: the kernel charges a pipe's capacity to its
 * user, and past pipe-user-pages-soft (64 MiB by default) it makes the
 * user's new pipes tiny, so the budget stays a fraction of that. */
#define CL_PIPE_GROW_SIZE (1024 * 1024)
#define CL_PIPE_FULL (64 * 1024)
#define CL_PIPE_GROW_MAX 16
static int pipes_grown;         /* under the GIL */

/* What a transport is, from its type. */
enum { CL_SOCKET, CL_READ_PIPE, CL_WRITE_PIPE };

typedef struct {
    PyObject_HEAD
    PyObject *extra;            /* asyncio.BaseTransport's _extra slot */
    PyObject *fc_slots[4];      /* _FlowControlMixin's slots, unused */
    PyObject *loop;             /* the cloop.Loop */
    PyObject *sock;             /* the socket or pipe object; None once
                                 * closed */
    PyObject *protocol;
    PyObject *server;
    uv_stream_t *handle;        /* NULL once uv_close() was called */
    /* A read is delivered from the ready queue, as asyncio runs a
     * reader callback: libuv reads during the poll, the result waits here
     * (the transport queued once) until the loop's pass reaches it. */
    PyObject *rdata;            /* bytes read, for a plain Protocol, once
                                 * out of the loop's arena */
    size_t roff;                /* the read's slice of the arena */
    PyObject *rproto;           /* the BufferedProtocol that gave pybuf */
    Py_ssize_t rpend;           /* libuv's nread, while rpend_set */
    Py_ssize_t rlater;          /* EOF or an error libuv reported while
                                 * a read waited: delivered after it */
    size_t rturn;               /* the loop's turn of the last read
                                 * delivered inside the poll */
    PyObject *rown;             /* the bytes libuv reads into, from
                                 * on_stream_alloc() to on_stream_read() */
    Py_buffer pybuf;            /* BufferedProtocol buffer between alloc
                                 * and delivery */
    PyObject *read_exc;         /* get_buffer() failure from alloc */
    Py_ssize_t high_water;
    Py_ssize_t low_water;
    Py_ssize_t write_size;      /* bytes in write requests in flight */
    int sock_fd;
    int conn_lost;
    char kind;                  /* CL_SOCKET, CL_READ_PIPE, CL_WRITE_PIPE */
    char closing;
    char paused;                /* pause_reading() */
    char eof;                   /* write_eof() called */
    char buffered;              /* protocol is a BufferedProtocol */
    char protocol_connected;
    char protocol_paused;       /* pause_writing() called */
    char read_pinned;           /* uv_read_start() active, self pinned */
    char have_pybuf;
    char rpend_set;             /* a read waits for delivery */
    char rslice;                /* ... in the loop's arena at roff */
    char rskipped;              /* no read this turn: the arena was full,
                                 * or one was delivered in the poll */
    char rbig;                  /* the last read was CL_BIG_READ or more */
    char detached;              /* the loop closed under the transport */
    char read_exc_is_read;      /* read_exc is recv_into()'s, not
                                 * get_buffer()'s */
    char rqueued;               /* on the ready queue for delivery */
    char flush_queued;          /* on the loop's flush queue */
    char grow;                  /* pipe growth: 0 not allowed, 1 allowed,
                                 * 2 done (counted in pipes_grown) */
    /* Writes coalesced during this turn (bytes objects), sent as one
     * vectored write before the loop next polls.  Only ever non-empty
     * while nothing is queued in libuv (write_size == 0). */
    PyObject **pend;
    Py_ssize_t npend;
    Py_ssize_t pendcap;
    Py_ssize_t pend_size;
    PyObject *empty_waiter;     /* sendfile's future, or NULL */
} cl_stream;

typedef struct {
    uv_write_t req;
    Py_ssize_t len;
    Py_ssize_t nobjs;
    PyObject *objs[];           /* bytes owning the memory written */
} cl_write_req;

static inline cl_loop *
uv_owner(uv_handle_t *h)
{
    return (cl_loop *)h->loop->data;
}

/* --- helpers ----------------------------------------------------------- */

/* A subprocess pipe that was found full: make it CL_PIPE_GROW_SIZE, so
 * that bulk transfers take fewer system calls and wake-ups.  Tried once;
 * a refusal (EPERM past the user's limits, an older kernel) changes
 * nothing. */
static void
maybe_grow_pipe(cl_stream *self)
{
    if (self->grow != 1 || self->handle == NULL) {
        return;
    }
    self->grow = 0;
#ifdef F_SETPIPE_SZ
    uv_os_fd_t fd;
    if (pipes_grown < CL_PIPE_GROW_MAX &&
        uv_fileno((uv_handle_t *)self->handle, &fd) == 0 &&
        fcntl(fd, F_SETPIPE_SZ, CL_PIPE_GROW_SIZE) >= 0) {
        self->grow = 2;
        pipes_grown++;
    }
#endif
}

/* The pipe's capacity no longer counts against the budget. */
static void
forget_growth(cl_stream *self)
{
    if (self->grow == 2) {
        self->grow = 0;
        pipes_grown--;
    }
}

/* Report exc (a reference stolen) to the transport's _fatal_error(), or
 * stash it on the loop if it must end the run (SystemExit...). */
static void
fatal_error(cl_stream *self, PyObject *exc, const char *msg)
{
    cl_loop *loop = (cl_loop *)self->loop;
    if (cl_exc_is_fatal(exc)) {
        cl_restore_exc(exc);
        cl_loop_stash_exception(loop);
        return;
    }
    PyObject *res = PyObject_CallMethod((PyObject *)self, "_fatal_error",
                                        "Os", exc, msg);
    Py_DECREF(exc);
    if (res == NULL) {
        cl_loop_stash_exception(loop);
        return;
    }
    Py_DECREF(res);
}

static const char *
read_error_msg(cl_stream *self)
{
    return self->kind == CL_SOCKET ? "Fatal read error on socket transport"
                                   : "Fatal read error on pipe transport";
}

static const char *
write_error_msg(cl_stream *self)
{
    return self->kind == CL_SOCKET ? "Fatal write error on socket transport"
                                   : "Fatal write error on pipe transport";
}

static PyObject *
uv_error_object(int err)
{
    cl_raise_uv_error(err);
    return cl_fetch_exc();
}

static void
on_stream_close(uv_handle_t *handle)
{
    cl_stream *self = handle->data;
    cl_loop *loop = uv_owner(handle);
    PyMem_RawFree(handle);
    if (self != NULL) {
        cl_acquire(loop);
        Py_DECREF(self);
    }
}

static void
read_stop(cl_stream *self)
{
    if (self->read_pinned) {
        self->read_pinned = 0;
        if (self->handle != NULL) {
            uv_read_stop(self->handle);
        }
        Py_DECREF(self);
    }
}

/* uv_close() the handle, pinning self until the close callback.  The
 * caller holds a reference to self. */
static void
close_handle(cl_stream *self)
{
    read_stop(self);
    forget_growth(self);
    uv_stream_t *h = self->handle;
    if (h != NULL) {
        cl_loop_check_fork((cl_loop *)self->loop);
        self->handle = NULL;
        h->data = Py_NewRef(self);
        uv_close((uv_handle_t *)h, on_stream_close);
    }
}

/* loop.call_soon(transport._call_connection_lost, exc), as asyncio's
 * transports end: shared by the stream and datagram transports. */
int
cl_schedule_connection_lost(PyObject *loop, PyObject *transport,
                            PyObject *exc)
{
    PyObject *meth = PyObject_GetAttrString(transport,
                                            "_call_connection_lost");
    if (meth == NULL) {
        return -1;
    }
    PyObject *res = PyObject_CallMethodObjArgs(
        loop, ((cl_loop *)loop)->state->str_call_soon, meth, exc, NULL);
    Py_DECREF(meth);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

static int
schedule_connection_lost(cl_stream *self, PyObject *exc)
{
    return cl_schedule_connection_lost(self->loop, (PyObject *)self, exc);
}

static int
call_noargs(PyObject *obj, const char *name)
{
    PyObject *res = PyObject_CallMethod(obj, name, NULL);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* --- reading ----------------------------------------------------------- */

/* Point buf at a new bytes object holding exactly what is waiting, if
 * that is enough to be worth it (see CL_BIG_READ).  Returns 0 to use the
 * arena instead. */
static int
read_own(cl_stream *self, uv_buf_t *buf)
{
    int fd, avail;
    if (uv_fileno((uv_handle_t *)self->handle, &fd) < 0 ||
        ioctl(fd, FIONREAD, &avail) < 0 || avail < CL_DIRECT_MIN) {
        return 0;
    }
    Py_ssize_t n = Py_MIN(avail, CL_STREAM_READ_SIZE);
    PyObject *b = PyBytes_FromStringAndSize(NULL, n);
    if (b == NULL) {
        PyErr_Clear();          /* the arena will do */
        return 0;
    }
    self->rown = b;
    buf->base = PyBytes_AS_STRING(b);
    buf->len = (size_t)n;
    return 1;
}

static void
on_stream_alloc(uv_handle_t *handle, size_t Py_UNUSED(suggested),
                uv_buf_t *buf)
{
    cl_stream *self = handle->data;
    buf->base = NULL;
    buf->len = 0;
    if (self == NULL) {
        return;
    }
    cl_acquire(uv_owner(handle));
    cl_loop *loop = (cl_loop *)self->loop;
    /* One read per turn, as asyncio's reader callback: this empty
     * buffer makes libuv leave the rest for the next poll. */
    if (self->rpend_set) {
        return;
    }
    if (self->rturn == loop->turn) {
        self->rskipped = 1;
        return;
    }
    if (!self->buffered) {
        if (self->rbig && loop->direct && !loop->defer && read_own(self, buf)) {
            return;
        }
        if (loop->rbuf == NULL) {
            loop->rbuf = PyMem_RawMalloc(CL_READ_ARENA);
            if (loop->rbuf == NULL) {
                return;         /* the read callback gets UV_ENOBUFS */
            }
        }
        size_t room = CL_READ_ARENA - loop->rbuf_used;
        if (room < CL_STREAM_READ_SIZE) {
            /* The turn's reads filled the arena: this one waits for the
             * next poll (the fd stays readable). */
            self->rskipped = 1;
            return;
        }
        buf->base = loop->rbuf + loop->rbuf_used;
        buf->len = CL_STREAM_READ_SIZE;
        return;
    }
    /* asyncio asks the protocol for a buffer of any size (-1). */
    PyObject *obj = NULL;
    PyObject *size = PyLong_FromLong(-1);
    if (size != NULL) {
        PyObject *args[2] = {self->protocol, size};
        obj = PyObject_VectorcallMethod(
            loop->state->str_get_buffer, args,
            2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_DECREF(size);
    }
    self->read_exc_is_read = 0;
    if (obj != NULL) {
        /* asyncio checks len(buf), then hands buf to sock.recv_into(). */
        Py_ssize_t n = PyObject_Size(obj);
        if (n == 0) {
            PyErr_SetString(PyExc_RuntimeError,
                            "get_buffer() returned an empty buffer");
        }
        else if (n > 0 &&
                 PyObject_GetBuffer(obj, &self->pybuf, PyBUF_WRITABLE) == 0) {
            self->have_pybuf = 1;
            buf->base = self->pybuf.buf;
            buf->len = (size_t)self->pybuf.len;
        }
        else if (n > 0) {
            /* A buffer recv_into() refuses: its error, as a read error. */
            self->read_exc_is_read = 1;
            if (self->kind == CL_SOCKET) {
                PyObject *exc = cl_fetch_exc();
                PyObject *r = PyObject_CallMethod(self->sock, "recv_into",
                                                  "Oi", obj, 0);
                if (r != NULL) {
                    /* Cannot happen (the same buffer request); keep the
                     * first error. */
                    Py_DECREF(r);
                    cl_restore_exc(exc);
                }
                else {
                    Py_DECREF(exc);
                }
            }
        }
        Py_DECREF(obj);
    }
    if (!self->have_pybuf) {
        Py_XSETREF(self->read_exc, cl_fetch_exc());
    }
}

/* logging levels */
#define CL_LOG_DEBUG 10
#define CL_LOG_INFO 20

/* Debug mode only: log through the Python side, as asyncio logs. */
static void
debug_log(cl_stream *self, int level, const char *what)
{
    if (((cl_loop *)self->loop)->debug) {
        PyObject *res = PyObject_CallMethod((PyObject *)self, "_cl_log",
                                            "is", level, what);
        if (res == NULL) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
        Py_XDECREF(res);
    }
}

/* A read pipe ends at EOF: eof_received() and connection_lost(None) are
 * called soon, in that order, as asyncio's _UnixReadPipeTransport does. */
static void queue_delivery(cl_stream *self);

static void
on_pipe_eof(cl_stream *self)
{
    read_stop(self);
    self->closing = 1;
    debug_log(self, CL_LOG_INFO, "%r was closed by peer");
    PyObject *meth = PyObject_GetAttrString(self->protocol, "eof_received");
    PyObject *res = meth == NULL ? NULL
                                 : PyObject_CallMethod(self->loop, "call_soon",
                                                       "O", meth);
    Py_XDECREF(meth);
    Py_XDECREF(res);
    if (res == NULL) {
        cl_loop_stash_exception((cl_loop *)self->loop);
        return;
    }
    self->conn_lost++;
    if (schedule_connection_lost(self, Py_None) < 0) {
        cl_loop_stash_exception((cl_loop *)self->loop);
    }
}

static void
on_eof(cl_stream *self)
{
    if (self->kind == CL_READ_PIPE) {
        on_pipe_eof(self);
        return;
    }
    read_stop(self);
    debug_log(self, CL_LOG_DEBUG, "%r received EOF");
    PyObject *res = PyObject_CallMethod(self->protocol, "eof_received",
                                        NULL);
    if (res == NULL) {
        PyObject *exc = cl_fetch_exc();
        if (cl_exc_is_fatal(exc)) {
            /* KeyboardInterrupt leaves asyncio's reader registered: the
             * EOF is reported again on the next turn. */
            self->rpend = UV_EOF;
            self->rpend_set = 1;
            queue_delivery(self);
        }
        fatal_error(self, exc,
                    "Fatal error: protocol.eof_received() call failed.");
        return;
    }
    int keep_open = PyObject_IsTrue(res);
    Py_DECREF(res);
    if (keep_open < 0) {
        fatal_error(self, cl_fetch_exc(),
                    "Fatal error: protocol.eof_received() call failed.");
        return;
    }
    if (!keep_open) {
        if (call_noargs((PyObject *)self, "close") < 0) {
            cl_loop_stash_exception((cl_loop *)self->loop);
        }
    }
}

/* The protocol's data_received()/buffer_updated() raised.  A socket
 * transport fails (asyncio's _SelectorSocketTransport); a read pipe
 * reports it and goes on reading, as the exception simply escapes
 * asyncio's _UnixReadPipeTransport._read_ready() callback. */
static void
on_protocol_read_error(cl_stream *self)
{
    PyObject *exc = cl_fetch_exc();
    if (self->kind == CL_SOCKET || cl_exc_is_fatal(exc)) {
        fatal_error(self, exc,
                    self->buffered
                        ? "Fatal error: protocol.buffer_updated() call "
                          "failed."
                        : "Fatal error: protocol.data_received() call "
                          "failed.");
        return;
    }
    PyObject *res = PyObject_CallMethod((PyObject *)self,
                                        "_cl_callback_error", "O", exc);
    Py_DECREF(exc);
    if (res == NULL) {
        cl_loop_stash_exception((cl_loop *)self->loop);
    }
    Py_XDECREF(res);
}

/* Queue the transport on the loop's ready queue for delivery. */
static void
queue_delivery(cl_stream *self)
{
    if (self->rqueued || self->paused || self->closing) {
        return;
    }
    if (cl_loop_push_ready((cl_loop *)self->loop, (PyObject *)self) < 0) {
        cl_loop_stash_exception((cl_loop *)self->loop);
        return;
    }
    self->rqueued = 1;
}

/* The read's slice of the loop's arena is no longer needed. */
static void
release_slice(cl_stream *self)
{
    if (self->rslice) {
        cl_loop *loop = (cl_loop *)self->loop;
        self->rslice = 0;
        if (--loop->rbuf_live == 0) {
            loop->rbuf_used = 0;
        }
    }
}

/* Spare bytes: a read of more than pymalloc's 512 bytes is a malloc()
 * and free() of its own, and past glibc's per-thread cache (1 KiB) a
 * slow one (about 550 instructions per 1 KiB echo, a fifth of cloop's
 * whole cost per request).  So a bytes object of that range whose last
 * reference the loop drops (a delivered read nobody kept, a write sent)
 * is kept instead, and a later read of between half its size and its
 * size is copied into it.  Nothing else can see such an object: it has
 * no other reference, and bytes take no weak references. */
#define CL_SPARE_MIN 513
#define CL_SPARE_MAX (64 * 1024)
#define CL_SPARE_TOTAL (256 * 1024)

/* A new bytes object of n bytes copied from p. */
static PyObject *
bytes_for_read(cl_loop *loop, const char *p, Py_ssize_t n)
{
    if (n >= CL_SPARE_MIN) {
        for (int i = loop->nspare - 1; i >= 0; i--) {
            PyObject *o = loop->spare[i];
            Py_ssize_t cap = Py_SIZE(o);
            if (cap >= n && cap / 2 <= n) {
                loop->spare[i] = loop->spare[--loop->nspare];
                loop->spare_size -= cap;
                Py_SET_SIZE(o, n);
                memcpy(PyBytes_AS_STRING(o), p, (size_t)n);
                PyBytes_AS_STRING(o)[n] = '\0';
_Py_COMP_DIAG_PUSH
_Py_COMP_DIAG_IGNORE_DEPR_DECLS
                ((PyBytesObject *)o)->ob_shash = -1;
_Py_COMP_DIAG_POP
                return o;
            }
        }
    }
    return PyBytes_FromStringAndSize(p, n);
}

/* Drop the loop's reference to obj, keeping it as a spare if it is a
 * bytes object of the right size that nothing else references. */
static void
release_bytes(cl_loop *loop, PyObject *obj)
{
    if (Py_REFCNT(obj) == 1 && PyBytes_CheckExact(obj) &&
        Py_SIZE(obj) >= CL_SPARE_MIN && Py_SIZE(obj) <= CL_SPARE_MAX &&
        loop->nspare < CL_SPARE_BYTES &&
        loop->spare_size + Py_SIZE(obj) <= CL_SPARE_TOTAL) {
        loop->spare[loop->nspare++] = obj;
        loop->spare_size += Py_SIZE(obj);
        return;
    }
    Py_DECREF(obj);
}

void
cl_stream_spare_clear(cl_loop *loop)
{
    while (loop->nspare > 0) {
        Py_DECREF(loop->spare[--loop->nspare]);
    }
    loop->spare_size = 0;
}

/* The read waiting in the arena as bytes of its own (NULL with an
 * exception set on failure). */
static PyObject *
take_slice(cl_stream *self)
{
    cl_loop *loop = (cl_loop *)self->loop;
    PyObject *data = bytes_for_read(loop, loop->rbuf + self->roff,
                                    self->rpend);
    release_slice(self);
    return data;
}

/* Forget a read not delivered (the transport closed first). */
static void
drop_pending_read(cl_stream *self)
{
    self->rpend_set = 0;
    self->rlater = 0;
    release_slice(self);
    Py_CLEAR(self->rdata);
    Py_CLEAR(self->rown);
    Py_CLEAR(self->rproto);
    if (self->have_pybuf) {
        self->have_pybuf = 0;
        PyBuffer_Release(&self->pybuf);
    }
}

static void
on_stream_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    cl_stream *self = stream->data;
    if (self == NULL) {
        return;
    }
    cl_acquire(uv_owner((uv_handle_t *)stream));
    cl_loop *loop = (cl_loop *)self->loop;
    PyObject *own = self->rown;     /* the buffer is this, not the arena */
    self->rown = NULL;
    if (own != NULL && nread <= 0) {
        Py_CLEAR(own);
    }
    if (self->rpend_set && nread < 0 && nread != UV_ENOBUFS &&
        self->rlater == 0) {
        /* libuv reports a hang-up as EOF without asking for a buffer. */
        self->rlater = nread;
        return;
    }
    if (self->rskipped && nread == UV_ENOBUFS) {
        self->rskipped = 0;     /* the arena was full */
        return;
    }
    if (self->rpend_set || nread == 0) {
        /* The empty buffer of on_stream_alloc(), or EAGAIN. */
        if (nread == 0 && self->have_pybuf) {
            self->have_pybuf = 0;
            PyBuffer_Release(&self->pybuf);
        }
        return;
    }
    if (nread > 0 && self->have_pybuf) {
        /* The data is in the protocol's buffer; buffer_updated() comes
         * with the delivery (pybuf stays held until then). */
        Py_XSETREF(self->rproto, Py_NewRef(self->protocol));
    }
    else if (self->have_pybuf) {
        self->have_pybuf = 0;
        PyBuffer_Release(&self->pybuf);
    }
    else if (nread > 0) {
        if (nread >= CL_PIPE_FULL) {
            maybe_grow_pipe(self);
        }
        self->rbig = nread >= CL_BIG_READ;
        if (own == NULL) {
            self->roff = (size_t)(buf->base - loop->rbuf);
            self->rslice = 1;
            loop->rbuf_used = self->roff + (size_t)nread;
            loop->rbuf_live++;
        }
        else if (nread == Py_SIZE(own) || _PyBytes_Resize(&own, nread) == 0) {
            self->rdata = own;
        }
        else {
            /* _PyBytes_Resize() freed it: a read error, as when the
             * arena's bytes cannot be made. */
            Py_XSETREF(self->read_exc, cl_fetch_exc());
            nread = UV_ENOBUFS;
        }
    }
    self->rpend = nread;
    self->rpend_set = 1;
    if (self->rturn == loop->turn) {
        /* EOF or an error after a read delivered in this poll: it is the
         * next turn's, after what that read scheduled. */
        loop->defer = 1;
        queue_delivery(self);
        loop->defer = 0;
        return;
    }
    if (nread < CL_DIRECT_MIN || !loop->direct || loop->defer ||
        loop->pending_exc != NULL || self->rqueued) {
        queue_delivery(self);
        return;
    }
    /* Nothing was queued ahead of this turn's I/O, so running the
     * delivery now is asyncio's order, with what it queues deferred to
     * the next pass (loop.c). */
    self->rturn = loop->turn;
    loop->defer = 1;
    Py_INCREF(self);
    if (cl_stream_deliver(loop, (PyObject *)self) < 0) {
        cl_loop_stash_exception(loop);
    }
    Py_DECREF(self);
    loop->defer = 0;
}

/* Deliver the read waiting on self: called by the loop's pass for the
 * transport's entry in the ready queue.  -1 with SystemExit or
 * KeyboardInterrupt set, which end the pass. */
int
cl_stream_deliver(cl_loop *loop, PyObject *obj)
{
    cl_stream *self = (cl_stream *)obj;
    self->rqueued = 0;
    if (self->closing || self->handle == NULL) {
        drop_pending_read(self);
        return 0;
    }
    if (!self->rpend_set) {
        return 0;
    }
    if (self->paused) {
        /* resume_reading() queues it again; the arena cannot wait. */
        if (self->rslice) {
            self->rdata = take_slice(self);
            if (self->rdata == NULL) {
                Py_XSETREF(self->read_exc, cl_fetch_exc());
                self->rpend = UV_ENOBUFS;
            }
        }
        return 0;
    }
    Py_ssize_t nread = self->rpend;
    self->rpend_set = 0;
    PyObject *data = self->rdata;
    self->rdata = NULL;
    if (self->rslice) {
        data = take_slice(self);
        if (data == NULL) {
            Py_XSETREF(self->read_exc, cl_fetch_exc());
            nread = UV_ENOBUFS;
        }
    }
    PyObject *rproto = self->rproto;
    self->rproto = NULL;
    if (self->have_pybuf) {
        self->have_pybuf = 0;
        if (rproto != NULL && rproto != self->protocol) {
            /* set_protocol() since the read: the bytes go to the new
             * protocol as data. */
            data = PyBytes_FromStringAndSize(self->pybuf.buf, nread);
        }
        PyBuffer_Release(&self->pybuf);
        if (data == NULL && rproto != NULL && rproto != self->protocol) {
            Py_XSETREF(self->read_exc, cl_fetch_exc());
            nread = UV_ENOBUFS;
        }
    }
    Py_XDECREF(rproto);
    if (nread > 0) {
        cl_state *st = loop->state;
        PyObject *res = NULL;
        if (data != NULL && self->buffered) {
            /* Bytes for a BufferedProtocol (it was swapped in). */
            PyObject *hook = cl_get_hook(st, "feed_buffered");
            if (hook != NULL) {
                res = PyObject_CallFunctionObjArgs(hook, self->protocol,
                                                   data, NULL);
                Py_DECREF(hook);
            }
        }
        else {
            PyObject *arg = data != NULL
                                ? Py_NewRef(data)
                                : PyLong_FromSsize_t((Py_ssize_t)nread);
            if (arg != NULL) {
                PyObject *args[2] = {self->protocol, arg};
                res = PyObject_VectorcallMethod(
                    data != NULL ? st->str_data_received
                                 : st->str_buffer_updated,
                    args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
                Py_DECREF(arg);
            }
        }
        if (res == NULL) {
            on_protocol_read_error(self);
        }
        Py_XDECREF(res);
    }
    else if (nread == UV_EOF) {
        on_eof(self);
    }
    else if (nread == UV_ENOBUFS && self->read_exc != NULL) {
        PyObject *exc = self->read_exc;
        self->read_exc = NULL;
        if (!cl_exc_is_fatal(exc)) {
            /* KeyboardInterrupt from get_buffer() ends the run; asyncio
             * reads on in later turns. */
            read_stop(self);
        }
        fatal_error(self, exc,
                    data == NULL && self->buffered && !self->read_exc_is_read
                        ? "Fatal error: protocol.get_buffer() call failed."
                        : read_error_msg(self));
    }
    else if (nread < 0) {
        read_stop(self);
        if (nread == UV_ENOBUFS) {
            PyErr_NoMemory();
            fatal_error(self, cl_fetch_exc(), read_error_msg(self));
        }
        else {
            fatal_error(self, uv_error_object((int)nread),
                        read_error_msg(self));
        }
    }
    if (data != NULL) {
        release_bytes(loop, data);
    }
    if (self->rlater != 0 && !self->rpend_set) {
        self->rpend = self->rlater;
        self->rlater = 0;
        self->rpend_set = 1;
        queue_delivery(self);
    }
    if (loop->pending_exc != NULL) {
        PyObject *exc = loop->pending_exc;
        loop->pending_exc = NULL;
        cl_restore_exc(exc);
        return -1;
    }
    return 0;
}

static int
read_start(cl_stream *self)
{
    if (self->read_pinned || self->handle == NULL || self->paused ||
        self->closing) {
        return 0;
    }
    int err = uv_read_start(self->handle, on_stream_alloc, on_stream_read);
    if (err < 0) {
        cl_raise_uv_error(err);
        return -1;
    }
    self->read_pinned = 1;
    Py_INCREF(self);
    return 0;
}

/* --- writing ----------------------------------------------------------- */

/* Coalescing: a write() made while the loop runs, with nothing queued in
 * libuv, is kept (at most this many bytes and buffers) and sent with the
 * turn's other writes by cl_stream_flush_all() before the loop polls. */
#define CL_COALESCE_MAX (64 * 1024)
#define CL_COALESCE_BUFS 64

static void
maybe_resume_protocol(cl_stream *self)
{
    if (self->protocol_paused && self->write_size <= self->low_water) {
        if (call_noargs((PyObject *)self, "_maybe_resume_protocol") < 0) {
            cl_loop_stash_exception((cl_loop *)self->loop);
        }
    }
}

/* Settle sendfile's empty waiter: with None (exc NULL) or exc. */
static void
settle_empty_waiter(cl_stream *self, PyObject *exc)
{
    PyObject *fut = self->empty_waiter;
    if (fut == NULL) {
        return;
    }
    PyObject *done = PyObject_CallMethod(fut, "done", NULL);
    int is_done = done == NULL ? -1 : PyObject_IsTrue(done);
    Py_XDECREF(done);
    PyObject *res = NULL;
    if (is_done == 0) {
        res = exc == NULL
                  ? PyObject_CallMethod(fut, "set_result", "O", Py_None)
                  : PyObject_CallMethod(fut, "set_exception", "O", exc);
    }
    if (is_done < 0 || (is_done == 0 && res == NULL)) {
        PyErr_WriteUnraisable(fut);
    }
    Py_XDECREF(res);
}

/* Everything written: sendfile may go on, a closing transport ends. */
static void
on_drained(cl_stream *self)
{
    settle_empty_waiter(self, NULL);
    if (self->closing && !self->conn_lost) {
        self->conn_lost++;
        if (schedule_connection_lost(self, Py_None) < 0) {
            cl_loop_stash_exception((cl_loop *)self->loop);
        }
    }
}

/* A write failed: the transport fails, and sendfile's waiter with it. */
static void
write_failed(cl_stream *self, int err)
{
    PyObject *exc = uv_error_object(err);
    settle_empty_waiter(self, exc);
    fatal_error(self, exc, write_error_msg(self));
}

static void
on_stream_write(uv_write_t *req, int status)
{
    cl_write_req *wr = (cl_write_req *)req;
    cl_stream *self = req->data;
    cl_acquire(uv_owner((uv_handle_t *)req->handle));
    for (Py_ssize_t i = 0; i < wr->nobjs; i++) {
        Py_DECREF(wr->objs[i]);
    }
    if (status != UV_ECANCELED || !self->detached) {
        self->write_size -= wr->len;
    }
    PyMem_RawFree(wr);
    if (status == UV_ECANCELED) {
        /* abort() or the loop's close dropped the queued data; after the
         * loop's close it still counts as buffered, as in asyncio's
         * transport, whose close() then waits for it forever. */
    }
    else if (status < 0) {
        write_failed(self, status);
    }
    else {
        maybe_resume_protocol(self);
        /* resume_writing() may have written again (coalesced): only
         * then is the transport drained. */
        if (self->write_size == 0 && self->pend_size == 0) {
            on_drained(self);
        }
    }
    Py_DECREF(self);            /* the request's pin */
}

/* One uv_write() of bufs (len bytes in all), whose memory the nobjs
 * objects own; the request keeps its own references to them.  A failure
 * fails the transport (and returns 0) unless it must end the run. */
static int
submit_write(cl_stream *self, PyObject *const *objs, Py_ssize_t nobjs,
             const uv_buf_t *bufs, size_t nbufs, Py_ssize_t len)
{
    cl_write_req *wr = PyMem_RawMalloc(sizeof(*wr) +
                                       (size_t)nobjs * sizeof(PyObject *));
    if (wr == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    wr->len = len;
    wr->nobjs = nobjs;
    for (Py_ssize_t i = 0; i < nobjs; i++) {
        wr->objs[i] = Py_NewRef(objs[i]);
    }
    wr->req.data = self;
    /* libuv copies the buffer array. */
    int err = uv_write(&wr->req, self->handle, bufs, (unsigned int)nbufs,
                       on_stream_write);
    if (err < 0) {
        /* The callback will never run: undo now. */
        for (Py_ssize_t i = 0; i < nobjs; i++) {
            Py_DECREF(wr->objs[i]);
        }
        PyMem_RawFree(wr);
        write_failed(self, err);
        return PyErr_Occurred() ? -1 : 0;
    }
    Py_INCREF(self);
    self->write_size += len;
    return 0;
}

/* data as a bytes cl_stream may keep: a bytes as is, anything mutable
 * snapshotted (from offset on). */
static PyObject *
owned_bytes(PyObject *data, Py_buffer *view, Py_ssize_t offset)
{
    if (PyBytes_CheckExact(data) && offset == 0) {
        return Py_NewRef(data);
    }
    return PyBytes_FromStringAndSize((char *)view->buf + offset,
                                     view->len - offset);
}

/* Queue view[offset:] with uv_write(). */
static int
queue_write(cl_stream *self, PyObject *data, Py_buffer *view,
            Py_ssize_t offset)
{
    Py_ssize_t len = view->len - offset;
    PyObject *obj;
    char *base;
    if (PyBytes_CheckExact(data)) {
        obj = Py_NewRef(data);
        base = (char *)view->buf + offset;
    }
    else {
        obj = owned_bytes(data, view, offset);
        if (obj == NULL) {
            return -1;
        }
        base = PyBytes_AS_STRING(obj);
    }
    /* A uv_buf_t holds at most UINT_MAX bytes. */
    size_t nbufs = (size_t)((len + CL_MAX_BUF - 1) / CL_MAX_BUF);
    uv_buf_t one;
    uv_buf_t *bufs = nbufs == 1 ? &one : PyMem_Malloc(nbufs * sizeof(*bufs));
    if (bufs == NULL) {
        Py_DECREF(obj);
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < nbufs; i++) {
        Py_ssize_t at = (Py_ssize_t)i * CL_MAX_BUF;
        bufs[i] = uv_buf_init(base + at,
                              (unsigned int)Py_MIN(CL_MAX_BUF, len - at));
    }
    int r = submit_write(self, &obj, 1, bufs, nbufs, len);
    if (bufs != &one) {
        PyMem_Free(bufs);
    }
    Py_DECREF(obj);
    return r;
}

static void
pending_clear(cl_stream *self)
{
    for (Py_ssize_t i = 0; i < self->npend; i++) {
        release_bytes((cl_loop *)self->loop, self->pend[i]);
    }
    self->npend = 0;
    self->pend_size = 0;
}

/* Keep a write for the flush before the next poll. */
static int
pending_add(cl_stream *self, PyObject *data, Py_buffer *view)
{
    if (self->npend == self->pendcap) {
        Py_ssize_t cap = self->pendcap ? self->pendcap * 2 : 8;
        PyObject **p = PyMem_Realloc(self->pend, (size_t)cap * sizeof(*p));
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->pend = p;
        self->pendcap = cap;
    }
    if (!self->flush_queued) {
        cl_loop *loop = (cl_loop *)self->loop;
        if (loop->nflush == loop->flushcap) {
            Py_ssize_t cap = loop->flushcap ? loop->flushcap * 2 : 16;
            PyObject **q = PyMem_Realloc(loop->flushq,
                                         (size_t)cap * sizeof(*q));
            if (q == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            loop->flushq = q;
            loop->flushcap = cap;
        }
        loop->flushq[loop->nflush++] = Py_NewRef(self);
        self->flush_queued = 1;
    }
    PyObject *obj = owned_bytes(data, view, 0);
    if (obj == NULL) {
        return -1;
    }
    self->pend[self->npend++] = obj;
    self->pend_size += view->len;
    return 0;
}

/* Fill bufs (room for CL_COALESCE_BUFS) from the coalesced writes. */
static void
pending_bufs(cl_stream *self, uv_buf_t *bufs)
{
    for (Py_ssize_t i = 0; i < self->npend; i++) {
        bufs[i] = uv_buf_init(PyBytes_AS_STRING(self->pend[i]),
                              (unsigned int)PyBytes_GET_SIZE(self->pend[i]));
    }
}

/* abort() drops what is buffered, but asyncio would already have handed
 * this turn's writes to the kernel if it could: do that much. */
static void
pending_drop(cl_stream *self)
{
    if (self->npend > 0 && self->handle != NULL && self->write_size == 0 &&
        !self->conn_lost) {
        uv_buf_t bufs[CL_COALESCE_BUFS];
        pending_bufs(self, bufs);
        (void)uv_try_write(self->handle, bufs, (unsigned int)self->npend);
    }
    pending_clear(self);
}

/* Send the coalesced writes: one vectored write now, the rest queued in
 * libuv as one request.  -1 only with an exception that must propagate
 * (from pause_writing(), or one that ends the run). */
static int
flush_pending(cl_stream *self)
{
    Py_ssize_t n = self->npend;
    Py_ssize_t total = self->pend_size;
    if (n == 0) {
        return 0;
    }
    if (self->handle == NULL || self->conn_lost) {
        pending_clear(self);
        return 0;
    }
    uv_buf_t bufs[CL_COALESCE_BUFS];   /* npend never exceeds it */
    pending_bufs(self, bufs);
    int r = 0;
    int sent = uv_try_write(self->handle, bufs, (unsigned int)n);
    if (sent < 0 && sent != UV_EAGAIN) {
        write_failed(self, sent);
        r = PyErr_Occurred() ? -1 : 0;
    }
    else if (sent < total) {
        maybe_grow_pipe(self);
        Py_ssize_t skip = sent < 0 ? 0 : sent;
        Py_ssize_t i = 0;
        while (skip >= (Py_ssize_t)bufs[i].len) {
            skip -= bufs[i].len;
            i++;
        }
        bufs[i].base += skip;
        bufs[i].len -= (unsigned int)skip;
        r = submit_write(self, self->pend + i, n - i, bufs + i,
                         (size_t)(n - i),
                         total - (sent < 0 ? 0 : sent));
    }
    pending_clear(self);
    if (r < 0 || self->conn_lost) {
        return r;
    }
    if (self->write_size == 0) {
        on_drained(self);
    }
    else if (self->write_size > self->high_water && !self->protocol_paused) {
        return call_noargs((PyObject *)self, "_maybe_pause_protocol");
    }
    return 0;
}

void
cl_stream_flush_all(cl_loop *loop)
{
    /* A flush may call the protocol, which may write again: take the
     * queue as it is and go round until it stays empty. */
    while (loop->nflush > 0) {
        PyObject **q = loop->flushq;
        Py_ssize_t n = loop->nflush;
        Py_ssize_t cap = loop->flushcap;
        loop->flushq = NULL;
        loop->nflush = loop->flushcap = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            cl_stream *self = (cl_stream *)q[i];
            self->flush_queued = 0;
            if (flush_pending(self) < 0) {
                cl_loop_stash_exception(loop);
            }
            Py_DECREF(self);
        }
        if (loop->flushq == NULL) {
            loop->flushq = q;   /* keep the array for the next turn */
            loop->flushcap = cap;
        }
        else {
            PyMem_Free(q);
        }
    }
}

/* The loop closes: what was not flushed is dropped. */
void
cl_stream_flush_clear(cl_loop *loop)
{
    Py_ssize_t n = loop->nflush;
    loop->nflush = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        cl_stream *self = (cl_stream *)loop->flushq[i];
        self->flush_queued = 0;
        pending_clear(self);
        Py_DECREF(self);
    }
}

int
cl_stream_flush_traverse(cl_loop *loop, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < loop->nflush; i++) {
        Py_VISIT(loop->flushq[i]);
    }
    return 0;
}

static PyObject *
Stream_write(cl_stream *self, PyObject *data)
{
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) &&
        !PyMemoryView_Check(data)) {
        PyObject *name = PyType_GetName(Py_TYPE(data));
        if (name != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "data argument must be a bytes-like object, not %R",
                         name);
            Py_DECREF(name);
        }
        return NULL;
    }
    if (self->eof) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Cannot call write() after write_eof()");
        return NULL;
    }
    if (self->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "unable to write; sendfile is in progress");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        if (self->conn_lost || self->handle == NULL) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        /* asyncio hands the object to sock.send(), whose error (a
         * non-contiguous memoryview) fails the transport. */
        fatal_error(self, cl_fetch_exc(), write_error_msg(self));
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (view.len == 0) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    /* A pipe counts writes after close() or write_eof() as lost; a
     * socket still sends them until the connection is gone. */
    if (self->conn_lost || self->handle == NULL ||
        (self->kind != CL_SOCKET && self->closing)) {
        PyBuffer_Release(&view);
        if (self->conn_lost >= CL_CONNLOST_WRITES) {
            if (call_noargs((PyObject *)self, "_cl_warn_send") < 0) {
                return NULL;
            }
        }
        self->conn_lost++;
        Py_RETURN_NONE;
    }
    if (self->write_size == 0 && ((cl_loop *)self->loop)->in_run &&
        self->pend_size + view.len <= Py_MIN(self->high_water,
                                             CL_COALESCE_MAX) &&
        self->npend < CL_COALESCE_BUFS) {
        int r = pending_add(self, data, &view);
        PyBuffer_Release(&view);
        if (r < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    /* Too much to keep: what was kept goes first, then this. */
    if (self->npend > 0) {
        if (flush_pending(self) < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
        if (self->conn_lost || self->handle == NULL) {
            PyBuffer_Release(&view);
            Py_RETURN_NONE;
        }
    }
    Py_ssize_t done = 0;
    if (self->write_size == 0) {
        /* Nothing queued: try to send right away, as asyncio does. */
        uv_buf_t b = uv_buf_init(view.buf,
                                 (unsigned int)Py_MIN(view.len, CL_MAX_BUF));
        int n = uv_try_write(self->handle, &b, 1);
        if (n >= 0) {
            done = n;
        }
        else if (n != UV_EAGAIN) {
            PyBuffer_Release(&view);
            write_failed(self, n);
            if (PyErr_Occurred()) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
    }
    if (done < view.len) {
        maybe_grow_pipe(self);
    }
    if (done < view.len && queue_write(self, data, &view, done) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    PyBuffer_Release(&view);
    if (self->write_size > self->high_water && !self->protocol_paused) {
        if (call_noargs((PyObject *)self, "_maybe_pause_protocol") < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

/* sendfile: a future done once everything written so far has gone. */
static PyObject *
Stream_make_empty_waiter(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    if (self->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Empty waiter is already set");
        return NULL;
    }
    PyObject *fut = PyObject_CallMethod(self->loop, "create_future", NULL);
    if (fut == NULL) {
        return NULL;
    }
    self->empty_waiter = fut;
    if (self->write_size == 0 && self->pend_size == 0) {
        PyObject *res = PyObject_CallMethod(fut, "set_result", "O", Py_None);
        if (res == NULL) {
            return NULL;
        }
        Py_DECREF(res);
    }
    return Py_NewRef(fut);
}

static PyObject *
Stream_reset_empty_waiter(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    Py_CLEAR(self->empty_waiter);
    Py_RETURN_NONE;
}

typedef struct {
    uv_shutdown_t req;
} cl_shutdown_req;

static void
on_stream_shutdown(uv_shutdown_t *req, int Py_UNUSED(status))
{
    cl_stream *self = req->data;
    cl_acquire(uv_owner((uv_handle_t *)req->handle));
    PyMem_RawFree(req);
    Py_DECREF(self);
}

static PyObject *Stream_close(cl_stream *self, PyObject *ignored);

static PyObject *
Stream_write_eof(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    if (self->kind == CL_WRITE_PIPE) {
        /* A pipe has no half-close: write_eof() closes after the flush. */
        return Stream_close(self, NULL);
    }
    if (self->closing || self->eof) {
        Py_RETURN_NONE;
    }
    self->eof = 1;
    /* What this turn coalesced goes before the shutdown. */
    if (flush_pending(self) < 0) {
        return NULL;
    }
    if (self->handle == NULL || self->conn_lost) {
        Py_RETURN_NONE;
    }
    /* libuv shuts the write side down once queued writes are done. */
    cl_shutdown_req *req = PyMem_RawMalloc(sizeof(*req));
    if (req == NULL) {
        return PyErr_NoMemory();
    }
    req->req.data = self;
    int err = uv_shutdown(&req->req, self->handle, on_stream_shutdown);
    if (err < 0) {
        PyMem_RawFree(req);
        if (err == UV_ENOTCONN) {
            Py_RETURN_NONE;
        }
        return cl_raise_uv_error(err);
    }
    Py_INCREF(self);
    Py_RETURN_NONE;
}

static PyObject *
Stream_can_write_eof(cl_stream *Py_UNUSED(self), PyObject *Py_UNUSED(i))
{
    Py_RETURN_TRUE;
}

static PyObject *
Stream_get_write_buffer_size(cl_stream *self, PyObject *Py_UNUSED(i))
{
    return PyLong_FromSsize_t(self->write_size + self->pend_size);
}

/* --- closing ----------------------------------------------------------- */

static PyObject *
Stream_close(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    if (self->closing) {
        Py_RETURN_NONE;
    }
    self->closing = 1;
    read_stop(self);
    /* With data coalesced or queued, the flush ends the connection. */
    if (self->write_size == 0 && self->pend_size == 0) {
        self->conn_lost++;
        if (schedule_connection_lost(self, Py_None) < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream_force_close(cl_stream *self, PyObject *exc)
{
    if (self->conn_lost) {
        Py_RETURN_NONE;
    }
    /* Queued data is dropped: closing the handle cancels the writes. */
    pending_drop(self);
    if (self->write_size > 0) {
        close_handle(self);
    }
    self->closing = 1;
    read_stop(self);
    self->conn_lost++;
    if (schedule_connection_lost(self, exc) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream_abort(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    return Stream_force_close(self, Py_None);
}

static void
disown_fd(cl_stream *self)
{
    if (self->loop != NULL) {
        cl_fd_owner_clear((cl_loop *)self->loop, self->sock_fd,
                          (PyObject *)self);
    }
}

static PyObject *
Stream_call_connection_lost(cl_stream *self, PyObject *exc)
{
    PyObject *res = NULL;
    /* Held in a local: connection_lost() may call set_protocol(). */
    PyObject *protocol = Py_NewRef(self->protocol);
    if (self->protocol_connected) {
        res = PyObject_CallMethod(protocol, "connection_lost", "O", exc);
    }
    else {
        res = Py_NewRef(Py_None);
    }
    Py_DECREF(protocol);
    Py_SETREF(self->protocol, Py_NewRef(Py_None));
    PyObject *err = res == NULL ? cl_fetch_exc() : NULL;
    close_handle(self);
    disown_fd(self);
    PyObject *sock = self->sock;
    self->sock = Py_NewRef(Py_None);
    if (sock != Py_None && call_noargs(sock, "close") < 0) {
        PyErr_Clear();
    }
    Py_DECREF(sock);
    PyObject *server = self->server;
    self->server = Py_NewRef(Py_None);
    if (server != Py_None) {
#if PY_VERSION_HEX >= 0x030D0000
        PyObject *r = PyObject_CallMethod(server, "_detach", "O", self);
#else
        PyObject *r = PyObject_CallMethod(server, "_detach", NULL);
#endif
        if (r == NULL && err == NULL) {
            err = cl_fetch_exc();
        }
        Py_XDECREF(r);
    }
    Py_DECREF(server);
    pending_clear(self);
    if (self->empty_waiter != NULL) {
        PyObject *exc2 = PyObject_CallFunction(
            PyExc_ConnectionError, "s", "Connection is closed by peer");
        if (exc2 == NULL) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
        else {
            settle_empty_waiter(self, exc2);
            Py_DECREF(exc2);
        }
    }
    if (err != NULL) {
        Py_XDECREF(res);
        cl_restore_exc(err);
        return NULL;
    }
    return res;
}

/* The loop is closing: let libuv go, leave the transport open as asyncio
 * leaves it when its selector closes (its finaliser then warns). */
/* sendfile() writes to the socket directly: its fd is then not the
 * transport's for asyncio's "used by transport" check. */
static PyObject *
Stream_cl_own_fd(cl_stream *self, PyObject *flag)
{
    int own = PyObject_IsTrue(flag);
    if (own < 0) {
        return NULL;
    }
    if (!own) {
        disown_fd(self);
    }
    else if (self->kind == CL_SOCKET && self->sock != Py_None &&
             cl_fd_owner_set((cl_loop *)self->loop, self->sock_fd,
                             (PyObject *)self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* transport._pipe = None (asyncio's tests do it to silence the
 * finaliser): forget the pipe object without closing it. */
static PyObject *
Stream_cl_forget(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    pending_clear(self);
    drop_pending_read(self);
    close_handle(self);
    disown_fd(self);
    Py_SETREF(self->sock, Py_NewRef(Py_None));
    Py_RETURN_NONE;
}

/* The pipe is one cloop made for a child: it may grow when it fills. */
static PyObject *
Stream_cl_allow_grow(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    if (self->kind != CL_SOCKET && self->grow == 0) {
        self->grow = 1;
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream_cl_detach(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    self->detached = 1;
    pending_clear(self);
    close_handle(self);
    Py_RETURN_NONE;
}

static PyObject *
Stream_is_closing(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->closing);
}

/* --- reading control --------------------------------------------------- */

static PyObject *
Stream_is_reading(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(!self->paused && !self->closing);
}

static PyObject *
Stream_pause_reading(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    if (self->paused || self->closing) {
        Py_RETURN_NONE;
    }
    self->paused = 1;
    read_stop(self);
    debug_log(self, CL_LOG_DEBUG, "%r pauses reading");
    Py_RETURN_NONE;
}

static PyObject *
Stream_resume_reading(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    if (self->closing || !self->paused) {
        Py_RETURN_NONE;
    }
    self->paused = 0;
    if (read_start(self) < 0) {
        return NULL;
    }
    if (self->rpend_set) {
        queue_delivery(self);
    }
    debug_log(self, CL_LOG_DEBUG, "%r resumes reading");
    Py_RETURN_NONE;
}

static PyObject *
Stream_cl_start_reading(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    if (read_start(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream_get_protocol(cl_stream *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->protocol);
}

/* --- construction ------------------------------------------------------ */

/* StreamTransport(loop, sock, protocol, server): open libuv's handle on a
 * dup() of the connected socket's fd. */
static int
Stream_init(cl_stream *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", "sock", "protocol", "server", NULL};
    PyObject *loop, *sock, *protocol, *server = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|O:StreamTransport",
                                     kwlist, &loop, &sock, &protocol,
                                     &server)) {
        return -1;
    }
    cl_state *st = cl_get_state_by_type(Py_TYPE(self));
    if (st == NULL) {
        return -1;
    }
    if (!PyObject_TypeCheck(loop, st->LoopType)) {
        PyErr_SetString(PyExc_TypeError, "loop must be a cloop loop");
        return -1;
    }
    if (self->handle != NULL || self->loop != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "transport already initialised");
        return -1;
    }
    cl_loop *lp = (cl_loop *)loop;
    if (cl_loop_check_open(lp) < 0) {
        return -1;
    }
    PyObject *fdobj = PyObject_CallMethod(sock, "fileno", NULL);
    if (fdobj == NULL) {
        return -1;
    }
    long lfd = PyLong_AsLong(fdobj);
    Py_DECREF(fdobj);
    if (lfd == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (lfd < 0 || lfd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "the socket is closed");
        return -1;
    }
    int fd = (int)lfd;
    int kind = CL_SOCKET;
    if (PyObject_TypeCheck(self, st->ReadPipeTransportType)) {
        kind = CL_READ_PIPE;
    }
    else if (PyObject_TypeCheck(self, st->WritePipeTransportType)) {
        kind = CL_WRITE_PIPE;
    }
    long family = AF_UNIX;      /* a pipe goes on a uv_pipe_t */
    if (kind == CL_SOCKET) {
        PyObject *famobj = PyObject_GetAttrString(sock, "family");
        if (famobj == NULL) {
            return -1;
        }
        family = PyLong_AsLong(famobj);
        Py_DECREF(famobj);
        if (family == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    int ufd = dup(fd);
    if (ufd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    uv_stream_t *h;
    int err;
    if (family == AF_UNIX) {
        uv_pipe_t *p = PyMem_RawMalloc(sizeof(*p));
        h = (uv_stream_t *)p;
        if (p == NULL) {
            close(ufd);
            PyErr_NoMemory();
            return -1;
        }
        err = uv_pipe_init(lp->uvloop, p, 0);
        if (err == 0) {
            err = uv_pipe_open(p, ufd);
        }
    }
    else {
        uv_tcp_t *t = PyMem_RawMalloc(sizeof(*t));
        h = (uv_stream_t *)t;
        if (t == NULL) {
            close(ufd);
            PyErr_NoMemory();
            return -1;
        }
        err = uv_tcp_init(lp->uvloop, t);
        if (err == 0) {
            err = uv_tcp_open(t, ufd);
        }
    }
    if (err < 0) {
        /* uv_*_init() cannot fail for these; the handle exists. */
        close(ufd);
        h->data = NULL;
        uv_close((uv_handle_t *)h, on_stream_close);
        cl_raise_uv_error(err);
        return -1;
    }
    if (kind == CL_SOCKET && cl_fd_owner_set(lp, fd, (PyObject *)self) < 0) {
        /* uv_close() closes libuv's copy of the fd. */
        h->data = NULL;
        uv_close((uv_handle_t *)h, on_stream_close);
        return -1;
    }
    h->data = self;
    self->handle = h;
    self->sock_fd = fd;
    self->kind = (char)kind;
    Py_XSETREF(self->loop, Py_NewRef(loop));
    Py_XSETREF(self->sock, Py_NewRef(sock));
    Py_XSETREF(self->protocol, Py_NewRef(protocol));
    Py_XSETREF(self->server, Py_NewRef(server));
    if (self->extra == NULL) {
        self->extra = PyDict_New();
        if (self->extra == NULL) {
            return -1;
        }
    }
    return 0;
}

static PyObject *
Stream_new(PyTypeObject *type, PyObject *Py_UNUSED(args),
           PyObject *Py_UNUSED(kwds))
{
    cl_stream *self = (cl_stream *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->sock = Py_NewRef(Py_None);
    self->protocol = Py_NewRef(Py_None);
    self->server = Py_NewRef(Py_None);
    self->high_water = 64 * 1024;
    self->low_water = 16 * 1024;
    self->sock_fd = -1;
    return (PyObject *)self;
}

static int
Stream_traverse(cl_stream *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->extra);
    Py_VISIT(self->loop);
    Py_VISIT(self->sock);
    Py_VISIT(self->protocol);
    Py_VISIT(self->server);
    Py_VISIT(self->read_exc);
    Py_VISIT(self->empty_waiter);
    Py_VISIT(self->rproto);
    return 0;
}

static int
Stream_clear(cl_stream *self)
{
    /* sock, protocol and server become None rather than NULL: the
     * methods read them without checks, and a finaliser may still call
     * one.  loop stays until dealloc: the handle needs it to close. */
    Py_CLEAR(self->extra);
    Py_XSETREF(self->sock, Py_NewRef(Py_None));
    Py_XSETREF(self->protocol, Py_NewRef(Py_None));
    Py_XSETREF(self->server, Py_NewRef(Py_None));
    Py_CLEAR(self->read_exc);
    Py_CLEAR(self->empty_waiter);
    Py_CLEAR(self->rproto);
    return 0;
}

static void
Stream_dealloc(cl_stream *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->have_pybuf) {
        self->have_pybuf = 0;
        PyBuffer_Release(&self->pybuf);
    }
    /* Not reading and nothing in flight (both would pin self): the handle
     * is closed without us, its callback frees it. */
    if (self->handle != NULL) {
        uv_stream_t *h = self->handle;
        cl_loop_check_fork((cl_loop *)self->loop);
        self->handle = NULL;
        h->data = NULL;
        uv_close((uv_handle_t *)h, on_stream_close);
    }
    forget_growth(self);
    disown_fd(self);
    drop_pending_read(self);
    pending_clear(self);
    PyMem_Free(self->pend);
    Py_CLEAR(self->empty_waiter);
    Py_CLEAR(self->extra);
    Py_CLEAR(self->sock);
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->server);
    Py_CLEAR(self->read_exc);
    Py_CLEAR(self->loop);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef Stream_methods[] = {
    {"write", (PyCFunction)Stream_write, METH_O,
     "write(data): send data, queueing what cannot be sent now."},
    {"write_eof", (PyCFunction)Stream_write_eof, METH_NOARGS,
     "write_eof(): shut the write side down after queued data."},
    {"can_write_eof", (PyCFunction)Stream_can_write_eof, METH_NOARGS, NULL},
    {"get_write_buffer_size", (PyCFunction)Stream_get_write_buffer_size,
     METH_NOARGS, NULL},
    {"close", (PyCFunction)Stream_close, METH_NOARGS,
     "close(): flush queued data, then connection_lost(None)."},
    {"abort", (PyCFunction)Stream_abort, METH_NOARGS,
     "abort(): drop queued data, then connection_lost(None)."},
    {"_force_close", (PyCFunction)Stream_force_close, METH_O, NULL},
    {"_call_connection_lost", (PyCFunction)Stream_call_connection_lost,
     METH_O, NULL},
    {"_cl_detach", (PyCFunction)Stream_cl_detach, METH_NOARGS, NULL},
    {"_cl_start_reading", (PyCFunction)Stream_cl_start_reading, METH_NOARGS,
     NULL},
    {"is_closing", (PyCFunction)Stream_is_closing, METH_NOARGS, NULL},
    {"is_reading", (PyCFunction)Stream_is_reading, METH_NOARGS, NULL},
    {"pause_reading", (PyCFunction)Stream_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", (PyCFunction)Stream_resume_reading, METH_NOARGS,
     NULL},
    {"get_protocol", (PyCFunction)Stream_get_protocol, METH_NOARGS, NULL},
    {"_cl_own_fd", (PyCFunction)Stream_cl_own_fd, METH_O, NULL},
    {"_cl_forget", (PyCFunction)Stream_cl_forget, METH_NOARGS, NULL},
    {"_cl_allow_grow", (PyCFunction)Stream_cl_allow_grow, METH_NOARGS, NULL},
    {"_make_empty_waiter", (PyCFunction)Stream_make_empty_waiter,
     METH_NOARGS, NULL},
    {"_reset_empty_waiter", (PyCFunction)Stream_reset_empty_waiter,
     METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Stream_members[] = {
    {"_loop", T_OBJECT, offsetof(cl_stream, loop), Py_READONLY, NULL},
    {"_sock", T_OBJECT, offsetof(cl_stream, sock), Py_READONLY, NULL},
    {"_protocol", T_OBJECT, offsetof(cl_stream, protocol), 0, NULL},
    {"_server", T_OBJECT, offsetof(cl_stream, server), Py_READONLY, NULL},
    {"_sock_fd", T_INT, offsetof(cl_stream, sock_fd), Py_READONLY, NULL},
    {"_conn_lost", T_INT, offsetof(cl_stream, conn_lost), 0, NULL},
    {"_closing", T_BOOL, offsetof(cl_stream, closing), Py_READONLY, NULL},
    {"_paused", T_BOOL, offsetof(cl_stream, paused), Py_READONLY, NULL},
    {"_cl_polling", T_BOOL, offsetof(cl_stream, read_pinned), Py_READONLY,
     NULL},
    {"_eof", T_BOOL, offsetof(cl_stream, eof), Py_READONLY, NULL},
    {"_empty_waiter", T_OBJECT, offsetof(cl_stream, empty_waiter),
     Py_READONLY, NULL},
    {"_cl_buffered", T_BOOL, offsetof(cl_stream, buffered), 0, NULL},
    {"_protocol_connected", T_BOOL,
     offsetof(cl_stream, protocol_connected), 0, NULL},
    {"_protocol_paused", T_BOOL, offsetof(cl_stream, protocol_paused), 0,
     NULL},
    {"_high_water", Py_T_PYSSIZET, offsetof(cl_stream, high_water), 0, NULL},
    {"_low_water", Py_T_PYSSIZET, offsetof(cl_stream, low_water), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Stream_slots[] = {
    {Py_tp_new, Stream_new},
    {Py_tp_init, Stream_init},
    {Py_tp_dealloc, Stream_dealloc},
    {Py_tp_traverse, Stream_traverse},
    {Py_tp_clear, Stream_clear},
    {Py_tp_methods, Stream_methods},
    {Py_tp_members, Stream_members},
    {0, NULL},
};

#define STREAM_SPEC(pyname)                                                 \
    {                                                                       \
        .name = "cloop._cloop." pyname, .basicsize = sizeof(cl_stream),     \
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE |                 \
                 Py_TPFLAGS_HAVE_GC,                                        \
        .slots = Stream_slots,                                              \
    }

static PyType_Spec Stream_spec = STREAM_SPEC("StreamTransport");
static PyType_Spec ReadPipe_spec = STREAM_SPEC("ReadPipeTransport");
static PyType_Spec WritePipe_spec = STREAM_SPEC("WritePipeTransport");

/* asyncio.transports.<base_name>, checked to have BaseTransport's _extra
 * slot at extra_offset (where the C struct has it) and nothing after it,
 * or slots up to slots_end (_FlowControlMixin's four, for which cl_stream
 * leaves room); ImportError otherwise.  For the stream and datagram
 * transports. */
PyObject *
cl_transport_base(const char *base_name, Py_ssize_t extra_offset,
                  Py_ssize_t slots_end)
{
    PyObject *transports = PyImport_ImportModule("asyncio.transports");
    if (transports == NULL) {
        return NULL;
    }
    PyObject *base = PyObject_GetAttrString(transports, base_name);
    Py_DECREF(transports);
    if (base == NULL) {
        return NULL;
    }
    Py_ssize_t size = PyType_Check(base)
                          ? ((PyTypeObject *)base)->tp_basicsize
                          : -1;
    int ok = (size == extra_offset + (Py_ssize_t)sizeof(PyObject *) ||
              size == slots_end) &&
             ((PyTypeObject *)base)->tp_itemsize == 0 &&
             ((PyTypeObject *)base)->tp_dictoffset == 0 &&
             ((PyTypeObject *)base)->tp_weaklistoffset == 0;
    PyObject *descr = ok ? PyObject_GetAttrString(base, "_extra") : NULL;
    ok = ok && descr != NULL;
    Py_XDECREF(descr);
    PyErr_Clear();
    if (!ok) {
        Py_DECREF(base);
        PyErr_Format(PyExc_ImportError,
                     "cloop: asyncio.transports.%s has an unexpected layout",
                     base_name);
        return NULL;
    }
    return base;
}

static PyTypeObject *
add_type(PyObject *module, PyType_Spec *spec, const char *base_name)
{
    PyObject *base = cl_transport_base(base_name,
                                       offsetof(cl_stream, extra),
                                       offsetof(cl_stream, loop));
    if (base == NULL) {
        return NULL;
    }
    PyObject *tp = PyType_FromModuleAndSpec(module, spec, base);
    Py_DECREF(base);
    if (tp == NULL) {
        return NULL;
    }
    if (PyModule_AddType(module, (PyTypeObject *)tp) < 0) {
        Py_DECREF(tp);
        return NULL;
    }
    return (PyTypeObject *)tp;
}

int
cl_stream_init(PyObject *module, cl_state *st)
{
    st->StreamTransportType =
        add_type(module, &Stream_spec, "_FlowControlMixin");
    st->ReadPipeTransportType =
        st->StreamTransportType == NULL
            ? NULL
            : add_type(module, &ReadPipe_spec, "ReadTransport");
    st->WritePipeTransportType =
        st->ReadPipeTransportType == NULL
            ? NULL
            : add_type(module, &WritePipe_spec, "_FlowControlMixin");
    return st->WritePipeTransportType == NULL ? -1 : 0;
}
