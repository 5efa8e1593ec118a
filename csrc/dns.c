/*
 * dns.c: getaddrinfo() and getnameinfo() on libuv's worker pool.
 *
 * asyncio runs socket.getaddrinfo() in its default executor; cloop runs
 * the same libc call on libuv's worker pool and completes an asyncio
 * future in the loop thread.  The results and errors must be exactly
 * socket.getaddrinfo()'s, so this file follows CPython's socketmodule.c
 * step by step: the same argument parsing (and so the same TypeErrors,
 * OverflowErrors and UnicodeErrors), the same IDNA encoding of the host,
 * the same audit event, the same conversion of each struct addrinfo to a
 * 5-tuple, and socket.gaierror(code, gai_strerror(code)) for failures.
 *
 * The work goes through uv_queue_work() rather than uv_getaddrinfo():
 * uv_getaddrinfo() re-encodes the host with libuv's own IDNA code, limits
 * it to 255 bytes, refuses a NULL host with a NULL service, and turns the
 * EAI_* codes into UV_EAI_* ones, each of which would make the answer
 * differ from socket.getaddrinfo()'s.  The pool is the same one.
 *
 * Address literals skip the pool where the answer is provably the one
 * libc would give: a strict dotted-quad IPv4 or an unscoped IPv6 text
 * (inet_pton() accepts it), a numeric port, a socket type and protocol
 * from a small table read off glibc, and flags that cannot change the
 * answer for a literal.  Everything else (legacy forms such as "127.1",
 * scoped IPv6, names, AI_CANONNAME, ...) goes to the pool, so libc stays
 * the authority.
 *
 * A request is a separately allocated struct holding strong references
 * to the loop and the future; it sits in the loop's list of requests in
 * flight until its after-work callback, which always runs (with
 * UV_ECANCELED when uv_cancel() got it first).  Cancelling the future
 * cancels the request when it has not started yet; a request already
 * running finishes and its result is dropped.  close() cancels what has
 * not started; loop.c's close then runs libuv until every request is
 * done, and a request that completes on a closed loop only frees itself.
 */
#include "cloop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

typedef enum { REQ_ADDRINFO, REQ_NAMEINFO } req_kind;

typedef struct cl_dns_req {
    uv_work_t work;
    struct cl_dns_req *prev;
    struct cl_dns_req *next;
    req_kind kind;
    cl_loop *loop;       /* strong reference */
    PyObject *future;    /* strong reference */
    PyObject *families;  /* getaddrinfo: {int: AddressFamily} */
    PyObject *kinds;     /* getaddrinfo: {int: SocketKind} */
    int error;           /* EAI_* code, 0 on success */
    int sys_errno;       /* errno after EAI_SYSTEM, read in the worker */

    /* getaddrinfo() */
    const char *host;    /* NULL, or points into text */
    const char *service; /* NULL, or points into text */
    struct addrinfo hints;
    struct addrinfo *res;

    /* getnameinfo() */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int ni_flags;
    char hbuf[NI_MAXHOST];
    char sbuf[NI_MAXSERV];

    char text[];         /* host and service, NUL-terminated */
} cl_dns_req;

/* --- Requests ---------------------------------------------------------- */

static cl_dns_req *
req_new(cl_loop *loop, req_kind kind, size_t textlen)
{
    cl_dns_req *req = PyMem_RawCalloc(1, sizeof(*req) + textlen);
    if (req == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    req->kind = kind;
    req->work.data = req;
    req->loop = (cl_loop *)Py_NewRef(loop);
    return req;
}

static void
req_link(cl_dns_req *req)
{
    cl_loop *loop = req->loop;
    req->next = loop->dns_reqs;
    if (loop->dns_reqs != NULL) {
        loop->dns_reqs->prev = req;
    }
    loop->dns_reqs = req;
}

static void
req_unlink(cl_dns_req *req)
{
    if (req->prev != NULL) {
        req->prev->next = req->next;
    }
    else {
        req->loop->dns_reqs = req->next;
    }
    if (req->next != NULL) {
        req->next->prev = req->prev;
    }
    req->prev = req->next = NULL;
}

/* Free a request that is not (or no longer) queued; needs the GIL. */
static void
req_free(cl_dns_req *req)
{
    if (req->res != NULL) {
        freeaddrinfo(req->res);
    }
    Py_XDECREF(req->future);
    Py_XDECREF(req->families);
    Py_XDECREF(req->kinds);
    Py_XDECREF(req->loop);
    PyMem_RawFree(req);
}

/* --- Results as the socket module builds them -------------------------- */

/* socket.gaierror(code, gai_strerror(code)), or for EAI_SYSTEM the
 * OSError PyErr_SetFromErrno() makes of errno, as set_gaierror() does.
 * Returns a new reference to the exception, or NULL with another one
 * set. */
static PyObject *
gai_exception(int error, int sys_errno)
{
#ifdef EAI_SYSTEM
    if (error == EAI_SYSTEM) {
        errno = sys_errno;
        PyErr_SetFromErrno(PyExc_OSError);
        return cl_fetch_exc();
    }
#endif
    PyObject *socket = PyImport_ImportModule("socket");
    if (socket == NULL) {
        return NULL;
    }
    PyObject *gaierror = PyObject_GetAttrString(socket, "gaierror");
    Py_DECREF(socket);
    if (gaierror == NULL) {
        return NULL;
    }
    PyObject *exc =
        PyObject_CallFunction(gaierror, "is", error, gai_strerror(error));
    Py_DECREF(gaierror);
    return exc;
}

/* socket.getaddrinfo() maps family and type to AddressFamily and
 * SocketKind members where the enum has one (_intenum_converter());
 * map holds exactly those members, so a lookup gives the same object. */
static PyObject *
intenum(PyObject *map, int value)
{
    PyObject *num = PyLong_FromLong(value);
    if (num == NULL) {
        return NULL;
    }
    PyObject *member = PyDict_GetItemWithError(map, num); /* borrowed */
    if (member != NULL) {
        Py_DECREF(num);
        return Py_NewRef(member);
    }
    if (PyErr_Occurred()) {
        Py_DECREF(num);
        return NULL;
    }
    return num;
}

static PyObject *
inet_text(int family, const void *addr)
{
    char buf[INET6_ADDRSTRLEN];
    if (inet_ntop(family, addr, buf, sizeof(buf)) == NULL) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyUnicode_FromString(buf);
}

/* makesockaddr() of socketmodule.c for what getaddrinfo() returns. */
static PyObject *
make_sockaddr(const struct sockaddr *addr, socklen_t addrlen)
{
    if (addrlen == 0) {
        Py_RETURN_NONE;
    }
    switch (addr->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
        PyObject *host = inet_text(AF_INET, &a->sin_addr);
        if (host == NULL) {
            return NULL;
        }
        return Py_BuildValue("Ni", host, ntohs(a->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
        PyObject *host = inet_text(AF_INET6, &a->sin6_addr);
        if (host == NULL) {
            return NULL;
        }
        return Py_BuildValue("NiII", host, ntohs(a->sin6_port),
                             ntohl(a->sin6_flowinfo), a->sin6_scope_id);
    }
    case AF_UNIX: {
        /* No getaddrinfo() is known to return AF_UNIX; if one does, the
         * path comes out as socketmodule.c makes it on Linux. */
        const struct sockaddr_un *a = (const struct sockaddr_un *)addr;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t len = addrlen > off ? (size_t)addrlen - off : 0;
#ifdef __linux__
        if (len > 0 && a->sun_path[0] == 0) {
            return PyBytes_FromStringAndSize(a->sun_path, (Py_ssize_t)len);
        }
#endif
        len = strnlen(a->sun_path, len);
        return PyUnicode_DecodeFSDefaultAndSize(a->sun_path, (Py_ssize_t)len);
    }
    default:
        return Py_BuildValue("iy#", addr->sa_family, addr->sa_data,
                             (Py_ssize_t)sizeof(addr->sa_data));
    }
}

static PyObject *
addrinfo_list(cl_dns_req *req)
{
    PyObject *all = PyList_New(0);
    if (all == NULL) {
        return NULL;
    }
    for (struct addrinfo *ai = req->res; ai != NULL; ai = ai->ai_next) {
        PyObject *addr = make_sockaddr(ai->ai_addr, ai->ai_addrlen);
        PyObject *family = intenum(req->families, ai->ai_family);
        PyObject *kind = intenum(req->kinds, ai->ai_socktype);
        PyObject *entry = NULL;
        if (addr != NULL && family != NULL && kind != NULL) {
            entry = Py_BuildValue(
                "OOisO", family, kind, ai->ai_protocol,
                ai->ai_canonname ? ai->ai_canonname : "", addr);
        }
        Py_XDECREF(addr);
        Py_XDECREF(family);
        Py_XDECREF(kind);
        if (entry == NULL || PyList_Append(all, entry) < 0) {
            Py_XDECREF(entry);
            Py_DECREF(all);
            return NULL;
        }
        Py_DECREF(entry);
    }
    return all;
}

/* --- Completion -------------------------------------------------------- */

/* obj.name(arg); PyObject_CallMethod()'s "O" would unpack a tuple arg. */
static PyObject *
call_method1(PyObject *obj, const char *name, PyObject *arg)
{
    PyObject *meth = PyObject_GetAttrString(obj, name);
    if (meth == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_CallOneArg(meth, arg);
    Py_DECREF(meth);
    return res;
}

static void
on_work_run(uv_work_t *work)
{
    cl_dns_req *req = work->data;
    if (req->kind == REQ_ADDRINFO) {
        req->error =
            getaddrinfo(req->host, req->service, &req->hints, &req->res);
        if (req->error != 0) {
            req->res = NULL; /* gh-100795: not every libc leaves it */
        }
    }
    else {
        req->error = getnameinfo((struct sockaddr *)&req->addr, req->addrlen,
                                 req->hbuf, sizeof(req->hbuf), req->sbuf,
                                 sizeof(req->sbuf), req->ni_flags);
    }
    req->sys_errno = errno;
}

/* The answer, a new reference; or NULL with the exception to give the
 * future set (the caller cannot tell them apart and need not). */
static PyObject *
req_answer(cl_dns_req *req)
{
    if (req->error != 0) {
        PyObject *exc = gai_exception(req->error, req->sys_errno);
        if (exc != NULL) {
            cl_restore_exc(exc);
        }
        return NULL;
    }
    if (req->kind == REQ_ADDRINFO) {
        return addrinfo_list(req);
    }
    PyObject *name = PyUnicode_DecodeFSDefault(req->hbuf);
    if (name == NULL) {
        return NULL;
    }
    return Py_BuildValue("Ns", name, req->sbuf);
}

/* Exceptions never cross libuv: one raised while completing the future
 * goes to the loop's exception handler. */
static void
report_error(cl_loop *loop, PyObject *future)
{
    PyObject *exc = cl_fetch_exc();
    PyObject *context = Py_BuildValue(
        "{s:s,s:O,s:O}", "message",
        "Exception while completing a getaddrinfo()/getnameinfo() future",
        "exception", exc ? exc : Py_None, "future", future);
    PyObject *res = NULL;
    if (context != NULL) {
        res = call_method1((PyObject *)loop, "call_exception_handler",
                           context);
        Py_DECREF(context);
    }
    if (res == NULL) {
        PyErr_WriteUnraisable((PyObject *)loop);
    }
    Py_XDECREF(res);
    Py_XDECREF(exc);
}

static void
on_work_done(uv_work_t *work, int status)
{
    cl_dns_req *req = work->data;
    cl_loop *loop = req->loop;
    cl_acquire(loop);
    req_unlink(req);
    /* A cancelled request, one whose future was cancelled meanwhile, or
     * one finishing while close() drains the loop: nobody waits for the
     * answer (asyncio too drops an executor result once the loop is
     * closed). */
    if (status == UV_ECANCELED || loop->closed) {
        req_free(req);
        return;
    }
    PyObject *future = req->future;
    PyObject *done = PyObject_CallMethod(future, "done", NULL);
    int isdone = done != NULL ? PyObject_IsTrue(done) : -1;
    Py_XDECREF(done);
    if (isdone != 0) {
        if (isdone < 0) {
            report_error(loop, future);
        }
        req_free(req);
        return;
    }
    PyObject *answer = req_answer(req);
    PyObject *res;
    if (answer != NULL) {
        res = call_method1(future, "set_result", answer);
        Py_DECREF(answer);
    }
    else {
        PyObject *exc = cl_fetch_exc();
        res = call_method1(future, "set_exception", exc);
        Py_DECREF(exc);
    }
    if (res == NULL) {
        report_error(loop, future);
    }
    Py_XDECREF(res);
    req_free(req);
}

/* Queue a filled request and return a new reference to its future. */
static PyObject *
req_submit(cl_dns_req *req)
{
    cl_loop *loop = req->loop;
    req->future = PyObject_CallMethod((PyObject *)loop, "create_future",
                                      NULL);
    if (req->future == NULL) {
        req_free(req);
        return NULL;
    }
    int err = uv_queue_work(loop->uvloop, &req->work, on_work_run,
                            on_work_done);
    if (err < 0) {
        /* The callback will never run: undo everything now. */
        req_free(req);
        return cl_raise_uv_error(err);
    }
    req_link(req);
    return Py_NewRef(req->future);
}

/* --- getaddrinfo() ----------------------------------------------------- */

/* The socket types and protocols glibc answers a numeric service with,
 * in its order, for the (type, proto) requests the fast path takes. */
typedef struct {
    int socktype;
    int protocol;
} typeproto;

static const typeproto ALL_KINDS[] = {
    {SOCK_STREAM, IPPROTO_TCP},
    {SOCK_DGRAM, IPPROTO_UDP},
    {SOCK_RAW, 0},
};

/* Point *out at the entries getaddrinfo() returns for (type, proto);
 * returns their number, or 0 where the fast path does not know. */
static int
literal_kinds(int socktype, int protocol, const typeproto **out)
{
    if (socktype == 0 && protocol == 0) {
        *out = ALL_KINDS;
        return 3;
    }
    if ((socktype == SOCK_STREAM || socktype == 0) &&
        (protocol == IPPROTO_TCP || protocol == 0)) {
        *out = &ALL_KINDS[0];
        return 1;
    }
    if ((socktype == SOCK_DGRAM || socktype == 0) &&
        (protocol == IPPROTO_UDP || protocol == 0)) {
        *out = &ALL_KINDS[1];
        return 1;
    }
    return 0;
}

/* A port the fast path takes: None (0), an exact int in 0..65535, or a
 * str/bytes of one to five ASCII digits at most 65535 (libc reads it with
 * strtoul() base 10, so leading zeros are fine).  Returns the port, or -1
 * when the pool must decide. */
static long
literal_port(PyObject *pobj)
{
    if (pobj == Py_None) {
        return 0;
    }
    if (PyLong_CheckExact(pobj)) {
        int overflow;
        long v = PyLong_AsLongAndOverflow(pobj, &overflow);
        if (overflow || v < 0 || v > 65535) {
            PyErr_Clear();
            return -1;
        }
        return v;
    }
    const char *s;
    Py_ssize_t n;
    if (PyUnicode_Check(pobj) && PyUnicode_IS_ASCII(pobj)) {
        s = (const char *)PyUnicode_DATA(pobj);
        n = PyUnicode_GET_LENGTH(pobj);
    }
    else if (PyBytes_Check(pobj)) {
        s = PyBytes_AS_STRING(pobj);
        n = PyBytes_GET_SIZE(pobj);
    }
    else {
        return -1;
    }
    if (n < 1 || n > 5) {
        return -1;
    }
    long v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v <= 65535 ? v : -1;
}

/* The answer to an address literal without libc, or NULL without an
 * exception set when the pool must answer (or NULL with one set). */
static PyObject *
literal_addrinfo(PyObject *hobj, PyObject *pobj, int family, int socktype,
                 int protocol, int flags, PyObject *families,
                 PyObject *kinds)
{
    /* Flags that cannot change the answer for a literal with a numeric
     * port: AI_PASSIVE matters only without a host.  AI_CANONNAME,
     * AI_ADDRCONFIG, AI_V4MAPPED and the rest go to libc. */
    if ((flags & ~(AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV)) != 0) {
        return NULL;
    }
    /* An ASCII str that inet_pton() accepts encodes to itself with the
     * idna codec (its labels are never empty nor longer than 63), so the
     * encoding can be skipped; anything else goes the long way. */
    const char *h;
    Py_ssize_t hlen;
    if (PyUnicode_Check(hobj) && PyUnicode_IS_ASCII(hobj)) {
        h = (const char *)PyUnicode_DATA(hobj);
        hlen = PyUnicode_GET_LENGTH(hobj);
    }
    else if (PyBytes_Check(hobj)) {
        h = PyBytes_AS_STRING(hobj);
        hlen = PyBytes_GET_SIZE(hobj);
    }
    else {
        return NULL;
    }
    if (hlen < 2 || hlen >= INET6_ADDRSTRLEN ||
        (Py_ssize_t)strlen(h) != hlen) {
        return NULL;
    }
    const typeproto *tp;
    int nkinds = literal_kinds(socktype, protocol, &tp);
    long port = nkinds ? literal_port(pobj) : -1;
    if (port < 0) {
        return NULL;
    }
    /* inet_pton() is strict (four decimal parts, no leading zeros; no
     * zone), so glibc's own parse of such text gives the same address
     * and never consults a resolver. */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } bin;
    int af;
    if (inet_pton(AF_INET, h, &bin.v4) == 1) {
        af = AF_INET;
    }
    else if (inet_pton(AF_INET6, h, &bin.v6) == 1) {
        af = AF_INET6;
    }
    else {
        return NULL;
    }
    if (family != AF_UNSPEC && family != af) {
        return NULL;
    }

    PyObject *list = NULL, *sockaddr = NULL, *fam = NULL;
    /* inet_ntop() would print back the same text for IPv4 (inet_pton()
     * took only the canonical form), through sprintf(). */
    PyObject *text = af == AF_INET ? PyUnicode_FromStringAndSize(h, hlen)
                                   : inet_text(af, &bin);
    if (text == NULL) {
        return NULL;
    }
    /* Tuples are packed by hand: this path is benchmarked, and
     * Py_BuildValue() parses its format on every call. */
    PyObject *pport = PyLong_FromLong(port);
    PyObject *empty = PyUnicode_FromStringAndSize(NULL, 0);
    if (pport == NULL || empty == NULL) {
        goto done;
    }
    if (af == AF_INET) {
        sockaddr = PyTuple_Pack(2, text, pport);
    }
    else {
        PyObject *zero = PyLong_FromLong(0);
        if (zero == NULL) {
            goto done;
        }
        sockaddr = PyTuple_Pack(4, text, pport, zero, zero);
        Py_DECREF(zero);
    }
    fam = intenum(families, af);
    if (sockaddr == NULL || fam == NULL) {
        goto done;
    }
    list = PyList_New(nkinds);
    if (list == NULL) {
        goto done;
    }
    for (int i = 0; i < nkinds; i++) {
        PyObject *kind = intenum(kinds, tp[i].socktype);
        PyObject *proto = PyLong_FromLong(tp[i].protocol);
        PyObject *entry = NULL;
        if (kind != NULL && proto != NULL) {
            entry = PyTuple_Pack(5, fam, kind, proto, empty, sockaddr);
        }
        Py_XDECREF(kind);
        Py_XDECREF(proto);
        if (entry == NULL) {
            Py_CLEAR(list);
            goto done;
        }
        PyList_SET_ITEM(list, i, entry);
    }
done:
    Py_DECREF(text);
    Py_XDECREF(pport);
    Py_XDECREF(empty);
    Py_XDECREF(sockaddr);
    Py_XDECREF(fam);
    return list;
}

/* _cl_getaddrinfo(host, port, family, type, proto, flags, families, kinds)
 * -> list | Future.  The arguments are checked exactly as
 * socket.getaddrinfo() checks them, in the same order; families and kinds
 * map ints to the AddressFamily and SocketKind members. */
/* Parse the arguments as PyArg_ParseTuple(args, "OOiiiiO!O!") would; the
 * common case (exact ints in range) without building a tuple, which this
 * benchmarked path would otherwise pay for on every call. */
static int
parse_gai_args(PyObject *const *args, Py_ssize_t nargs, int *ints)
{
    int fast = nargs == 8 && PyDict_CheckExact(args[6]) &&
               PyDict_CheckExact(args[7]);
    for (int i = 0; fast && i < 4; i++) {
        PyObject *o = args[2 + i];
        int overflow;
        long v = PyLong_CheckExact(o) ? PyLong_AsLongAndOverflow(o, &overflow)
                                      : 0;
        fast = PyLong_CheckExact(o) && !overflow && v >= INT_MIN &&
               v <= INT_MAX;
        ints[i] = (int)v;
    }
    if (fast) {
        return 0;
    }
    PyErr_Clear();
    /* The slow way, for its exact errors. */
    PyObject *tuple = PyTuple_New(nargs);
    if (tuple == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    }
    PyObject *h, *p, *f, *k;
    int r = PyArg_ParseTuple(tuple, "OOiiiiO!O!:getaddrinfo", &h, &p,
                             &ints[0], &ints[1], &ints[2], &ints[3],
                             &PyDict_Type, &f, &PyDict_Type, &k);
    Py_DECREF(tuple);
    return r ? 0 : -1;
}

static PyObject *
Loop_cl_getaddrinfo(cl_loop *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *hobj, *pobj, *families, *kinds;
    int ints[4];
    PyObject *idna = NULL, *pstr = NULL, *result = NULL;
#if PY_VERSION_HEX < 0x030C0000
    char pbuf[30];
#endif
    const char *hptr, *pptr;

    if (cl_loop_check_open(self) < 0) {
        return NULL;
    }
    if (parse_gai_args(args, nargs, ints) < 0) {
        return NULL;
    }
    hobj = args[0];
    pobj = args[1];
    int family = ints[0], socktype = ints[1], protocol = ints[2];
    int flags = ints[3];
    families = args[6];
    kinds = args[7];
    if (hobj != Py_None && !PyUnicode_Check(hobj) && !PyBytes_Check(hobj)) {
        PyErr_SetString(PyExc_TypeError,
                        "getaddrinfo() argument 1 must be string or None");
        return NULL;
    }
    if (hobj != Py_None) {
        result = literal_addrinfo(hobj, pobj, family, socktype, protocol,
                                  flags, families, kinds);
        if (result != NULL || PyErr_Occurred()) {
            if (result != NULL &&
                PySys_Audit("socket.getaddrinfo", "OOiii", hobj, pobj,
                            family, socktype, protocol) < 0) {
                Py_CLEAR(result);
            }
            return result;
        }
    }

    /* The long way, as socket_getaddrinfo() goes. */
    if (hobj == Py_None) {
        hptr = NULL;
    }
    else if (PyUnicode_Check(hobj)) {
        idna = PyUnicode_AsEncodedString(hobj, "idna", NULL);
        if (idna == NULL) {
            return NULL;
        }
        hptr = PyBytes_AS_STRING(idna);
    }
    else {
        hptr = PyBytes_AS_STRING(hobj);
    }
    if (PyLong_CheckExact(pobj)) {
#if PY_VERSION_HEX >= 0x030C0000
        /* 3.12 passes any int as its decimal text (gh-74895). */
        pstr = PyObject_Str(pobj);
        if (pstr == NULL) {
            goto error;
        }
        pptr = PyUnicode_AsUTF8(pstr);
        if (pptr == NULL) {
            goto error;
        }
#else
        long value = PyLong_AsLong(pobj);
        if (value == -1 && PyErr_Occurred()) {
            goto error;
        }
        PyOS_snprintf(pbuf, sizeof(pbuf), "%ld", value);
        pptr = pbuf;
#endif
    }
    else if (PyUnicode_Check(pobj)) {
        pptr = PyUnicode_AsUTF8(pobj);
        if (pptr == NULL) {
            goto error;
        }
    }
    else if (PyBytes_Check(pobj)) {
        pptr = PyBytes_AS_STRING(pobj);
    }
    else if (pobj == Py_None) {
        pptr = NULL;
    }
    else {
        PyErr_SetString(PyExc_OSError, "Int or String expected");
        goto error;
    }
#if defined(__APPLE__) && defined(AI_NUMERICSERV)
    /* As socketmodule.c: older macOS crashes on a NULL or "0" service
     * with AI_NUMERICSERV. */
    if ((flags & AI_NUMERICSERV) && (pptr == NULL || (pptr[0] == '0' &&
                                                      pptr[1] == 0))) {
        pptr = "00";
    }
#endif
    if (PySys_Audit("socket.getaddrinfo", "OOiii", hobj, pobj, family,
                    socktype, protocol) < 0) {
        goto error;
    }

    /* Host and service are copied: the request outlives the call. */
    size_t hlen = hptr ? strlen(hptr) + 1 : 0;
    size_t plen = pptr ? strlen(pptr) + 1 : 0;
    cl_dns_req *req = req_new(self, REQ_ADDRINFO, hlen + plen);
    if (req == NULL) {
        goto error;
    }
    if (hptr != NULL) {
        memcpy(req->text, hptr, hlen);
        req->host = req->text;
    }
    if (pptr != NULL) {
        memcpy(req->text + hlen, pptr, plen);
        req->service = req->text + hlen;
    }
    req->hints.ai_family = family;
    req->hints.ai_socktype = socktype;
    req->hints.ai_protocol = protocol;
    req->hints.ai_flags = flags;
    req->families = Py_NewRef(families);
    req->kinds = Py_NewRef(kinds);
    result = req_submit(req);
error:
    Py_XDECREF(idna);
    Py_XDECREF(pstr);
    return result;
}

/* --- getnameinfo() ----------------------------------------------------- */

/* _cl_getnameinfo(sockaddr, flags) -> Future.  Everything up to the
 * getnameinfo() call itself happens here, as socket_getnameinfo() does
 * it: the sockaddr is parsed by getaddrinfo() with AI_NUMERICHOST, which
 * never consults a resolver. */
static PyObject *
Loop_cl_getnameinfo(cl_loop *self, PyObject *args)
{
    PyObject *sa;
    int flags;
    const char *hostp;
    int port;
    unsigned int flowinfo = 0, scope_id = 0;
    char pbuf[NI_MAXSERV];
    struct addrinfo hints, *res = NULL;
    PyObject *result = NULL;

    if (cl_loop_check_open(self) < 0) {
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "Oi:getnameinfo", &sa, &flags)) {
        return NULL;
    }
    if (!PyTuple_Check(sa)) {
        PyErr_SetString(PyExc_TypeError,
                        "getnameinfo() argument 1 must be a tuple");
        return NULL;
    }
    if (!PyArg_ParseTuple(sa,
                          "si|II;getnameinfo(): illegal sockaddr argument",
                          &hostp, &port, &flowinfo, &scope_id)) {
        return NULL;
    }
    if (flowinfo > 0xfffff) {
        PyErr_SetString(PyExc_OverflowError,
                        "getnameinfo(): flowinfo must be 0-1048575.");
        return NULL;
    }
    if (PySys_Audit("socket.getnameinfo", "(O)", sa) < 0) {
        return NULL;
    }
    PyOS_snprintf(pbuf, sizeof(pbuf), "%d", port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM; /* make numeric port happy */
    hints.ai_flags = AI_NUMERICHOST;
    int error = getaddrinfo(hostp, pbuf, &hints, &res);
    if (error) {
        PyObject *exc = gai_exception(error, errno);
        if (exc != NULL) {
            cl_restore_exc(exc);
        }
        return NULL;
    }
    if (res->ai_next) {
        PyErr_SetString(PyExc_OSError,
                        "sockaddr resolved to multiple addresses");
        goto done;
    }
    switch (res->ai_family) {
    case AF_INET:
        if (PyTuple_GET_SIZE(sa) != 2) {
            PyErr_SetString(PyExc_OSError, "IPv4 sockaddr must be 2 tuple");
            goto done;
        }
        break;
    case AF_INET6: {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)res->ai_addr;
        sin6->sin6_flowinfo = htonl(flowinfo);
        sin6->sin6_scope_id = scope_id;
        break;
    }
    }
    if (res->ai_addrlen > sizeof(struct sockaddr_storage)) {
        PyErr_SetString(PyExc_OSError, "sockaddr too long");
        goto done;
    }
    cl_dns_req *req = req_new(self, REQ_NAMEINFO, 0);
    if (req == NULL) {
        goto done;
    }
    memcpy(&req->addr, res->ai_addr, res->ai_addrlen);
    req->addrlen = res->ai_addrlen;
    req->ni_flags = flags;
    result = req_submit(req);
done:
    freeaddrinfo(res);
    return result;
}

/* --- Cancellation ------------------------------------------------------ */

/* _cl_dns_cancel(future): the future of a lookup was cancelled.  A
 * request still queued is taken off the pool; one already running
 * finishes and its answer is dropped. */
static PyObject *
Loop_cl_dns_cancel(cl_loop *self, PyObject *future)
{
    for (cl_dns_req *req = self->dns_reqs; req != NULL; req = req->next) {
        if (req->future == future) {
            (void)uv_cancel((uv_req_t *)&req->work);
            break;
        }
    }
    Py_RETURN_NONE;
}

/* _cl_dns_cancel_all(): close() is coming; lookups that have not started
 * never will, so closing waits only for those already running. */
static PyObject *
Loop_cl_dns_cancel_all(cl_loop *self, PyObject *Py_UNUSED(ignored))
{
    for (cl_dns_req *req = self->dns_reqs; req != NULL; req = req->next) {
        (void)uv_cancel((uv_req_t *)&req->work);
    }
    Py_RETURN_NONE;
}

PyMethodDef cl_dns_methods[] = {
    {"_cl_getaddrinfo", (PyCFunction)(void (*)(void))Loop_cl_getaddrinfo,
     METH_FASTCALL, NULL},
    {"_cl_getnameinfo", (PyCFunction)Loop_cl_getnameinfo, METH_VARARGS,
     NULL},
    {"_cl_dns_cancel", (PyCFunction)Loop_cl_dns_cancel, METH_O, NULL},
    {"_cl_dns_cancel_all", (PyCFunction)Loop_cl_dns_cancel_all, METH_NOARGS,
     NULL},
    {NULL, NULL, 0, NULL},
};
