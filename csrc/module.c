/*
 * module.c: cloop._cloop, the extension module.
 *
 * Multi-phase initialisation (PEP 489): the exec slot builds the heap
 * types from their specs and fills the module state; nothing is global.
 * The module does not declare Py_mod_gil, so on a free-threaded build the
 * interpreter keeps the GIL on: the ready queue relies on it.
 */
#include "cloop.h"

#include <pthread.h>

#ifndef CL_BUILD_TYPE
#define CL_BUILD_TYPE "unknown"
#endif
#ifndef CL_SANITIZE
#define CL_SANITIZE "none"
#endif

static inline cl_state *
get_state(PyObject *module)
{
    return (cl_state *)PyModule_GetState(module);
}

cl_state *
cl_get_state_by_type(PyTypeObject *tp)
{
    PyObject *module = PyType_GetModuleByDef(tp, &cl_module_def);
    return module ? get_state(module) : NULL;
}

/* A function of cloop._handles, imported the first time one is needed
 * (the package imports this module first, so the import is deferred). */
PyObject *
cl_get_hook(cl_state *st, const char *name)
{
    if (st->hooks == NULL) {
        st->hooks = PyImport_ImportModule("cloop._handles");
        if (st->hooks == NULL) {
            return NULL;
        }
    }
    return PyObject_GetAttrString(st->hooks, name);
}

static PyObject *
build_info(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    PyObject *compiled = PyUnicode_FromFormat(
        "%d.%d.%d", UV_VERSION_MAJOR, UV_VERSION_MINOR, UV_VERSION_PATCH);
    if (compiled == NULL) {
        return NULL;
    }
    return Py_BuildValue("{s:s,s:I,s:N,s:s,s:s}", "libuv_version",
                         uv_version_string(), "libuv_version_hex",
                         uv_version(), "libuv_compiled_version", compiled,
                         "build_type", CL_BUILD_TYPE, "sanitize",
                         CL_SANITIZE);
}

static PyMethodDef module_methods[] = {
    {"build_info", build_info, METH_NOARGS,
     "build_info() -> dict: the libuv in use and how cloop was built."},
    {NULL, NULL, 0, NULL},
};

#define INTERN(field, text)                                                 \
    do {                                                                    \
        st->field = PyUnicode_InternFromString(text);                       \
        if (st->field == NULL) {                                            \
            return -1;                                                      \
        }                                                                   \
    } while (0)

static int
add_type(PyObject *module, PyTypeObject **slot, PyType_Spec *spec,
         PyObject *base)
{
    *slot = (PyTypeObject *)PyType_FromModuleAndSpec(module, spec, base);
    if (*slot == NULL) {
        return -1;
    }
    return PyModule_AddType(module, *slot);
}

/* Add the methods another file defines to a type made from a spec (one
 * Py_tp_methods slot per spec; poll.c and dns.c keep their own tables). */
static int
add_methods(PyTypeObject *tp, PyMethodDef *defs)
{
    for (PyMethodDef *def = defs; def->ml_name != NULL; def++) {
        PyObject *descr = PyDescr_NewMethod(tp, def);
        if (descr == NULL) {
            return -1;
        }
        int r = PyObject_SetAttrString((PyObject *)tp, def->ml_name, descr);
        Py_DECREF(descr);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}

static void
on_fork_child(void)
{
    cl_fork_generation++;
}

static int
module_exec(PyObject *module)
{
    static int atfork_registered;
    if (!atfork_registered) {
        if (pthread_atfork(NULL, NULL, on_fork_child) != 0) {
            PyErr_SetString(PyExc_OSError, "pthread_atfork() failed");
            return -1;
        }
        atfork_registered = 1;
    }
    cl_state *st = get_state(module);
    if (add_type(module, &st->LoopType, &cl_loop_spec, NULL) < 0 ||
        add_type(module, &st->HandleType, &cl_handle_spec, NULL) < 0 ||
        add_type(module, &st->TimerHandleType, &cl_timerhandle_spec,
                 (PyObject *)st->HandleType) < 0 ||
        add_methods(st->LoopType, cl_poll_methods) < 0 ||
        add_methods(st->LoopType, cl_dns_methods) < 0 ||
        add_methods(st->LoopType, cl_process_methods) < 0 ||
        cl_process_init(module, st) < 0 ||
        add_methods(st->LoopType, cl_fs_methods) < 0 ||
        cl_stream_init(module, st) < 0 || cl_udp_init(module, st) < 0 ||
        cl_fs_init(module, st) < 0 ||
        add_methods(st->LoopType, cl_sock_methods) < 0 ||
        cl_sock_init(module, st) < 0) {
        return -1;
    }
    INTERN(str_context, "context");
    INTERN(str_loop, "loop");
    INTERN(str_check_thread, "_check_thread");
    INTERN(str_check_callback, "_check_callback");
    INTERN(str_current_handle, "_current_handle");
    INTERN(str_slow_callback_duration, "slow_callback_duration");
    INTERN(str_handle_signal, "_cl_handle_signals");
    INTERN(str_call_soon, "call_soon");
    INTERN(str_call_soon_threadsafe, "call_soon_threadsafe");
    INTERN(str_call_at, "call_at");
    INTERN(str_data_received, "data_received");
    INTERN(str_buffer_updated, "buffer_updated");
    INTERN(str_get_buffer, "get_buffer");
    INTERN(str_transports, "_transports");
    INTERN(str_fileno, "fileno");
    INTERN(str_gettimeout, "gettimeout");
    INTERN(str_done, "done");
    INTERN(str_set_result, "set_result");
    INTERN(str_set_exception, "set_exception");
    INTERN(str_add_done_callback, "add_done_callback");
    INTERN(str_create_future, "create_future");
    INTERN(str_datagram_received, "datagram_received");
    INTERN(str_name, "name");
    st->kwnames_loop = PyTuple_Pack(1, st->str_loop);
    if (st->kwnames_loop == NULL) {
        return -1;
    }
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return -1;
    }
    st->Future = PyObject_GetAttrString(asyncio, "Future");
    st->Task = PyObject_GetAttrString(asyncio, "Task");
    PyObject *base = PyObject_GetAttrString(asyncio, "BaseEventLoop");
    Py_DECREF(asyncio);
    if (base == NULL) {
        return -1;
    }
    st->base_create_task = PyObject_GetAttrString(base, "create_task");
    Py_DECREF(base);
    if (st->Future == NULL || st->Task == NULL ||
        st->base_create_task == NULL) {
        return -1;
    }
    return 0;
}

#define STATE_FIELDS(X)                                                     \
    X(LoopType)                                                             \
    X(HandleType)                                                           \
    X(TimerHandleType)                                                      \
    X(StreamTransportType)                                                  \
    X(ReadPipeTransportType)                                                \
    X(WritePipeTransportType)                                               \
    X(UDPTransportType)                                                     \
    X(ProcessType)                                                          \
    X(FsBatchType)                                                          \
    X(SockWaitType)                                                         \
    X(socket_type)                                                          \
    X(sock_scratch)                                                         \
    X(str_fileno)                                                           \
    X(str_gettimeout)                                                       \
    X(str_done)                                                             \
    X(str_set_result)                                                       \
    X(str_set_exception)                                                    \
    X(str_add_done_callback)                                                \
    X(str_create_future)                                                    \
    X(str_context)                                                          \
    X(str_loop)                                                             \
    X(str_check_thread)                                                     \
    X(str_check_callback)                                                   \
    X(str_current_handle)                                                   \
    X(str_slow_callback_duration)                                           \
    X(str_handle_signal)                                                    \
    X(str_call_soon)                                                        \
    X(str_call_soon_threadsafe)                                             \
    X(str_call_at)                                                          \
    X(str_data_received)                                                    \
    X(str_buffer_updated)                                                   \
    X(str_get_buffer)                                                       \
    X(str_transports)                                                       \
    X(str_datagram_received)                                                \
    X(kwnames_loop)                                                         \
    X(str_name)                                                             \
    X(Future)                                                               \
    X(Task)                                                                 \
    X(base_create_task)                                                     \
    X(hooks)

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    cl_state *st = get_state(module);
#define VISIT(f) Py_VISIT(st->f);
    STATE_FIELDS(VISIT)
#undef VISIT
    return 0;
}

static int
module_clear(PyObject *module)
{
    cl_state *st = get_state(module);
#define CLEAR(f) Py_CLEAR(st->f);
    STATE_FIELDS(CLEAR)
#undef CLEAR
    return 0;
}

static void
module_free(void *module)
{
    (void)module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
    {0, NULL},
};

PyModuleDef cl_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cloop._cloop",
    .m_doc = "The C engine of cloop: a libuv event loop for asyncio.",
    .m_size = sizeof(cl_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__cloop(void)
{
    return PyModuleDef_Init(&cl_module_def);
}
