/*
 * fs.c: file operations on libuv's worker pool (cloop.fs).
 *
 * One FsBatch object per call of cloop.fs: it holds N operations, each
 * with its own uv_fs_t, all submitted to libuv at once; libuv's pool
 * (UV_THREADPOOL_SIZE threads) runs them concurrently.  Two operations
 * are chains:
 *
 *   read_file:  open -> fstat -> read ... (until EOF) -> close
 *   write_file: open -> write ... (until all is written) -> close
 *
 * On the worker pool each asynchronous uv_fs_* step would be a trip
 * through the pool and back to the loop thread, so by default a chain
 * runs as one uv_queue_work() job calling the synchronous uv_fs_*
 * functions (one trip per file).  Where libuv serves file requests from
 * io_uring (libuv >= 1.45 and UV_USE_IO_URING, see docs/io_uring.md),
 * a chain is a sequence of asynchronous uv_fs_* requests instead, each
 * step started from the previous one's callback without returning to
 * Python.  Every other operation is one asynchronous uv_fs_* request.  When the last operation
 * of a batch settles, the batch completes one asyncio future (made by
 * loop.create_future()) with the list of per-operation results, each
 * either a value or the OSError the os module would raise.  cloop/fs.py
 * turns that list into a return value or an exception.
 *
 * Lifetime: a batch holds strong references to its loop and future and
 * holds itself (one extra reference) while any request is in flight, so
 * neither the batch nor the loop can go away under a libuv callback.
 * Buffers are raw memory the worker threads may touch without the GIL;
 * Python objects are built only in callbacks, which run in the loop
 * thread with the GIL (cl_acquire()).  Data to write is a bytes object
 * (mutable buffers are copied at submission), kept alive by the batch.
 *
 * Cancellation (FsBatch.cancel()): requests still queued are taken off
 * the pool with uv_cancel(); a request already running finishes, its
 * chain stops there, and an fd it opened is closed at once.  cancel()
 * returns a future that completes when nothing is left in flight, so the
 * caller can wait until every fd is closed.
 *
 * Loop close: loop.c's close runs libuv until no request is active; a
 * callback that finds the loop closed stops its chain the same way and
 * never touches a future (its loop cannot take callbacks any more).
 */
#include "cloop.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The operation kinds; cloop/fs.py has the same numbers. */
typedef enum {
    OP_READ_FILE = 0,  /* (path, name) -> bytes */
    OP_WRITE_FILE = 1, /* (path, name, data, flags, mode) -> None */
    OP_STAT = 2,       /* (path, name, follow_symlinks) -> stat_result */
    OP_UNLINK = 3,     /* (path, name) -> None */
    OP_RMDIR = 4,      /* (path, name) -> None */
    OP_MKDIR = 5,      /* (path, name, mode) -> None */
    OP_RENAME = 6,     /* (path, name, path2, name2) -> None */
    OP_COPYFILE = 7,   /* (path, name, path2, name2) -> None */
    OP_SCANDIR = 8,    /* (path, name, as_bytes) -> list of names */
    OP_OPEN = 9,       /* (path, name, flags, mode) -> int */
    OP_CLOSE = 10,     /* (fd,) -> None */
    OP_READ = 11,      /* (fd, size, offset) -> bytes */
    OP_WRITE = 12,     /* (fd, data, offset) -> int */
    OP_NKINDS
} op_kind;

/* Where a chained operation is. */
typedef enum {
    STEP_FIRST,
    STEP_FSTAT,
    STEP_READ,
    STEP_WRITE,
    STEP_CLOSE,
} op_step;

/* The first read of a file whose size fstat() does not know. */
#define READ_CHUNK 65536

/* The most one read or write request moves (uv_buf_t lengths are
 * unsigned int); a chain simply takes more steps. */
#define MAX_IO ((size_t)1 << 30)

typedef struct cl_fs_batch cl_fs_batch;

typedef struct {
    uv_fs_t req;
    uv_work_t work;      /* a whole chain as one pool job */
    uv_loop_t *uvloop;
    cl_fs_batch *batch;  /* borrowed: the batch owns the op */
    op_kind kind;
    op_step step;
    char busy;           /* req or work is in flight */
    char pooled;         /* the chain runs as one job (work) */
    char done;
    char regular;        /* read_file: a regular file */
    char as_bytes;       /* scandir: names as bytes */
    int err;             /* the first libuv error, 0 if none */
    uv_file fd;          /* -1, or an fd this op opened (and owns) */
    uv_file ufd;         /* close/read/write: the caller's fd */
    int flags;
    int mode;
    int64_t offset;
    PyObject *path;      /* bytes, or NULL for fd ops */
    PyObject *name;      /* what the caller passed, for OSError.filename */
    PyObject *path2;
    PyObject *name2;
    PyObject *data;      /* bytes to write */
    PyObject *result;    /* value or exception, once done */
    char *buf;           /* read buffer (raw memory) */
    size_t cap;
    size_t pos;          /* bytes read or written so far */
    size_t want;         /* bytes asked for by the last read */
    uv_stat_t st;
} fs_op;

struct cl_fs_batch {
    PyObject_HEAD
    cl_loop *loop;       /* strong reference */
    PyObject *future;    /* strong reference */
    PyObject *drained;   /* None, or cancel()'s future */
    Py_ssize_t nops;
    Py_ssize_t pending;  /* ops not yet done */
    char cancelled;
    char pinned;         /* holds a reference to itself */
    fs_op *ops;          /* nops entries, raw memory */
};

static void op_advance(fs_op *op);

/* --- Results ----------------------------------------------------------- */

/* OSError(errno, strerror, filename[, None, filename2]), which the
 * OSError constructor turns into the subclass the os module raises. */
static PyObject *
make_oserror(int err, PyObject *name, PyObject *name2)
{
    int code = -err;
    const char *text = strerror(code);
    if (name2 != NULL && name2 != Py_None) {
        return PyObject_CallFunction(PyExc_OSError, "isOOO", code, text,
                                     name, Py_None, name2);
    }
    if (name != NULL && name != Py_None) {
        return PyObject_CallFunction(PyExc_OSError, "isO", code, text, name);
    }
    return PyObject_CallFunction(PyExc_OSError, "is", code, text);
}

static PyObject *
time_parts(const uv_timespec_t *ts, PyObject **seconds, PyObject **fl,
           PyObject **ns)
{
    /* As posixmodule.c's fill_time(). */
    *seconds = PyLong_FromLongLong((long long)ts->tv_sec);
    *fl = PyFloat_FromDouble((double)ts->tv_sec + ts->tv_nsec * 1e-9);
    PyObject *billion = PyLong_FromLong(1000000000L);
    PyObject *frac = PyLong_FromLong(ts->tv_nsec);
    PyObject *scaled = NULL;
    *ns = NULL;
    if (*seconds && billion && frac) {
        scaled = PyNumber_Multiply(*seconds, billion);
        if (scaled) {
            *ns = PyNumber_Add(scaled, frac);
        }
    }
    Py_XDECREF(billion);
    Py_XDECREF(frac);
    Py_XDECREF(scaled);
    if (*seconds == NULL || *fl == NULL || *ns == NULL) {
        Py_CLEAR(*seconds);
        Py_CLEAR(*fl);
        Py_CLEAR(*ns);
        return NULL;
    }
    return *seconds;
}

static PyObject *
id_value(uint64_t v)
{
    /* posixmodule.c's _PyLong_FromUid(): (uid_t)-1 is -1. */
    if ((uint32_t)v == (uint32_t)-1) {
        return PyLong_FromLong(-1);
    }
    return PyLong_FromUnsignedLongLong(v);
}

/* os.stat_result for a uv_stat_t, with the fields os.stat() fills. */
static PyObject *
make_stat_result(const uv_stat_t *s)
{
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL) {
        return NULL;
    }
    PyObject *type = PyObject_GetAttrString(os, "stat_result");
    Py_DECREF(os);
    if (type == NULL) {
        return NULL;
    }
    PyObject *t[19] = {NULL};
    PyObject *res = NULL;
    t[0] = PyLong_FromLong((long)s->st_mode);
    t[1] = PyLong_FromUnsignedLongLong(s->st_ino);
    t[2] = PyLong_FromUnsignedLongLong(s->st_dev);
    t[3] = PyLong_FromUnsignedLongLong(s->st_nlink);
    t[4] = id_value(s->st_uid);
    t[5] = id_value(s->st_gid);
    t[6] = PyLong_FromLongLong((long long)s->st_size);
    if (!time_parts(&s->st_atim, &t[7], &t[10], &t[13]) ||
        !time_parts(&s->st_mtim, &t[8], &t[11], &t[14]) ||
        !time_parts(&s->st_ctim, &t[9], &t[12], &t[15])) {
        goto done;
    }
    t[16] = PyLong_FromLongLong((long long)s->st_blksize);
    t[17] = PyLong_FromLongLong((long long)s->st_blocks);
    t[18] = PyLong_FromUnsignedLongLong(s->st_rdev);
    PyObject *tuple = PyTuple_New(19);
    if (tuple == NULL) {
        goto done;
    }
    for (int i = 0; i < 19; i++) {
        if (t[i] == NULL) {
            Py_DECREF(tuple);
            goto done;
        }
        PyTuple_SET_ITEM(tuple, i, t[i]);
        t[i] = NULL;
    }
    res = PyObject_CallOneArg(type, tuple);
    Py_DECREF(tuple);
done:
    for (int i = 0; i < 19; i++) {
        Py_XDECREF(t[i]);
    }
    Py_DECREF(type);
    return res;
}

/* The names a finished uv_fs_scandir() found (libuv sorts them). */
static PyObject *
make_names(fs_op *op)
{
    PyObject *names = PyList_New(0);
    if (names == NULL) {
        return NULL;
    }
    uv_dirent_t ent;
    int r;
    while ((r = uv_fs_scandir_next(&op->req, &ent)) != UV_EOF) {
        if (r < 0) {
            Py_DECREF(names);
            return make_oserror(r, op->name, NULL);
        }
        PyObject *item =
            op->as_bytes ? PyBytes_FromString(ent.name)
                         : PyUnicode_DecodeFSDefault(ent.name);
        if (item == NULL || PyList_Append(names, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(item);
    }
    return names;
}

/* The value of a successful op (a new reference), or NULL with an
 * exception set; for an op that failed, its OSError. */
static PyObject *
op_value(fs_op *op)
{
    if (op->err < 0) {
        return make_oserror(op->err, op->name, op->name2);
    }
    switch (op->kind) {
    case OP_READ_FILE:
    case OP_READ:
        return PyBytes_FromStringAndSize(op->buf ? op->buf : "",
                                         (Py_ssize_t)op->pos);
    case OP_STAT:
        return make_stat_result(&op->st);
    case OP_SCANDIR:
        return make_names(op);
    case OP_OPEN:
        return PyLong_FromLong(op->fd);
    case OP_WRITE:
        return PyLong_FromSize_t(op->pos);
    default:
        Py_RETURN_NONE;
    }
}

/* --- Completion -------------------------------------------------------- */

static void
report_error(cl_loop *loop, PyObject *future)
{
    PyObject *exc = cl_fetch_exc();
    PyObject *context = Py_BuildValue(
        "{s:s,s:O,s:O}", "message",
        "Exception while completing a cloop.fs future", "exception",
        exc ? exc : Py_None, "future", future ? future : Py_None);
    PyObject *res = NULL;
    if (context != NULL) {
        res = PyObject_CallMethod((PyObject *)loop, "call_exception_handler",
                                  "(O)", context);
        Py_DECREF(context);
    }
    if (res == NULL) {
        PyErr_WriteUnraisable((PyObject *)loop);
    }
    Py_XDECREF(res);
    Py_XDECREF(exc);
}

/* future.set_result(value) unless the future is done already; returns
 * 1 when the value was delivered. */
static int
settle(cl_loop *loop, PyObject *future, PyObject *value)
{
    PyObject *done = PyObject_CallMethod(future, "done", NULL);
    int isdone = done != NULL ? PyObject_IsTrue(done) : -1;
    Py_XDECREF(done);
    if (isdone == 0) {
        PyObject *res =
            PyObject_CallMethod(future, "set_result", "(O)", value);
        if (res == NULL) {
            isdone = -1;
        }
        Py_XDECREF(res);
    }
    if (isdone < 0) {
        report_error(loop, future);
    }
    return isdone == 0;
}

/* Close an fd left open by an op that stops early (cancelled, or its
 * loop closed).  Synchronous: closing a file is quick and must happen
 * whatever comes next. */
static void
op_close_now(fs_op *op)
{
    if (op->fd >= 0) {
        (void)close(op->fd);
        op->fd = -1;
    }
}

/* The last op settled: complete the futures and drop the pin.  The
 * batch may be freed on return. */
static void
batch_complete(cl_fs_batch *b)
{
    cl_loop *loop = b->loop;
    int delivered = 0;
    if (!loop->closed) {
        if (!b->cancelled) {
            PyObject *list = PyList_New(b->nops);
            if (list == NULL) {
                report_error(loop, b->future);
            }
            else {
                for (Py_ssize_t i = 0; i < b->nops; i++) {
                    PyObject *r = b->ops[i].result;
                    PyList_SET_ITEM(list, i, Py_NewRef(r ? r : Py_None));
                }
                delivered = settle(loop, b->future, list);
                Py_DECREF(list);
            }
        }
        if (b->drained != Py_None) {
            (void)settle(loop, b->drained, Py_None);
        }
    }
    if (!delivered) {
        /* Nobody gets the fds open() opened (the future was cancelled
         * before cancel() reached the batch, or the loop closed): close
         * them rather than leak them. */
        for (Py_ssize_t i = 0; i < b->nops; i++) {
            if (b->ops[i].kind == OP_OPEN) {
                op_close_now(&b->ops[i]);
            }
        }
    }
    if (b->pinned) {
        b->pinned = 0;
        Py_DECREF(b);
    }
}

static void
op_finish(fs_op *op)
{
    cl_fs_batch *b = op->batch;
    op->done = 1;
    if (!b->cancelled && !b->loop->closed) {
        PyObject *value = op_value(op);
        if (value == NULL) {
            value = cl_fetch_exc();
        }
        op->result = value;
    }
    if (op->kind == OP_SCANDIR || op->kind == OP_STAT) {
        uv_fs_req_cleanup(&op->req);
    }
    PyMem_RawFree(op->buf);
    op->buf = NULL;
    if (--b->pending == 0) {
        batch_complete(b);
    }
}

/* Go on to closing the fd (a chain's last step), keeping the first
 * error. */
static void
op_to_close(fs_op *op, int err)
{
    if (op->err == 0) {
        op->err = err;
    }
    op->step = STEP_CLOSE;
}

static void
on_fs_done(uv_fs_t *req)
{
    fs_op *op = req->data;
    cl_fs_batch *b = op->batch;
    ssize_t r = req->result;
    cl_acquire(b->loop);
    op->busy = 0;
    int stop = b->cancelled || b->loop->closed;

    if (r == UV_ECANCELED) {
        /* Taken off the pool before it started (a close too: then the
         * fd is closed here). */
        uv_fs_req_cleanup(req);
        op->err = UV_ECANCELED;
        op_close_now(op);
        op_finish(op);
        return;
    }
    if (op->step == STEP_CLOSE &&
        (op->kind == OP_READ_FILE || op->kind == OP_WRITE_FILE)) {
        /* Either chain's last step: the close. */
        op->fd = -1;
        if (r < 0 && op->err == 0) {
            op->err = (int)r;
        }
        uv_fs_req_cleanup(req);
        op_finish(op);
        return;
    }
    switch (op->kind) {
    case OP_READ_FILE:
        switch (op->step) {
        case STEP_FIRST:
            if (r < 0) {
                op->err = (int)r;
                op_finish(op);
                return;
            }
            op->fd = (uv_file)r;
            op->step = STEP_FSTAT;
            break;
        case STEP_FSTAT:
            if (r < 0) {
                op_to_close(op, (int)r);
                break;
            }
            if (S_ISDIR(req->statbuf.st_mode)) {
                /* open(dir, "rb") raises IsADirectoryError too. */
                op_to_close(op, UV_EISDIR);
                break;
            }
            /* Files of size 0 (/proc) are read on until EOF. */
            op->st = req->statbuf;
            op->regular = S_ISREG(req->statbuf.st_mode) &&
                          req->statbuf.st_size > 0;
            op->cap = op->regular ? (size_t)req->statbuf.st_size + 1
                                  : READ_CHUNK;
            op->buf = PyMem_RawMalloc(op->cap);
            if (op->buf == NULL) {
                op_to_close(op, UV_ENOMEM);
                break;
            }
            op->step = STEP_READ;
            break;
        case STEP_READ:
            if (r < 0) {
                op_to_close(op, (int)r);
                break;
            }
            op->pos += (size_t)r;
            /* A short read of a regular file once fstat()'s size is in
             * is its end; anything else reads on until read() returns
             * 0, as io.FileIO.readall() does. */
            if (r == 0 || (op->regular && (size_t)r < op->want &&
                           op->pos >= (size_t)op->st.st_size)) {
                op->step = STEP_CLOSE;
            }
            else if (op->pos == op->cap) {
                size_t cap = op->cap * 2;
                char *buf = PyMem_RawRealloc(op->buf, cap);
                if (buf == NULL) {
                    op_to_close(op, UV_ENOMEM);
                    break;
                }
                op->buf = buf;
                op->cap = cap;
            }
            break;
        default:
            break;
        }
        break;
    case OP_WRITE_FILE:
        switch (op->step) {
        case STEP_FIRST:
            if (r < 0) {
                op->err = (int)r;
                op_finish(op);
                return;
            }
            op->fd = (uv_file)r;
            op->step = STEP_WRITE;
            if (op->pos == (size_t)PyBytes_GET_SIZE(op->data)) {
                op->step = STEP_CLOSE;
            }
            break;
        case STEP_WRITE:
            if (r < 0) {
                op_to_close(op, (int)r);
                break;
            }
            op->pos += (size_t)r;
            if (op->pos == (size_t)PyBytes_GET_SIZE(op->data)) {
                op->step = STEP_CLOSE;
            }
            break;
        default:
            break;
        }
        break;
    case OP_OPEN:
        if (r >= 0) {
            op->fd = (uv_file)r;
            if (stop) {
                op_close_now(op);
            }
        }
        else {
            op->err = (int)r;
        }
        uv_fs_req_cleanup(req);
        op_finish(op);
        return;
    case OP_STAT:
        if (r < 0) {
            op->err = (int)r;
        }
        else {
            op->st = req->statbuf;
        }
        op_finish(op);
        return;
    case OP_READ:
    case OP_WRITE:
        if (r < 0) {
            op->err = (int)r;
        }
        else {
            op->pos = (size_t)r;
        }
        uv_fs_req_cleanup(req);
        op_finish(op);
        return;
    default:
        /* scandir keeps its request until op_finish() has read it. */
        if (r < 0) {
            op->err = (int)r;
        }
        if (op->kind != OP_SCANDIR) {
            uv_fs_req_cleanup(req);
        }
        op_finish(op);
        return;
    }

    /* A chain goes on, unless it is to stop: then its fd is closed now
     * and it ends as cancelled. */
    uv_fs_req_cleanup(req);
    if (stop) {
        op->err = UV_ECANCELED;
        op_close_now(op);
        op_finish(op);
        return;
    }
    op_advance(op);
}

/* --- Whole chains as one pool job ------------------------------------- */

/* The same chains, run in a worker thread with synchronous uv_fs_*
 * calls: one trip through the pool per file instead of one per step.
 * Nothing here touches Python; raw memory only. */

static int
sync_close(fs_op *op, int err)
{
    uv_fs_t req;
    int r = uv_fs_close(op->uvloop, &req, op->fd, NULL);
    uv_fs_req_cleanup(&req);
    op->fd = -1;
    return err < 0 ? err : (r < 0 ? r : 0);
}

static int
sync_read_file(fs_op *op)
{
    uv_fs_t req;
    uv_buf_t buf;
    int r = uv_fs_open(op->uvloop, &req, PyBytes_AS_STRING(op->path),
                       O_RDONLY, 0, NULL);
    uv_fs_req_cleanup(&req);
    if (r < 0) {
        return r;
    }
    op->fd = r;
    r = uv_fs_fstat(op->uvloop, &req, op->fd, NULL);
    op->st = req.statbuf;
    uv_fs_req_cleanup(&req);
    if (r < 0) {
        return sync_close(op, r);
    }
    if (S_ISDIR(op->st.st_mode)) {
        return sync_close(op, UV_EISDIR);
    }
    op->regular = S_ISREG(op->st.st_mode) && op->st.st_size > 0;
    op->cap = op->regular ? (size_t)op->st.st_size + 1 : READ_CHUNK;
    op->buf = PyMem_RawMalloc(op->cap);
    if (op->buf == NULL) {
        return sync_close(op, UV_ENOMEM);
    }
    for (;;) {
        if (op->pos == op->cap) {
            char *bigger = PyMem_RawRealloc(op->buf, op->cap * 2);
            if (bigger == NULL) {
                return sync_close(op, UV_ENOMEM);
            }
            op->buf = bigger;
            op->cap *= 2;
        }
        size_t want = op->cap - op->pos;
        want = want > MAX_IO ? MAX_IO : want;
        buf = uv_buf_init(op->buf + op->pos, (unsigned int)want);
        ssize_t n = uv_fs_read(op->uvloop, &req, op->fd, &buf, 1, -1, NULL);
        uv_fs_req_cleanup(&req);
        if (n < 0) {
            return sync_close(op, (int)n);
        }
        op->pos += (size_t)n;
        /* As the chain: a short read of a regular file once fstat()'s
         * size is in is its end; otherwise read until 0. */
        if (n == 0 || (op->regular && (size_t)n < want &&
                       op->pos >= (size_t)op->st.st_size)) {
            return sync_close(op, 0);
        }
    }
}

static int
sync_write_file(fs_op *op)
{
    uv_fs_t req;
    uv_buf_t buf;
    int r = uv_fs_open(op->uvloop, &req, PyBytes_AS_STRING(op->path),
                       op->flags, op->mode, NULL);
    uv_fs_req_cleanup(&req);
    if (r < 0) {
        return r;
    }
    op->fd = r;
    size_t len = (size_t)PyBytes_GET_SIZE(op->data);
    while (op->pos < len) {
        size_t chunk = len - op->pos;
        chunk = chunk > MAX_IO ? MAX_IO : chunk;
        buf = uv_buf_init(PyBytes_AS_STRING(op->data) + op->pos,
                          (unsigned int)chunk);
        ssize_t n = uv_fs_write(op->uvloop, &req, op->fd, &buf, 1, -1, NULL);
        uv_fs_req_cleanup(&req);
        if (n < 0) {
            return sync_close(op, (int)n);
        }
        op->pos += (size_t)n;
    }
    return sync_close(op, 0);
}

static void
on_chain_work(uv_work_t *work)
{
    fs_op *op = work->data;
    op->err = op->kind == OP_READ_FILE ? sync_read_file(op)
                                       : sync_write_file(op);
}

static void
on_chain_done(uv_work_t *work, int status)
{
    fs_op *op = work->data;
    cl_acquire(op->batch->loop);
    op->busy = 0;
    if (status == UV_ECANCELED) {
        op->err = UV_ECANCELED;
    }
    op_finish(op);
}

/* Submit the request for op's current step.  On a synchronous failure
 * the callback never runs, so the op ends here. */
static void
op_advance(fs_op *op)
{
    uv_loop_t *uvl = op->batch->loop->uvloop;
    uv_fs_t *req = &op->req;
    const char *path = op->path ? PyBytes_AS_STRING(op->path) : NULL;
    const char *path2 = op->path2 ? PyBytes_AS_STRING(op->path2) : NULL;
    uv_buf_t buf;
    size_t len;
    int r;

    req->data = op;
    if (op->pooled) {
        op->work.data = op;
        r = uv_queue_work(uvl, &op->work, on_chain_work, on_chain_done);
        if (r < 0) {
            op->err = r;
            op_finish(op);
            return;
        }
        op->busy = 1;
        return;
    }
    switch (op->step) {
    case STEP_FSTAT:
        r = uv_fs_fstat(uvl, req, op->fd, on_fs_done);
        break;
    case STEP_READ:
        op->want = op->cap - op->pos;
        if (op->want > MAX_IO) {
            op->want = MAX_IO;
        }
        buf = uv_buf_init(op->buf + op->pos, (unsigned int)op->want);
        r = uv_fs_read(uvl, req, op->fd, &buf, 1, -1, on_fs_done);
        break;
    case STEP_WRITE:
        len = (size_t)PyBytes_GET_SIZE(op->data) - op->pos;
        buf = uv_buf_init(PyBytes_AS_STRING(op->data) + op->pos,
                          (unsigned int)(len > MAX_IO ? MAX_IO : len));
        r = uv_fs_write(uvl, req, op->kind == OP_WRITE ? op->ufd : op->fd,
                        &buf, 1,
                        op->kind == OP_WRITE ? op->offset : -1, on_fs_done);
        break;
    case STEP_CLOSE:
        r = uv_fs_close(uvl, req, op->fd, on_fs_done);
        break;
    default:
        switch (op->kind) {
        case OP_READ_FILE:
            r = uv_fs_open(uvl, req, path, O_RDONLY, 0, on_fs_done);
            break;
        case OP_WRITE_FILE:
        case OP_OPEN:
            r = uv_fs_open(uvl, req, path, op->flags, op->mode, on_fs_done);
            break;
        case OP_STAT:
            r = op->flags ? uv_fs_stat(uvl, req, path, on_fs_done)
                          : uv_fs_lstat(uvl, req, path, on_fs_done);
            break;
        case OP_UNLINK:
            r = uv_fs_unlink(uvl, req, path, on_fs_done);
            break;
        case OP_RMDIR:
            r = uv_fs_rmdir(uvl, req, path, on_fs_done);
            break;
        case OP_MKDIR:
            r = uv_fs_mkdir(uvl, req, path, op->mode, on_fs_done);
            break;
        case OP_RENAME:
            r = uv_fs_rename(uvl, req, path, path2, on_fs_done);
            break;
        case OP_COPYFILE:
            r = uv_fs_copyfile(uvl, req, path, path2, 0, on_fs_done);
            break;
        case OP_SCANDIR:
            r = uv_fs_scandir(uvl, req, path, 0, on_fs_done);
            break;
        case OP_CLOSE:
            r = uv_fs_close(uvl, req, op->ufd, on_fs_done);
            break;
        case OP_READ:
            op->cap = op->want;
            op->buf = PyMem_RawMalloc(op->cap ? op->cap : 1);
            if (op->buf == NULL) {
                r = UV_ENOMEM;
                break;
            }
            buf = uv_buf_init(op->buf, (unsigned int)op->cap);
            r = uv_fs_read(uvl, req, op->ufd, &buf, 1, op->offset,
                           on_fs_done);
            break;
        case OP_WRITE:
            op->step = STEP_WRITE;
            op_advance(op);
            return;
        default:
            r = UV_EINVAL;
            break;
        }
        break;
    }
    if (r < 0) {
        uv_fs_req_cleanup(req);
        if (op->step == STEP_FIRST || op->step == STEP_CLOSE ||
            op->kind == OP_WRITE) {
            if (op->err == 0) {
                op->err = r;
            }
            op_close_now(op);
            op_finish(op);
        }
        else {
            /* A chain that cannot take its next step closes its fd. */
            op->err = op->err ? op->err : r;
            op->step = STEP_CLOSE;
            op_advance(op);
        }
        return;
    }
    op->busy = 1;
}

/* --- The FsBatch type -------------------------------------------------- */

static int
Batch_traverse(cl_fs_batch *b, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(b));
    Py_VISIT(b->loop);
    Py_VISIT(b->future);
    Py_VISIT(b->drained);
    for (Py_ssize_t i = 0; i < b->nops; i++) {
        Py_VISIT(b->ops[i].name);
        Py_VISIT(b->ops[i].name2);
        Py_VISIT(b->ops[i].result);
    }
    return 0;
}

static int
Batch_clear(cl_fs_batch *b)
{
    /* Never called while a request is in flight: the batch then holds a
     * reference to itself and is not garbage. */
    for (Py_ssize_t i = 0; i < b->nops; i++) {
        fs_op *op = &b->ops[i];
        Py_CLEAR(op->path);
        Py_CLEAR(op->name);
        Py_CLEAR(op->path2);
        Py_CLEAR(op->name2);
        Py_CLEAR(op->data);
        Py_CLEAR(op->result);
    }
    Py_CLEAR(b->future);
    Py_CLEAR(b->drained);
    Py_CLEAR(b->loop);
    return 0;
}

static void
Batch_dealloc(cl_fs_batch *b)
{
    PyTypeObject *tp = Py_TYPE(b);
    PyObject_GC_UnTrack(b);
    (void)Batch_clear(b);
    for (Py_ssize_t i = 0; i < b->nops; i++) {
        PyMem_RawFree(b->ops[i].buf);
    }
    PyMem_RawFree(b->ops);
    tp->tp_free((PyObject *)b);
    Py_DECREF(tp);
}

/* cancel() -> Future | None: stop the batch.  Requests not started are
 * taken off the pool; the returned future completes once nothing is in
 * flight any more (None when nothing is). */
static PyObject *
Batch_cancel(cl_fs_batch *b, PyObject *Py_UNUSED(ignored))
{
    if (b->pending == 0) {
        Py_RETURN_NONE;
    }
    if (!b->cancelled) {
        b->cancelled = 1;
        for (Py_ssize_t i = 0; i < b->nops; i++) {
            fs_op *op = &b->ops[i];
            if (op->busy && !op->done) {
                (void)uv_cancel(op->pooled ? (uv_req_t *)&op->work
                                           : (uv_req_t *)&op->req);
            }
        }
    }
    if (b->drained == Py_None) {
        PyObject *fut =
            PyObject_CallMethod((PyObject *)b->loop, "create_future", NULL);
        if (fut == NULL) {
            return NULL;
        }
        Py_SETREF(b->drained, fut);
    }
    return Py_NewRef(b->drained);
}

static PyObject *
Batch_get_future(cl_fs_batch *b, void *Py_UNUSED(closure))
{
    return Py_NewRef(b->future ? b->future : Py_None);
}

static PyObject *
Batch_get_pending(cl_fs_batch *b, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(b->pending);
}

static PyMethodDef Batch_methods[] = {
    {"cancel", (PyCFunction)Batch_cancel, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Batch_getset[] = {
    {"future", (getter)Batch_get_future, NULL, NULL, NULL},
    {"pending", (getter)Batch_get_pending, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Batch_slots[] = {
    {Py_tp_dealloc, Batch_dealloc},
    {Py_tp_traverse, Batch_traverse},
    {Py_tp_clear, Batch_clear},
    {Py_tp_methods, Batch_methods},
    {Py_tp_getset, Batch_getset},
    {Py_tp_doc, "A batch of file operations in flight (cloop.fs)."},
    {0, NULL},
};

static PyType_Spec Batch_spec = {
    .name = "cloop._cloop.FsBatch",
    .basicsize = sizeof(cl_fs_batch),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Batch_slots,
};

/* --- Submission -------------------------------------------------------- */

/* A snapshot of a bytes-like object as bytes (bytes itself is kept). */
static PyObject *
snapshot(PyObject *data)
{
    if (PyBytes_CheckExact(data)) {
        return Py_NewRef(data);
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *copy = PyBytes_FromStringAndSize(view.buf, view.len);
    PyBuffer_Release(&view);
    return copy;
}

/* Fill op from one item tuple; see op_kind for the shapes. */
static int
op_parse(fs_op *op, int kind, PyObject *item)
{
    PyObject *path = NULL, *name = NULL, *path2 = NULL, *name2 = NULL;
    PyObject *data = NULL;
    int a = 0, b = 0;
    long long off = -1;
    Py_ssize_t size = 0;

    if (!PyTuple_Check(item)) {
        PyErr_SetString(PyExc_TypeError, "fs item must be a tuple");
        return -1;
    }
    op->kind = (op_kind)kind;
    op->fd = -1;
    op->offset = -1;
    switch (kind) {
    case OP_READ_FILE:
    case OP_UNLINK:
    case OP_RMDIR:
        if (!PyArg_ParseTuple(item, "SO", &path, &name)) {
            return -1;
        }
        break;
    case OP_WRITE_FILE:
        if (!PyArg_ParseTuple(item, "SOOii", &path, &name, &data, &a, &b)) {
            return -1;
        }
        op->flags = a;
        op->mode = b;
        break;
    case OP_STAT:
    case OP_SCANDIR:
    case OP_MKDIR:
        if (!PyArg_ParseTuple(item, "SOi", &path, &name, &a)) {
            return -1;
        }
        op->flags = a;
        op->mode = a;
        op->as_bytes = (char)(a != 0);
        break;
    case OP_RENAME:
    case OP_COPYFILE:
        if (!PyArg_ParseTuple(item, "SOSO", &path, &name, &path2, &name2)) {
            return -1;
        }
        break;
    case OP_OPEN:
        if (!PyArg_ParseTuple(item, "SOii", &path, &name, &a, &b)) {
            return -1;
        }
        op->flags = a;
        op->mode = b;
        break;
    case OP_CLOSE:
        if (!PyArg_ParseTuple(item, "i", &a)) {
            return -1;
        }
        op->ufd = a;
        break;
    case OP_READ:
        if (!PyArg_ParseTuple(item, "inL", &a, &size, &off)) {
            return -1;
        }
        if (size < 0) {
            PyErr_SetString(PyExc_ValueError, "negative buffersize in read");
            return -1;
        }
        /* One read() call returns at most this much on Linux anyway. */
        op->want = (size_t)size > 0x7ffff000 ? 0x7ffff000 : (size_t)size;
        op->ufd = a;
        op->offset = off;
        break;
    case OP_WRITE:
        if (!PyArg_ParseTuple(item, "iOL", &a, &data, &off)) {
            return -1;
        }
        op->ufd = a;
        op->offset = off;
        break;
    default:
        PyErr_Format(PyExc_ValueError, "unknown fs operation %d", kind);
        return -1;
    }
    if (path != NULL) {
        if (strlen(PyBytes_AS_STRING(path)) !=
            (size_t)PyBytes_GET_SIZE(path)) {
            PyErr_SetString(PyExc_ValueError, "embedded null byte");
            return -1;
        }
        op->path = Py_NewRef(path);
        op->name = Py_NewRef(name);
    }
    if (path2 != NULL) {
        if (strlen(PyBytes_AS_STRING(path2)) !=
            (size_t)PyBytes_GET_SIZE(path2)) {
            PyErr_SetString(PyExc_ValueError, "embedded null byte");
            return -1;
        }
        op->path2 = Py_NewRef(path2);
        op->name2 = Py_NewRef(name2);
    }
    if (data != NULL) {
        op->data = snapshot(data);
        if (op->data == NULL) {
            return -1;
        }
        if ((size_t)PyBytes_GET_SIZE(op->data) > 0x7ffff000 &&
            kind == OP_WRITE) {
            /* os.write() too writes at most this much at once. */
            Py_SETREF(op->data,
                      PyBytes_FromStringAndSize(PyBytes_AS_STRING(op->data),
                                                0x7ffff000));
            if (op->data == NULL) {
                return -1;
            }
        }
    }
    return 0;
}

/* _cl_fs_submit(kind, items) -> FsBatch: start one operation of kind per
 * item, all at once. */
static PyObject *
Loop_cl_fs_submit(cl_loop *self, PyObject *args)
{
    int kind, mode = -1;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "iO!|i:_cl_fs_submit", &kind, &PyList_Type,
                          &items, &mode)) {
        return NULL;
    }
    /* How read_file/write_file run: as one pool job each (0), or as
     * chained uv_fs_* requests (1), which io_uring serves without the
     * pool; -1 picks the second only where libuv uses io_uring. */
    int pooled = mode < 0 ? !self->state->fs_uring : mode == 0;
    if (kind < 0 || kind >= OP_NKINDS) {
        PyErr_Format(PyExc_ValueError, "unknown fs operation %d", kind);
        return NULL;
    }
    if (cl_loop_check_open(self) < 0) {
        return NULL;
    }
#ifdef UV_LOOP_USE_IO_URING_SQPOLL
    /* libuv >= 1.49 runs file operations on io_uring only on a loop
     * that asks; cloop asks when UV_USE_IO_URING says so (libuv also
     * checks the variable itself).  Setting the flag again is free. */
    if (self->state->fs_sqpoll && uv_version() >= 0x013100) {
        (void)uv_loop_configure(self->uvloop, UV_LOOP_USE_IO_URING_SQPOLL);
    }
#endif
    PyTypeObject *tp = self->state->FsBatchType;
    cl_fs_batch *b = (cl_fs_batch *)tp->tp_alloc(tp, 0);
    if (b == NULL) {
        return NULL;
    }
    b->loop = (cl_loop *)Py_NewRef(self);
    b->drained = Py_NewRef(Py_None);
    Py_ssize_t n = PyList_GET_SIZE(items);
    b->ops = PyMem_RawCalloc(n ? (size_t)n : 1, sizeof(fs_op));
    if (b->ops == NULL) {
        Py_DECREF(b);
        return PyErr_NoMemory();
    }
    /* Parse every item before anything starts: a bad one fails the call
     * with nothing submitted. */
    for (Py_ssize_t i = 0; i < n; i++) {
        b->nops = i + 1;
        b->ops[i].batch = b;
        b->ops[i].uvloop = self->uvloop;
        b->ops[i].pooled =
            (char)(pooled && (kind == OP_READ_FILE || kind == OP_WRITE_FILE));
        if (op_parse(&b->ops[i], kind, PyList_GET_ITEM(items, i)) < 0) {
            Py_DECREF(b);
            return NULL;
        }
    }
    b->future =
        PyObject_CallMethod((PyObject *)self, "create_future", NULL);
    if (b->future == NULL) {
        Py_DECREF(b);
        return NULL;
    }
    /* pending counts one extra until every op is submitted, so a batch
     * whose ops all fail at once completes only after the loop. */
    b->pending = n + 1;
    b->pinned = 1;
    Py_INCREF(b);
    for (Py_ssize_t i = 0; i < n; i++) {
        op_advance(&b->ops[i]);
    }
    if (--b->pending == 0) {
        batch_complete(b);
    }
    return (PyObject *)b;
}

PyMethodDef cl_fs_methods[] = {
    {"_cl_fs_submit", (PyCFunction)Loop_cl_fs_submit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

int
cl_fs_init(PyObject *module, cl_state *st)
{
    /* libuv's own reading of the variable: atoi() > 0 opts in from
     * 1.49; before, anything but 0 leaves io_uring on (1.45 - 1.48). */
    const char *val = getenv("UV_USE_IO_URING");
    unsigned int version = uv_version();
    st->fs_sqpoll = val != NULL && atoi(val) > 0;
    st->fs_uring = 0;
#if defined(__linux__)
    if (version >= 0x012D00 && version < 0x013100) {
        st->fs_uring = val == NULL || atoi(val) != 0;
    }
#if defined(UV_LOOP_USE_IO_URING_SQPOLL)
    if (version >= 0x013100) {
        st->fs_uring = st->fs_sqpoll;
    }
#endif
#endif
    (void)version;
    st->FsBatchType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &Batch_spec, NULL);
    if (st->FsBatchType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->FsBatchType);
}
