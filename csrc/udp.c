/*
 * udp.c: datagram transports over uv_udp_t (AF_INET and AF_INET6).
 *
 * UDPTransport is a subclass of asyncio.DatagramTransport, so isinstance()
 * holds.  BaseTransport declares __slots__ = ('_extra',): the slot lives
 * right after the object header, and the struct below starts with a
 * PyObject * at that offset, which holds the extra-info dict.  Import
 * fails if the base ever lays out differently.
 *
 * Semantics follow asyncio's _SelectorDatagramTransport; the Python half
 * (loop/_udp.py) builds the extra dict and schedules connection_made(),
 * the start of reading and the waiter, exactly as that class's __init__
 * does.  AF_UNIX datagram sockets, which libuv cannot open, never reach
 * this file: loop/_udp.py drives them by readiness instead.
 *
 * The socket:  libuv takes over a duplicate of the socket's fd, never the
 * fd of the Python socket object.  Closing the uv handle (by this file, or
 * by the loop's close() walking its handles) then closes only the
 * duplicate, and the socket object, reported as extra 'socket', stays
 * valid until connection_lost() closes it, as in asyncio.  uv_udp_open()
 * sets SO_REUSEADDR, which would let another socket bind the same port;
 * asyncio never sets it for UDP, so the previous value is put back.
 *
 * Sending:  sendto() tries uv_udp_try_send() while nothing is queued; what
 * cannot be sent now is snapshotted as bytes and queued with uv_udp_send(),
 * counted against the write buffer limits (plus 8 bytes of header from
 * 3.13 on, as asyncio counts).  close() waits for the queue to drain;
 * abort() closes the uv handle at once, which cancels the queue.
 *
 * Lifecycle:  the uv handle (with the receive buffer inline) is allocated
 * on its own.  The transport keeps itself alive from uv_close() to the
 * close callback, which frees the memory.  Every queued send holds a
 * reference to the transport.  A transport collected while its handle is
 * open warns (ResourceWarning), detaches and lets the close callback free
 * the handle.  When the loop closes first, its walk closes and frees the
 * handle: the transport never touches it once the loop is closed.
 *
 * Protocol callbacks that raise are reported to the loop's exception
 * handler and the transport stays open, which is what asyncio's selector
 * loop does (the exception leaves its _read_ready() handle).
 */
#include "cloop.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Large enough for any UDP datagram (65507 bytes of payload on IPv4). */
#define CL_UDP_RBUF 65536

/* asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES */
#define CL_CONNLOST_WARN 5

#if PY_VERSION_HEX >= 0x030D0000
/* 3.13 counts the UDP header of each queued datagram, and sends empty
 * datagrams instead of dropping them. */
#define CL_UDP_HEADER 8
#define CL_SEND_EMPTY 1
#else
#define CL_UDP_HEADER 0
#define CL_SEND_EMPTY 0
#endif

typedef struct {
    uv_udp_t udp;              /* first: the loop's walk frees this block */
    char rbuf[CL_UDP_RBUF];
} cl_udp_handle;

typedef struct {
    PyObject_HEAD
    PyObject *extra;           /* BaseTransport's _extra slot */
    cl_loop *loop;
    PyObject *sock;            /* None once connection_lost() ran */
    PyObject *protocol;        /* None once connection_lost() ran */
    PyObject *address;         /* None, or the connected address */
    PyObject *dict;
    PyObject *weakreflist;
    cl_udp_handle *h;          /* NULL once closed or detached */
    Py_ssize_t buffer_size;    /* bytes queued with uv_udp_send() */
    Py_ssize_t nqueued;        /* sends in flight */
    Py_ssize_t high_water;
    Py_ssize_t low_water;
    Py_ssize_t conn_lost;
    int fd;                    /* the socket object's fd, for repr */
    int family;
    char connected;            /* extra['peername'] was truthy */
    char closing;
    char reading;              /* recv started */
    char paused;               /* pause_reading() */
    char protocol_paused;      /* pause_writing() was called */
    char protocol_connected;
    char no_try_send;          /* test hook: always queue with uv_udp_send */
    char reader_queued;        /* reader is in the ready queue */
    cl_handle *reader;         /* runs _cl_read_ready(); made once */
    PyObject *pending;         /* list of received entries, or NULL */
} cl_udp;

typedef struct {
    uv_udp_send_t req;
    cl_udp *self;              /* strong */
    PyObject *data;            /* bytes, strong */
    Py_ssize_t cost;           /* counted in buffer_size */
} cl_udp_send;

/* --- Helpers ----------------------------------------------------------- */

/* Is the uv handle usable?  Once the loop is closed its walk has closed
 * (and freed) the handle, even if the pointer is still set. */
static inline int
handle_alive(cl_udp *self)
{
    return self->h != NULL && !self->loop->closed &&
           self->loop->uvloop != NULL;
}

static void stop_reading(cl_udp *self);

static void
on_udp_close(uv_handle_t *handle)
{
    cl_udp *self = handle->data;
    if (self != NULL) {
        cl_acquire((cl_loop *)handle->loop->data);
        /* The pin taken by close_handle(). */
        Py_DECREF(self);
    }
    PyMem_RawFree(handle);
}

/* Close the uv handle (if still ours); the transport is pinned until the
 * close callback.  Queued sends complete with UV_ECANCELED. */
static void
close_handle(cl_udp *self)
{
    cl_fd_owner_clear(self->loop, self->fd, (PyObject *)self);
    if (self->h == NULL) {
        return;
    }
    stop_reading(self);
    cl_udp_handle *h = self->h;
    self->h = NULL;
    if (self->loop->closed || self->loop->uvloop == NULL) {
        /* The loop's walk closed and freed it, or will: hands off. */
        return;
    }
    if (uv_is_closing((uv_handle_t *)&h->udp)) {
        return;
    }
    Py_INCREF(self);
    uv_close((uv_handle_t *)&h->udp, on_udp_close);
}

/* loop.call_exception_handler({'message', 'exception', 'transport',
 * 'protocol'}).  Returns -1 only if the handler itself failed. */
static int
report(cl_udp *self, const char *message, PyObject *exc)
{
    PyObject *ctx = Py_BuildValue("{s:s,s:O,s:O,s:O}", "message", message,
                                  "exception", exc, "transport",
                                  (PyObject *)self, "protocol",
                                  self->protocol);
    if (ctx == NULL) {
        return -1;
    }
    PyObject *res = PyObject_CallMethod((PyObject *)self->loop,
                                        "call_exception_handler", "O", ctx);
    Py_DECREF(ctx);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* With an exception set by a protocol callback: SystemExit and
 * KeyboardInterrupt stay set (return -1); anything else goes to the
 * exception handler (return 0). */
static int
report_current(cl_udp *self, const char *message)
{
    PyObject *exc = cl_fetch_exc();
    if (cl_exc_is_fatal(exc)) {
        cl_restore_exc(exc);
        return -1;
    }
    int r = report(self, message, exc);
    Py_DECREF(exc);
    return r;
}

static int
schedule_connection_lost(cl_udp *self, PyObject *exc)
{
    return cl_schedule_connection_lost((PyObject *)self->loop,
                                       (PyObject *)self,
                                       exc ? exc : Py_None);
}

/* While reading, the uv handle holds a reference to the transport, as
 * asyncio's selector holds the reader callback: a transport nobody else
 * references keeps receiving.  The caller holds its own reference. */
static void
stop_reading(cl_udp *self)
{
    if (!self->reading) {
        return;
    }
    if (handle_alive(self)) {
        uv_udp_recv_stop(&self->h->udp);
    }
    self->reading = 0;
    Py_DECREF(self);
}

/* asyncio's _force_close(): drop the queue, stop reading, schedule
 * connection_lost(exc). */
static int
force_close(cl_udp *self, PyObject *exc)
{
    if (self->conn_lost) {
        return 0;
    }
    if (self->nqueued > 0) {
        /* Only closing the handle cancels queued sends. */
        close_handle(self);
    }
    if (!self->closing) {
        self->closing = 1;
        stop_reading(self);
    }
    self->conn_lost++;
    return schedule_connection_lost(self, exc);
}

/* asyncio.log.logger.debug("%r: %s", self, message, exc_info=exc). */
static int
log_debug(cl_udp *self, const char *message, PyObject *exc)
{
    PyObject *log = PyImport_ImportModule("asyncio.log");
    PyObject *logger = log ? PyObject_GetAttrString(log, "logger") : NULL;
    Py_XDECREF(log);
    PyObject *debug = logger ? PyObject_GetAttrString(logger, "debug") : NULL;
    Py_XDECREF(logger);
    if (debug == NULL) {
        return -1;
    }
    PyObject *args = Py_BuildValue("(sOs)", "%r: %s", (PyObject *)self,
                                   message);
    PyObject *kw = args ? Py_BuildValue("{s:O}", "exc_info", exc) : NULL;
    PyObject *res = kw ? PyObject_Call(debug, args, kw) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    Py_DECREF(debug);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* asyncio's _fatal_error(): report (an OSError is only logged, in debug
 * mode) and force-close. */
static int
fatal_error(cl_udp *self, PyObject *exc, const char *message)
{
    if (!PyErr_GivenExceptionMatches(exc, PyExc_OSError)) {
        if (report(self, message, exc) < 0) {
            return -1;
        }
    }
    else if (self->loop->debug && log_debug(self, message, exc) < 0) {
        return -1;
    }
    return force_close(self, exc);
}

/* protocol.error_received(exc).  Returns -1 with the callback's
 * exception set. */
static int
error_received(cl_udp *self, PyObject *exc)
{
    PyObject *proto = Py_NewRef(self->protocol);
    PyObject *res = PyObject_CallMethod(proto, "error_received", "O", exc);
    Py_DECREF(proto);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* The libuv error as OSError, then error_received(). */
static int
uv_error_received(cl_udp *self, int err)
{
    cl_raise_uv_error(err);
    PyObject *exc = cl_fetch_exc();
    if (exc == NULL) {
        return -1;
    }
    int r = error_received(self, exc);
    Py_DECREF(exc);
    return r;
}

static int
call_protocol_noargs(cl_udp *self, const char *name, const char *message)
{
    PyObject *proto = Py_NewRef(self->protocol);
    PyObject *res = PyObject_CallMethod(proto, name, NULL);
    Py_DECREF(proto);
    if (res == NULL) {
        return report_current(self, message);
    }
    Py_DECREF(res);
    return 0;
}

static int
maybe_pause_protocol(cl_udp *self)
{
    if (self->buffer_size <= self->high_water || self->protocol_paused) {
        return 0;
    }
    self->protocol_paused = 1;
    return call_protocol_noargs(self, "pause_writing",
                                "protocol.pause_writing() failed");
}

static int
maybe_resume_protocol(cl_udp *self)
{
    if (!self->protocol_paused || self->buffer_size > self->low_water) {
        return 0;
    }
    self->protocol_paused = 0;
    return call_protocol_noargs(self, "resume_writing",
                                "protocol.resume_writing() failed");
}

/* sockaddr -> asyncio's address: (host, port) or (host, port, flowinfo,
 * scope_id), as socket.recvfrom() gives it. */
static PyObject *
make_addr(const struct sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        uv_ip4_name(a, host, sizeof(host));
        return Py_BuildValue("(si)", host, (int)ntohs(a->sin_port));
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        uv_inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        return Py_BuildValue("(siII)", host, (int)ntohs(a->sin6_port),
                             (unsigned int)ntohl(a->sin6_flowinfo),
                             (unsigned int)a->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

/* A numeric (host, port[, flowinfo, scope_id]) tuple into *ss.  Returns
 * 1 on success, 0 if addr is not in that form (no exception), -1 with an
 * exception. */
static int
parse_numeric_addr(int family, PyObject *addr, struct sockaddr_storage *ss)
{
    if (!PyTuple_Check(addr) || PyTuple_GET_SIZE(addr) < 2 ||
        !PyUnicode_Check(PyTuple_GET_ITEM(addr, 0)) ||
        !PyLong_Check(PyTuple_GET_ITEM(addr, 1))) {
        return 0;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(addr);
    if ((family == AF_INET && n != 2) || n > 4) {
        return 0;
    }
    Py_ssize_t hostlen;
    const char *host = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(addr, 0),
                                               &hostlen);
    if (host == NULL) {
        return -1;
    }
    /* An embedded NUL would cut the host short; the slow path raises. */
    if ((size_t)hostlen != strlen(host)) {
        return 0;
    }
    long port = PyLong_AsLong(PyTuple_GET_ITEM(addr, 1));
    if (port == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (port < 0 || port > 65535) {
        return 0;
    }
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0;
    }
    /* A scope given in the host ("fe80::1%eth0") needs the resolver. */
    if (strchr(host, '%') != NULL) {
        return 0;
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    if (uv_ip6_addr(host, (int)port, a) != 0) {
        return 0;
    }
    for (Py_ssize_t i = 2; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(addr, i);
        if (!PyLong_Check(item)) {
            return 0;
        }
        /* The socket module takes both as C unsigned ints without
         * overflow checks (PyArg "I"), then limits flowinfo to 20 bits;
         * an out-of-range flowinfo takes the slow path, which raises
         * socket.sendto()'s OverflowError. */
        uint32_t v = (uint32_t)PyLong_AsUnsignedLongMask(item);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (i == 2) {
            if (v > 0xfffff) {
                return 0;
            }
            a->sin6_flowinfo = htonl(v);
        }
        else {
            a->sin6_scope_id = (uint32_t)v;
        }
    }
    return 1;
}

/* addr as a sockaddr for uv_udp_send(); anything but a numeric tuple
 * goes through cloop._udp._cl_resolve_addr(), which raises what
 * socket.sendto() would (TypeError, socket.gaierror, ...). */
static int
sockaddr_from(cl_udp *self, PyObject *addr, struct sockaddr_storage *ss)
{
    int r = parse_numeric_addr(self->family, addr, ss);
    if (r != 0) {
        return r < 0 ? -1 : 0;
    }
    PyObject *mod = PyImport_ImportModule("cloop._udp");
    if (mod == NULL) {
        return -1;
    }
    PyObject *numeric = PyObject_CallMethod(mod, "_cl_resolve_addr", "iO",
                                            self->family, addr);
    Py_DECREF(mod);
    if (numeric == NULL) {
        return -1;
    }
    r = parse_numeric_addr(self->family, numeric, ss);
    Py_DECREF(numeric);
    if (r == 0) {
        PyErr_Format(PyExc_ValueError, "cannot send to %R", addr);
        return -1;
    }
    return r < 0 ? -1 : 0;
}

/* --- Receiving --------------------------------------------------------- */

static void
on_udp_alloc(uv_handle_t *handle, size_t Py_UNUSED(suggested),
             uv_buf_t *buf)
{
    cl_udp_handle *h = (cl_udp_handle *)handle;
    buf->base = h->rbuf;
    buf->len = sizeof(h->rbuf);
}

/* A datagram (data, addr) or a receive error (exc,) waits in
 * self->pending until the reader handle runs.  The handle is pushed onto
 * the ready queue behind what is already there, so protocol callbacks run
 * in asyncio's order: after the callbacks queued before the poll. */
static void
on_udp_recv(uv_udp_t *handle, ssize_t nread, const uv_buf_t *buf,
            const struct sockaddr *addr, unsigned Py_UNUSED(flags))
{
    cl_udp *self = handle->data;
    if (self == NULL || (nread == 0 && addr == NULL)) {
        return;
    }
    cl_loop *loop = self->loop;
    cl_acquire(loop);
    if (self->conn_lost || self->reader == NULL) {
        return;
    }
    PyObject *entry;
    if (nread < 0) {
        cl_raise_uv_error((int)nread);
        PyObject *exc = cl_fetch_exc();
        entry = exc ? PyTuple_Pack(1, exc) : NULL;
        Py_XDECREF(exc);
    }
    else {
        PyObject *data = PyBytes_FromStringAndSize(buf->base, nread);
        PyObject *pyaddr = data ? make_addr(addr) : NULL;
        entry = pyaddr ? PyTuple_Pack(2, data, pyaddr) : NULL;
        Py_XDECREF(data);
        Py_XDECREF(pyaddr);
    }
    if (entry == NULL) {
        cl_loop_stash_exception(loop);
        return;
    }
    if (self->pending == NULL) {
        self->pending = PyList_New(0);
    }
    int r = self->pending ? PyList_Append(self->pending, entry) : -1;
    Py_DECREF(entry);
    if (r == 0 && !self->reader_queued) {
        r = cl_loop_push_ready(loop, (PyObject *)self->reader);
        self->reader_queued = r == 0;
    }
    if (r < 0) {
        cl_loop_stash_exception(loop);
    }
}

/* _cl_read_ready(): the reader handle's callback.  Delivers what was
 * received while the transport reads; an exception from the protocol
 * leaves the handle (the loop reports it, as asyncio reports one leaving
 * its _read_ready()) and the rest waits for the next turn. */
static PyObject *
UDP_cl_read_ready(cl_udp *self, PyObject *Py_UNUSED(ignored))
{
    self->reader_queued = 0;
    PyObject *list = self->pending;
    if (list == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(self);
    Py_INCREF(list);
    Py_ssize_t i = 0;
    int r = 0;
    while (i < PyList_GET_SIZE(list) && self->reading && !self->conn_lost) {
        PyObject *entry = Py_NewRef(PyList_GET_ITEM(list, i));
        PyObject *proto = Py_NewRef(self->protocol);
        PyObject *res;
        i++;
        if (PyTuple_GET_SIZE(entry) == 2) {
            PyObject *args[3] = {proto, PyTuple_GET_ITEM(entry, 0),
                                 PyTuple_GET_ITEM(entry, 1)};
            res = PyObject_VectorcallMethod(
                self->loop->state->str_datagram_received, args,
                3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        }
        else {
            res = PyObject_CallMethod(proto, "error_received", "O",
                                      PyTuple_GET_ITEM(entry, 0));
        }
        Py_DECREF(proto);
        Py_DECREF(entry);
        if (res == NULL) {
            r = -1;
            break;
        }
        Py_DECREF(res);
    }
    PyObject *exc = r < 0 ? cl_fetch_exc() : NULL;
    if (self->conn_lost || !self->reading) {
        /* Closed: the rest is dropped, as the kernel would drop it. */
        if (self->conn_lost || self->closing) {
            i = PyList_GET_SIZE(list);
        }
    }
    if (PyList_SetSlice(list, 0, i, NULL) < 0) {
        Py_XDECREF(exc);
        exc = cl_fetch_exc();
    }
    if (PyList_GET_SIZE(list) > 0 && self->reading && !self->conn_lost &&
        !self->reader_queued && self->reader != NULL) {
        if (cl_loop_push_ready(self->loop, (PyObject *)self->reader) == 0) {
            self->reader_queued = 1;
        }
        else if (exc == NULL) {
            exc = cl_fetch_exc();
        }
    }
    Py_DECREF(list);
    Py_DECREF(self);
    if (exc != NULL) {
        cl_restore_exc(exc);
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
start_reading(cl_udp *self)
{
    if (self->reading || self->closing || self->paused ||
        !handle_alive(self)) {
        return 0;
    }
    if (self->reader == NULL) {
        /* Made once, in the context current now, as asyncio's reader
         * handle is made by _add_reader(). */
        PyObject *meth =
            PyObject_GetAttrString((PyObject *)self, "_cl_read_ready");
        if (meth == NULL) {
            return -1;
        }
        self->reader = cl_handle_new(self->loop, meth, NULL, 0, Py_None);
        Py_DECREF(meth);
        if (self->reader == NULL) {
            return -1;
        }
    }
    int err = uv_udp_recv_start(&self->h->udp, on_udp_alloc, on_udp_recv);
    if (err < 0) {
        cl_raise_uv_error(err);
        return -1;
    }
    self->reading = 1;
    Py_INCREF(self);
    /* Datagrams read before pause_reading() come first. */
    if (self->pending != NULL && PyList_GET_SIZE(self->pending) > 0 &&
        !self->reader_queued) {
        if (cl_loop_push_ready(self->loop, (PyObject *)self->reader) < 0) {
            return -1;
        }
        self->reader_queued = 1;
    }
    return 0;
}

/* --- Sending ----------------------------------------------------------- */

static void
send_done(cl_udp *self)
{
    if (self->nqueued == 0 && self->closing && !self->conn_lost) {
        self->conn_lost++;
        PyObject *res = PyObject_CallMethod(
            (PyObject *)self, "_call_connection_lost", "O", Py_None);
        if (res == NULL &&
            report_current(self, "Exception in callback "
                                 "UDPTransport._sendto_ready()") < 0) {
            cl_loop_stash_exception(self->loop);
        }
        Py_XDECREF(res);
    }
}

static void
on_udp_send(uv_udp_send_t *req, int status)
{
    cl_udp_send *w = (cl_udp_send *)req;
    cl_udp *self = w->self;     /* the request's reference, dropped last */
    cl_acquire(self->loop);
    self->buffer_size -= w->cost;
    self->nqueued--;
    Py_DECREF(w->data);
    PyMem_RawFree(w);
    if (status != UV_ECANCELED && !self->conn_lost &&
        self->protocol != Py_None) {
        int r = 0;
        if (status < 0) {
            r = uv_error_received(self, status);
        }
        if (r == 0) {
            r = maybe_resume_protocol(self);
        }
        else {
            r = report_current(self, "Exception in callback "
                                     "UDPTransport._sendto_ready()");
        }
        if (r < 0) {
            cl_loop_stash_exception(self->loop);
        }
        send_done(self);
    }
    Py_DECREF(self);
}

/* Queue data (view of obj) with uv_udp_send(): bytes is immutable and
 * shared, anything else is snapshotted.  Returns 0, or -1 with an
 * exception (OSError for a libuv failure). */
static int
queue_send(cl_udp *self, PyObject *obj, Py_buffer *view,
           const struct sockaddr *sa)
{
    cl_udp_send *w = PyMem_RawMalloc(sizeof(*w));
    if (w == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->data = PyBytes_CheckExact(obj)
                  ? Py_NewRef(obj)
                  : PyBytes_FromStringAndSize(view->buf, view->len);
    if (w->data == NULL) {
        PyMem_RawFree(w);
        return -1;
    }
    uv_buf_t buf = uv_buf_init(PyBytes_AS_STRING(w->data),
                               (unsigned int)view->len);
    int err = uv_udp_send(&w->req, &self->h->udp, &buf, 1, sa, on_udp_send);
    if (err < 0) {
        /* The callback will never run: undo at once. */
        Py_DECREF(w->data);
        PyMem_RawFree(w);
        cl_raise_uv_error(err);
        return -1;
    }
    w->self = (cl_udp *)Py_NewRef(self);
    w->cost = view->len + CL_UDP_HEADER;
    self->buffer_size += w->cost;
    self->nqueued++;
    return 0;
}

static PyObject *
conn_lost_write(cl_udp *self)
{
    if (self->conn_lost >= CL_CONNLOST_WARN) {
        PyObject *log = PyImport_ImportModule("asyncio.log");
        PyObject *logger =
            log ? PyObject_GetAttrString(log, "logger") : NULL;
        Py_XDECREF(log);
        if (logger == NULL) {
            return NULL;
        }
        PyObject *res = PyObject_CallMethod(logger, "warning", "s",
                                            "socket.send() raised exception.");
        Py_DECREF(logger);
        if (res == NULL) {
            return NULL;
        }
        Py_DECREF(res);
    }
    self->conn_lost++;
    Py_RETURN_NONE;
}

/* After an exception from address conversion or a send: OSErrors go to
 * error_received() (whose own exception propagates to the caller, as in
 * asyncio), anything else is fatal for the transport. */
static PyObject *
send_failed(cl_udp *self)
{
    PyObject *exc = cl_fetch_exc();
    int r;
    if (cl_exc_is_fatal(exc)) {
        cl_restore_exc(exc);
        return NULL;
    }
    if (PyErr_GivenExceptionMatches(exc, PyExc_OSError)) {
        r = error_received(self, exc);
    }
    else {
        r = fatal_error(self, exc, "Fatal write error on datagram transport");
    }
    Py_DECREF(exc);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
UDP_sendto(cl_udp *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    static const char *const names[] = {"data", "addr"};
    PyObject *vals[2] = {NULL, Py_None};
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError,
                     "sendto() takes from 2 to 3 positional arguments but "
                     "%zd were given",
                     nargs + 1);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        vals[i] = args[i];
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        int found = 0;
        for (int j = 0; j < 2; j++) {
            if (PyUnicode_CompareWithASCIIString(key, names[j]) == 0) {
                if (j < nargs) {
                    PyErr_Format(PyExc_TypeError,
                                 "sendto() got multiple values for "
                                 "argument '%s'",
                                 names[j]);
                    return NULL;
                }
                vals[j] = args[nargs + i];
                found = 1;
            }
        }
        if (!found) {
            PyErr_Format(PyExc_TypeError,
                         "sendto() got an unexpected keyword argument '%S'",
                         key);
            return NULL;
        }
    }
    if (vals[0] == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "sendto() missing 1 required positional argument: "
                        "'data'");
        return NULL;
    }
    PyObject *data = vals[0], *addr = vals[1];
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
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        /* asyncio's socket.sendto() fails the same way, fatally. */
        return send_failed(self);
    }
    PyObject *result = NULL;
    if (!CL_SEND_EMPTY && view.len == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (self->address != Py_None) {
        if (addr != Py_None) {
            int eq = PyObject_RichCompareBool(addr, self->address, Py_EQ);
            if (eq < 0) {
                goto done;
            }
            if (!eq) {
                PyObject *s = PyObject_Str(self->address);
                if (s != NULL) {
                    PyErr_Format(PyExc_ValueError,
                                 "Invalid address: must be None or %U", s);
                    Py_DECREF(s);
                }
                goto done;
            }
        }
        addr = self->address;
    }
    /* As asyncio: only a connected endpoint counts writes after the
     * connection is lost; an unconnected one still sends until its socket
     * is closed, and then gets the socket's EBADF. */
    if (self->conn_lost && self->address != Py_None) {
        result = conn_lost_write(self);
        goto done;
    }
    if (!handle_alive(self)) {
        if (self->loop->closed || self->loop->uvloop == NULL) {
            PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
            goto done;
        }
        errno = EBADF;
        PyErr_SetFromErrno(PyExc_OSError);
        result = send_failed(self);
        goto done;
    }
    struct sockaddr_storage ss;
    const struct sockaddr *sa = NULL;
    if (!self->connected) {
        if (sockaddr_from(self, addr, &ss) < 0) {
            result = send_failed(self);
            goto done;
        }
        sa = (const struct sockaddr *)&ss;
    }
    if (self->nqueued == 0 && !self->no_try_send) {
        uv_buf_t buf = uv_buf_init(view.buf, (unsigned int)view.len);
        int n = uv_udp_try_send(&self->h->udp, &buf, 1, sa);
        if (n >= 0) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        if (n != UV_EAGAIN && n != UV_EINTR) {
            cl_raise_uv_error(n);
            result = send_failed(self);
            goto done;
        }
    }
    if (queue_send(self, data, &view, sa) < 0) {
        if (PyErr_ExceptionMatches(PyExc_OSError)) {
            result = send_failed(self);
        }
        goto done;
    }
    if (maybe_pause_protocol(self) < 0) {
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&view);
    return result;
}

/* --- Methods ----------------------------------------------------------- */

static PyObject *
UDP_close(cl_udp *self, PyObject *Py_UNUSED(ignored))
{
    if (self->closing) {
        Py_RETURN_NONE;
    }
    self->closing = 1;
    stop_reading(self);
    if (self->nqueued == 0) {
        self->conn_lost++;
        if (schedule_connection_lost(self, NULL) < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
UDP_abort(cl_udp *self, PyObject *Py_UNUSED(ignored))
{
    if (force_close(self, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _call_connection_lost(exc): protocol.connection_lost(exc), then the
 * socket and the uv handle are closed whatever it did. */
static PyObject *
UDP_call_connection_lost(cl_udp *self, PyObject *exc)
{
    PyObject *res = Py_NewRef(Py_None);
    Py_INCREF(self);
    if (self->protocol_connected && self->protocol != Py_None) {
        Py_DECREF(res);
        PyObject *proto = Py_NewRef(self->protocol);
        res = PyObject_CallMethod(proto, "connection_lost", "O", exc);
        Py_DECREF(proto);
    }
    PyObject *exc_saved = res == NULL ? cl_fetch_exc() : NULL;
    close_handle(self);
    PyObject *sock = self->sock;
    self->sock = Py_NewRef(Py_None);
    Py_SETREF(self->protocol, Py_NewRef(Py_None));
    /* The reader's bound method references the transport. */
    Py_CLEAR(self->reader);
    Py_CLEAR(self->pending);
    if (sock != Py_None) {
        PyObject *r = PyObject_CallMethod(sock, "close", NULL);
        if (r == NULL && exc_saved == NULL) {
            exc_saved = cl_fetch_exc();
        }
        Py_XDECREF(r);
    }
    Py_DECREF(sock);
    Py_DECREF(self);
    if (exc_saved != NULL) {
        Py_XDECREF(res);
        cl_restore_exc(exc_saved);
        return NULL;
    }
    Py_DECREF(res);
    Py_RETURN_NONE;
}

static PyObject *
UDP_cl_start_reading(cl_udp *self, PyObject *Py_UNUSED(ignored))
{
    if (self->conn_lost || start_reading(self) < 0) {
        return self->conn_lost ? Py_NewRef(Py_None) : NULL;
    }
    Py_RETURN_NONE;
}

/* _cl_detach(): the loop closed, and its walk closed and freed the uv
 * handle; drop the reading reference so the transport can be collected
 * (and warn, as asyncio's does). */
static PyObject *
UDP_cl_detach(cl_udp *self, PyObject *Py_UNUSED(ignored))
{
    Py_INCREF(self);
    stop_reading(self);
    if (self->h != NULL && self->loop->uvloop != NULL) {
        /* Not walked yet, so the memory is still valid. */
        self->h->udp.data = NULL;
    }
    self->h = NULL;
    Py_DECREF(self);
    Py_RETURN_NONE;
}

/* _cl_set_try_send(flag): a test hook.  Sends to localhost practically
 * never block, so the tests turn the immediate attempt off to exercise the
 * queue (flow control, close() flushing, abort() cancelling). */
static PyObject *
UDP_cl_set_try_send(cl_udp *self, PyObject *flag)
{
    int v = PyObject_IsTrue(flag);
    if (v < 0) {
        return NULL;
    }
    self->no_try_send = (char)!v;
    Py_RETURN_NONE;
}

static PyObject *
UDP_pause_reading(cl_udp *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->closing && !self->paused) {
        self->paused = 1;
        stop_reading(self);
    }
    Py_RETURN_NONE;
}

static PyObject *
UDP_resume_reading(cl_udp *self, PyObject *Py_UNUSED(ignored))
{
    if (self->closing || !self->paused) {
        Py_RETURN_NONE;
    }
    self->paused = 0;
    if (start_reading(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
UDP_is_reading(cl_udp *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(!self->closing && !self->paused);
}

static PyObject *
UDP_is_closing(cl_udp *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->closing);
}

static PyObject *
UDP_get_extra_info(cl_udp *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "default", NULL};
    PyObject *name, *dflt = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:get_extra_info", kwlist,
                                     &name, &dflt)) {
        return NULL;
    }
    return PyObject_CallMethod(self->extra, "get", "OO", name, dflt);
}

static PyObject *
UDP_set_protocol(cl_udp *self, PyObject *protocol)
{
    Py_SETREF(self->protocol, Py_NewRef(protocol));
    self->protocol_connected = 1;
    Py_RETURN_NONE;
}

static PyObject *
UDP_get_protocol(cl_udp *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->protocol);
}

static PyObject *
UDP_get_write_buffer_size(cl_udp *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(self->buffer_size);
}

static PyObject *
UDP_get_write_buffer_limits(cl_udp *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(nn)", self->low_water, self->high_water);
}

static int
set_limits(cl_udp *self, PyObject *high, PyObject *low)
{
    Py_ssize_t h, l;
    if (high == Py_None) {
        if (low == Py_None) {
            h = 64 * 1024;
        }
        else {
            l = PyNumber_AsSsize_t(low, PyExc_OverflowError);
            if (l == -1 && PyErr_Occurred()) {
                return -1;
            }
            h = 4 * l;
        }
    }
    else {
        h = PyNumber_AsSsize_t(high, PyExc_OverflowError);
        if (h == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (low == Py_None) {
        l = h / 4;
        if (h < 0 && h % 4 != 0) {
            l -= 1; /* Python's floor division */
        }
    }
    else {
        l = PyNumber_AsSsize_t(low, PyExc_OverflowError);
        if (l == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    if (!(h >= l && l >= 0)) {
        PyErr_Format(PyExc_ValueError,
                     "high (%zd) must be >= low (%zd) must be >= 0", h, l);
        return -1;
    }
    self->high_water = h;
    self->low_water = l;
    return 0;
}

static PyObject *
UDP_set_write_buffer_limits(cl_udp *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"high", "low", NULL};
    PyObject *high = Py_None, *low = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds,
                                     "|OO:set_write_buffer_limits", kwlist,
                                     &high, &low)) {
        return NULL;
    }
    if (set_limits(self, high, low) < 0 || maybe_pause_protocol(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
UDP_repr(cl_udp *self)
{
    const char *state = self->sock == Py_None ? " closed"
                        : self->closing       ? " closing"
                                              : "";
    return PyUnicode_FromFormat("<%s%s fd=%d read=%s write=<%s, bufsize=%zd>>",
                                Py_TYPE(self)->tp_name, state, self->fd,
                                self->reading ? "polling" : "idle",
                                self->nqueued ? "polling" : "idle",
                                self->buffer_size);
}

/* --- Object lifecycle -------------------------------------------------- */

/* Duplicate fd for libuv and open the uv handle on it.  Returns 0, or -1
 * with an exception. */
static int
open_handle(cl_udp *self, int fd)
{
    int dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dupfd < 0) {
        cl_raise_uv_error(-errno);
        return -1;
    }
    int reuse = 0;
    socklen_t len = sizeof(reuse);
    int have_reuse =
        getsockopt(dupfd, SOL_SOCKET, SO_REUSEADDR, &reuse, &len) == 0;
    cl_udp_handle *h = PyMem_RawMalloc(sizeof(*h));
    if (h == NULL) {
        close(dupfd);
        PyErr_NoMemory();
        return -1;
    }
    int err = uv_udp_init(self->loop->uvloop, &h->udp);
    if (err < 0) {
        PyMem_RawFree(h);
        close(dupfd);
        cl_raise_uv_error(err);
        return -1;
    }
    h->udp.data = NULL;
    err = uv_udp_open(&h->udp, dupfd);
    if (err < 0) {
        /* The handle does not own dupfd: close both ourselves. */
        uv_close((uv_handle_t *)&h->udp, on_udp_close);
        close(dupfd);
        cl_raise_uv_error(err);
        return -1;
    }
    if (have_reuse) {
        (void)setsockopt(dupfd, SOL_SOCKET, SO_REUSEADDR, &reuse,
                         sizeof(reuse));
    }
    h->udp.data = self;
    self->h = h;
    return 0;
}

/* UDPTransport(loop, sock, protocol, address, extra): loop/_udp.py makes
 * it and schedules connection_made() and _cl_start_reading(). */
static PyObject *
UDP_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", "sock", "protocol", "address", "extra",
                             NULL};
    PyObject *loop, *sock, *protocol, *address, *extra;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOO!:UDPTransport",
                                     kwlist, &loop, &sock, &protocol,
                                     &address, &PyDict_Type, &extra)) {
        return NULL;
    }
    cl_state *st = cl_get_state_by_type(tp);
    if (st == NULL) {
        return NULL;
    }
    if (!PyObject_TypeCheck(loop, st->LoopType)) {
        PyErr_SetString(PyExc_TypeError, "loop must be a cloop loop");
        return NULL;
    }
    if (cl_loop_check_open((cl_loop *)loop) < 0) {
        return NULL;
    }
    PyObject *o = PyObject_GetAttrString(sock, "fileno");
    PyObject *fdobj = o ? PyObject_CallNoArgs(o) : NULL;
    Py_XDECREF(o);
    if (fdobj == NULL) {
        return NULL;
    }
    long fd = PyLong_AsLong(fdobj);
    Py_DECREF(fdobj);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", fd);
        return NULL;
    }
    PyObject *fam = PyObject_GetAttrString(sock, "family");
    long family = fam ? PyLong_AsLong(fam) : -1;
    Py_XDECREF(fam);
    if (family == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (family != AF_INET && family != AF_INET6) {
        PyErr_SetString(PyExc_ValueError,
                        "UDPTransport needs an AF_INET or AF_INET6 socket");
        return NULL;
    }
    PyObject *peer = PyDict_GetItemString(extra, "peername"); /* borrowed */
    int connected = peer ? PyObject_IsTrue(peer) : 0;
    if (connected < 0) {
        return NULL;
    }

    cl_udp *self = (cl_udp *)tp->tp_alloc(tp, 0);
    if (self == NULL) {
        return NULL;
    }
    self->extra = Py_NewRef(extra);
    self->loop = (cl_loop *)Py_NewRef(loop);
    self->sock = Py_NewRef(sock);
    self->protocol = Py_NewRef(protocol);
    self->address = Py_NewRef(address);
    self->fd = (int)fd;
    self->family = (int)family;
    self->connected = (char)connected;
    self->protocol_connected = 1;
    self->high_water = 64 * 1024;
    self->low_water = 16 * 1024;
    if (open_handle(self, (int)fd) < 0 ||
        cl_fd_owner_set(self->loop, self->fd, (PyObject *)self) < 0) {
        /* Nothing to warn about; the handle, if any, is closed. */
        close_handle(self);
        Py_SETREF(self->sock, Py_NewRef(Py_None));
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* Construction happens in tp_new; BaseTransport.__init__ must not run. */
static int
UDP_tp_init(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(args),
            PyObject *Py_UNUSED(kwds))
{
    return 0;
}

/* A transport collected while its socket is open warns and closes it, as
 * asyncio's __del__ does; the uv handle is detached and freed by its
 * close callback. */
static void
UDP_tp_finalize(cl_udp *self)
{
    if (self->sock == NULL || self->sock == Py_None) {
        return;
    }
    PyObject *exc = cl_fetch_exc();
    if (PyErr_ResourceWarning((PyObject *)self, 1, "unclosed transport %R",
                              (PyObject *)self) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    if (self->h != NULL) {
        cl_udp_handle *h = self->h;
        self->h = NULL;
        /* Once the loop is closed its walk owns (and frees) the handle. */
        if (!self->loop->closed && self->loop->uvloop != NULL) {
            h->udp.data = NULL;
            if (!uv_is_closing((uv_handle_t *)&h->udp)) {
                uv_close((uv_handle_t *)&h->udp, on_udp_close);
            }
        }
    }
    PyObject *sock = self->sock;
    self->sock = Py_NewRef(Py_None);
    PyObject *r = PyObject_CallMethod(sock, "close", NULL);
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    Py_XDECREF(r);
    Py_DECREF(sock);
    cl_restore_exc(exc);
}

static int
UDP_tp_traverse(cl_udp *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->extra);
    Py_VISIT(self->loop);
    Py_VISIT(self->sock);
    Py_VISIT(self->protocol);
    Py_VISIT(self->address);
    Py_VISIT(self->dict);
    Py_VISIT(self->reader);
    Py_VISIT(self->pending);
    return 0;
}

static int
UDP_tp_clear(cl_udp *self)
{
    Py_CLEAR(self->extra);
    /* The loop stays: the handle's state is read through it until the
     * object is freed. */
    Py_CLEAR(self->sock);
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->address);
    Py_CLEAR(self->dict);
    Py_CLEAR(self->reader);
    Py_CLEAR(self->pending);
    return 0;
}

static void
UDP_tp_dealloc(cl_udp *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    cl_fd_owner_clear(self->loop, self->fd, (PyObject *)self);
    if (self->h != NULL) {
        /* Only reached without a socket (finalize handles the rest). */
        cl_udp_handle *h = self->h;
        self->h = NULL;
        if (!self->loop->closed && self->loop->uvloop != NULL) {
            h->udp.data = NULL;
            if (!uv_is_closing((uv_handle_t *)&h->udp)) {
                uv_close((uv_handle_t *)&h->udp, on_udp_close);
            }
        }
    }
    (void)UDP_tp_clear(self);
    Py_CLEAR(self->loop);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef UDP_methods[] = {
    {"sendto", (PyCFunction)(void (*)(void))UDP_sendto,
     METH_FASTCALL | METH_KEYWORDS,
     "sendto(data, addr=None): send one datagram."},
    {"close", (PyCFunction)UDP_close, METH_NOARGS,
     "close(): flush what is queued, then connection_lost(None)."},
    {"abort", (PyCFunction)UDP_abort, METH_NOARGS,
     "abort(): close at once, dropping what is queued."},
    {"is_closing", (PyCFunction)UDP_is_closing, METH_NOARGS, NULL},
    {"get_extra_info", (PyCFunction)(void (*)(void))UDP_get_extra_info,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"set_protocol", (PyCFunction)UDP_set_protocol, METH_O, NULL},
    {"get_protocol", (PyCFunction)UDP_get_protocol, METH_NOARGS, NULL},
    {"get_write_buffer_size", (PyCFunction)UDP_get_write_buffer_size,
     METH_NOARGS, NULL},
    {"get_write_buffer_limits", (PyCFunction)UDP_get_write_buffer_limits,
     METH_NOARGS, NULL},
    {"set_write_buffer_limits",
     (PyCFunction)(void (*)(void))UDP_set_write_buffer_limits,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"pause_reading", (PyCFunction)UDP_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", (PyCFunction)UDP_resume_reading, METH_NOARGS, NULL},
    {"is_reading", (PyCFunction)UDP_is_reading, METH_NOARGS, NULL},
    {"_call_connection_lost", (PyCFunction)UDP_call_connection_lost, METH_O,
     NULL},
    {"_cl_start_reading", (PyCFunction)UDP_cl_start_reading, METH_NOARGS,
     NULL},
    {"_cl_detach", (PyCFunction)UDP_cl_detach, METH_NOARGS, NULL},
    {"_cl_read_ready", (PyCFunction)UDP_cl_read_ready, METH_NOARGS, NULL},
    {"_cl_set_try_send", (PyCFunction)UDP_cl_set_try_send, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef UDP_members[] = {
    {"__dictoffset__", Py_T_PYSSIZET, offsetof(cl_udp, dict), Py_READONLY,
     NULL},
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(cl_udp, weakreflist),
     Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot UDP_slots[] = {
    {Py_tp_doc, "A datagram transport over a libuv UDP handle."},
    {Py_tp_new, UDP_tp_new},
    {Py_tp_init, UDP_tp_init},
    {Py_tp_finalize, UDP_tp_finalize},
    {Py_tp_dealloc, UDP_tp_dealloc},
    {Py_tp_traverse, UDP_tp_traverse},
    {Py_tp_clear, UDP_tp_clear},
    {Py_tp_repr, UDP_repr},
    {Py_tp_methods, UDP_methods},
    {Py_tp_members, UDP_members},
    {0, NULL},
};

static PyType_Spec UDP_spec = {
    .name = "cloop._cloop.UDPTransport",
    .basicsize = sizeof(cl_udp),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = UDP_slots,
};

/* asyncio's datagram transport is also an asyncio.Transport (the
 * selector transports derive from it), and code tests for both: the type
 * derives from the two, which share BaseTransport's layout (its _extra
 * slot and nothing more). */
int
cl_udp_init(PyObject *module, cl_state *st)
{
    Py_ssize_t extra = offsetof(cl_udp, extra);
    Py_ssize_t end = extra + (Py_ssize_t)sizeof(PyObject *);
    PyObject *bases = NULL;
    PyObject *transport = cl_transport_base("Transport", extra, end);
    PyObject *datagram =
        transport ? cl_transport_base("DatagramTransport", extra, end) : NULL;
    if (datagram != NULL) {
        bases = PyTuple_Pack(2, transport, datagram);
    }
    Py_XDECREF(transport);
    Py_XDECREF(datagram);
    if (bases == NULL) {
        return -1;
    }
    st->UDPTransportType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &UDP_spec, bases);
    Py_DECREF(bases);
    if (st->UDPTransportType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->UDPTransportType);
}
