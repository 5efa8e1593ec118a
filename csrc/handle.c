/*
 * handle.c: Handle and TimerHandle, what call_soon()/call_later() return.
 *
 * A handle is a callback, up to CL_INLINE_ARGS arguments stored inline (no
 * tuple per call), and the contextvars.Context it runs in.  Running one is
 * PyContext_Enter + a vectorcall + PyContext_Exit.  The loop recycles plain
 * handles nobody else references into a small per-loop free list, which
 * spares the allocator and the garbage collector's allocation count on the
 * busiest path of the loop.
 *
 * A TimerHandle adds a node in the loop's timer heap; cancelling it
 * removes the node at once.
 *
 * The Python-facing parts follow asyncio.events.Handle: cancel(),
 * cancelled(), get_context(), the private attributes (_callback, _args,
 * _cancelled, ...) that asyncio's own helpers read, and a repr built by
 * the same helpers (cloop/_handles.py).
 */
#include "cloop.h"

#include <math.h>

static void
handle_take_args(cl_handle *h, PyObject *const *args, Py_ssize_t nargs)
{
    h->nargs = nargs;
    h->argv[0] = NULL;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        h->argv[i + 1] = Py_NewRef(args[i]);
    }
}

/* Fill a fresh or recycled handle.  Returns 0, or -1 with an exception set
 * (the handle is then left for the caller to release). */
static int
handle_init(cl_handle *h, PyObject *loop, PyObject *callback,
            PyObject *const *args, Py_ssize_t nargs, PyObject *context,
            int debug)
{
    h->cancelled = 0;
    h->running = 0;
    h->loop = Py_NewRef(loop);
    h->callback = Py_NewRef(callback);
    if (nargs > CL_INLINE_ARGS) {
        h->nargs = nargs;
        h->args_tuple = PyTuple_New(nargs);
        if (h->args_tuple == NULL) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < nargs; i++) {
            PyTuple_SET_ITEM(h->args_tuple, i, Py_NewRef(args[i]));
        }
    }
    else {
        handle_take_args(h, args, nargs);
    }
    if (context == NULL || context == Py_None) {
        h->context = PyContext_CopyCurrent();
        if (h->context == NULL) {
            return -1;
        }
    }
    else {
        h->context = Py_NewRef(context);
    }
    if (debug) {
        cl_state *st = cl_get_state_by_type(Py_TYPE(h));
        PyObject *extract = cl_get_hook(st, "extract_stack");
        if (extract == NULL) {
            return -1;
        }
        h->source_traceback = PyObject_CallNoArgs(extract);
        Py_DECREF(extract);
        if (h->source_traceback == NULL) {
            return -1;
        }
    }
    return 0;
}

/* Move the callback and arguments out of h; the caller drops them. */
typedef struct {
    PyObject *callback;
    PyObject *args_tuple;
    Py_ssize_t nargs;
    PyObject *argv[CL_INLINE_ARGS];
} handle_payload;

static void
handle_take_payload(cl_handle *h, handle_payload *p)
{
    p->callback = h->callback;
    p->args_tuple = h->args_tuple;
    p->nargs = h->args_tuple ? 0 : h->nargs;
    for (Py_ssize_t i = 0; i < p->nargs; i++) {
        p->argv[i] = h->argv[i + 1];
        h->argv[i + 1] = NULL;
    }
    h->callback = NULL;
    h->args_tuple = NULL;
    h->nargs = 0;
}

static void
handle_payload_drop(handle_payload *p)
{
    Py_XDECREF(p->callback);
    Py_XDECREF(p->args_tuple);
    for (Py_ssize_t i = 0; i < p->nargs; i++) {
        Py_DECREF(p->argv[i]);
    }
}

cl_handle *
cl_handle_new(cl_loop *loop, PyObject *callback, PyObject *const *args,
              Py_ssize_t nargs, PyObject *context)
{
    cl_handle *h;
    if (loop->nfree > 0) {
        /* A recycled handle: its fields are all NULL, its one reference
         * was the free list's and is now ours. */
        h = loop->freelist[--loop->nfree];
    }
    else {
        h = PyObject_GC_New(cl_handle, loop->state->HandleType);
        if (h == NULL) {
            return NULL;
        }
        h->callback = h->context = h->loop = NULL;
        h->args_tuple = h->source_traceback = h->repr = NULL;
        h->weakreflist = NULL;
        h->nargs = 0;
    }
    if (handle_init(h, (PyObject *)loop, callback, args, nargs, context,
                    loop->debug) < 0) {
        PyObject_GC_Track(h);
        Py_DECREF(h);
        return NULL;
    }
    PyObject_GC_Track(h);
    return h;
}

cl_timerhandle *
cl_timerhandle_new(cl_loop *loop, double when, PyObject *callback,
                   PyObject *const *args, Py_ssize_t nargs,
                   PyObject *context)
{
    cl_timerhandle *th =
        PyObject_GC_New(cl_timerhandle, loop->state->TimerHandleType);
    if (th == NULL) {
        return NULL;
    }
    cl_handle *h = &th->base;
    h->callback = h->context = h->loop = NULL;
    h->args_tuple = h->source_traceback = h->repr = NULL;
    h->weakreflist = NULL;
    h->nargs = 0;
    th->when = when;
    /* NaN has no place in an ordering; asyncio runs such a timer at once,
     * so it sorts first. */
    th->node.key = isnan(when) ? -INFINITY : when;
    th->node.seq = loop->timer_seq++;
    th->node.index = CL_TIMER_NOT_IN_HEAP;
    PyObject_GC_Track(th);
    if (handle_init(h, (PyObject *)loop, callback, args, nargs, context,
                    loop->debug) < 0) {
        Py_DECREF(th);
        return NULL;
    }
    return th;
}

static int
handle_report_error(cl_handle *h, PyObject *exc)
{
    cl_state *st = cl_get_state_by_type(Py_TYPE(h));
    PyObject *hook = cl_get_hook(st, "callback_error");
    if (hook == NULL) {
        Py_DECREF(exc);
        return -1;
    }
    PyObject *args[2] = {(PyObject *)h, exc};
    PyObject *res = PyObject_Vectorcall(hook, args, 2, NULL);
    Py_DECREF(hook);
    Py_DECREF(exc);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* Run the callback in its context.  An exception goes to the loop's
 * exception handler, except SystemExit and KeyboardInterrupt, which are
 * left set: the return is then -1 and the loop stops running. */
int
cl_handle_run(cl_handle *h)
{
    PyObject *res = NULL;
    /* An evil callback may cancel its own handle, which drops the
     * callback and arguments; the running flag defers that. */
    h->running = 1;
    if (PyContext_Enter(h->context) == 0) {
        if (h->args_tuple == NULL) {
            res = PyObject_Vectorcall(
                h->callback, h->argv + 1,
                (size_t)h->nargs | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        }
        else {
            res = PyObject_Call(h->callback, h->args_tuple, NULL);
        }
        if (res == NULL) {
            PyObject *exc = cl_fetch_exc();
            if (PyContext_Exit(h->context) < 0) {
                PyErr_Clear();
            }
            cl_restore_exc(exc);
        }
        else if (PyContext_Exit(h->context) < 0) {
            Py_CLEAR(res);
        }
    }
    h->running = 0;
    if (h->cancelled && h->callback != NULL) {
        handle_payload p;
        handle_take_payload(h, &p);
        handle_payload_drop(&p);
    }
    if (res != NULL) {
        Py_DECREF(res);
        return 0;
    }
    PyObject *exc = cl_fetch_exc();
    if (cl_exc_is_fatal(exc)) {
        cl_restore_exc(exc);
        return -1;
    }
    if (handle_report_error(h, exc) < 0) {
        exc = cl_fetch_exc();
        if (cl_exc_is_fatal(exc)) {
            cl_restore_exc(exc);
            return -1;
        }
        cl_restore_exc(exc);
        PyErr_WriteUnraisable((PyObject *)h);
    }
    return 0;
}

int
cl_handle_traverse(cl_handle *h, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(h));
    Py_VISIT(h->callback);
    Py_VISIT(h->context);
    Py_VISIT(h->loop);
    Py_VISIT(h->args_tuple);
    Py_VISIT(h->source_traceback);
    Py_VISIT(h->repr);
    if (h->args_tuple == NULL) {
        for (Py_ssize_t i = 0; i < h->nargs; i++) {
            Py_VISIT(h->argv[i + 1]);
        }
    }
    return 0;
}

static int
handle_clear(cl_handle *h)
{
    handle_payload p;
    handle_take_payload(h, &p);
    Py_CLEAR(h->context);
    Py_CLEAR(h->loop);
    Py_CLEAR(h->source_traceback);
    Py_CLEAR(h->repr);
    handle_payload_drop(&p);
    return 0;
}

static void
handle_dealloc(cl_handle *h)
{
    PyTypeObject *tp = Py_TYPE(h);
    PyObject_GC_UnTrack(h);
    if (h->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)h);
    }
    (void)handle_clear(h);
    tp->tp_free(h);
    Py_DECREF(tp);
}

static int
freelist_grow(cl_loop *loop)
{
    if (loop->freecap >= CL_FREELIST_MAX) {
        return -1;
    }
    Py_ssize_t cap = loop->freecap ? loop->freecap * 2 : 64;
    cl_handle **list = PyMem_Realloc(loop->freelist, cap * sizeof(*list));
    if (list == NULL) {
        return -1;
    }
    loop->freelist = list;
    loop->freecap = cap;
    return 0;
}

/* Drop the ready queue's reference to h.  A plain handle that nobody else
 * holds goes back to the loop's free list instead of being freed. */
void
cl_handle_release(cl_loop *loop, cl_handle *h)
{
    if (Py_REFCNT(h) != 1 || !Py_IS_TYPE(h, loop->state->HandleType) ||
        h->weakreflist != NULL ||
        (loop->nfree == loop->freecap && freelist_grow(loop) < 0)) {
        /* Referenced elsewhere (the exception handler may have kept it):
         * the collector must see it again (see loop.c, untrack_queue_tail).
         */
        if (Py_REFCNT(h) > 1 && !PyObject_GC_IsTracked((PyObject *)h)) {
            PyObject_GC_Track(h);
        }
        Py_DECREF(h);
        return;
    }
    /* Put the handle on the free list before dropping what it held: those
     * decrefs may run arbitrary code that schedules new callbacks. */
    handle_payload p;
    handle_take_payload(h, &p);
    PyObject *context = h->context, *hloop = h->loop;
    PyObject *tb = h->source_traceback, *repr = h->repr;
    h->context = h->loop = h->source_traceback = h->repr = NULL;
    PyObject_GC_UnTrack(h);
    loop->freelist[loop->nfree++] = h;
    handle_payload_drop(&p);
    Py_XDECREF(context);
    Py_XDECREF(tb);
    Py_XDECREF(repr);
    Py_XDECREF(hloop);
}

void
cl_handle_clear_freelist(cl_loop *loop)
{
    while (loop->nfree > 0) {
        cl_handle *h = loop->freelist[--loop->nfree];
        Py_DECREF(h);
    }
    PyMem_Free(loop->freelist);
    loop->freelist = NULL;
    loop->freecap = 0;
}

/* --- Python API ------------------------------------------------------ */

/* loop.get_debug() for the loop of handle h: a field read for cloop's own
 * loops, a method call for anything else. */
static int
loop_get_debug(cl_handle *h, PyObject *loop)
{
    cl_state *st = cl_get_state_by_type(Py_TYPE(h));
    if (PyObject_TypeCheck(loop, st->LoopType)) {
        return ((cl_loop *)loop)->debug;
    }
    PyObject *res = PyObject_CallMethod(loop, "get_debug", NULL);
    if (res == NULL) {
        return -1;
    }
    int debug = PyObject_IsTrue(res);
    Py_DECREF(res);
    return debug;
}

/* Handle(callback, args, loop, context=None), as asyncio.Handle. */
static int
handle_init_from_python(cl_handle *h, PyObject *callback, PyObject *args,
                        PyObject *loop, PyObject *context)
{
    if (h->loop != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "handle already initialised");
        return -1;
    }
    PyObject *seq = args == Py_None ? PyTuple_New(0) : PySequence_Tuple(args);
    if (seq == NULL) {
        return -1;
    }
    int debug = loop_get_debug(h, loop);
    int r = -1;
    if (debug >= 0) {
        r = handle_init(h, loop, callback, &PyTuple_GET_ITEM(seq, 0),
                        PyTuple_GET_SIZE(seq), context, debug);
    }
    Py_DECREF(seq);
    return r;
}

static int
Handle_tp_init(cl_handle *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"callback", "args", "loop", "context", NULL};
    PyObject *callback, *cbargs, *loop, *context = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|O:Handle", kwlist,
                                     &callback, &cbargs, &loop, &context)) {
        return -1;
    }
    return handle_init_from_python(self, callback, cbargs, loop, context);
}

static int
TimerHandle_tp_init(cl_timerhandle *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"when", "callback", "args",
                             "loop", "context", NULL};
    double when;
    PyObject *callback, *cbargs, *loop, *context = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "dOOO|O:TimerHandle",
                                     kwlist, &when, &callback, &cbargs,
                                     &loop, &context)) {
        return -1;
    }
    self->when = when;
    self->node.key = isnan(when) ? -INFINITY : when;
    self->node.seq = 0;
    self->node.index = CL_TIMER_NOT_IN_HEAP;
    return handle_init_from_python(&self->base, callback, cbargs, loop,
                                   context);
}

static PyObject *
handle_new_from_python(PyTypeObject *tp, PyObject *Py_UNUSED(args),
                       PyObject *Py_UNUSED(kwds))
{
    cl_handle *h = (cl_handle *)tp->tp_alloc(tp, 0);
    if (h != NULL &&
        PyType_IsSubtype(tp, cl_get_state_by_type(tp)->TimerHandleType)) {
        ((cl_timerhandle *)h)->node.index = CL_TIMER_NOT_IN_HEAP;
    }
    return (PyObject *)h;
}

static void
handle_do_cancel(cl_handle *self)
{
    if (self->cancelled) {
        return;
    }
    self->cancelled = 1;
    if (self->loop != NULL) {
        int debug = loop_get_debug(self, self->loop);
        if (debug > 0) {
            PyObject *repr = PyObject_Repr((PyObject *)self);
            if (repr != NULL) {
                Py_XSETREF(self->repr, repr);
            }
        }
        if (debug <= 0) {
            PyErr_Clear();
        }
    }
    if (!self->running) {
        handle_payload p;
        handle_take_payload(self, &p);
        handle_payload_drop(&p);
    }
}

static PyObject *
Handle_cancel(cl_handle *self, PyObject *Py_UNUSED(ignored))
{
    handle_do_cancel(self);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
TimerHandle_cancel(cl_timerhandle *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->base.cancelled &&
        self->node.index != CL_TIMER_NOT_IN_HEAP) {
        /* Only the loop's own heap holds nodes, so loop is a cl_loop. */
        cl_loop_timer_cancelled((cl_loop *)self->base.loop, self);
    }
    handle_do_cancel(&self->base);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Handle_cancelled(cl_handle *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->cancelled);
}

static PyObject *
Handle_get_context(cl_handle *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->context ? self->context : Py_None);
}

/* Handle._run(), which asyncio's helpers and tests call directly. */
static PyObject *
Handle_run(cl_handle *self, PyObject *Py_UNUSED(ignored))
{
    if (self->callback == NULL || self->context == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(self);
    int r = cl_handle_run(self);
    Py_DECREF(self);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
TimerHandle_when(cl_timerhandle *self, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(self->when);
}

static PyObject *
Handle_repr(cl_handle *self)
{
    if (self->repr != NULL) {
        return Py_NewRef(self->repr);
    }
    cl_state *st = cl_get_state_by_type(Py_TYPE(self));
    PyObject *hook = cl_get_hook(st, "handle_repr");
    if (hook == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_CallOneArg(hook, (PyObject *)self);
    Py_DECREF(hook);
    return res;
}

static PyObject *
Handle_get_callback(cl_handle *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->callback ? self->callback : Py_None);
}

static PyObject *
Handle_get_args(cl_handle *self, void *Py_UNUSED(closure))
{
    if (self->callback == NULL) {
        Py_RETURN_NONE;
    }
    if (self->args_tuple != NULL) {
        return Py_NewRef(self->args_tuple);
    }
    PyObject *tup = PyTuple_New(self->nargs);
    if (tup == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->nargs; i++) {
        PyTuple_SET_ITEM(tup, i, Py_NewRef(self->argv[i + 1]));
    }
    return tup;
}

static PyObject *
Handle_get_cancelled(cl_handle *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->cancelled);
}

static PyObject *
Handle_get_loop(cl_handle *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->loop ? self->loop : Py_None);
}

static PyObject *
Handle_get_context_attr(cl_handle *self, void *Py_UNUSED(closure))
{
    return Handle_get_context(self, NULL);
}

static PyObject *
Handle_get_source_traceback(cl_handle *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->source_traceback ? self->source_traceback
                                            : Py_None);
}

static PyObject *
Handle_get_repr(cl_handle *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->repr ? self->repr : Py_None);
}

static PyObject *
TimerHandle_get_when(cl_timerhandle *self, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(self->when);
}

static PyObject *
TimerHandle_get_scheduled(cl_timerhandle *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->node.index != CL_TIMER_NOT_IN_HEAP);
}

/* asyncio.TimerHandle compares by deadline; equality also looks at the
 * callback, arguments and cancelled state. */
static PyObject *
TimerHandle_richcompare(PyObject *a, PyObject *b, int op)
{
    cl_state *st = cl_get_state_by_type(Py_TYPE(a));
    if (!PyObject_TypeCheck(b, st->TimerHandleType)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    cl_timerhandle *x = (cl_timerhandle *)a, *y = (cl_timerhandle *)b;
    int eq = 0;
    if (op != Py_LT && op != Py_GT) {
        eq = x->when == y->when &&
             x->base.cancelled == y->base.cancelled;
        if (eq && x != y) {
            PyObject *xa = Handle_get_args(&x->base, NULL);
            PyObject *ya = Handle_get_args(&y->base, NULL);
            PyObject *xc = Handle_get_callback(&x->base, NULL);
            PyObject *yc = Handle_get_callback(&y->base, NULL);
            eq = -1;
            if (xa && ya && xc && yc) {
                eq = PyObject_RichCompareBool(xc, yc, Py_EQ);
                if (eq > 0) {
                    eq = PyObject_RichCompareBool(xa, ya, Py_EQ);
                }
            }
            Py_XDECREF(xa);
            Py_XDECREF(ya);
            Py_XDECREF(xc);
            Py_XDECREF(yc);
            if (eq < 0) {
                return NULL;
            }
        }
    }
    switch (op) {
    case Py_EQ:
        return PyBool_FromLong(eq);
    case Py_NE:
        return PyBool_FromLong(!eq);
    case Py_LT:
        return PyBool_FromLong(x->when < y->when);
    case Py_GT:
        return PyBool_FromLong(x->when > y->when);
    case Py_LE:
        return PyBool_FromLong(x->when < y->when || eq);
    case Py_GE:
        return PyBool_FromLong(x->when > y->when || eq);
    }
    Py_RETURN_NOTIMPLEMENTED;
}

static Py_hash_t
TimerHandle_hash(cl_timerhandle *self)
{
    PyObject *when = PyFloat_FromDouble(self->when);
    if (when == NULL) {
        return -1;
    }
    Py_hash_t h = PyObject_Hash(when);
    Py_DECREF(when);
    return h;
}

static PyMethodDef Handle_methods[] = {
    {"cancel", (PyCFunction)Handle_cancel, METH_NOARGS, NULL},
    {"cancelled", (PyCFunction)Handle_cancelled, METH_NOARGS, NULL},
    {"get_context", (PyCFunction)Handle_get_context, METH_NOARGS, NULL},
    {"_run", (PyCFunction)Handle_run, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Handle_getset[] = {
    {"_callback", (getter)Handle_get_callback, NULL, NULL, NULL},
    {"_args", (getter)Handle_get_args, NULL, NULL, NULL},
    {"_cancelled", (getter)Handle_get_cancelled, NULL, NULL, NULL},
    {"_loop", (getter)Handle_get_loop, NULL, NULL, NULL},
    {"_context", (getter)Handle_get_context_attr, NULL, NULL, NULL},
    {"_source_traceback", (getter)Handle_get_source_traceback, NULL, NULL,
     NULL},
    {"_repr", (getter)Handle_get_repr, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Handle_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(cl_handle, weakreflist),
     Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Handle_slots[] = {
    {Py_tp_doc, "A callback scheduled with call_soon(), as asyncio.Handle."},
    {Py_tp_new, handle_new_from_python},
    {Py_tp_init, Handle_tp_init},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, cl_handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_repr, Handle_repr},
    {Py_tp_methods, Handle_methods},
    {Py_tp_getset, Handle_getset},
    {Py_tp_members, Handle_members},
    {0, NULL},
};

PyType_Spec cl_handle_spec = {
    .name = "cloop.Handle",
    .basicsize = sizeof(cl_handle),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = Handle_slots,
};

static PyMethodDef TimerHandle_methods[] = {
    {"cancel", (PyCFunction)TimerHandle_cancel, METH_NOARGS, NULL},
    {"when", (PyCFunction)TimerHandle_when, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef TimerHandle_getset[] = {
    {"_when", (getter)TimerHandle_get_when, NULL, NULL, NULL},
    {"_scheduled", (getter)TimerHandle_get_scheduled, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot TimerHandle_slots[] = {
    {Py_tp_doc, "A callback scheduled with call_later() or call_at(), as "
                "asyncio.TimerHandle."},
    {Py_tp_init, TimerHandle_tp_init},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, cl_handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_methods, TimerHandle_methods},
    {Py_tp_getset, TimerHandle_getset},
    {Py_tp_richcompare, TimerHandle_richcompare},
    {Py_tp_hash, TimerHandle_hash},
    {0, NULL},
};

PyType_Spec cl_timerhandle_spec = {
    .name = "cloop.TimerHandle",
    .basicsize = sizeof(cl_timerhandle),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = TimerHandle_slots,
};
