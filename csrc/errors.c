/*
 * errors.c: exceptions at the boundary between libuv and Python.
 *
 * libuv reports failures as negative errno values; they become
 * OSError(errno, strerror) here and nowhere else, so that OSError's own
 * constructor picks the PEP 3151 subclass (ConnectionResetError, ...).
 * The fetch/restore pair hides the 3.12 change of the exception API.
 */
#include <string.h>

#include "cloop.h"

PyObject *
cl_fetch_exc(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
        Py_DECREF(tb);
    }
    Py_DECREF(type);
    return value;
#endif
}

/* Steals the reference to exc. */
void
cl_restore_exc(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    if (exc == NULL) {
        return;
    }
    PyObject *type = Py_NewRef(Py_TYPE(exc));
    PyObject *tb = PyException_GetTraceback(exc);
    PyErr_Restore(type, exc, tb);
#endif
}

/* asyncio lets these two escape the loop; everything else goes to the
 * exception handler. */
int
cl_exc_is_fatal(PyObject *exc)
{
    return PyErr_GivenExceptionMatches(exc, PyExc_SystemExit) ||
           PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt);
}

PyObject *
cl_raise_uv_error(int uverr)
{
    PyObject *exc;
    if (uverr < 0 && uverr > -4096 && uverr != UV_EOF) {
        exc = PyObject_CallFunction(PyExc_OSError, "is", -uverr,
                                    strerror(-uverr));
    }
    else {
        exc = PyObject_CallFunction(PyExc_OSError, "is", uverr,
                                    uv_strerror(uverr));
    }
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}
