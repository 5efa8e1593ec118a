/*
 * poll.c: add_reader()/add_writer()/remove_reader()/remove_writer().
 *
 * asyncio's selector loop keeps one selector key per fd holding a reader
 * and a writer handle; cloop keeps one registration (a poller) per fd
 * holding the same two handles and one uv_poll_t started for the union of
 * the two directions.  Registrations live in an array indexed by fd (as
 * libuv's own watcher table is), reached through loop->pollset, which is
 * allocated with the first registration.  The handles are ordinary cloop
 * Handles made at registration, so the context is copied then, as
 * asyncio's events.Handle(callback, args, loop, None) does.
 *
 * Readiness pushes the handles onto the ready queue from the libuv
 * callback, so they run in the same turn after the poll and before the
 * timers that fell due, in the order asyncio's _process_events() gives.
 * An error status (libuv reports POLLERR as UV_EBADF and stops the
 * handle) counts as ready in every direction, as the epoll selector
 * reports EPOLLERR as both readable and writable; the poll is restarted,
 * so the registration stays level-triggered as in asyncio.
 *
 * libuv aborts the process if epoll_ctl() refuses an fd it queued for
 * watching, which happens when the fd is closed (or reused for something
 * epoll refuses) between uv_poll_start() and the next poll.  Two rules keep
 * that from happening:
 *
 *   - whenever the set of directions changes, the uv_poll_t is closed and
 *     a new one is initialised: uv_poll_init() asks epoll whether it
 *     accepts the fd, so a closed fd or a regular file is refused there
 *     (OSError/PermissionError, like the selector's register() and
 *     modify());
 *   - every (re)started fd is noted in the pollset's "fresh" list, and a
 *     uv_prepare_t (the guard) asks epoll again just before the poll.  An
 *     fd that no longer qualifies has its uv_poll_t stopped: like an fd
 *     closed under epoll in asyncio, the registration stays until removed
 *     but never fires.  The guard touches no Python object; it is started
 *     after loop.c's prepare handle and libuv runs prepare handles newest
 *     first, so it runs before the GIL is released.
 *
 * One exception to the first rule: the uv_poll_t of a sock_*() wait
 * (sock.c) is kept, stopped, from the wait's end until the guard runs, and
 * started again if the next wait on the fd comes in the meantime (see
 * cl_poll_park()); that fd was just read from or written to, and the guard
 * checks it before the poll as any restarted fd.
 *
 * uv_poll_init() makes the fd non-blocking; asyncio's selector never
 * changes the fd's mode, so a blocking fd is put back as it was.
 *
 * A uv_poll_t is allocated on its own and freed by its close callback; its
 * data points to its poller while that exists and is cleared before the
 * poller goes away.
 */
#include "cloop.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#ifdef __linux__
#include <string.h>
#include <sys/epoll.h>
#endif

#define CL_READ 0
#define CL_WRITE 1

typedef struct {
    uv_poll_t *poll;     /* NULL only before poller_update() opens it */
    PyObject *fileobj;   /* as given to the last add, like SelectorKey */
    cl_handle *reader;   /* NULL when no reader */
    cl_handle *writer;   /* NULL when no writer */
    int fd;
    int events;          /* UV_READABLE|UV_WRITABLE started; 0: stopped */
    char parked;         /* no handle, kept for sock.c (cl_poll_park) */
} cl_poller;

struct cl_pollset {
    cl_poller **byfd;    /* cap slots, NULL where no registration */
    int cap;
    Py_ssize_t count;
    uv_prepare_t *guard; /* checks fresh fds just before the poll */
    int *fresh;          /* fds (re)started since the last poll */
    size_t nfresh;
    size_t freshcap;
};

static void
on_poll_close(uv_handle_t *handle)
{
    PyMem_RawFree(handle);
}

static inline int
wanted_events(cl_poller *p)
{
    return (p->reader ? UV_READABLE : 0) | (p->writer ? UV_WRITABLE : 0);
}

static inline cl_poller *
lookup(cl_loop *loop, int fd)
{
    cl_pollset *ps = loop->pollset;
    if (ps == NULL || fd < 0 || fd >= ps->cap) {
        return NULL;
    }
    return ps->byfd[fd];
}

/* Would epoll accept fd now?  Asked exactly as uv_poll_init() asks. */
static int
fd_pollable(cl_loop *loop, int fd)
{
#ifdef __linux__
    struct epoll_event e;
    int epfd = uv_backend_fd(loop->uvloop);
    memset(&e, 0, sizeof(e));
    e.events = EPOLLIN;
    e.data.fd = -1;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) == 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &e);
        return 1;
    }
    return errno == EEXIST;
#else
    return fcntl(fd, F_GETFD) != -1;
#endif
}

static void poller_drop(cl_pollset *ps, cl_poller *p, PyObject **out);

static void
on_poll_guard(uv_prepare_t *handle)
{
    cl_loop *loop = handle->data;
    cl_pollset *ps = loop->pollset;
    for (size_t i = 0; i < ps->nfresh; i++) {
        cl_poller *p = lookup(loop, ps->fresh[i]);
        if (p != NULL && p->parked) {
            /* Not waited on again this turn: gone, as removed.  A parked
             * poller holds no reference. */
            PyObject *refs[3];
            poller_drop(ps, p, refs);
            continue;
        }
        if (p != NULL && p->events != 0 && !fd_pollable(loop, p->fd)) {
            uv_poll_stop(p->poll);
            p->events = 0;
        }
    }
    ps->nfresh = 0;
    uv_prepare_stop(handle);
}

static void on_poll_event(uv_poll_t *handle, int status, int events);

/* Room for one more fd in the guard's list.  Returns 0, or -1 with
 * MemoryError. */
static int
fresh_reserve(cl_pollset *ps)
{
    if (ps->nfresh == ps->freshcap) {
        size_t cap = ps->freshcap ? ps->freshcap * 2 : 16;
        int *fresh = PyMem_Realloc(ps->fresh, cap * sizeof(int));
        if (fresh == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        ps->fresh = fresh;
        ps->freshcap = cap;
    }
    return 0;
}

/* Note fd for the guard, which runs just before the next poll. */
static void
fresh_note(cl_pollset *ps, int fd)
{
    ps->fresh[ps->nfresh++] = fd;
    if (!uv_is_active((uv_handle_t *)ps->guard)) {
        uv_prepare_start(ps->guard, on_poll_guard);
    }
}

/* Start p's poll for events and have the guard check the fd before the
 * next poll.  Returns 0, or -1 with MemoryError. */
static int
poller_start(cl_loop *loop, cl_poller *p, int events)
{
    cl_pollset *ps = loop->pollset;
    if (fresh_reserve(ps) < 0) {
        return -1;
    }
    int err = uv_poll_start(p->poll, events, on_poll_event);
    if (err < 0) {
        cl_raise_uv_error(err);
        return -1;
    }
    p->events = events;
    fresh_note(ps, p->fd);
    return 0;
}

/* A new uv_poll_t for fd, or NULL with OSError (epoll refuses the fd). */
static uv_poll_t *
poll_open(cl_loop *loop, int fd)
{
    uv_poll_t *poll = PyMem_RawMalloc(sizeof(*poll));
    if (poll == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    int flags = fcntl(fd, F_GETFL);
    int err = uv_poll_init(loop->uvloop, poll, fd);
    if (err < 0) {
        PyMem_RawFree(poll);
        cl_raise_uv_error(err);
        return NULL;
    }
    if (flags != -1 && !(flags & O_NONBLOCK)) {
        (void)fcntl(fd, F_SETFL, flags);
    }
    return poll;
}

static void
poll_close(uv_poll_t *poll)
{
    poll->data = NULL;
    uv_close((uv_handle_t *)poll, on_poll_close);
}

/* Forget p and free it.  Its references move to *out (three slots,
 * reader, writer, fileobj) for the caller to drop once the pollset is
 * consistent again: a decref may run arbitrary code. */
static void
poller_drop(cl_pollset *ps, cl_poller *p, PyObject **out)
{
    out[0] = (PyObject *)p->reader;
    out[1] = (PyObject *)p->writer;
    out[2] = p->fileobj;
    ps->byfd[p->fd] = NULL;
    ps->count--;
    if (p->poll != NULL) {
        poll_close(p->poll);
    }
    PyMem_Free(p);
}

static void
drop_refs(PyObject **refs, int n)
{
    for (int i = 0; i < n; i++) {
        Py_XDECREF(refs[i]);
    }
}

/* Make p's poll match its handles after one of them changed: drop p when
 * it has none, else watch through a new uv_poll_t (see the opening
 * comment).  Returns 0, or -1 with an exception once p has been dropped
 * (as the selector unregisters a key its modify() failed on); the
 * references to drop are put in *out either way. */
static int
poller_update(cl_loop *loop, cl_poller *p, PyObject **out)
{
    int events = wanted_events(p);
    out[0] = out[1] = out[2] = NULL;
    if (events == 0) {
        poller_drop(loop->pollset, p, out);
        return 0;
    }
    if (events == p->events) {
        return 0;
    }
    if (p->parked) {
        /* sock.c waits on the fd again in the turn it was parked: the
         * stopped uv_poll_t starts again.  The guard already has the fd
         * in its list and checks it before the poll. */
        p->parked = 0;
        int err = uv_poll_start(p->poll, events, on_poll_event);
        if (err == 0) {
            p->events = events;
            return 0;
        }
        cl_raise_uv_error(err);
        PyObject *exc = cl_fetch_exc();
        poller_drop(loop->pollset, p, out);
        cl_restore_exc(exc);
        return -1;
    }
    if (p->poll != NULL) {
        poll_close(p->poll);
        p->events = 0;
    }
    p->poll = poll_open(loop, p->fd);
    if (p->poll != NULL) {
        p->poll->data = p;
        if (poller_start(loop, p, events) == 0) {
            return 0;
        }
    }
    PyObject *exc = cl_fetch_exc();
    poller_drop(loop->pollset, p, out);
    cl_restore_exc(exc);
    return -1;
}

/* An evil handle's cancel() may run Python (repr in debug mode). */
static int
cancel_handle(PyObject *h)
{
    PyObject *res = PyObject_CallMethod(h, "cancel", NULL);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

static void
on_poll_event(uv_poll_t *handle, int status, int events)
{
    cl_loop *loop = handle->loop->data;
    cl_acquire(loop);
    cl_poller *p = handle->data;
    if (p == NULL) {
        return;
    }
    int fd = p->fd;
    /* Reader, its poller_update() leftovers, writer, its leftovers. */
    PyObject *refs[8] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    if (status < 0) {
        /* POLLERR: libuv stopped the poll.  Ready both ways, and watch
         * again so an error nobody clears keeps reporting, as epoll's
         * level-triggered readiness does in asyncio. */
        events = p->events;
        if (poller_start(loop, p, p->events) < 0) {
            cl_loop_stash_exception(loop);
            return;
        }
    }
    if ((events & UV_READABLE) && p->reader != NULL) {
        if (p->reader->cancelled) {
            refs[0] = (PyObject *)p->reader;
            p->reader = NULL;
            if (poller_update(loop, p, refs + 1) < 0) {
                /* The selector's modify() would raise out of the run
                 * loop; the fd is gone, so drop the error as well. */
                PyErr_Clear();
            }
        }
        else if (cl_loop_push_ready(loop, (PyObject *)p->reader) < 0) {
            cl_loop_stash_exception(loop);
        }
    }
    p = lookup(loop, fd);
    if (p != NULL && (events & UV_WRITABLE) && p->writer != NULL) {
        if (p->writer->cancelled) {
            refs[4] = (PyObject *)p->writer;
            p->writer = NULL;
            if (poller_update(loop, p, refs + 5) < 0) {
                PyErr_Clear();
            }
        }
        else if (cl_loop_push_ready(loop, (PyObject *)p->writer) < 0) {
            cl_loop_stash_exception(loop);
        }
    }
    drop_refs(refs, 8);
}

/* --- fd arguments ------------------------------------------------------ */

/* selectors._fileobj_to_fd() without the range check: an int, or
 * int(obj.fileno()).  Sets *fd (a long, range-checked by the caller). */
static int
fileobj_to_fd(PyObject *obj, long *fd)
{
    PyObject *num;
    if (PyLong_Check(obj)) {
        num = Py_NewRef(obj);
    }
    else {
        PyObject *res = PyObject_CallMethod(obj, "fileno", NULL);
        num = res ? PyNumber_Long(res) : NULL;
        Py_XDECREF(res);
        if (num == NULL) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError) ||
                PyErr_ExceptionMatches(PyExc_TypeError) ||
                PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "Invalid file object: %R",
                             obj);
            }
            return -1;
        }
    }
    *fd = PyLong_AsLong(num);
    Py_DECREF(num);
    if (*fd == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            *fd = LONG_MAX;
            return 0;
        }
        return -1;
    }
    return 0;
}

/* The registration an invalid fd refers to: asyncio's selector looks a
 * file object whose fileno() is now -1 (a closed socket) up by identity.
 * Returns NULL with ValueError when there is none. */
static cl_poller *
lookup_invalid(cl_loop *loop, PyObject *obj, long fd)
{
    cl_pollset *ps = loop->pollset;
    if (fd < 0 && !PyLong_Check(obj) && ps != NULL) {
        for (int i = 0; i < ps->cap; i++) {
            if (ps->byfd[i] != NULL && ps->byfd[i]->fileobj == obj) {
                return ps->byfd[i];
            }
        }
    }
    if (fd < 0) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", fd);
    }
    else {
        PyErr_SetString(PyExc_OverflowError,
                        "Python int too large to convert to C int");
    }
    return NULL;
}

/* --- add / remove ------------------------------------------------------ */

/* A table of pointers indexed by fd, grown (new entries NULL) to hold fd:
 * the pollers' and the transport owners'.  The table, or NULL with
 * MemoryError (the old one is left as it was). */
static void *
fd_table_grow(void *table, int *cap, int fd)
{
    int n = *cap ? *cap : 64;
    while (n <= fd) {
        n = n > INT_MAX / 2 ? INT_MAX : n * 2;
    }
    void **t = PyMem_Realloc(table, (size_t)n * sizeof(void *));
    if (t == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (int i = *cap; i < n; i++) {
        t[i] = NULL;
    }
    *cap = n;
    return t;
}

static int
pollset_reserve(cl_loop *loop, int fd)
{
    cl_pollset *ps = loop->pollset;
    if (ps == NULL) {
        ps = PyMem_Calloc(1, sizeof(*ps));
        if (ps == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        ps->guard = PyMem_RawMalloc(sizeof(uv_prepare_t));
        if (ps->guard == NULL) {
            PyMem_Free(ps);
            PyErr_NoMemory();
            return -1;
        }
        uv_prepare_init(loop->uvloop, ps->guard);
        ps->guard->data = loop;
        uv_unref((uv_handle_t *)ps->guard);
        loop->pollset = ps;
    }
    if (fd >= ps->cap) {
        cl_poller **byfd = fd_table_grow(ps->byfd, &ps->cap, fd);
        if (byfd == NULL) {
            return -1;
        }
        ps->byfd = byfd;
    }
    return 0;
}

/* A new registration for fd, watching nothing yet (poller_update() opens
 * its poll), or NULL with MemoryError. */
static cl_poller *
poller_new(cl_loop *loop, int fd)
{
    if (pollset_reserve(loop, fd) < 0) {
        return NULL;
    }
    cl_poller *p = PyMem_Calloc(1, sizeof(*p));
    if (p == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    p->fd = fd;
    loop->pollset->byfd[fd] = p;
    loop->pollset->count++;
    return p;
}

/* _add_reader()/_add_writer(): register, return the new handle. */
static PyObject *
poll_add_impl(cl_loop *loop, int dir, PyObject *const *args,
              Py_ssize_t nargs, const char *name, int reuse)
{
    if (nargs < 2) {
        PyErr_Format(PyExc_TypeError,
                     "%s() missing required positional argument: '%s'", name,
                     nargs < 1 ? "fd" : "callback");
        return NULL;
    }
    long lfd;
    if (fileobj_to_fd(args[0], &lfd) < 0 || cl_loop_check_open(loop) < 0) {
        return NULL;
    }
    cl_poller *p;
    if (lfd < 0 || lfd > INT_MAX) {
        p = lookup_invalid(loop, args[0], lfd);
        if (p == NULL) {
            return NULL;
        }
    }
    else {
        p = lookup(loop, (int)lfd);
    }
    cl_handle *h = cl_handle_new(loop, args[1], args + 2, nargs - 2, Py_None);
    if (h == NULL) {
        return NULL;
    }
    if (p != NULL && p->parked && !reuse) {
        /* Only sock.c's next wait takes a parked poller over; any other
         * registration starts afresh, as after remove_reader(). */
        PyObject *refs[3];
        poller_drop(loop->pollset, p, refs);
        p = NULL;
    }
    int fresh = p == NULL;
    if (fresh) {
        p = poller_new(loop, (int)lfd);
        if (p == NULL) {
            Py_DECREF(h);
            return NULL;
        }
    }
    cl_handle **slot = dir == CL_READ ? &p->reader : &p->writer;
    cl_handle *old = *slot;
    PyObject *oldobj = p->fileobj;
    *slot = (cl_handle *)Py_NewRef(h);
    p->fileobj = Py_NewRef(args[0]);
    PyObject *refs[3];
    if (poller_update(loop, p, refs) < 0) {
        /* The selector's modify() failed: the key is gone, nothing was
         * cancelled. */
        drop_refs(refs, 3);
        Py_XDECREF(old);
        Py_XDECREF(oldobj);
        Py_DECREF(h);
        return NULL;
    }
    drop_refs(refs, 3);
    Py_XDECREF(oldobj);
    if (old != NULL) {
        int r = cancel_handle((PyObject *)old);
        Py_DECREF(old);
        if (r < 0) {
            Py_DECREF(h);
            return NULL;
        }
    }
    return (PyObject *)h;
}

/* _add_reader()/_add_writer(): register, return the new handle. */
static PyObject *
poll_add(cl_loop *loop, int dir, PyObject *const *args, Py_ssize_t nargs,
         const char *name)
{
    return poll_add_impl(loop, dir, args, nargs, name, 0);
}

/* remove_reader()/remove_writer(): True if a handle was registered. */
static PyObject *
poll_remove(cl_loop *loop, int dir, PyObject *fdobj)
{
    long lfd;
    if (fileobj_to_fd(fdobj, &lfd) < 0) {
        return NULL;
    }
    cl_loop_check_fork(loop);
    if (loop->closed || loop->uvloop == NULL) {
        Py_RETURN_FALSE;
    }
    cl_poller *p;
    if (lfd < 0) {
        p = lookup_invalid(loop, fdobj, lfd);
        if (p == NULL) {
            return NULL;
        }
    }
    else if (lfd > INT_MAX) {
        Py_RETURN_FALSE;
    }
    else {
        p = lookup(loop, (int)lfd);
    }
    if (p == NULL) {
        Py_RETURN_FALSE;
    }
    cl_handle **slot = dir == CL_READ ? &p->reader : &p->writer;
    cl_handle *h = *slot;
    *slot = NULL;
    PyObject *refs[3];
    if (h == NULL) {
        Py_RETURN_FALSE;
    }
    int r = poller_update(loop, p, refs);
    drop_refs(refs, 3);
    if (r == 0) {
        r = cancel_handle((PyObject *)h);
    }
    Py_DECREF(h);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *
Loop_add_reader_private(cl_loop *self, PyObject *const *args,
                        Py_ssize_t nargs)
{
    return poll_add(self, CL_READ, args, nargs, "_add_reader");
}

static PyObject *
Loop_add_writer_private(cl_loop *self, PyObject *const *args,
                        Py_ssize_t nargs)
{
    return poll_add(self, CL_WRITE, args, nargs, "_add_writer");
}

/* --- fds owned by transports ------------------------------------------ */

int
cl_fd_owner_set(cl_loop *loop, int fd, PyObject *transport)
{
    if (fd >= loop->ownercap) {
        PyObject **o = fd_table_grow(loop->owners, &loop->ownercap, fd);
        if (o == NULL) {
            return -1;
        }
        loop->owners = o;
    }
    loop->owners[fd] = transport;
    return 0;
}

void
cl_fd_owner_clear(cl_loop *loop, int fd, PyObject *transport)
{
    if (fd >= 0 && fd < loop->ownercap && loop->owners[fd] == transport) {
        loop->owners[fd] = NULL;
    }
}

/* The transport asyncio's own code registered for fd in the loop's
 * _transports mapping (its datagram transport, which cloop uses for
 * AF_UNIX sockets), as a new reference; NULL if none (or with an
 * exception). */
static PyObject *
python_owner(cl_loop *loop, long fd)
{
    PyObject *dict = PyObject_GenericGetDict((PyObject *)loop, NULL);
    if (dict == NULL) {
        return NULL;
    }
    PyObject *map = PyDict_GetItemWithError(dict, loop->state->str_transports);
    Py_DECREF(dict);
    if (map == NULL) {
        return NULL;
    }
    PyObject *key = PyLong_FromLong(fd);
    if (key == NULL) {
        return NULL;
    }
    PyObject *tr = PyObject_CallMethod(map, "get", "O", key);
    Py_DECREF(key);
    if (tr == Py_None) {
        Py_DECREF(tr);
        return NULL;
    }
    return tr;
}

/* asyncio's _ensure_fd_no_transport(): RuntimeError if the fd belongs to
 * a transport that is not closing. */
static int
ensure_no_transport(cl_loop *loop, PyObject *fdobj)
{
    PyObject *num;
    if (PyLong_Check(fdobj)) {
        num = Py_NewRef(fdobj);
    }
    else {
        PyObject *r = PyObject_CallMethod(fdobj, "fileno", NULL);
        num = r == NULL ? NULL : PyNumber_Long(r);
        Py_XDECREF(r);
        if (num == NULL) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError) ||
                PyErr_ExceptionMatches(PyExc_TypeError) ||
                PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "Invalid file object: %R",
                             fdobj);
            }
            return -1;
        }
    }
    int overflow;
    long fd = PyLong_AsLongAndOverflow(num, &overflow);
    Py_DECREF(num);
    if (fd == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow || fd < 0) {
        return 0;
    }
    PyObject *tr;
    if (fd < loop->ownercap && loop->owners[fd] != NULL) {
        tr = Py_NewRef(loop->owners[fd]);
    }
    else if ((tr = python_owner(loop, fd)) == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *res = PyObject_CallMethod(tr, "is_closing", NULL);
    int closing = res == NULL ? -1 : PyObject_IsTrue(res);
    Py_XDECREF(res);
    if (closing == 0) {
        PyErr_Format(PyExc_RuntimeError,
                     "File descriptor %R is used by transport %R", fdobj, tr);
    }
    Py_DECREF(tr);
    return closing == 1 ? 0 : -1;
}

static PyObject *
Loop_ensure_fd_no_transport(cl_loop *self, PyObject *fd)
{
    if (ensure_no_transport(self, fd) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The public methods check for a transport's fd and return None, as
 * asyncio's do. */
static PyObject *
poll_add_public(cl_loop *self, int dir, PyObject *const *args,
                Py_ssize_t nargs, const char *name)
{
    if (nargs > 0 && ensure_no_transport(self, args[0]) < 0) {
        return NULL;
    }
    PyObject *h = poll_add(self, dir, args, nargs, name);
    if (h == NULL) {
        return NULL;
    }
    Py_DECREF(h);
    Py_RETURN_NONE;
}

static PyObject *
Loop_add_reader(cl_loop *self, PyObject *const *args, Py_ssize_t nargs)
{
    return poll_add_public(self, CL_READ, args, nargs, "add_reader");
}

static PyObject *
Loop_add_writer(cl_loop *self, PyObject *const *args, Py_ssize_t nargs)
{
    return poll_add_public(self, CL_WRITE, args, nargs, "add_writer");
}

static PyObject *
Loop_remove_reader(cl_loop *self, PyObject *fd)
{
    if (ensure_no_transport(self, fd) < 0) {
        return NULL;
    }
    return poll_remove(self, CL_READ, fd);
}

static PyObject *
Loop_remove_writer(cl_loop *self, PyObject *fd)
{
    if (ensure_no_transport(self, fd) < 0) {
        return NULL;
    }
    return poll_remove(self, CL_WRITE, fd);
}

static PyObject *
Loop_remove_reader_private(cl_loop *self, PyObject *fd)
{
    return poll_remove(self, CL_READ, fd);
}

static PyObject *
Loop_remove_writer_private(cl_loop *self, PyObject *fd)
{
    return poll_remove(self, CL_WRITE, fd);
}

/* --- for sock.c ------------------------------------------------------- */

PyObject *
cl_poll_add_handle(cl_loop *loop, int dir, PyObject *fd, PyObject *callback)
{
    PyObject *args[2] = {fd, callback};
    return poll_add_impl(loop, dir == 0 ? CL_READ : CL_WRITE, args, 2,
                         dir == 0 ? "_add_reader" : "_add_writer", 1);
}

/* The done callback of a sock_*() wait, as asyncio's _sock_read_done()
 * and _sock_write_done(): remove_reader(fd) (or remove_writer(fd)), the
 * public method with its transport check.  When handle is fd's only
 * registration, its uv_poll_t is stopped but kept ("parked") until the
 * guard runs just before the next poll: a sock_*() waiting on the fd
 * again in this turn, the usual case for a connection served in a loop,
 * starts it again (cl_poll_add_handle) rather than closing one uv_poll_t
 * and opening the next (four system calls fewer, and no allocation).
 *
 * A parked poller holds no handle and no file object, so every public
 * method sees the fd as unregistered, and any other registration drops
 * it first.  The guard drops it before the poll, so it never lives across
 * a poll: a libuv handle opened on a reused fd number registers with
 * epoll only in the poll, after the parked poller's uv_poll_t has left
 * both epoll and libuv's table (uv_poll_stop() here). */
PyObject *
cl_poll_park(cl_loop *loop, int dir, PyObject *fdobj, PyObject *handle)
{
    if (ensure_no_transport(loop, fdobj) < 0) {
        return NULL;
    }
    cl_loop_check_fork(loop);
    cl_poller *p = NULL;
    if (PyLong_CheckExact(fdobj) && !loop->closed && loop->uvloop != NULL) {
        int overflow;
        long fd = PyLong_AsLongAndOverflow(fdobj, &overflow);
        if (!overflow && fd >= 0 && fd <= INT_MAX) {
            p = lookup(loop, (int)fd);
        }
        PyErr_Clear();
    }
    cl_handle **slot = NULL, *other = NULL;
    if (p != NULL) {
        slot = dir == 0 ? &p->reader : &p->writer;
        other = dir == 0 ? p->writer : p->reader;
    }
    if (p == NULL || *slot != (cl_handle *)handle || other != NULL ||
        p->poll == NULL || p->events == 0 ||
        fresh_reserve(loop->pollset) < 0) {
        PyErr_Clear();
        return poll_remove(loop, dir == 0 ? CL_READ : CL_WRITE, fdobj);
    }
    PyObject *fileobj = p->fileobj;
    *slot = NULL;
    p->fileobj = NULL;
    uv_poll_stop(p->poll);
    p->events = 0;
    p->parked = 1;
    fresh_note(loop->pollset, p->fd);
    Py_XDECREF(fileobj);
    /* remove_reader() would cancel the handle; only sock.c holds it, and
     * it lets go of it now (the callback ignores a late run), so the
     * cancel() call is spared. */
    Py_DECREF(handle);
    Py_RETURN_TRUE;
}

int
cl_poll_ensure_no_transport(cl_loop *loop, PyObject *fd)
{
    return ensure_no_transport(loop, fd);
}

PyMethodDef cl_poll_methods[] = {
    {"add_reader", (PyCFunction)(void (*)(void))Loop_add_reader,
     METH_FASTCALL, "add_reader(fd, callback, *args): watch fd for reading."},
    {"add_writer", (PyCFunction)(void (*)(void))Loop_add_writer,
     METH_FASTCALL, "add_writer(fd, callback, *args): watch fd for writing."},
    {"remove_reader", (PyCFunction)Loop_remove_reader, METH_O,
     "remove_reader(fd) -> bool: stop watching fd for reading."},
    {"remove_writer", (PyCFunction)Loop_remove_writer, METH_O,
     "remove_writer(fd) -> bool: stop watching fd for writing."},
    {"_add_reader", (PyCFunction)(void (*)(void))Loop_add_reader_private,
     METH_FASTCALL, NULL},
    {"_add_writer", (PyCFunction)(void (*)(void))Loop_add_writer_private,
     METH_FASTCALL, NULL},
    {"_remove_reader", (PyCFunction)Loop_remove_reader_private, METH_O,
     NULL},
    {"_remove_writer", (PyCFunction)Loop_remove_writer_private, METH_O,
     NULL},
    {"_ensure_fd_no_transport", (PyCFunction)Loop_ensure_fd_no_transport,
     METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

/* --- Loop lifecycle ---------------------------------------------------- */

int
cl_poll_traverse(cl_loop *loop, visitproc visit, void *arg)
{
    cl_pollset *ps = loop->pollset;
    if (ps == NULL) {
        return 0;
    }
    for (int i = 0; i < ps->cap; i++) {
        cl_poller *p = ps->byfd[i];
        if (p != NULL) {
            Py_VISIT(p->reader);
            Py_VISIT(p->writer);
            Py_VISIT(p->fileobj);
        }
    }
    return 0;
}

/* Close every poll and drop every registration, without cancelling the
 * handles (asyncio's selector.close() forgets its keys the same way).
 * Called when the loop closes and by the loop's tp_clear. */
void
cl_poll_close_all(cl_loop *loop)
{
    cl_pollset *ps = loop->pollset;
    if (ps == NULL) {
        return;
    }
    cl_loop_check_fork(loop);
    /* Detached first: code run by a decref below that registers again
     * (only possible from tp_clear, on a loop still open) starts a new
     * pollset, which the loop's own close then releases. */
    loop->pollset = NULL;
    uv_close((uv_handle_t *)ps->guard, on_poll_close);
    for (int i = 0; i < ps->cap; i++) {
        cl_poller *p = ps->byfd[i];
        if (p != NULL) {
            PyObject *refs[3];
            poller_drop(ps, p, refs);
            drop_refs(refs, 3);
        }
    }
    PyMem_Free(ps->byfd);
    PyMem_Free(ps->fresh);
    PyMem_Free(ps);
}
