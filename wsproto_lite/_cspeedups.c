/* Optional compiled accelerator for wsproto-lite: masking payloads (RFC 6455 §5.3).
 *
 * The pure-Python ``apply_mask`` in ``_frames.py`` is the reference; this module computes exactly the same
 * bytes, faster. ``_speedups.py`` decides which one is used (``WSPROTO_LITE_NO_SPEEDUPS=1`` forces Python).
 *
 *   apply_mask(data, mask, offset=0) -> bytes
 *       ``data`` XORed with the 4-byte ``mask`` repeated, ``data[0]`` being byte ``offset`` of the payload.
 *   mask_into(dst, pos, data, mask, offset=0) -> int
 *       The same, written into the writable buffer ``dst`` at ``pos`` (no new object); returns the end.
 *
 * §5.3: "Octet i of the transformed data is the XOR of octet i of the original data with octet at index
 * i modulo 4 of the masking key." Masking and unmasking are the same operation.
 *
 * No undefined behaviour: every load and store of a word goes through memcpy (no unaligned or
 * type-punned pointer access), lengths are Py_ssize_t checked against the buffers they index, and the
 * buffers are held (PyObject_GetBuffer) for as long as they are read or written, so they cannot be
 * resized or freed meanwhile, even while the GIL is released for a large payload.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Below this size, releasing the GIL costs more than it lets other threads do. */
#define RELEASE_GIL_ABOVE (1 << 18)

/* XOR ``n`` bytes of ``src`` into ``dst`` with ``key`` repeated; ``key[0]`` applies to ``src[0]``.
 *
 * ``dst`` and ``src`` are either the same buffer or do not overlap. Eight bytes at a time: the 8-byte
 * pattern is the key twice, in memory order, so it works on any byte order. The loop body is plain
 * enough for the compiler to vectorise it (16 or 32 bytes per instruction at -O3). */
static void
xor_mask(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char key[4])
{
    unsigned char pattern[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
    uint64_t key8;
    memcpy(&key8, pattern, 8);
    Py_ssize_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t word;
        memcpy(&word, src + i, 8);
        word ^= key8;
        memcpy(dst + i, &word, 8);
    }
    /* The 0-7 byte tail: i is a multiple of 8 here, so i % 4 restarts the key at key[0]. */
    for (; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

/* The key rotated so that its first byte applies to payload byte ``offset`` (any integer). */
static int
rotated_key(const Py_buffer *mask, Py_ssize_t offset, unsigned char key[4])
{
    if (mask->len != 4) {
        PyErr_Format(PyExc_ValueError, "mask must be 4 bytes, not %zd", mask->len);
        return -1;
    }
    const unsigned char *m = (const unsigned char *)mask->buf;
    /* offset % 4 is negative for a negative offset: bring it into 0..3 (Python's offset & 3). */
    int shift = (int)(((offset % 4) + 4) % 4);
    for (int j = 0; j < 4; j++) {
        key[j] = m[(j + shift) & 3];
    }
    return 0;
}

static void
xor_mask_maybe_nogil(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char key[4])
{
    if (n > RELEASE_GIL_ABOVE) {
        Py_BEGIN_ALLOW_THREADS
        xor_mask(dst, src, n, key);
        Py_END_ALLOW_THREADS
    }
    else {
        xor_mask(dst, src, n, key);
    }
}

PyDoc_STRVAR(apply_mask_doc,
"apply_mask(data, mask, offset=0)\n--\n\n"
"XOR ``data`` (any contiguous buffer) with the 4-byte ``mask`` repeated (RFC 6455 5.3); return bytes.\n"
"``offset`` is the position of ``data[0]`` in the frame payload, for payloads processed in pieces.");

/* The same signature as the Python reference: (data, mask, offset=0), each by position or keyword. */
static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[3] = {"data", "mask", "offset"};
    PyObject *argv[3] = {NULL, NULL, NULL};
    (void)module;
    if (nargs > 3) {
        PyErr_Format(PyExc_TypeError, "apply_mask() takes at most 3 arguments (%zd given)", nargs);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        argv[i] = args[i];
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int j = 0;
        while (j < 3 && PyUnicode_CompareWithASCIIString(name, names[j]) != 0) {
            j++;
        }
        if (j == 3 || argv[j] != NULL) {
            PyErr_Format(PyExc_TypeError, "apply_mask() got an unexpected or repeated argument %R", name);
            return NULL;
        }
        argv[j] = args[nargs + k];
    }
    if (argv[0] == NULL || argv[1] == NULL) {
        PyErr_SetString(PyExc_TypeError, "apply_mask() needs data and mask");
        return NULL;
    }
    Py_ssize_t offset = 0;
    if (argv[2] != NULL) {
        offset = PyNumber_AsSsize_t(argv[2], PyExc_OverflowError);
        if (offset == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    Py_buffer data, mask;
    if (PyObject_GetBuffer(argv[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(argv[1], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    PyObject *result = NULL;
    unsigned char key[4];
    if (rotated_key(&mask, offset, key) == 0) {
        /* A new bytes object, filled before anyone else can see it: one pass, one copy. */
        result = PyBytes_FromStringAndSize(NULL, data.len);
        if (result != NULL) {
            xor_mask_maybe_nogil((unsigned char *)PyBytes_AS_STRING(result), (const unsigned char *)data.buf,
                                 data.len, key);
        }
    }
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

PyDoc_STRVAR(mask_into_doc,
"mask_into(dst, pos, data, mask, offset=0, /)\n--\n\n"
"Write ``apply_mask(data, mask, offset)`` into the writable buffer ``dst`` at ``pos``; return\n"
"``pos + len(data)``. Raises ValueError if it does not fit. ``dst`` may be ``data`` itself (pos 0).");

static PyObject *
mask_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs < 4 || nargs > 5) {
        PyErr_Format(PyExc_TypeError, "mask_into() takes 4 or 5 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t pos = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t offset = 0;
    if (nargs == 5) {
        offset = PyNumber_AsSsize_t(args[4], PyExc_OverflowError);
        if (offset == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    Py_buffer dst, data, mask;
    if (PyObject_GetBuffer(args[0], &dst, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &data, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&dst);
        return NULL;
    }
    if (PyObject_GetBuffer(args[3], &mask, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&dst);
        return NULL;
    }
    PyObject *result = NULL;
    unsigned char key[4];
    const unsigned char *src = (const unsigned char *)data.buf;
    unsigned char *out = (unsigned char *)dst.buf;
    if (pos < 0 || pos > dst.len || data.len > dst.len - pos) {
        PyErr_Format(PyExc_ValueError, "%zd bytes do not fit at %zd in a buffer of %zd", data.len, pos, dst.len);
    }
    /* In place is fine; a partial overlap would read bytes already written (compare addresses as
     * integers: relational operators on pointers into different objects are undefined). */
    else if ((uintptr_t)src != (uintptr_t)(out + pos) && (uintptr_t)src < (uintptr_t)(out + pos) + (uintptr_t)data.len
             && (uintptr_t)(out + pos) < (uintptr_t)src + (uintptr_t)data.len) {
        PyErr_SetString(PyExc_ValueError, "data overlaps the destination");
    }
    else if (rotated_key(&mask, offset, key) == 0) {
        xor_mask_maybe_nogil(out + pos, src, data.len, key);
        result = PyLong_FromSsize_t(pos + data.len);
    }
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    PyBuffer_Release(&dst);
    return result;
}

static PyMethodDef methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL | METH_KEYWORDS, apply_mask_doc},
    {"mask_into", (PyCFunction)(void (*)(void))mask_into, METH_FASTCALL, mask_into_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "wsproto_lite._cspeedups",
    .m_doc = "Compiled masking for wsproto-lite (RFC 6455 5.3); _frames.apply_mask is the reference.",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__cspeedups(void)
{
    return PyModuleDef_Init(&module_def);
}
