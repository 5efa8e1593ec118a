/*
 * cloop.h: declarations shared by the C files of cloop._cloop.
 *
 * Everything here is internal to the extension.  Shared names take the cl_
 * prefix; libuv callbacks are named on_<kind>_<event>.  Python state lives
 * in the module state (cl_state); every Loop caches a pointer to it so the
 * hot path never looks the module up.
 */
#ifndef CLOOP_H
#define CLOOP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <uv.h>

#include "timerheap.h"

/* 3.12 renamed the structmember.h constants. */
#if PY_VERSION_HEX < 0x030C0000
#include <structmember.h>
#define Py_T_PYSSIZET T_PYSSIZET
#define Py_READONLY READONLY
#endif

/* Arguments of call_soon() stored inline in the handle; more go to a
 * tuple.  Three covers asyncio's own callers (futures pass one). */
#define CL_INLINE_ARGS 3

/* Recycled plain Handle objects kept per loop, at most.  The list grows
 * only to the number of handles that were pending at once, so an idle
 * loop keeps little; a producer thread flooding call_soon_threadsafe()
 * recycles thousands per pass. */
#define CL_FREELIST_MAX 8192

/* Spare bytes objects a loop keeps for its reads (stream.c), at most. */
#define CL_SPARE_BYTES 64

typedef struct {
    PyTypeObject *LoopType;
    PyTypeObject *HandleType;
    PyTypeObject *TimerHandleType;
    PyTypeObject *StreamTransportType;  /* stream.c */
    PyTypeObject *ReadPipeTransportType;
    PyTypeObject *WritePipeTransportType;
    PyTypeObject *UDPTransportType;     /* udp.c */
    PyTypeObject *ProcessType;          /* process.c */
    PyTypeObject *FsBatchType;          /* fs.c */
    PyTypeObject *SockWaitType;         /* sock.c */

    /* Interned names used on the hot path and in hooks. */
    PyObject *str_context;
    PyObject *str_loop;
    PyObject *str_check_thread;
    PyObject *str_check_callback;
    PyObject *str_current_handle;
    PyObject *str_slow_callback_duration;
    PyObject *str_handle_signal;
    PyObject *str_call_soon;
    PyObject *str_call_soon_threadsafe;
    PyObject *str_call_at;
    PyObject *str_data_received;
    PyObject *str_buffer_updated;
    PyObject *str_get_buffer;
    PyObject *str_transports;
    PyObject *str_datagram_received;

    /* ("loop",): kwnames for creating futures. */
    PyObject *kwnames_loop;
    PyObject *str_name;
    PyObject *Future;           /* asyncio.Future */
    PyObject *Task;             /* asyncio.Task */
    PyObject *base_create_task; /* asyncio.BaseEventLoop.create_task */

    /* cloop._handles, imported on first use (repr, error reporting, debug
     * helpers are Python: they run per error or per debug callback). */
    PyObject *hooks;

    /* sock.c: socket.socket (the type served by recv(2)/send(2) directly),
     * the scratch buffer small reads land in (a bytearray), and names. */
    PyObject *socket_type;
    PyObject *sock_scratch;
    PyObject *str_fileno;
    PyObject *str_gettimeout;
    PyObject *str_done;
    PyObject *str_set_result;
    PyObject *str_set_exception;
    PyObject *str_add_done_callback;
    PyObject *str_create_future;

    /* fs.c: UV_USE_IO_URING was a positive number at import, so loops
     * ask libuv >= 1.49 for its io_uring file operations. */
    int fs_sqpoll;
    /* fs.c: libuv serves file requests from io_uring, so chains go as
     * separate uv_fs_* requests rather than one pool job per file. */
    int fs_uring;
} cl_state;

/* A ring buffer of strong references: the loop's ready queue. */
typedef struct {
    PyObject **items;
    size_t head;
    size_t len;
    size_t cap;                 /* zero or a power of two */
} cl_ring;

typedef struct cl_handle cl_handle;
/* poll.c: the add_reader()/add_writer() registrations of a loop. */
typedef struct cl_pollset cl_pollset;

typedef struct {
    PyObject_HEAD
    cl_state *state;
    uv_loop_t *uvloop;          /* NULL once closed */
    uv_timer_t *timer;          /* wakes the poll for the earliest timer */
    uv_async_t *async;          /* call_soon_threadsafe wake-up */
    uv_prepare_t *prepare;      /* releases the GIL just before the poll */
    uv_poll_t *sigpoll;         /* the signal wake-up fd, when watched */

    cl_ring ready;
    /* What callbacks run inside the poll (reads delivered there, see
     * stream.c) queue: it belongs to the next pass, so it joins the ready
     * queue after the turn's I/O and due timers.  Empty outside uv_run. */
    cl_ring later;
    cl_timerheap timers;
    uint64_t timer_seq;
    uint64_t poll_seq;          /* timer_seq when the poll started */
    size_t turn;                /* counts turns */
    double armed_when;          /* deadline the uv timer is armed for */

    /* Set while the GIL is released around a blocking poll; the first
     * callback after the poll (or the return of uv_run) takes it back. */
    PyThreadState *saved_tstate;
    /* An exception raised inside a libuv callback, re-raised once uv_run
     * returns (exceptions never cross libuv). */
    PyObject *pending_exc;

    PyObject *thread_id;        /* None, or threading.get_ident() */
    PyObject *task_factory;     /* None, or set_task_factory()'s */
    unsigned long thread_ident; /* valid while thread_id is not None */

    char debug;
    char closed;
    char stopping;
    char may_block;
    /* The pass starts with nothing queued ahead of the poll's I/O, so a
     * read may be delivered as libuv reads it (stream.c). */
    char direct;
    char defer;                 /* queue to later, not ready */

    Py_ssize_t nfree;
    Py_ssize_t freecap;
    cl_handle **freelist;

    /* dns.c: lookups in flight on the worker pool (a list dns.c owns). */
    struct cl_dns_req *dns_reqs;

    /* poll.c: readers and writers by fd; NULL until the first one. */
    cl_pollset *pollset;

    /* poll.c: the stream transport owning each fd (borrowed; each
     * transport clears its entry), for asyncio's "used by transport"
     * check in add_reader() and the sock_*() methods. */
    PyObject **owners;
    int ownercap;

    /* stream.c: transports with writes coalesced during this turn, flushed
     * before the loop next polls (strong references). */
    PyObject **flushq;
    Py_ssize_t nflush;
    Py_ssize_t flushcap;
    char in_run;                /* inside run_turns(): writes coalesce */
    /* stream.c: the loop's read arena.  Reads of one turn land in
     * consecutive slices and become bytes when delivered; the arena
     * starts over once no slice is waiting. */
    char *rbuf;
    size_t rbuf_used;
    Py_ssize_t rbuf_live;
    /* stream.c: bytes objects of a few KiB the loop held the last
     * reference to, kept to hold the next reads (see take_slice()). */
    PyObject *spare[CL_SPARE_BYTES];
    int nspare;
    Py_ssize_t spare_size;      /* their sizes, summed */

    /* The process forked since the loop was made: libuv's kernel state
     * (epoll, eventfd, signal pipe) was moved to the child by
     * uv_loop_fork() and the loop refuses to run (see loop.c). */
    unsigned long fork_gen;
    char forked;
} cl_loop;

/* loop.c: bumped in the child of every fork().  Each loop notes the
 * value it was made under; before it touches libuv's kernel state it calls
 * cl_loop_check_fork(), so a child never changes the parent's epoll set. */
extern unsigned long cl_fork_generation;
void cl_loop_after_fork(cl_loop *self);

static inline void
cl_loop_check_fork(cl_loop *self)
{
    if (self->fork_gen != cl_fork_generation) {
        cl_loop_after_fork(self);
    }
}

/* Take back the GIL released before the poll (see loop.c).  Every libuv
 * callback that touches Python calls it first; it costs one branch when
 * the GIL is already held. */
static inline void
cl_acquire(cl_loop *self)
{
    if (self->saved_tstate != NULL) {
        PyThreadState *ts = self->saved_tstate;
        self->saved_tstate = NULL;
        PyEval_RestoreThread(ts);
    }
}

struct cl_handle {
    PyObject_HEAD
    PyObject *callback;         /* NULL once cancelled */
    PyObject *context;
    PyObject *loop;
    PyObject *args_tuple;       /* arguments when nargs > CL_INLINE_ARGS */
    PyObject *source_traceback; /* debug mode only */
    PyObject *repr;             /* debug mode: repr saved at cancel */
    PyObject *weakreflist;
    Py_ssize_t nargs;
    char cancelled;
    char running;
    /* argv[0] is scratch space for PY_VECTORCALL_ARGUMENTS_OFFSET. */
    PyObject *argv[1 + CL_INLINE_ARGS];
};

typedef struct {
    cl_handle base;
    cl_timer_node node;
    double when;                /* as given (node.key maps NaN to -inf) */
} cl_timerhandle;

#define CL_TIMERHANDLE(node_ptr)                                            \
    ((cl_timerhandle *)((char *)(node_ptr)-offsetof(cl_timerhandle, node)))

/* module.c */
extern PyModuleDef cl_module_def;
cl_state *cl_get_state_by_type(PyTypeObject *tp);
PyObject *cl_get_hook(cl_state *st, const char *name);

/* loop.c */
extern PyType_Spec cl_loop_spec;
double cl_monotonic(void);
int cl_loop_push_ready(cl_loop *loop, PyObject *handle);
void cl_loop_stash_exception(cl_loop *loop);
int cl_loop_check_open(cl_loop *loop);
void cl_loop_timer_cancelled(cl_loop *loop, cl_timerhandle *th);

/* handle.c */
extern PyType_Spec cl_handle_spec;
extern PyType_Spec cl_timerhandle_spec;
cl_handle *cl_handle_new(cl_loop *loop, PyObject *callback,
                         PyObject *const *args, Py_ssize_t nargs,
                         PyObject *context);
cl_timerhandle *cl_timerhandle_new(cl_loop *loop, double when,
                                   PyObject *callback, PyObject *const *args,
                                   Py_ssize_t nargs, PyObject *context);
int cl_handle_run(cl_handle *h);
int cl_handle_traverse(cl_handle *h, visitproc visit, void *arg);
void cl_handle_release(cl_loop *loop, cl_handle *h);
void cl_handle_clear_freelist(cl_loop *loop);

/* poll.c: add_reader()/add_writer() and friends, CoreLoop methods. */
extern PyMethodDef cl_poll_methods[];
void cl_poll_close_all(cl_loop *loop);
int cl_poll_traverse(cl_loop *loop, visitproc visit, void *arg);

/* poll.c, for sock.c: register a C-made callback as _add_reader() (dir
 * 0) or _add_writer() (dir 1) do, returning the new handle; remove it as
 * the public remove_reader()/remove_writer() do, keeping the fd's poll
 * for a next wait in the same turn; _ensure_fd_no_transport(). */
PyObject *cl_poll_add_handle(cl_loop *loop, int dir, PyObject *fd,
                             PyObject *callback);
PyObject *cl_poll_park(cl_loop *loop, int dir, PyObject *fd,
                       PyObject *handle);
int cl_poll_ensure_no_transport(cl_loop *loop, PyObject *fd);

/* sock.c: the C side of sock_recv(), sock_recv_into(), sock_sendall(). */
extern PyMethodDef cl_sock_methods[];
int cl_sock_init(PyObject *module, cl_state *st);

/* dns.c: getaddrinfo()/getnameinfo() on libuv's worker pool. */
extern PyMethodDef cl_dns_methods[];

/* poll.c: the fds transports own (add_reader() refuses them). */
int cl_fd_owner_set(cl_loop *loop, int fd, PyObject *transport);
void cl_fd_owner_clear(cl_loop *loop, int fd, PyObject *transport);

/* stream.c: stream transports over uv_stream_t (TCP, Unix sockets,
 * pipes), and what the datagram transports share with them. */
PyObject *cl_transport_base(const char *base_name, Py_ssize_t extra_offset,
                            Py_ssize_t slots_end);
int cl_schedule_connection_lost(PyObject *loop, PyObject *transport,
                                PyObject *exc);
int cl_stream_init(PyObject *module, cl_state *st);
void cl_stream_flush_all(cl_loop *loop);
void cl_stream_spare_clear(cl_loop *loop);
int cl_stream_deliver(cl_loop *loop, PyObject *transport);
void cl_stream_flush_clear(cl_loop *loop);
int cl_stream_flush_traverse(cl_loop *loop, visitproc visit, void *arg);

/* udp.c: datagram transports over uv_udp_t. */
int cl_udp_init(PyObject *module, cl_state *st);

/* process.c: child processes over uv_process_t (uv_spawn). */
extern PyMethodDef cl_process_methods[];
int cl_process_init(PyObject *module, cl_state *st);
/* fs.c: file operations on libuv's worker pool (cloop.fs). */
extern PyMethodDef cl_fs_methods[];
int cl_fs_init(PyObject *module, cl_state *st);

/* errors.c */
PyObject *cl_fetch_exc(void);
void cl_restore_exc(PyObject *exc);
int cl_exc_is_fatal(PyObject *exc);
PyObject *cl_raise_uv_error(int uverr);

#endif /* CLOOP_H */
