/*
 * process.c: child processes over uv_process_t (uv_spawn).
 *
 * loop/_subprocess.py decides what a child gets (argv, environment, cwd,
 * which fd becomes which in the child) and creates the pipes; this file
 * only spawns and watches.  CoreLoop._cl_spawn() takes those decisions as
 * plain values and returns a Process, or None when uv_spawn could not give
 * the child exactly what subprocess.Popen would: then Python spawns with
 * Popen instead (see docs/subprocess.md).  The differences checked here:
 *
 *   - libuv resets every signal below 32 to SIG_DFL in the child and
 *     empties its signal mask.  Popen (restore_signals=True) resets only
 *     SIGPIPE and SIGXFSZ, so a signal the parent ignores stays ignored in
 *     the child (nohup), and the mask is inherited.  If any other signal
 *     is ignored, or the calling thread blocks any signal, Popen is used.
 *   - libuv fails on an fd to inherit that is not open; Popen's child then
 *     simply has that fd closed.  Popen is used.
 *
 * close_fds:  Popen closes every fd above 2 not in pass_fds.  libuv closes
 * nothing, relying on O_CLOEXEC, so an fd made inheritable in the parent
 * would leak into the child.  A pthread_atfork() child handler, armed by
 * a thread-local flag only around uv_spawn() in the spawning thread, marks
 * every fd above 2 close-on-exec in the new child (close_range with
 * CLOSE_RANGE_CLOEXEC).  libuv then clears the flag again on exactly the
 * fds it places (stdio and pass_fds), so only those survive exec.  It runs
 * in the forked child, where only async-signal-safe calls are allowed:
 * close_range() and fcntl() are.
 *
 * Reaping:  libuv installs one SIGCHLD handler and waits for each of its
 * own pids with waitpid(pid, WNOHANG), so it never takes a child that
 * subprocess.Popen or os.fork() made elsewhere in the process.  But a
 * SIGCHLD handler installed later from Python (signal.signal,
 * add_signal_handler, asyncio's SafeChildWatcher) replaces libuv's, and
 * the exits would go unseen.  So each child also gets a pidfd watched
 * with a uv_poll_t (Linux 5.3+): whichever reports first, libuv's exit
 * callback or the pidfd becoming readable (then waitpid(pid, WNOHANG)
 * here), records the return code (negative signal number for a signal,
 * as asyncio reports it), closes both handles (so libuv never waits for
 * that pid again), and queues on_exit(returncode) on the ready queue.  A
 * child someone else reaped first (waitpid(-1) in another watcher) is
 * reported with 255, as asyncio's watchers do.
 *
 * Lifecycle:  the uv_process_t is allocated on its own.  A Process keeps
 * itself alive from a successful spawn until the handle's close callback,
 * so a running child is always watched even if nothing else references
 * it.  _cl_orphan() (used by Loop.close() for children still running)
 * closes the handle early; the caller then reaps the pid some other way.
 */
#include "cloop.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* A pidfd watched for the child's exit (see the file comment). */
typedef struct {
    uv_poll_t poll;            /* first: the loop's walk frees this block */
    int fd;
} cl_pidfd;

typedef struct {
    PyObject_HEAD
    cl_loop *loop;             /* strong */
    uv_process_t *h;           /* NULL once closed or orphaned */
    cl_pidfd *pidfd;           /* NULL if none, or once closed */
    PyObject *on_exit;         /* NULL once scheduled */
    long pid;
    long returncode;
    char exited;
} cl_process;

/* --- close_fds in the forked child ------------------------------------ */

/* Set only by the spawning thread, around uv_spawn(); the child inherits
 * the forking thread's copy. */
static _Thread_local int spawn_close_fds;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_error;

static void
atfork_child(void)
{
    if (!spawn_close_fds) {
        return;
    }
#if defined(__linux__) && defined(SYS_close_range)
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) {
        return;
    }
#endif
    /* Older kernels: mark them one by one, up to the fd limit. */
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) {
        max = 65536;
    }
    for (int fd = 3; fd < max; fd++) {
        int flags = fcntl(fd, F_GETFD);
        if (flags >= 0 && !(flags & FD_CLOEXEC)) {
            (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        }
    }
}

static void
register_atfork(void)
{
    atfork_error = pthread_atfork(NULL, NULL, atfork_child);
}

/* --- Fast-path checks --------------------------------------------------- */

/* Would the child libuv makes differ from Popen's in its signals?  See the
 * file comment.  Returns 1 if it would. */
static int
signals_differ(int restore_signals)
{
    sigset_t mask;
    if (pthread_sigmask(SIG_BLOCK, NULL, &mask) != 0) {
        return 1;
    }
    for (int n = 1; n < 32; n++) {
        if (n == SIGKILL || n == SIGSTOP) {
            continue;
        }
        if (sigismember(&mask, n) == 1) {
            return 1;
        }
        struct sigaction sa;
        if (sigaction(n, NULL, &sa) != 0) {
            continue;
        }
        if (sa.sa_handler == SIG_IGN && !(sa.sa_flags & SA_SIGINFO)) {
            if (restore_signals && (n == SIGPIPE || n == SIGXFSZ)) {
                continue;
            }
            return 1;
        }
    }
    return 0;
}

/* --- Helpers ----------------------------------------------------------- */

/* PyLong_AsInt() is public only from 3.13 on. */
static int
as_int(PyObject *obj, int *out)
{
    long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "signed integer is too large");
        return -1;
    }
    *out = (int)v;
    return 0;
}

static void
on_process_close(uv_handle_t *handle)
{
    cl_process *self = handle->data;
    if (self != NULL) {
        cl_acquire((cl_loop *)handle->loop->data);
        /* The pin taken at spawn. */
        Py_DECREF(self);
    }
    PyMem_RawFree(handle);
}

static void
close_handle(cl_process *self)
{
    uv_process_t *h = self->h;
    if (h == NULL) {
        return;
    }
    self->h = NULL;
    if (self->loop->closed || self->loop->uvloop == NULL) {
        /* Cannot happen while pinned (Loop.close() orphans first); never
         * touch a handle the loop's walk may have freed. */
        return;
    }
    if (!uv_is_closing((uv_handle_t *)h)) {
        uv_close((uv_handle_t *)h, on_process_close);
    }
}

static void
on_pidfd_close(uv_handle_t *handle)
{
    cl_pidfd *p = (cl_pidfd *)handle;
    close(p->fd);
    PyMem_RawFree(p);
}

static void
close_pidfd(cl_process *self)
{
    cl_pidfd *p = self->pidfd;
    if (p == NULL) {
        return;
    }
    self->pidfd = NULL;
    if (self->loop->closed || self->loop->uvloop == NULL) {
        return;
    }
    if (!uv_is_closing((uv_handle_t *)&p->poll)) {
        uv_close((uv_handle_t *)&p->poll, on_pidfd_close);
    }
}

/* The child is gone: record the code, stop watching, queue on_exit. */
static void
process_exited(cl_process *self, long returncode)
{
    cl_loop *loop = self->loop;
    if (self->exited) {
        return;
    }
    self->exited = 1;
    self->returncode = returncode;
    PyObject *on_exit = self->on_exit;
    self->on_exit = NULL;
    if (on_exit != NULL) {
        PyObject *rc = PyLong_FromLong(self->returncode);
        cl_handle *h = rc ? cl_handle_new(loop, on_exit, &rc, 1, NULL) : NULL;
        Py_XDECREF(rc);
        if (h == NULL || cl_loop_push_ready(loop, (PyObject *)h) < 0) {
            cl_loop_stash_exception(loop);
        }
        Py_XDECREF(h);
        Py_DECREF(on_exit);
    }
    close_pidfd(self);
    /* The process handle's close callback drops the pin. */
    close_handle(self);
}

static void
on_process_exit(uv_process_t *handle, int64_t exit_status, int term_signal)
{
    cl_process *self = handle->data;
    cl_acquire(self->loop);
    process_exited(self, term_signal ? -(long)term_signal
                                     : (long)exit_status);
}

static void
on_pidfd_readable(uv_poll_t *handle, int status, int Py_UNUSED(events))
{
    cl_process *self = handle->data;
    cl_acquire(self->loop);
    int wstatus;
    pid_t r;
    do {
        r = waitpid((pid_t)self->pid, &wstatus, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0 && status == 0) {
        return;                 /* not an exit after all */
    }
    long rc = 255;              /* reaped by someone else */
    if (r > 0) {
        if (WIFSIGNALED(wstatus)) {
            rc = -(long)WTERMSIG(wstatus);
        }
        else if (WIFEXITED(wstatus)) {
            rc = WEXITSTATUS(wstatus);
        }
    }
    else if (r == 0) {
        /* The poll failed and the child still runs: libuv's SIGCHLD
         * path is left to report it. */
        close_pidfd(self);
        return;
    }
    process_exited(self, rc);
}

/* Watch a pidfd for the child's exit; without pidfd support (or on any
 * failure) only libuv's SIGCHLD path reports it. */
static void
watch_pidfd(cl_process *self)
{
#if defined(__linux__) && defined(SYS_pidfd_open)
    int fd = (int)syscall(SYS_pidfd_open, (pid_t)self->pid, 0);
    if (fd < 0) {
        return;
    }
    cl_pidfd *p = PyMem_RawMalloc(sizeof(*p));
    if (p == NULL) {
        close(fd);
        return;
    }
    p->fd = fd;
    if (uv_poll_init(self->loop->uvloop, &p->poll, fd) < 0) {
        PyMem_RawFree(p);
        close(fd);
        return;
    }
    p->poll.data = self;
    if (uv_poll_start(&p->poll, UV_READABLE, on_pidfd_readable) < 0) {
        uv_close((uv_handle_t *)&p->poll, on_pidfd_close);
        return;
    }
    self->pidfd = p;
#else
    (void)self;
#endif
}

/* NULL-terminated char * array over a list of bytes (borrowed buffers).
 * Returns NULL with an exception set. */
static char **
bytes_list_to_argv(PyObject *list, const char *what)
{
    if (!PyList_Check(list)) {
        PyErr_Format(PyExc_TypeError, "%s must be a list of bytes", what);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(list);
    char **argv = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    if (argv == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(list, i);
        char *s;
        Py_ssize_t len;
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s must be a list of bytes", what);
            goto error;
        }
        if (PyBytes_AsStringAndSize(item, &s, &len) < 0) {
            goto error;
        }
        if ((size_t)len != strlen(s)) {
            PyErr_SetString(PyExc_ValueError, "embedded null byte");
            goto error;
        }
        argv[i] = s;
    }
    return argv;
error:
    PyMem_Free(argv);
    return NULL;
}

static int
optional_path(PyObject *obj, const char **out)
{
    *out = NULL;
    if (obj == Py_None) {
        return 0;
    }
    if (!PyBytes_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "expected bytes or None");
        return -1;
    }
    *out = PyBytes_AS_STRING(obj);
    if ((size_t)PyBytes_GET_SIZE(obj) != strlen(*out)) {
        PyErr_SetString(PyExc_ValueError, "embedded null byte");
        return -1;
    }
    return 0;
}

/* --- CoreLoop._cl_spawn ------------------------------------------------ */

/* _cl_spawn(file, args, env, cwd, stdio, detached, close_fds,
 *           restore_signals, on_exit) -> Process | None
 *
 * file: bytes; args, env: lists of bytes (env None: inherit); cwd: bytes
 * or None; stdio: tuple of ints, entry i is the parent fd that becomes fd
 * i in the child, or -1 (fds 0-2: /dev/null; above: left alone).  None
 * means the Popen path must be used (see the file comment).  Raises
 * OSError if uv_spawn fails. */
static PyObject *
Loop_cl_spawn(cl_loop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "_cl_spawn() takes 9 arguments");
        return NULL;
    }
    PyObject *file = args[0], *argl = args[1], *envl = args[2];
    PyObject *cwdo = args[3], *stdio = args[4], *on_exit = args[8];
    int detached = PyObject_IsTrue(args[5]);
    int close_fds = PyObject_IsTrue(args[6]);
    int restore = PyObject_IsTrue(args[7]);
    if (detached < 0 || close_fds < 0 || restore < 0) {
        return NULL;
    }
    if (!PyTuple_Check(stdio) || !PyBytes_Check(file) ||
        !PyCallable_Check(on_exit)) {
        PyErr_SetString(PyExc_TypeError, "bad _cl_spawn() arguments");
        return NULL;
    }
    if (cl_loop_check_open(loop) < 0) {
        return NULL;
    }
    if (signals_differ(restore)) {
        Py_RETURN_NONE;
    }

    PyObject *result = NULL;
    char **argv = NULL, **envp = NULL;
    uv_stdio_container_t *cont = NULL;
    uv_process_t *h = NULL;
    const char *cwd, *filename;
    Py_ssize_t nstdio = PyTuple_GET_SIZE(stdio);

    if (optional_path(cwdo, &cwd) < 0 || optional_path(file, &filename) < 0) {
        return NULL;
    }
    argv = bytes_list_to_argv(argl, "args");
    if (argv == NULL) {
        goto done;
    }
    if (envl != Py_None) {
        envp = bytes_list_to_argv(envl, "env");
        if (envp == NULL) {
            goto done;
        }
    }
    cont = PyMem_Calloc((size_t)nstdio + 1, sizeof(*cont));
    if (cont == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nstdio; i++) {
        int fd;
        if (as_int(PyTuple_GET_ITEM(stdio, i), &fd) < 0) {
            goto done;
        }
        if (fd < 0) {
            cont[i].flags = UV_IGNORE;
            continue;
        }
        if (fcntl(fd, F_GETFD) < 0) {
            /* Not open: Popen's child just goes without it. */
            result = Py_NewRef(Py_None);
            goto done;
        }
        cont[i].flags = UV_INHERIT_FD;
        cont[i].data.fd = fd;
    }

    if (close_fds) {
        pthread_once(&atfork_once, register_atfork);
        if (atfork_error != 0) {
            /* Without the hook, close_fds is up to Popen. */
            result = Py_NewRef(Py_None);
            goto done;
        }
    }

    h = PyMem_RawMalloc(sizeof(*h));
    if (h == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    uv_process_options_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.exit_cb = on_process_exit;
    opts.file = filename;
    opts.args = argv;
    opts.env = envp;
    opts.cwd = cwd;
    opts.flags = detached ? UV_PROCESS_DETACHED : 0;
    opts.stdio_count = (int)nstdio;
    opts.stdio = cont;

    cl_process *self =
        PyObject_New(cl_process, loop->state->ProcessType);
    if (self == NULL) {
        goto done;
    }
    self->loop = (cl_loop *)Py_NewRef(loop);
    self->h = NULL;
    self->pidfd = NULL;
    self->on_exit = NULL;
    self->pid = 0;
    self->returncode = 0;
    self->exited = 0;

    spawn_close_fds = close_fds;
    int err = uv_spawn(loop->uvloop, h, &opts);
    spawn_close_fds = 0;
    if (err < 0) {
        /* uv_spawn() registered the handle with the loop even when it
         * fails: it must still be closed (and freed in the callback). */
        h->data = NULL;
        uv_close((uv_handle_t *)h, on_process_close);
        h = NULL;
        Py_DECREF(self);
        cl_raise_uv_error(err);
        goto done;
    }
    h->data = self;
    self->h = h;
    h = NULL;
    self->pid = self->h->pid;
    self->on_exit = Py_NewRef(on_exit);
    /* Pinned until the close callback. */
    Py_INCREF(self);
    watch_pidfd(self);
    result = (PyObject *)self;

done:
    PyMem_RawFree(h);
    PyMem_Free(cont);
    PyMem_Free(argv);
    PyMem_Free(envp);
    return result;
}

/* _cl_spawn_check(fds, restore_signals) -> bool: can uv_spawn give the
 * child what Popen would, for these inherited fds?  The same checks as
 * _cl_spawn() makes, done before Python commits to the fast path (so a
 * fallback to Popen never repeats its warnings or audit events). */
static PyObject *
Loop_cl_spawn_check(cl_loop *Py_UNUSED(loop), PyObject *const *args,
                    Py_ssize_t nargs)
{
    if (nargs != 2 || !PyTuple_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "_cl_spawn_check(fds: tuple, restore_signals)");
        return NULL;
    }
    int restore = PyObject_IsTrue(args[1]);
    if (restore < 0) {
        return NULL;
    }
    if (signals_differ(restore)) {
        Py_RETURN_FALSE;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args[0]); i++) {
        int fd;
        if (as_int(PyTuple_GET_ITEM(args[0], i), &fd) < 0) {
            return NULL;
        }
        if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
            Py_RETURN_FALSE;
        }
    }
    Py_RETURN_TRUE;
}

PyMethodDef cl_process_methods[] = {
    {"_cl_spawn_check",
     (PyCFunction)(void (*)(void))Loop_cl_spawn_check, METH_FASTCALL,
     "_cl_spawn_check(fds, restore_signals) -> bool: can uv_spawn "
     "reproduce Popen here?"},
    {"_cl_spawn", (PyCFunction)(void (*)(void))Loop_cl_spawn, METH_FASTCALL,
     "_cl_spawn(file, args, env, cwd, stdio, detached, close_fds, "
     "restore_signals, on_exit): spawn a child with uv_spawn."},
    {NULL, NULL, 0, NULL},
};

/* --- Process methods --------------------------------------------------- */

/* uv_process_kill(); ProcessLookupError once the child has been reaped,
 * as os.kill() raises for a pid that is gone. */
static PyObject *
Process_kill(cl_process *self, PyObject *arg)
{
    int sig;
    if (as_int(arg, &sig) < 0) {
        return NULL;
    }
    if (self->h == NULL || self->exited || self->loop->closed) {
        errno = ESRCH;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    int err = uv_process_kill(self->h, sig);
    if (err < 0) {
        return cl_raise_uv_error(err);
    }
    Py_RETURN_NONE;
}

/* Stop watching a child still running (the loop is closing): close the
 * handle; the caller reaps the pid.  Returns True if it was running. */
static PyObject *
Process_orphan(cl_process *self, PyObject *Py_UNUSED(ignored))
{
    if (self->h == NULL || self->exited) {
        Py_RETURN_FALSE;
    }
    Py_CLEAR(self->on_exit);
    close_pidfd(self);
    close_handle(self);
    Py_RETURN_TRUE;
}

static PyObject *
Process_get_pid(cl_process *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->pid);
}

static PyObject *
Process_get_returncode(cl_process *self, void *Py_UNUSED(closure))
{
    if (!self->exited) {
        Py_RETURN_NONE;
    }
    return PyLong_FromLong(self->returncode);
}

static PyObject *
Process_repr(cl_process *self)
{
    if (self->exited) {
        return PyUnicode_FromFormat("<cloop Process pid=%ld returncode=%ld>",
                                    self->pid, self->returncode);
    }
    return PyUnicode_FromFormat("<cloop Process pid=%ld running>", self->pid);
}

static void
Process_dealloc(cl_process *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    /* A live handle pins the object, so none is left here. */
    Py_CLEAR(self->on_exit);
    Py_CLEAR(self->loop);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef Process_methods[] = {
    {"kill", (PyCFunction)Process_kill, METH_O,
     "kill(signum): send a signal to the child (uv_process_kill)."},
    {"_cl_orphan", (PyCFunction)Process_orphan, METH_NOARGS,
     "Stop watching the child; True if it was still running."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Process_getset[] = {
    {"pid", (getter)Process_get_pid, NULL, "The child's pid.", NULL},
    {"returncode", (getter)Process_get_returncode, NULL,
     "None while running; the exit status, or -signal.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Process_slots[] = {
    {Py_tp_dealloc, Process_dealloc},
    {Py_tp_repr, Process_repr},
    {Py_tp_methods, Process_methods},
    {Py_tp_getset, Process_getset},
    {Py_tp_doc, "A child process spawned with uv_spawn."},
    {0, NULL},
};

static PyType_Spec Process_spec = {
    .name = "cloop._cloop.Process",
    .basicsize = sizeof(cl_process),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Process_slots,
};

int
cl_process_init(PyObject *module, cl_state *st)
{
    st->ProcessType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &Process_spec, NULL);
    if (st->ProcessType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->ProcessType);
}
