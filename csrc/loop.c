/*
 * loop.c: the run loop, the ready queue and timers: cloop's hot path.
 *
 * CoreLoop is the C base of cloop.Loop (which also derives from
 * asyncio.BaseEventLoop, so everything per loop or per error keeps
 * asyncio's own Python).  It owns a uv_loop_t and three libuv handles:
 *
 *   timer    armed for the earliest deadline in the timer heap, only to
 *            bound the poll; due timers are collected by this file, with
 *            the same clock as time.monotonic(), never by libuv's
 *            millisecond clock, so a timer never fires early;
 *   async    wakes a blocked poll from call_soon_threadsafe();
 *   prepare  runs just before the poll and releases the GIL when the poll
 *            may block.  The first callback after the poll (or the return
 *            of uv_run) takes it back: one release per blocking turn.
 *
 * A turn mirrors asyncio's _run_once(): poll (with a zero timeout when
 * callbacks are ready or the loop is stopping), collect due timers into
 * the ready queue, then run exactly the handles that were queued when the
 * pass started.  stop() ends the run after the current pass.  When the
 * turn starts with nothing ready, stream.c may run a read's callback
 * inside the poll, as the pass would have run it first; what it queues
 * waits in the later ring, which joins the ready queue after the pass's
 * handles, and the timers it schedules wait for the next collection.
 *
 * The ready queue is a ring of strong references, mutated only with the
 * GIL held; call_soon_threadsafe() appends to it directly (which keeps
 * asyncio's ordering with call_soon()) and wakes the loop.  The module does
 * not declare free-threading support, so the GIL is that lock.
 */
#include "cloop.h"

#include <errno.h>
#include <math.h>
#include <time.h>
#include <unistd.h>

double
cl_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* The same arithmetic as time.monotonic(): integer nanoseconds, then
     * one division. */
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    return (double)ns / 1e9;
}

/* --- The ready queue --------------------------------------------------- */

static int
ring_grow(cl_ring *r)
{
    size_t cap = r->cap ? r->cap * 2 : 64;
    PyObject **items = PyMem_Malloc(cap * sizeof(PyObject *));
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < r->len; i++) {
        items[i] = r->items[(r->head + i) & (r->cap - 1)];
    }
    PyMem_Free(r->items);
    r->items = items;
    r->head = 0;
    r->cap = cap;
    return 0;
}

/* On success the ring owns the caller's reference to o. */
static inline int
ring_push(cl_ring *r, PyObject *o)
{
    if (r->len == r->cap && ring_grow(r) < 0) {
        return -1;
    }
    r->items[(r->head + r->len) & (r->cap - 1)] = o;
    r->len++;
    return 0;
}

/* Returns the ring's reference; the ring must not be empty. */
static inline PyObject *
ring_pop(cl_ring *r)
{
    PyObject *o = r->items[r->head];
    r->head = (r->head + 1) & (r->cap - 1);
    r->len--;
    return o;
}

/* Empty the ring.  The references are dropped only after the ring is
 * consistent again, since a decref may run code that schedules more. */
static void
ring_clear(cl_ring *r)
{
    while (r->len > 0) {
        PyObject *o = ring_pop(r);
        Py_DECREF(o);
    }
}

/* Where a handle queued now goes: the ready queue, or the next pass's
 * part of it while a callback runs inside the poll. */
static inline cl_ring *
queue_of(cl_loop *loop)
{
    return loop->defer ? &loop->later : &loop->ready;
}

/* Append the later queue to the ready queue.  -1 with MemoryError, both
 * unchanged. */
static int
ring_move_later(cl_loop *self)
{
    cl_ring *r = &self->ready;
    while (r->cap < r->len + self->later.len) {
        if (ring_grow(r) < 0) {
            return -1;
        }
    }
    while (self->later.len > 0) {
        (void)ring_push(r, ring_pop(&self->later));
    }
    return 0;
}

int
cl_loop_push_ready(cl_loop *loop, PyObject *handle)
{
    Py_INCREF(handle);
    if (ring_push(queue_of(loop), handle) < 0) {
        Py_DECREF(handle);
        return -1;
    }
    return 0;
}

/* --- GIL hand-off ------------------------------------------------------ */

/* cl_acquire() is in cloop.h: dns.c's callbacks take the GIL back too. */

static void
on_prepare_poll(uv_prepare_t *handle)
{
    cl_loop *self = handle->data;
    if (self->may_block && self->saved_tstate == NULL) {
        self->saved_tstate = PyEval_SaveThread();
    }
}

/* The timer and the async handle only end the poll; the work they stand
 * for happens after uv_run returns.  Neither needs the GIL. */
static void
on_timer_wake(uv_timer_t *handle)
{
    cl_loop *self = handle->data;
    self->armed_when = NAN;
}

static void
on_async_wake(uv_async_t *Py_UNUSED(handle))
{
}

/* Keep the first exception raised inside a libuv callback and end uv_run;
 * the run loop re-raises it.  Every libuv callback that can fail ends this
 * way: exceptions never cross libuv. */
void
cl_loop_stash_exception(cl_loop *self)
{
    PyObject *exc = cl_fetch_exc();
    if (self->pending_exc == NULL) {
        self->pending_exc = exc;
    }
    else {
        Py_DECREF(exc);
    }
    uv_stop(self->uvloop);
}

/* The read end of the signal wake-up fd (signal.set_wakeup_fd) became
 * readable: run Python's signal handlers (so Ctrl-C raises
 * KeyboardInterrupt even while the loop sleeps), then the handlers added
 * with add_signal_handler(). */
static void
on_signal_readable(uv_poll_t *handle, int status, int Py_UNUSED(events))
{
    cl_loop *self = handle->data;
    cl_acquire(self);
    if (status < 0) {
        return;
    }
    unsigned char buf[256];
    ssize_t n;
    PyObject *signums = PyBytes_FromStringAndSize(NULL, 0);
    if (signums == NULL) {
        cl_loop_stash_exception(self);
        return;
    }
    for (;;) {
        n = read(handle->io_watcher.fd, buf, sizeof(buf));
        if (n <= 0) {
            break;
        }
        PyObject *chunk = PyBytes_FromStringAndSize((char *)buf, n);
        if (chunk == NULL) {
            break;
        }
        PyBytes_ConcatAndDel(&signums, chunk);
        if (signums == NULL) {
            break;
        }
    }
    if (signums == NULL || PyErr_CheckSignals() < 0) {
        Py_XDECREF(signums);
        cl_loop_stash_exception(self);
        return;
    }
    if (PyBytes_GET_SIZE(signums) > 0) {
        PyObject *res = PyObject_CallMethodOneArg(
            (PyObject *)self, self->state->str_handle_signal, signums);
        if (res == NULL) {
            cl_loop_stash_exception(self);
        }
        Py_XDECREF(res);
    }
    Py_DECREF(signums);
}

/* --- Timers ------------------------------------------------------------ */

void
cl_loop_timer_cancelled(cl_loop *self, cl_timerhandle *th)
{
    cl_timerheap_remove(&self->timers, &th->node);
    /* The heap's reference; the caller still holds one. */
    Py_DECREF(th);
}

/* Move every timer due by now to the ready queue, in (when, seq) order.
 * Timers scheduled by the callbacks that then run wait for the next turn,
 * so a zero-delay re-arm cannot spin; so do those scheduled by callbacks
 * run inside the poll, as asyncio only runs callbacks after collecting. */
static int
collect_due_timers(cl_loop *self)
{
    cl_timer_node *top = cl_timerheap_peek(&self->timers);
    if (top == NULL) {
        return 0;
    }
    double now = cl_monotonic();
    cl_timer_node *aside = NULL;  /* chained through their index */
    int r = 0;
    while (top != NULL && top->key <= now) {
        cl_timerheap_pop(&self->timers);
        if (top->seq >= self->poll_seq) {
            top->index = (size_t)(uintptr_t)aside;
            aside = top;
        }
        /* The heap's reference moves to the ready queue. */
        else if (ring_push(&self->ready, (PyObject *)CL_TIMERHANDLE(top)) <
                 0) {
            Py_DECREF(CL_TIMERHANDLE(top));
            r = -1;
            break;
        }
        top = cl_timerheap_peek(&self->timers);
    }
    /* Back in the heap, which has room for them: they were just in it. */
    while (aside != NULL) {
        cl_timer_node *next = (cl_timer_node *)(uintptr_t)aside->index;
        (void)cl_timerheap_push(&self->timers, aside);
        aside = next;
    }
    return r;
}

/* Choose how the next uv_run polls: not at all when work is waiting,
 * otherwise until the earliest timer, with the uv timer armed for it. */
static uv_run_mode
prepare_poll(cl_loop *self)
{
    if (self->ready.len > 0 || self->stopping) {
        return UV_RUN_NOWAIT;
    }
    cl_timer_node *top = cl_timerheap_peek(&self->timers);
    if (top == NULL) {
        if (uv_is_active((uv_handle_t *)self->timer)) {
            uv_timer_stop(self->timer);
        }
        self->armed_when = NAN;
        return UV_RUN_ONCE;
    }
    if (top->key <= cl_monotonic()) {
        return UV_RUN_NOWAIT;
    }
    if (top->key != self->armed_when) {
        /* libuv fires once uv_now() >= now_at_start + timeout.  uv_now()
         * is the same clock floored to milliseconds, so rounding the
         * timeout up from it never wakes us before the deadline. */
        uv_update_time(self->uvloop);
        double delta_ms = top->key * 1e3 - (double)uv_now(self->uvloop);
        uint64_t timeout;
        if (delta_ms >= 1e15) {
            timeout = (uint64_t)1e15;
        }
        else {
            timeout = (uint64_t)ceil(delta_ms);
        }
        uv_timer_start(self->timer, on_timer_wake, timeout, 0);
        self->armed_when = top->key;
    }
    return UV_RUN_ONCE;
}

/* --- Running ----------------------------------------------------------- */

static int
run_handle_debug(cl_loop *self, cl_handle *h)
{
    cl_state *st = self->state;
    PyObject *loop = (PyObject *)self;
    if (PyObject_SetAttr(loop, st->str_current_handle, (PyObject *)h) < 0) {
        return -1;
    }
    double t0 = cl_monotonic();
    int r = cl_handle_run(h);
    double dt = cl_monotonic() - t0;
    PyObject *exc = r < 0 ? cl_fetch_exc() : NULL;

    PyObject *limit = PyObject_GetAttr(loop, st->str_slow_callback_duration);
    double slow = limit ? PyFloat_AsDouble(limit) : -1.0;
    Py_XDECREF(limit);
    if (!PyErr_Occurred() && dt >= slow) {
        PyObject *hook = cl_get_hook(st, "log_slow_callback");
        if (hook != NULL) {
            PyObject *pdt = PyFloat_FromDouble(dt);
            if (pdt != NULL) {
                PyObject *args[3] = {loop, (PyObject *)h, pdt};
                PyObject *res = PyObject_Vectorcall(hook, args, 3, NULL);
                Py_XDECREF(res);
                Py_DECREF(pdt);
            }
            Py_DECREF(hook);
        }
    }
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(loop);
    }
    if (PyObject_SetAttr(loop, st->str_current_handle, Py_None) < 0) {
        PyErr_WriteUnraisable(loop);
    }
    if (exc != NULL) {
        cl_restore_exc(exc);
        return -1;
    }
    return 0;
}

/* Run the first ntodo queued handles: the pass.  Returns -1 with
 * SystemExit or KeyboardInterrupt set; the handles not yet run stay
 * queued, as in asyncio. */
static int
run_ready(cl_loop *self, size_t ntodo)
{
    cl_state *st = self->state;
    while (ntodo-- > 0 && self->ready.len > 0) {
        cl_handle *h = (cl_handle *)ring_pop(&self->ready);
        if (!Py_IS_TYPE(h, st->HandleType) &&
            !Py_IS_TYPE(h, st->TimerHandleType)) {
            /* A stream transport with a read to deliver (stream.c). */
            int r = cl_stream_deliver(self, (PyObject *)h);
            Py_DECREF(h);
            if (r < 0) {
                return -1;
            }
            continue;
        }
        int r = 0;
        if (!h->cancelled) {
            r = self->debug ? run_handle_debug(self, h) : cl_handle_run(h);
        }
        cl_handle_release(self, h);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}

static int
run_turn(cl_loop *self)
{
    /* Writes the last turn coalesced go out before the loop polls. */
    if (self->nflush > 0) {
        cl_stream_flush_all(self);
    }
    uv_run_mode mode = prepare_poll(self);
    self->may_block = mode == UV_RUN_ONCE;
    self->direct = self->ready.len == 0;
    self->poll_seq = self->timer_seq;
    self->turn++;
    uv_run(self->uvloop, mode);
    self->direct = 0;
    self->may_block = 0;
    cl_acquire(self);
    int r = self->pending_exc == NULL ? collect_due_timers(self) : 0;
    /* The pass: the poll's I/O and the due timers, not what callbacks
     * inside the poll queued (asyncio runs those in the next pass). */
    size_t ntodo = self->ready.len;
    if (r == 0 && self->later.len > 0) {
        r = ring_move_later(self);
    }
    if (self->pending_exc != NULL) {
        /* What ended the run wins over a MemoryError here. */
        PyObject *exc = self->pending_exc;
        self->pending_exc = NULL;
        PyErr_Clear();
        cl_restore_exc(exc);
        return -1;
    }
    return r < 0 ? r : run_ready(self, ntodo);
}

/* --- fork() ------------------------------------------------------------ */

/* A loop shares its epoll instance, eventfd and signal pipe with every
 * process forked from the one that made it: a child that registered,
 * unregistered or closed a watcher there would change the parent's loop.
 * So the first time a loop is touched in a child, uv_loop_fork() gives it
 * kernel state of its own; the loop can then be closed (and its handles
 * released) in the child, but not run or given work: its sockets, pipes
 * and pending requests are the parent's. */
unsigned long cl_fork_generation;

void
cl_loop_after_fork(cl_loop *self)
{
    self->fork_gen = cl_fork_generation;
    self->forked = 1;
    self->saved_tstate = NULL;  /* the parent's thread state */
    if (self->uvloop != NULL) {
        (void)uv_loop_fork(self->uvloop);
    }
}

/* RuntimeError('Event loop is closed') unless the loop can take work;
 * every file's entry points check this first. */
int
cl_loop_check_open(cl_loop *self)
{
    cl_loop_check_fork(self);
    if (self->closed || self->uvloop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    if (self->forked) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this event loop was created before os.fork() in "
                        "the parent process; create a new loop in the child");
        return -1;
    }
    return 0;
}

/* Turns until stop(), or exactly one turn when once is set.  Returns -1
 * with the exception that ended the run (SystemExit, KeyboardInterrupt, or
 * one raised inside a libuv callback). */
static PyObject *
run_turns(cl_loop *self, int once)
{
    if (cl_loop_check_open(self) < 0) {
        return NULL;
    }
    Py_INCREF(self);
    int r;
    self->in_run = 1;
    do {
        r = run_turn(self);
    } while (r == 0 && !once && !self->stopping);
    self->in_run = 0;
    if (self->nflush > 0) {
        /* Nothing coalesces outside a run: send what the last turn
         * wrote, keeping the exception that ends the run, if any. */
        PyObject *exc = r < 0 ? cl_fetch_exc() : NULL;
        cl_stream_flush_all(self);
        if (exc != NULL) {
            cl_restore_exc(exc);
        }
    }
    Py_DECREF(self);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _cl_run(): run_forever() (Python) does asyncio's set-up and clean-up
 * around it. */
static PyObject *
Loop_cl_run(cl_loop *self, PyObject *Py_UNUSED(ignored))
{
    return run_turns(self, 0);
}

/* --- Scheduling -------------------------------------------------------- */

/* Parse ([first,] callback, *args, context=None).  first names the one
 * leading argument of call_later()/call_at(), or is NULL for call_soon().
 * Returns 0, or -1 with TypeError. */
static int
parse_callback_args(cl_loop *self, const char *fname, const char *first,
                    Py_ssize_t nargs, PyObject *kwnames, PyObject *const *args,
                    PyObject **context)
{
    Py_ssize_t npos = first != NULL;
    *context = Py_None;
    if (nargs < npos + 1) {
        PyErr_Format(PyExc_TypeError,
                     "%s() missing required positional argument: '%s'",
                     fname, nargs < npos ? first : "callback");
        return -1;
    }
    if (kwnames == NULL) {
        return 0;
    }
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (name != self->state->str_context &&
            PyUnicode_Compare(name, self->state->str_context) != 0) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got an unexpected keyword argument '%S'",
                             fname, name);
            }
            return -1;
        }
        *context = args[nargs + i];
    }
    return 0;
}

/* asyncio checks the thread and the callback only in debug mode. */
static int
debug_checks(cl_loop *self, PyObject *callback, PyObject *method_name,
             int check_thread)
{
    cl_state *st = self->state;
    if (check_thread) {
        PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self,
                                                st->str_check_thread);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    PyObject *r = PyObject_CallMethodObjArgs(
        (PyObject *)self, st->str_check_callback, callback, method_name, NULL);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* A plain handle in the ready queue that only the queue references is
 * part of the loop in all but layout: nobody can reach it any more except
 * through the loop.  Such a handle is untracked by the garbage collector
 * and the loop's traverse reports what it references instead, which takes
 * the thousands of handles a busy producer queues out of every
 * collection.  The rule that keeps this sound: an untracked queued handle
 * has exactly one reference (the queue's) and no weak references, so no
 * new reference can appear, except through the _ready snapshot, which
 * tracks the handles it hands out.  A handle leaving the queue while
 * referenced elsewhere is tracked again (cl_handle_release).
 *
 * call_soon() returns the handle, so it cannot be untracked when queued;
 * the previous one is looked at instead, usually dropped by then. */
static inline void
untrack_queue_tail(cl_loop *self, cl_ring *q)
{
    if (q->len == 0) {
        return;
    }
    PyObject *tail = q->items[(q->head + q->len - 1) & (q->cap - 1)];
    if (Py_REFCNT(tail) == 1 && Py_IS_TYPE(tail, self->state->HandleType) &&
        ((cl_handle *)tail)->weakreflist == NULL &&
        PyObject_GC_IsTracked(tail)) {
        PyObject_GC_UnTrack(tail);
    }
}

static PyObject *
schedule_soon(cl_loop *self, PyObject *const *args, Py_ssize_t nargs,
              PyObject *context)
{
    cl_ring *q = queue_of(self);
    untrack_queue_tail(self, q);
    cl_handle *h = cl_handle_new(self, args[0], args + 1, nargs - 1, context);
    if (h == NULL) {
        return NULL;
    }
    Py_INCREF(h);
    if (ring_push(q, (PyObject *)h) < 0) {
        Py_DECREF(h);
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

static PyObject *
Loop_call_soon(cl_loop *self, PyObject *const *args, size_t nargsf,
               PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context;
    if (parse_callback_args(self, "call_soon", NULL, nargs, kwnames, args,
                            &context) < 0 ||
        cl_loop_check_open(self) < 0) {
        return NULL;
    }
    if (self->debug &&
        debug_checks(self, args[0], self->state->str_call_soon, 1) < 0) {
        return NULL;
    }
    return schedule_soon(self, args, nargs, context);
}

static PyObject *
Loop_call_soon_threadsafe(cl_loop *self, PyObject *const *args,
                          size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context;
    if (parse_callback_args(self, "call_soon_threadsafe", NULL, nargs, kwnames,
                            args, &context) < 0 ||
        cl_loop_check_open(self) < 0) {
        return NULL;
    }
    if (self->debug &&
        debug_checks(self, args[0], self->state->str_call_soon_threadsafe,
                     0) < 0) {
        return NULL;
    }
    PyObject *h = schedule_soon(self, args, nargs, context);
    if (h != NULL && self->thread_id != Py_None &&
        self->thread_ident != PyThread_get_thread_ident()) {
        /* The GIL orders this push before the loop thread looks at the
         * queue again; the send ends a poll that is already blocking. */
        uv_async_send(self->async);
    }
    return h;
}

static PyObject *
schedule_at(cl_loop *self, double when, PyObject *const *args,
            Py_ssize_t nargs, PyObject *context)
{
    cl_timerhandle *th =
        cl_timerhandle_new(self, when, args[0], args + 1, nargs - 1, context);
    if (th == NULL) {
        return NULL;
    }
    if (cl_timerheap_push(&self->timers, &th->node) < 0) {
        Py_DECREF(th);
        return PyErr_NoMemory();
    }
    /* One reference for the heap, one for the caller. */
    Py_INCREF(th);
    return (PyObject *)th;
}

static int
parse_time(PyObject *obj, const char *what, double *out)
{
    if (obj == Py_None) {
        PyErr_Format(PyExc_TypeError, "%s", what);
        return -1;
    }
    *out = PyFloat_AsDouble(obj);
    if (*out == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    return 0;
}

/* asyncio computes loop.time() + delay; for anything but an int or a float
 * that is done the same way, so odd types (Decimal, str) raise the same
 * TypeError. */
static int
deadline_after(PyObject *delay, double *when)
{
    if (delay == Py_None) {
        PyErr_SetString(PyExc_TypeError, "delay must not be None");
        return -1;
    }
    double now = cl_monotonic();
    if (PyFloat_CheckExact(delay) || PyLong_CheckExact(delay)) {
        double d = PyFloat_AsDouble(delay);
        if (d == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        *when = now + d;
        return 0;
    }
    PyObject *pnow = PyFloat_FromDouble(now);
    if (pnow == NULL) {
        return -1;
    }
    PyObject *sum = PyNumber_Add(pnow, delay);
    Py_DECREF(pnow);
    if (sum == NULL) {
        return -1;
    }
    *when = PyFloat_AsDouble(sum);
    Py_DECREF(sum);
    return *when == -1.0 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *
Loop_call_later(cl_loop *self, PyObject *const *args, size_t nargsf,
                PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context;
    double when;
    if (parse_callback_args(self, "call_later", "delay", nargs, kwnames, args,
                            &context) < 0 ||
        deadline_after(args[0], &when) < 0 || cl_loop_check_open(self) < 0) {
        return NULL;
    }
    if (self->debug &&
        debug_checks(self, args[1], self->state->str_call_at, 1) < 0) {
        return NULL;
    }
    return schedule_at(self, when, args + 1, nargs - 1, context);
}

static PyObject *
Loop_call_at(cl_loop *self, PyObject *const *args, size_t nargsf,
             PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context;
    double when;
    if (parse_callback_args(self, "call_at", "when", nargs, kwnames, args,
                            &context) < 0 ||
        parse_time(args[0], "when cannot be None", &when) < 0 ||
        cl_loop_check_open(self) < 0) {
        return NULL;
    }
    if (self->debug &&
        debug_checks(self, args[1], self->state->str_call_at, 1) < 0) {
        return NULL;
    }
    return schedule_at(self, when, args + 1, nargs - 1, context);
}

/* _add_callback(handle): queue an existing handle (signal handlers reuse
 * theirs), as BaseEventLoop._add_callback does. */
static PyObject *
Loop_add_callback(cl_loop *self, PyObject *handle)
{
    if (!PyObject_TypeCheck(handle, self->state->HandleType)) {
        PyErr_Format(PyExc_TypeError, "expected a cloop Handle, got %R",
                     handle);
        return NULL;
    }
    if (!((cl_handle *)handle)->cancelled &&
        cl_loop_push_ready(self, handle) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Loop_write_to_self(cl_loop *self, PyObject *Py_UNUSED(ignored))
{
    if (self->uvloop != NULL) {
        uv_async_send(self->async);
    }
    Py_RETURN_NONE;
}

static PyObject *
Loop_time(cl_loop *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(cl_monotonic());
}

static PyObject *
Loop_stop(cl_loop *self, PyObject *Py_UNUSED(ignored))
{
    self->stopping = 1;
    Py_RETURN_NONE;
}

static PyObject *
Loop_is_running(cl_loop *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->thread_id != Py_None);
}

static PyObject *
Loop_is_closed(cl_loop *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->closed);
}

/* asyncio's C Future calls loop.get_debug() for every future and task it
 * creates, so it must not cost a Python frame. */
static PyObject *
Loop_get_debug_method(cl_loop *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->debug);
}

static PyObject *
Loop_create_future(cl_loop *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *args[2] = {NULL, (PyObject *)self};
    return PyObject_Vectorcall(self->state->Future, args + 1,
                               0 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                               self->state->kwnames_loop);
}

/* create_task(coro, *, name=None, context=None).  With no task factory
 * and debug off, BaseEventLoop.create_task() comes down to
 * Task(coro, loop=self, name=name, context=context); that path is done
 * here without a Python frame.  Anything else (a factory, debug mode,
 * other keywords) goes to BaseEventLoop's own method, so the semantics of
 * the running Python are kept. */
static PyObject *
Loop_create_task(cl_loop *self, PyObject *const *args, size_t nargsf,
                 PyObject *kwnames)
{
    cl_state *st = self->state;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *stack[5];
    int fast = nargs == 1 && nkw <= 2 && self->task_factory == Py_None &&
               !self->debug;
    for (Py_ssize_t i = 0; fast && i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        fast = name == st->str_name || name == st->str_context;
    }
    if (!fast) {
        PyObject *small[8], **full = small;
        if (nargs + nkw + 1 > 8) {
            full = PyMem_Malloc((nargs + nkw + 1) * sizeof(PyObject *));
            if (full == NULL) {
                return PyErr_NoMemory();
            }
        }
        full[0] = (PyObject *)self;
        for (Py_ssize_t i = 0; i < nargs + nkw; i++) {
            full[i + 1] = args[i];
        }
        PyObject *res =
            PyObject_Vectorcall(st->base_create_task, full, nargs + 1, kwnames);
        if (full != small) {
            PyMem_Free(full);
        }
        return res;
    }
    if (cl_loop_check_open(self) < 0) {
        return NULL;
    }
    stack[0] = args[0];
    stack[1] = (PyObject *)self;
    if (nkw == 0) {
        return PyObject_Vectorcall(st->Task, stack, 1, st->kwnames_loop);
    }
    PyObject *names = PyTuple_New(nkw + 1);
    if (names == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(names, 0, Py_NewRef(st->str_loop));
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyTuple_SET_ITEM(names, i + 1,
                         Py_NewRef(PyTuple_GET_ITEM(kwnames, i)));
        stack[i + 2] = args[1 + i];
    }
    PyObject *res = PyObject_Vectorcall(st->Task, stack, 1, names);
    Py_DECREF(names);
    return res;
}

/* --- Signals ----------------------------------------------------------- */

static void
on_handle_free(uv_handle_t *handle)
{
    PyMem_RawFree(handle);
}

static void
stop_signal_poll(cl_loop *self)
{
    cl_loop_check_fork(self);
    if (self->sigpoll != NULL) {
        uv_close((uv_handle_t *)self->sigpoll, on_handle_free);
        self->sigpoll = NULL;
    }
}

/* _cl_watch_signal_fd(fd): watch the read end of the signal wake-up
 * socket (-1 stops watching). */
static PyObject *
Loop_cl_watch_signal_fd(cl_loop *self, PyObject *arg)
{
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (fd > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "fd is greater than INT_MAX");
        return NULL;
    }
    if (cl_loop_check_open(self) < 0) {
        return NULL;
    }
    stop_signal_poll(self);
    if (fd < 0) {
        Py_RETURN_NONE;
    }
    uv_poll_t *poll = PyMem_RawMalloc(sizeof(*poll));
    if (poll == NULL) {
        return PyErr_NoMemory();
    }
    int err = uv_poll_init(self->uvloop, poll, (int)fd);
    if (err < 0) {
        PyMem_RawFree(poll);
        return cl_raise_uv_error(err);
    }
    poll->data = self;
    err = uv_poll_start(poll, UV_READABLE, on_signal_readable);
    if (err < 0) {
        uv_close((uv_handle_t *)poll, on_handle_free);
        return cl_raise_uv_error(err);
    }
    /* The wake-up fd alone does not keep a run going. */
    uv_unref((uv_handle_t *)poll);
    self->sigpoll = poll;
    Py_RETURN_NONE;
}

/* --- Lifecycle --------------------------------------------------------- */

static void
clear_timers(cl_loop *self)
{
    cl_timer_node *node;
    while ((node = cl_timerheap_pop(&self->timers)) != NULL) {
        Py_DECREF(CL_TIMERHANDLE(node));
    }
}

static void
on_walk_close(uv_handle_t *handle, void *Py_UNUSED(arg))
{
    if (!uv_is_closing(handle)) {
        uv_close(handle, on_handle_free);
    }
}

/* Close every libuv handle, let the close callbacks run, and free the
 * uv_loop_t.  Safe to call twice. */
static void
loop_close_uv(cl_loop *self)
{
    self->closed = 1;
    ring_clear(&self->ready);
    ring_clear(&self->later);
    clear_timers(self);
    cl_stream_flush_clear(self);
    if (self->uvloop == NULL) {
        return;
    }
    cl_loop_check_fork(self);
    stop_signal_poll(self);
    cl_poll_close_all(self);
    uv_walk(self->uvloop, on_walk_close, NULL);
    self->timer = NULL;
    self->async = NULL;
    self->prepare = NULL;
    self->may_block = 0;
    /* Work still running on libuv's pool (a DNS lookup) keeps the loop
     * busy; other threads run while close waits for it, and its completion
     * callback takes the GIL back as every callback does. */
    while (uv_loop_close(self->uvloop) == UV_EBUSY) {
        if (self->forked) {
            /* Work queued before the fork runs on the parent's pool and
             * never completes here: run the close callbacks, and if the
             * loop is still busy, leave the uv_loop_t to the process. */
            uv_run(self->uvloop, UV_RUN_NOWAIT);
            if (uv_loop_close(self->uvloop) == UV_EBUSY) {
                self->uvloop = NULL;
                return;
            }
            break;
        }
        self->saved_tstate = PyEval_SaveThread();
        uv_run(self->uvloop, UV_RUN_DEFAULT);
        cl_acquire(self);
    }
    PyMem_RawFree(self->uvloop);
    self->uvloop = NULL;
    cl_stream_spare_clear(self);
}

static PyObject *
Loop_cl_close(cl_loop *self, PyObject *Py_UNUSED(ignored))
{
    if (self->thread_id != Py_None) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Cannot close a running event loop");
        return NULL;
    }
    loop_close_uv(self);
    Py_RETURN_NONE;
}

static int
init_uv(cl_loop *self)
{
    int err;
    self->uvloop = PyMem_RawMalloc(sizeof(uv_loop_t));
    self->timer = PyMem_RawMalloc(sizeof(uv_timer_t));
    self->async = PyMem_RawMalloc(sizeof(uv_async_t));
    self->prepare = PyMem_RawMalloc(sizeof(uv_prepare_t));
    if (!self->uvloop || !self->timer || !self->async || !self->prepare) {
        PyMem_RawFree(self->uvloop);
        PyMem_RawFree(self->timer);
        PyMem_RawFree(self->async);
        PyMem_RawFree(self->prepare);
        self->uvloop = NULL;
        PyErr_NoMemory();
        return -1;
    }
    err = uv_loop_init(self->uvloop);
    if (err < 0) {
        PyMem_RawFree(self->uvloop);
        PyMem_RawFree(self->timer);
        PyMem_RawFree(self->async);
        PyMem_RawFree(self->prepare);
        self->uvloop = NULL;
        cl_raise_uv_error(err);
        return -1;
    }
    self->uvloop->data = self;
    /* These cannot fail on an initialised loop except for the async
     * handle, which needs an eventfd. */
    uv_timer_init(self->uvloop, self->timer);
    self->timer->data = self;
    uv_prepare_init(self->uvloop, self->prepare);
    self->prepare->data = self;
    uv_prepare_start(self->prepare, on_prepare_poll);
    uv_unref((uv_handle_t *)self->prepare);
    err = uv_async_init(self->uvloop, self->async, on_async_wake);
    if (err < 0) {
        PyMem_RawFree(self->async);
        self->async = NULL;
        loop_close_uv(self);
        cl_raise_uv_error(err);
        return -1;
    }
    self->async->data = self;
    return 0;
}

static PyObject *
Loop_tp_new(PyTypeObject *tp, PyObject *Py_UNUSED(args),
            PyObject *Py_UNUSED(kwds))
{
    cl_loop *self = (cl_loop *)tp->tp_alloc(tp, 0);
    if (self == NULL) {
        return NULL;
    }
    self->state = cl_get_state_by_type(tp);
    self->thread_id = Py_NewRef(Py_None);
    self->task_factory = Py_NewRef(Py_None);
    self->armed_when = NAN;
    self->fork_gen = cl_fork_generation;
    if (init_uv(self) < 0) {
        self->closed = 1;
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
ring_traverse(cl_ring *q, visitproc visit, void *arg)
{
    for (size_t i = 0; i < q->len; i++) {
        PyObject *h = q->items[(q->head + i) & (q->cap - 1)];
        /* See untrack_queue_tail(): an untracked handle is the loop's. */
        if (PyObject_GC_IsTracked(h)) {
            Py_VISIT(h);
        }
        else {
            int r = cl_handle_traverse((cl_handle *)h, visit, arg);
            if (r != 0) {
                return r;
            }
        }
    }
    return 0;
}

static int
Loop_tp_traverse(cl_loop *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    int r = ring_traverse(&self->ready, visit, arg);
    if (r == 0) {
        r = ring_traverse(&self->later, visit, arg);
    }
    if (r != 0) {
        return r;
    }
    for (size_t i = 0; i < self->timers.len; i++) {
        Py_VISIT(CL_TIMERHANDLE(self->timers.nodes[i]));
    }
    r = cl_poll_traverse(self, visit, arg);
    if (r == 0) {
        r = cl_stream_flush_traverse(self, visit, arg);
    }
    if (r != 0) {
        return r;
    }
    Py_VISIT(self->pending_exc);
    Py_VISIT(self->thread_id);
    Py_VISIT(self->task_factory);
    return 0;
}

static int
Loop_tp_clear(cl_loop *self)
{
    ring_clear(&self->ready);
    ring_clear(&self->later);
    clear_timers(self);
    cl_poll_close_all(self);
    cl_stream_flush_clear(self);
    Py_CLEAR(self->pending_exc);
    Py_SETREF(self->task_factory, Py_NewRef(Py_None));
    return 0;
}

static void
Loop_tp_dealloc(cl_loop *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    loop_close_uv(self);
    PyMem_Free(self->ready.items);
    self->ready.items = NULL;
    PyMem_Free(self->later.items);
    self->later.items = NULL;
    cl_timerheap_free(&self->timers);
    cl_handle_clear_freelist(self);
    PyMem_Free(self->flushq);
    self->flushq = NULL;
    PyMem_Free(self->owners);
    self->owners = NULL;
    PyMem_RawFree(self->rbuf);
    self->rbuf = NULL;
    cl_stream_spare_clear(self);
    Py_CLEAR(self->pending_exc);
    Py_CLEAR(self->thread_id);
    Py_CLEAR(self->task_factory);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* --- Attributes BaseEventLoop reads and writes ------------------------- */

static int
set_flag(char *flag, PyObject *value)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    int v = PyObject_IsTrue(value);
    if (v < 0) {
        return -1;
    }
    *flag = (char)v;
    return 0;
}

static PyObject *
Loop_get_debug(cl_loop *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->debug);
}

static int
Loop_set_debug(cl_loop *self, PyObject *value, void *Py_UNUSED(closure))
{
    return set_flag(&self->debug, value);
}

static PyObject *
Loop_get_stopping(cl_loop *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->stopping);
}

static int
Loop_set_stopping(cl_loop *self, PyObject *value, void *Py_UNUSED(closure))
{
    return set_flag(&self->stopping, value);
}

static PyObject *
Loop_get_closed(cl_loop *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->closed);
}

static int
Loop_set_closed(cl_loop *self, PyObject *value, void *Py_UNUSED(closure))
{
    /* Only close() marks a loop closed, and a closed loop stays closed. */
    char closed = self->closed;
    if (set_flag(&closed, value) < 0) {
        return -1;
    }
    self->closed |= closed;
    return 0;
}

static PyObject *
Loop_get_thread_id(cl_loop *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->thread_id);
}

static int
Loop_set_thread_id(cl_loop *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    if (value != Py_None) {
        unsigned long ident = PyLong_AsUnsignedLong(value);
        if (ident == (unsigned long)-1 && PyErr_Occurred()) {
            return -1;
        }
        self->thread_ident = ident;
    }
    Py_SETREF(self->thread_id, Py_NewRef(value));
    return 0;
}

static PyObject *
Loop_get_task_factory(cl_loop *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->task_factory);
}

static int
Loop_set_task_factory(cl_loop *self, PyObject *value,
                      void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    Py_SETREF(self->task_factory, Py_NewRef(value));
    return 0;
}

/* _ready and _scheduled: asyncio keeps a deque and a heapq list under
 * these names and some code polls them ("while loop._ready: ...").  cloop
 * answers with snapshots of its C queue and heap, so such code sees the
 * truth; assignments (BaseEventLoop.__init__ makes both) are ignored, and
 * changing a snapshot changes nothing. */
static PyObject *
Loop_get_ready(cl_loop *self, void *Py_UNUSED(closure))
{
    PyObject *list = PyList_New((Py_ssize_t)(self->ready.len +
                                             self->later.len));
    if (list == NULL) {
        return NULL;
    }
    Py_ssize_t n = 0;
    for (cl_ring *q = &self->ready; q != NULL;
         q = q == &self->ready ? &self->later : NULL) {
        for (size_t i = 0; i < q->len; i++) {
            PyObject *h = q->items[(q->head + i) & (q->cap - 1)];
            /* The snapshot shares the handle: it is no longer the loop's
             * alone (see untrack_queue_tail()). */
            if (!PyObject_GC_IsTracked(h)) {
                PyObject_GC_Track(h);
            }
            PyList_SET_ITEM(list, n++, Py_NewRef(h));
        }
    }
    return list;
}

static PyObject *
Loop_get_scheduled(cl_loop *self, void *Py_UNUSED(closure))
{
    PyObject *list = PyList_New((Py_ssize_t)self->timers.len);
    if (list == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < self->timers.len; i++) {
        PyObject *th = (PyObject *)CL_TIMERHANDLE(self->timers.nodes[i]);
        PyList_SET_ITEM(list, (Py_ssize_t)i, Py_NewRef(th));
    }
    return list;
}

static int
Loop_set_ignored(cl_loop *Py_UNUSED(self), PyObject *value,
                 void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    return 0;
}

/* _run_once(): one turn, as BaseEventLoop._run_once() is one iteration;
 * code that steps a loop by hand calls it. */
static PyObject *
Loop_run_once(cl_loop *self, PyObject *Py_UNUSED(ignored))
{
    return run_turns(self, 1);
}

static PyMethodDef Loop_methods[] = {
    {"call_soon", (PyCFunction)(void (*)(void))Loop_call_soon,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"call_soon_threadsafe",
     (PyCFunction)(void (*)(void))Loop_call_soon_threadsafe,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"call_later", (PyCFunction)(void (*)(void))Loop_call_later,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"call_at", (PyCFunction)(void (*)(void))Loop_call_at,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"time", (PyCFunction)Loop_time, METH_NOARGS, NULL},
    {"stop", (PyCFunction)Loop_stop, METH_NOARGS, NULL},
    {"is_running", (PyCFunction)Loop_is_running, METH_NOARGS, NULL},
    {"is_closed", (PyCFunction)Loop_is_closed, METH_NOARGS, NULL},
    {"get_debug", (PyCFunction)Loop_get_debug_method, METH_NOARGS, NULL},
    {"create_future", (PyCFunction)Loop_create_future, METH_NOARGS, NULL},
    {"create_task", (PyCFunction)(void (*)(void))Loop_create_task,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_add_callback", (PyCFunction)Loop_add_callback, METH_O, NULL},
    {"_write_to_self", (PyCFunction)Loop_write_to_self, METH_NOARGS, NULL},
    {"_cl_run", (PyCFunction)Loop_cl_run, METH_NOARGS, NULL},
    {"_run_once", (PyCFunction)Loop_run_once, METH_NOARGS, NULL},
    {"_cl_close", (PyCFunction)Loop_cl_close, METH_NOARGS, NULL},
    {"_cl_watch_signal_fd", (PyCFunction)Loop_cl_watch_signal_fd, METH_O,
     NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Loop_getset[] = {
    {"_debug", (getter)Loop_get_debug, (setter)Loop_set_debug, NULL, NULL},
    {"_stopping", (getter)Loop_get_stopping, (setter)Loop_set_stopping, NULL,
     NULL},
    {"_closed", (getter)Loop_get_closed, (setter)Loop_set_closed, NULL,
     NULL},
    {"_thread_id", (getter)Loop_get_thread_id, (setter)Loop_set_thread_id,
     NULL, NULL},
    {"_ready", (getter)Loop_get_ready, (setter)Loop_set_ignored, NULL, NULL},
    {"_scheduled", (getter)Loop_get_scheduled, (setter)Loop_set_ignored,
     NULL, NULL},
    {"_task_factory", (getter)Loop_get_task_factory,
     (setter)Loop_set_task_factory, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Loop_slots[] = {
    {Py_tp_doc, "The C core of cloop.Loop: run loop, ready queue, timers."},
    {Py_tp_new, Loop_tp_new},
    {Py_tp_dealloc, Loop_tp_dealloc},
    {Py_tp_traverse, Loop_tp_traverse},
    {Py_tp_clear, Loop_tp_clear},
    {Py_tp_methods, Loop_methods},
    {Py_tp_getset, Loop_getset},
    {0, NULL},
};

PyType_Spec cl_loop_spec = {
    .name = "cloop._cloop.CoreLoop",
    .basicsize = sizeof(cl_loop),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = Loop_slots,
};
