/*
 * sock.c: the C side of sock_recv(), sock_recv_into() and sock_sendall().
 *
 * The public methods stay coroutines in loop/_sock.py, each one frame
 * that calls one method here, which answers with the result (the socket
 * was ready), a future to await, or NotImplemented: "not served here, run
 * the Python implementation", which is asyncio's own algorithm.
 *
 * Served here are objects of exactly socket.socket (a subclass or a mock
 * may define its own recv() or send(), which asyncio looks up on every
 * try), with arguments whose meaning is plain
 * (an int size; a bytes, bytearray or byte memoryview to send).  For them
 * the system call is made on sock.fileno() directly, with MSG_DONTWAIT, so
 * "not ready" is an errno and not a BlockingIOError, and EINTR is retried
 * after the signal handlers ran, as the socket methods do (PEP 475).
 *
 * A call that finds the socket not ready asks sock.gettimeout(): asyncio
 * would have called sock.recv() or sock.send() in the socket's own mode,
 * so a blocking socket, or one with a timeout, goes to the Python
 * implementation, as long as nothing was consumed or sent yet.  When a
 * sock_sendall()'s first send(2) was partial, a blocking socket's send()
 * sends the rest (where asyncio's one send() would have blocked), and a
 * socket with a timeout waits for the rest in the loop (its send() polls
 * first, then sends what fits, as send(2) just did).
 *
 * A non-blocking socket that is not ready waits as asyncio's selector
 * loop does, step for step: a future from loop.create_future(), the fd's
 * transport check, a reader (or writer) handle registered through poll.c
 * and a done callback on the future that removes it unless it was
 * replaced (its handle cancelled) meanwhile.  The callback of both is one
 * C object, a SockWait, which holds what the operation needs: called with
 * no argument (by the handle) it retries the operation into the future;
 * called with the future (done callback) it unregisters and lets go.
 */
#include "cloop.h"

#include <errno.h>
#include <sys/socket.h>

/* Reads up to this size land in the module's scratch buffer and are
 * copied into an exactly sized bytes; larger ones get their own.  The
 * copy saves allocating n bytes for a short read, but for long reads it
 * is a second pass over the data (a 100 KiB echo ran 20% slower than
 * with the socket's own recv()): after a read of CL_SCRATCH_DIRECT bytes
 * or more, the next one goes straight into a bytes of n, as recv() does,
 * until a read comes back short again. */
#define CL_SCRATCH_SIZE 65536
#define CL_SCRATCH_DIRECT (16 * 1024)
static int recv_direct;         /* under the GIL */

/* What raw_io() returns when the socket is not ready. */
#define CL_NOT_READY (-2)

enum { SW_RECV, SW_RECV_INTO, SW_SENDALL };

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    cl_loop *loop;
    PyObject *fut;      /* NULL once the done callback ran */
    PyObject *sock;
    PyObject *obj;      /* recv_into: the buffer; sendall: the memoryview */
    PyObject *fd;       /* the int registered, as asyncio's partial holds */
    PyObject *handle;   /* the reader or writer handle */
    Py_ssize_t n;       /* recv: the size; sendall: bytes sent so far */
    int kind;
} cl_sockwait;

/* --- system calls ------------------------------------------------------ */

/* sock.fileno() as a new int, and its value in *fd. */
static PyObject *
sock_fileno(cl_state *st, PyObject *sock, int *fd)
{
    PyObject *args[1] = {sock};
    PyObject *num = PyObject_VectorcallMethod(st->str_fileno, args, 1, NULL);
    if (num == NULL) {
        return NULL;
    }
    int overflow;
    long v = PyLong_AsLongAndOverflow(num, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(num);
        return NULL;
    }
    /* socket.socket's fileno() is a C int; -1 when closed. */
    *fd = overflow || v < INT_MIN || v > INT_MAX ? -1 : (int)v;
    return num;
}

/* One recv(2) or send(2) that does not block, retried on EINTR once the
 * signal handlers ran (an exception from one ends it, as in the socket
 * methods).  Returns the count, CL_NOT_READY, or -1 with OSError set. */
static Py_ssize_t
raw_io(int fd, char *buf, size_t len, int sending)
{
    if (!sending && len == 0) {
        /* The socket methods make no call for an empty read, so it
         * succeeds whatever the socket's state, even closed. */
        return 0;
    }
    for (;;) {
        ssize_t r = sending ? send(fd, buf, len, MSG_DONTWAIT)
                            : recv(fd, buf, len, MSG_DONTWAIT);
        if (r >= 0) {
            return (Py_ssize_t)r;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return CL_NOT_READY;
        }
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
    }
}

/* recv(n): bytes, NULL with an exception, or NULL with *again set. */
static PyObject *
raw_recv(cl_state *st, int fd, Py_ssize_t n, int *again)
{
    Py_ssize_t got;
    *again = 0;
    if (n <= CL_SCRATCH_SIZE && !recv_direct) {
        /* No Python code runs between the read and the copy. */
        char *buf = PyByteArray_AS_STRING(st->sock_scratch);
        got = raw_io(fd, buf, (size_t)n, 0);
        if (got >= 0) {
            recv_direct = got >= CL_SCRATCH_DIRECT;
            return PyBytes_FromStringAndSize(buf, got);
        }
        *again = got == CL_NOT_READY;
        return NULL;
    }
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, n);
    if (bytes == NULL) {
        return NULL;
    }
    got = raw_io(fd, PyBytes_AS_STRING(bytes), (size_t)n, 0);
    if (got < 0) {
        Py_DECREF(bytes);
        *again = got == CL_NOT_READY;
        return NULL;
    }
    recv_direct = got >= CL_SCRATCH_DIRECT;
    if (got != n && _PyBytes_Resize(&bytes, got) < 0) {
        return NULL;
    }
    return bytes;
}

/* recv_into(buf) for a writable contiguous buffer: the count, NULL with an
 * exception, or NULL with *again set (not ready) or *again = 2 (buf is not
 * such a buffer: the socket method must say what is wrong with it). */
static PyObject *
raw_recv_into(int fd, PyObject *buf, int *again)
{
    Py_buffer view;
    *again = 0;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0) {
        PyErr_Clear();
        *again = 2;
        return NULL;
    }
    if (!PyBuffer_IsContiguous(&view, 'C')) {
        PyBuffer_Release(&view);
        *again = 2;
        return NULL;
    }
    Py_ssize_t got = raw_io(fd, view.buf, (size_t)view.len, 0);
    PyBuffer_Release(&view);
    if (got < 0) {
        *again = got == CL_NOT_READY;
        return NULL;
    }
    return PyLong_FromSsize_t(got);
}

/* The socket's mode from sock.gettimeout(): 1 non-blocking (0.0), 0 a
 * timeout, CL_BLOCKING (None), or -1. */
#define CL_BLOCKING 2

static int
sock_nonblocking(cl_state *st, PyObject *sock)
{
    PyObject *args[1] = {sock};
    PyObject *t = PyObject_VectorcallMethod(st->str_gettimeout, args, 1, NULL);
    if (t == NULL) {
        return -1;
    }
    int r = t == Py_None ? CL_BLOCKING
                         : PyFloat_Check(t) && PyFloat_AS_DOUBLE(t) == 0.0;
    Py_DECREF(t);
    return r;
}

/* asyncio's debug-mode check, made before anything else: ValueError for
 * a socket in blocking or timeout mode.  Returns 0 or -1. */
static int
check_debug(cl_loop *loop, PyObject *sock)
{
    if (!loop->debug) {
        return 0;
    }
    int nb = sock_nonblocking(loop->state, sock);
    if (nb == 0 || nb == CL_BLOCKING) {
        PyErr_SetString(PyExc_ValueError, "the socket must be non-blocking");
        return -1;
    }
    return nb < 0 ? -1 : 0;
}

/* data's bytes are what len(data) counts and send() sends. */
static int
plain_bytes(PyObject *data)
{
    if (PyBytes_CheckExact(data) || PyByteArray_CheckExact(data)) {
        return 1;
    }
    if (Py_IS_TYPE(data, &PyMemoryView_Type)) {
        Py_buffer *v = PyMemoryView_GET_BUFFER(data);
        return v->ndim == 1 && v->itemsize == 1 &&
               PyBuffer_IsContiguous(v, 'C');
    }
    return 0;
}

/* --- SockWait ---------------------------------------------------------- */

static PyObject *
call_method1(PyObject *name, PyObject *self, PyObject *arg)
{
    PyObject *args[2] = {self, arg};
    return PyObject_VectorcallMethod(name, args, 2, NULL);
}

/* The handle's callback: asyncio's _sock_recv(), _sock_recv_into(),
 * _sock_sendall(). */
static PyObject *
sockwait_ready(cl_sockwait *w)
{
    cl_state *st = w->loop->state;
    if (w->fut == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *fut = Py_NewRef(w->fut);
    PyObject *res = NULL, *ret = NULL;
    PyObject *args[1] = {fut};
    PyObject *done = PyObject_VectorcallMethod(st->str_done, args, 1, NULL);
    int isdone = done == NULL ? -1 : PyObject_IsTrue(done);
    Py_XDECREF(done);
    if (isdone != 0) {
        ret = isdone < 0 ? NULL : Py_NewRef(Py_None);
        goto finally;
    }
    int fd, again = 0;
    PyObject *num = sock_fileno(st, w->sock, &fd);
    if (num != NULL) {
        Py_DECREF(num);
        if (w->kind == SW_RECV) {
            res = raw_recv(st, fd, w->n, &again);
        }
        else if (w->kind == SW_RECV_INTO) {
            res = raw_recv_into(fd, w->obj, &again);
            if (again == 2) {
                /* Not a buffer now: the method raises what asyncio's
                 * call would. */
                again = 0;
                res = PyObject_CallMethod(w->sock, "recv_into", "O", w->obj);
                if (res == NULL &&
                    (PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
                     PyErr_ExceptionMatches(PyExc_InterruptedError))) {
                    PyErr_Clear();
                    again = 1;
                }
            }
        }
        else {
            Py_buffer view;
            if (PyObject_GetBuffer(w->obj, &view, PyBUF_SIMPLE) == 0) {
                Py_ssize_t sent = raw_io(fd, (char *)view.buf + w->n,
                                         (size_t)(view.len - w->n), 1);
                Py_ssize_t len = view.len;
                PyBuffer_Release(&view);
                if (sent == CL_NOT_READY) {
                    again = 1;
                }
                else if (sent >= 0) {
                    w->n += sent;
                    if (w->n < len) {
                        again = 1;
                    }
                    else {
                        res = Py_NewRef(Py_None);
                    }
                }
            }
        }
    }
    if (res == NULL && again) {
        ret = Py_NewRef(Py_None);
        goto finally;
    }
    if (res == NULL) {
        PyObject *exc = cl_fetch_exc();
        if (cl_exc_is_fatal(exc)) {
            cl_restore_exc(exc);
            goto finally;
        }
        ret = call_method1(st->str_set_exception, fut, exc);
        Py_DECREF(exc);
    }
    else {
        ret = call_method1(st->str_set_result, fut, res);
        Py_DECREF(res);
    }
finally:
    Py_DECREF(fut);
    return ret;
}

/* The future's done callback: asyncio's _sock_read_done() and
 * _sock_write_done().  The references go first, which breaks the cycle
 * through the handle. */
static PyObject *
sockwait_done(cl_sockwait *w)
{
    if (w->fut == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *handle = w->handle, *fd = w->fd;
    w->handle = w->fd = NULL;
    Py_CLEAR(w->fut);
    Py_CLEAR(w->sock);
    Py_CLEAR(w->obj);
    PyObject *ret;
    if (handle == NULL || ((cl_handle *)handle)->cancelled) {
        ret = Py_NewRef(Py_None);
    }
    else {
        PyObject *r = cl_poll_park(w->loop, w->kind == SW_SENDALL ? 1 : 0,
                                   fd, handle);
        ret = r == NULL ? NULL : Py_NewRef(Py_None);
        Py_XDECREF(r);
    }
    Py_XDECREF(handle);
    Py_XDECREF(fd);
    return ret;
}

static PyObject *
sockwait_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf,
                    PyObject *kwnames)
{
    /* The handle passes nothing, the future passes itself (unused). */
    (void)args;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs > 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0)) {
        PyErr_SetString(PyExc_TypeError,
                        "SockWait takes at most one positional argument");
        return NULL;
    }
    /* Pinned: what runs below may drop the last other reference. */
    Py_INCREF(op);
    PyObject *r = nargs == 0 ? sockwait_ready((cl_sockwait *)op)
                             : sockwait_done((cl_sockwait *)op);
    Py_DECREF(op);
    return r;
}

static int
sockwait_traverse(cl_sockwait *w, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(w));
    Py_VISIT(w->loop);
    Py_VISIT(w->fut);
    Py_VISIT(w->sock);
    Py_VISIT(w->obj);
    Py_VISIT(w->fd);
    Py_VISIT(w->handle);
    return 0;
}

static int
sockwait_clear(cl_sockwait *w)
{
    Py_CLEAR(w->loop);
    Py_CLEAR(w->fut);
    Py_CLEAR(w->sock);
    Py_CLEAR(w->obj);
    Py_CLEAR(w->fd);
    Py_CLEAR(w->handle);
    return 0;
}

static void
sockwait_dealloc(cl_sockwait *w)
{
    PyTypeObject *tp = Py_TYPE(w);
    PyObject_GC_UnTrack(w);
    (void)sockwait_clear(w);
    PyObject_GC_Del(w);
    Py_DECREF(tp);
}

static PyMemberDef sockwait_members[] = {
    {"__vectorcalloffset__", Py_T_PYSSIZET,
     offsetof(cl_sockwait, vectorcall), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot sockwait_slots[] = {
    {Py_tp_dealloc, sockwait_dealloc},
    {Py_tp_traverse, sockwait_traverse},
    {Py_tp_clear, sockwait_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, sockwait_members},
    {Py_tp_doc, "One sock_*() operation waiting for its socket."},
    {0, NULL},
};

static PyType_Spec sockwait_spec = {
    .name = "cloop._cloop.SockWait",
    .basicsize = sizeof(cl_sockwait),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = sockwait_slots,
};

/* --- waiting ----------------------------------------------------------- */

/* asyncio's wait path: fut = create_future(), the transport check on fd,
 * the reader or writer, the done callback.  Returns fut.  Steals obj. */
static PyObject *
wait_start(cl_loop *loop, int kind, PyObject *sock, PyObject *obj,
           Py_ssize_t n, PyObject *fd)
{
    cl_state *st = loop->state;
    PyObject *args[1] = {(PyObject *)loop};
    PyObject *fut = PyObject_VectorcallMethod(st->str_create_future, args, 1,
                                              NULL);
    if (fut == NULL) {
        Py_XDECREF(obj);
        return NULL;
    }
    cl_sockwait *w = NULL;
    if (cl_poll_ensure_no_transport(loop, fd) < 0) {
        goto error;
    }
    w = PyObject_GC_New(cl_sockwait, st->SockWaitType);
    if (w == NULL) {
        goto error;
    }
    w->vectorcall = sockwait_vectorcall;
    w->loop = (cl_loop *)Py_NewRef(loop);
    w->fut = Py_NewRef(fut);
    w->sock = Py_NewRef(sock);
    w->obj = obj;
    obj = NULL;
    w->fd = Py_NewRef(fd);
    w->handle = NULL;
    w->n = n;
    w->kind = kind;
    PyObject_GC_Track(w);
    w->handle = cl_poll_add_handle(loop, kind == SW_SENDALL ? 1 : 0, fd,
                                   (PyObject *)w);
    if (w->handle == NULL) {
        goto error;
    }
    PyObject *r = call_method1(st->str_add_done_callback, fut, (PyObject *)w);
    if (r == NULL) {
        goto error;
    }
    Py_DECREF(r);
    Py_DECREF(w);
    return fut;
error:
    Py_XDECREF(obj);
    Py_XDECREF(w);
    Py_DECREF(fut);
    return NULL;
}

/* --- the loop's methods ------------------------------------------------ */

static int
check_args(Py_ssize_t nargs, const char *name)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 2 arguments (%zd given)",
                     name, nargs);
        return -1;
    }
    return 0;
}

/* Nothing to read yet: asyncio's wait on a non-blocking socket, the
 * Python path (NotImplemented) on a blocking one or one with a timeout.
 * obj is borrowed.  NULL with an exception on failure. */
static PyObject *
recv_not_ready(cl_loop *self, int kind, PyObject *sock, PyObject *obj,
               Py_ssize_t n, PyObject *fdobj)
{
    int nb = sock_nonblocking(self->state, sock);
    if (nb < 0) {
        return NULL;
    }
    if (nb == 0 || nb == CL_BLOCKING) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    return wait_start(self, kind, sock, Py_XNewRef(obj), n, fdobj);
}

/* _cl_sock_recv(sock, n) -> bytes | Future | NotImplemented */
static PyObject *
Loop_sock_recv(cl_loop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_args(nargs, "_cl_sock_recv") < 0) {
        return NULL;
    }
    cl_state *st = self->state;
    PyObject *sock = args[0];
    if (Py_TYPE(sock) != (PyTypeObject *)st->socket_type ||
        !PyLong_CheckExact(args[1])) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (check_debug(self, sock) < 0) {
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    if (n < 0) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    int fd, again;
    PyObject *fdobj = sock_fileno(st, sock, &fd);
    if (fdobj == NULL) {
        return NULL;
    }
    PyObject *res = raw_recv(st, fd, n, &again);
    if (res == NULL && again) {
        res = recv_not_ready(self, SW_RECV, sock, NULL, n, fdobj);
    }
    Py_DECREF(fdobj);
    return res;
}

/* _cl_sock_recv_into(sock, buf) -> int | Future | NotImplemented */
static PyObject *
Loop_sock_recv_into(cl_loop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_args(nargs, "_cl_sock_recv_into") < 0) {
        return NULL;
    }
    cl_state *st = self->state;
    PyObject *sock = args[0], *buf = args[1];
    if (Py_TYPE(sock) != (PyTypeObject *)st->socket_type) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (check_debug(self, sock) < 0) {
        return NULL;
    }
    int fd, again;
    PyObject *fdobj = sock_fileno(st, sock, &fd);
    if (fdobj == NULL) {
        return NULL;
    }
    PyObject *res = raw_recv_into(fd, buf, &again);
    if (res == NULL && again == 2) {
        res = Py_NewRef(Py_NotImplemented);
    }
    else if (res == NULL && again) {
        res = recv_not_ready(self, SW_RECV_INTO, sock, buf, 0, fdobj);
    }
    Py_DECREF(fdobj);
    return res;
}

/* _cl_sock_sendall(sock, data) -> None | Future | NotImplemented */
static PyObject *
Loop_sock_sendall(cl_loop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_args(nargs, "_cl_sock_sendall") < 0) {
        return NULL;
    }
    cl_state *st = self->state;
    PyObject *sock = args[0], *data = args[1];
    if (Py_TYPE(sock) != (PyTypeObject *)st->socket_type ||
        !plain_bytes(data)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (check_debug(self, sock) < 0) {
        return NULL;
    }
    int fd;
    PyObject *fdobj = sock_fileno(st, sock, &fd);
    if (fdobj == NULL) {
        return NULL;
    }
    Py_buffer view;
    PyObject *res = NULL;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        goto done;
    }
    Py_ssize_t sent = raw_io(fd, view.buf, (size_t)view.len, 1);
    Py_ssize_t len = view.len;
    PyBuffer_Release(&view);
    if (sent == -1) {
        goto done;
    }
    if (sent == len) {
        res = Py_NewRef(Py_None);
        goto done;
    }
    if (sent == CL_NOT_READY) {
        sent = 0;
    }
    int nb = sock_nonblocking(st, sock);
    if (nb < 0) {
        goto done;
    }
    if (nb != 1 && sent == 0) {
        /* Nothing went: asyncio's send() in the socket's own mode. */
        res = Py_NewRef(Py_NotImplemented);
        goto done;
    }
    PyObject *mv = PyMemoryView_FromObject(data);
    if (mv == NULL) {
        goto done;
    }
    if (nb == CL_BLOCKING) {
        /* asyncio's send() on a blocking socket would have waited to send
         * the rest (up to an interruption): so does the socket's own. */
        PyObject *rest = PySequence_GetSlice(mv, sent, len);
        PyObject *r = NULL;
        if (rest != NULL) {
            r = PyObject_CallMethod(sock, "send", "O", rest);
            Py_DECREF(rest);
        }
        Py_ssize_t more = r == NULL ? -1 : PyLong_AsSsize_t(r);
        Py_XDECREF(r);
        if (more == -1 && PyErr_Occurred()) {
            Py_DECREF(mv);
            goto done;
        }
        sent += more;
        if (sent >= len) {
            Py_DECREF(mv);
            res = Py_NewRef(Py_None);
            goto done;
        }
    }
    res = wait_start(self, SW_SENDALL, sock, mv, sent, fdobj);
done:
    Py_DECREF(fdobj);
    return res;
}

PyMethodDef cl_sock_methods[] = {
    {"_cl_sock_recv", (PyCFunction)(void (*)(void))Loop_sock_recv,
     METH_FASTCALL, NULL},
    {"_cl_sock_recv_into", (PyCFunction)(void (*)(void))Loop_sock_recv_into,
     METH_FASTCALL, NULL},
    {"_cl_sock_sendall", (PyCFunction)(void (*)(void))Loop_sock_sendall,
     METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

int
cl_sock_init(PyObject *module, cl_state *st)
{
    st->SockWaitType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &sockwait_spec,
                                                 NULL);
    if (st->SockWaitType == NULL) {
        return -1;
    }
    PyObject *socket = PyImport_ImportModule("socket");
    if (socket == NULL) {
        return -1;
    }
    st->socket_type = PyObject_GetAttrString(socket, "socket");
    Py_DECREF(socket);
    if (st->socket_type == NULL) {
        return -1;
    }
    st->sock_scratch = PyByteArray_FromStringAndSize(NULL, CL_SCRATCH_SIZE);
    if (st->sock_scratch == NULL) {
        return -1;
    }
    return 0;
}
