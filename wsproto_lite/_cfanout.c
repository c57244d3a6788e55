/* Fan-out below the interpreter: one frame written to many sockets in one call, the GIL released.
 *
 * send_many(fds, data) -> list[tuple[int, int]]
 * send_each(fds, datas) -> list[tuple[int, int]]
 *
 * For every file descriptor in ``fds`` (a list of ints: non-blocking stream sockets whose transports hold
 * nothing unsent), one send() of ``data`` with MSG_NOSIGNAL (a reset peer must not raise SIGPIPE) and
 * MSG_DONTWAIT (never blocks, whatever the socket's own mode); EINTR is retried.  The answer lists only the sockets that did not take the whole frame, as (index in fds, result):
 * result >= 0 is how many bytes the kernel took (a partial write, or 0 for EAGAIN), result < 0 is -errno.
 * ``send_each`` sends ``datas[i]`` (a list of bytes, one per descriptor) to ``fds[i]``: the coalesced
 * frames each connection queued during one loop iteration.
 * The caller queues the rest on each of those transports (so order and backpressure stay its business) and
 * leaves errors for the transport to discover on its next write.  The pure-Python reference is
 * ``wsproto_lite.server.fanout.send_many_py``; both answer the same for the same sockets.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* CPython ignores SIGPIPE at startup: EPIPE comes back as an error anyway */
#endif
#ifndef MSG_DONTWAIT
#define MSG_DONTWAIT 0 /* the sockets are non-blocking anyway */
#endif

static int
fds_from_list(PyObject *list, int *fds, Py_ssize_t count)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        long fd = PyLong_AsLong(PyList_GET_ITEM(list, i));
        if (fd == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (fd < 0 || fd > INT_MAX) {
            PyErr_Format(PyExc_ValueError, "fds[%zd] is not a file descriptor: %ld", i, fd);
            return -1;
        }
        fds[i] = (int)fd;
    }
    return 0;
}

/* One send(); the result as documented above.  Runs without the GIL. */
static Py_ssize_t
send_one(int fd, const char *data, size_t size)
{
    ssize_t sent;
    do {
        sent = send(fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (sent < 0 && errno == EINTR);
    if (sent >= 0) {
        return (Py_ssize_t)sent;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return 0;
    }
    return -(Py_ssize_t)errno;
}

static void
send_all(const int *fds, Py_ssize_t count, const char *data, size_t size, Py_ssize_t *results)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        results[i] = send_one(fds[i], data, size);
    }
}

/* The (index, result) pairs of the sockets that did not take all of their data: sizes[i], or all the
 * same ``size`` when ``sizes`` is NULL. */
static PyObject *
shortfalls(const Py_ssize_t *results, Py_ssize_t count, Py_ssize_t size, const Py_ssize_t *sizes)
{
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (results[i] == (sizes == NULL ? size : sizes[i])) {
            continue;
        }
        PyObject *item = Py_BuildValue("(nn)", i, results[i]);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    return out;
}

static PyObject *
send_many(PyObject *module, PyObject *args)
{
    PyObject *list;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "O!y*:send_many", &PyList_Type, &list, &data)) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(list);
    PyObject *out = NULL;
    int *fds = PyMem_New(int, count > 0 ? count : 1);
    Py_ssize_t *results = PyMem_New(Py_ssize_t, count > 0 ? count : 1);
    if (fds == NULL || results == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (fds_from_list(list, fds, count) < 0) {
        goto done;
    }
    /* ``data`` stays alive and unchanged: the buffer export holds it for the whole call. */
    Py_BEGIN_ALLOW_THREADS
    send_all(fds, count, (const char *)data.buf, (size_t)data.len, results);
    Py_END_ALLOW_THREADS
    out = shortfalls(results, count, data.len, NULL);
done:
    PyMem_Free(fds);
    PyMem_Free(results);
    PyBuffer_Release(&data);
    return out;
}

static PyObject *
send_each(PyObject *module, PyObject *args)
{
    PyObject *list, *datas;
    if (!PyArg_ParseTuple(args, "O!O!:send_each", &PyList_Type, &list, &PyList_Type, &datas)) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(list);
    if (PyList_GET_SIZE(datas) != count) {
        PyErr_SetString(PyExc_ValueError, "send_each: one data per descriptor");
        return NULL;
    }
    PyObject *out = NULL;
    PyObject *held = PyList_GetSlice(datas, 0, count); /* our own references: the list may not change them */
    int *fds = PyMem_New(int, count > 0 ? count : 1);
    Py_ssize_t *results = PyMem_New(Py_ssize_t, count > 0 ? count : 1);
    Py_ssize_t *sizes = PyMem_New(Py_ssize_t, count > 0 ? count : 1);
    const char **bufs = PyMem_New(const char *, count > 0 ? count : 1);
    if (held == NULL || fds == NULL || results == NULL || sizes == NULL || bufs == NULL) {
        if (held != NULL) {
            PyErr_NoMemory();
        }
        goto done;
    }
    if (fds_from_list(list, fds, count) < 0) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(held, i);
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "datas[%zd] must be bytes, not %.100s", i, Py_TYPE(item)->tp_name);
            goto done;
        }
        bufs[i] = PyBytes_AS_STRING(item);
        sizes[i] = PyBytes_GET_SIZE(item);
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        results[i] = send_one(fds[i], bufs[i], (size_t)sizes[i]);
    }
    Py_END_ALLOW_THREADS
    out = shortfalls(results, count, 0, sizes);
done:
    Py_XDECREF(held);
    PyMem_Free(fds);
    PyMem_Free(results);
    PyMem_Free(sizes);
    PyMem_Free(bufs);
    return out;
}

static PyMethodDef methods[] = {
    {"send_many", send_many, METH_VARARGS,
     "send_many(fds, data) -> [(index, result)]: one non-blocking send() of data per socket, GIL released; "
     "lists the sockets that did not take it all (result: bytes taken, or -errno)."},
    {"send_each", send_each, METH_VARARGS,
     "send_each(fds, datas) -> [(index, result)]: one non-blocking send() of datas[i] (bytes) to fds[i], "
     "GIL released; lists the sockets that did not take all of theirs."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "wsproto_lite._cfanout", "Fan-out of one frame to many sockets below the interpreter.",
    0, methods,
};

PyMODINIT_FUNC
PyInit__cfanout(void)
{
    return PyModuleDef_Init(&module_def);
}
