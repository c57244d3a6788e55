/* Optional compiled accelerator for wsproto-lite: masking payloads (RFC 6455 §5.3), and the reader's
 * fast case for whole small messages.
 *
 * The pure-Python ``apply_mask`` in ``_frames.py`` is the reference; this module computes exactly the same
 * bytes, faster. ``_speedups.py`` decides which one is used (``WSPROTO_LITE_NO_SPEEDUPS=1`` forces Python).
 * Likewise ``parse_messages`` does what the Python loop of ``MessageReader._parse_whole_frames`` does.
 *
 *   apply_mask(data, mask, offset=0) -> bytes
 *       ``data`` XORed with the 4-byte ``mask`` repeated, ``data[0]`` being byte ``offset`` of the payload.
 *   PayloadBuffer(capacity=0, text=False): append(data, start, end, mask=None, offset=0) -> bool;
 *   take() -> bytes; take_text() -> str
 *       A message assembled piece by piece straight from the received chunks, unmasked on the way in:
 *       one copy per byte from the wire to the final ``bytes`` (no slice, no unmasked piece, no join).
 *   parse_messages(data, pos, masked, limit, out, text_type, text_slot, binary_type, binary_slot) -> int
 *       The whole, final, plain text/binary frames at ``data[pos:]`` as message events, up to the first
 *       frame that is anything else, which it leaves to the reader's general path (see its doc).
 *   parse_message(data, masked, limit, text_type, text_slot, binary_type, binary_slot) -> event | None
 *       The event of ``data`` when it is exactly one such frame (the most common read), else None.
 *   parse_header(header_type, error_type, buf, pos) -> header_type | None
 *       One frame header, as ``_frames.parse_header`` (the reference) parses it, for the general path.
 *   encode_frame(opcode, payload, fin=True, rsv=0, mask=None) -> bytes
 *       One whole frame in one allocation, as ``_frames.python_encode_frame`` (the reference) builds it.
 *   coalesce(pieces, limit) -> list
 *       The send queue's small neighbours joined, as ``_writer.python_coalesce`` (the reference) does.
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

/* Write ``src`` XORed with ``key`` repeated into ``dst`` (``key[0]`` applies to ``src[0]``; NULL: a plain
 * copy); return whether every byte written is ASCII (< 0x80), found by OR-ing the written words.
 *
 * ``dst`` is always a buffer of our own, distinct from ``src``. Eight bytes at a time: the 8-byte pattern
 * is the key twice, in memory order, so it works on any byte order; memcpy is how C reads and writes a
 * word at any alignment without undefined behaviour (compilers turn it into one move). The loop is
 * plain enough for the compiler to vectorise it (16 or 32 bytes per instruction at -O3). */
static int
mask_copy(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char *key)
{
    static const unsigned char zero[4] = {0, 0, 0, 0};
    const unsigned char *k = key != NULL ? key : zero;
    unsigned char pattern[8] = {k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]};
    uint64_t key8, seen = 0;
    memcpy(&key8, pattern, 8);
    Py_ssize_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t word;
        memcpy(&word, src + i, 8);
        word ^= key8;
        seen |= word;
        memcpy(dst + i, &word, 8);
    }
    /* The 0-7 byte tail: i is a multiple of 8 here, so i % 4 restarts the key at k[0]. */
    unsigned char tail = 0;
    for (; i < n; i++) {
        dst[i] = src[i] ^ k[i & 3];
        tail |= dst[i];
    }
    return ((seen & UINT64_C(0x8080808080808080)) | (tail & 0x80)) == 0;
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

PyDoc_STRVAR(apply_mask_doc,
"apply_mask(data, mask, offset=0)\n--\n\n"
"XOR ``data`` (any contiguous buffer) with the 4-byte ``mask`` repeated (RFC 6455 5.3); return bytes.\n"
"``offset`` is the position of ``data[0]`` in the frame payload, for payloads processed in pieces.");

/* ``argv[i]`` = argument ``names[i]`` of a METH_FASTCALL | METH_KEYWORDS call, given by position or by
 * keyword (NULL: not given); the first ``required`` must be given. A Python def's argument binding. */
static int
gather_args(const char *function, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
            const char *const *names, int count, int required, PyObject **argv)
{
    if (nargs > count) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", function, count, nargs);
        return -1;
    }
    for (int i = 0; i < count; i++) {
        argv[i] = i < nargs ? args[i] : NULL;
    }
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        int j = 0;
        while (j < count && PyUnicode_CompareWithASCIIString(name, names[j]) != 0) {
            j++;
        }
        if (j == count || argv[j] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected or repeated argument %R", function, name);
            return -1;
        }
        argv[j] = args[nargs + k];
    }
    for (int i = 0; i < required; i++) {
        if (argv[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", function, names[i]);
            return -1;
        }
    }
    return 0;
}

/* The same signature as the Python reference: (data, mask, offset=0), each by position or keyword. */
static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[3] = {"data", "mask", "offset"};
    PyObject *argv[3];
    (void)module;
    if (gather_args("apply_mask", args, nargs, kwnames, names, 3, 2, argv) < 0) {
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
            unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(result);
            const unsigned char *src = (const unsigned char *)data.buf;
            if (data.len > RELEASE_GIL_ABOVE) {
                Py_BEGIN_ALLOW_THREADS
                mask_copy(dst, src, data.len, key);
                Py_END_ALLOW_THREADS
            }
            else {
                mask_copy(dst, src, data.len, key);
            }
        }
    }
    PyBuffer_Release(&mask);
    PyBuffer_Release(&data);
    return result;
}

/* -- parse_messages: whole small frames, straight to message events --------------------------------- */

/* The first header byte of the frames taken here: FIN, no RSV bits, text or binary (RFC 6455 §5.2). */
#define FIN_TEXT 0x81
#define FIN_BINARY 0x82
#define MASK_BIT 0x80
#define LENGTH_BITS 0x7F
#define LENGTH_16 126

/* -- encode_frame and coalesce: the send path ------------------------------------------------------ */

PyDoc_STRVAR(encode_frame_doc,
"encode_frame(opcode, payload, fin=True, rsv=0, mask=None)\n--\n\n"
"One whole frame as a single bytes object: the header (RFC 6455 5.2, minimal length encoding), the\n"
"4-byte ``mask`` when given, and the payload, masked with it (5.3) when given.");

/* The frame is written straight into one new bytes object: the header, then the payload copied (or masked)
 * once. What ``_frames.encode_frame`` (the reference) returns, in one allocation instead of three. */
static PyObject *
encode_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[5] = {"opcode", "payload", "fin", "rsv", "mask"};
    PyObject *argv[5];
    (void)module;
    if (gather_args("encode_frame", args, nargs, kwnames, names, 5, 2, argv) < 0) {
        return NULL;
    }
    long opcode = PyLong_AsLong(argv[0]);
    if (opcode == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int fin = 1;
    if (argv[2] != NULL && (fin = PyObject_IsTrue(argv[2])) < 0) {
        return NULL;
    }
    long rsv = 0;
    if (argv[3] != NULL && (rsv = PyLong_AsLong(argv[3])) == -1 && PyErr_Occurred()) {
        return NULL;
    }
    long b0 = (fin ? 0x80 : 0) | rsv | opcode;
    if (opcode < 0 || rsv < 0 || b0 > 0xFF) {
        PyErr_SetString(PyExc_ValueError, "bytes must be in range(0, 256)");
        return NULL;
    }
    PyObject *mask_obj = argv[4] != NULL ? argv[4] : Py_None;
    Py_buffer payload, mask;
    if (PyObject_GetBuffer(argv[1], &payload, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *key = NULL;
    if (mask_obj != Py_None) {
        if (PyObject_GetBuffer(mask_obj, &mask, PyBUF_SIMPLE) < 0) {
            PyBuffer_Release(&payload);
            return NULL;
        }
        if (mask.len != 4) {
            PyErr_Format(PyExc_ValueError, "mask must be 4 bytes, not %zd", mask.len);
            PyBuffer_Release(&mask);
            PyBuffer_Release(&payload);
            return NULL;
        }
        key = (const unsigned char *)mask.buf;
    }
    Py_ssize_t n = payload.len;
    /* §5.2: the minimal number of bytes MUST be used to encode the length */
    Py_ssize_t header_size = n < LENGTH_16 ? 2 : n < 0x10000 ? 4 : 10;
    Py_ssize_t key_size = key != NULL ? 4 : 0;
    PyObject *result = NULL;
    if (n > PY_SSIZE_T_MAX - header_size - key_size) {
        PyErr_NoMemory();
    }
    else {
        result = PyBytes_FromStringAndSize(NULL, header_size + key_size + n);
    }
    if (result != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        unsigned char mask_bit = key != NULL ? MASK_BIT : 0;
        out[0] = (unsigned char)b0;
        if (header_size == 2) {
            out[1] = mask_bit | (unsigned char)n;
        }
        else if (header_size == 4) {
            out[1] = mask_bit | LENGTH_16;
            out[2] = (unsigned char)(n >> 8);
            out[3] = (unsigned char)n;
        }
        else {
            uint64_t length = (uint64_t)n; /* network byte order, most significant bit 0 (§5.2) */
            out[1] = mask_bit | LENGTH_BITS;
            for (int i = 0; i < 8; i++) {
                out[2 + i] = (unsigned char)(length >> (56 - 8 * i));
            }
        }
        unsigned char *body = out + header_size;
        if (key != NULL) {
            memcpy(body, key, 4);
            body += 4;
        }
        const unsigned char *src = (const unsigned char *)payload.buf;
        if (n > RELEASE_GIL_ABOVE) {
            Py_BEGIN_ALLOW_THREADS
            mask_copy(body, src, n, key);
            Py_END_ALLOW_THREADS
        }
        else if (n > 0) {
            mask_copy(body, src, n, key);
        }
    }
    if (key != NULL) {
        PyBuffer_Release(&mask);
    }
    PyBuffer_Release(&payload);
    return result;
}

PyDoc_STRVAR(coalesce_doc,
"coalesce(pieces, limit, /)\n--\n\n"
"``pieces`` (a list of bytes-like objects) with every run of pieces shorter than ``limit`` joined into\n"
"one bytes; longer pieces, and a run of one, are the very same objects (no copy).");

/* One bytes object holding ``pieces[start:end]`` back to back (measured by their buffers, as
 * ``b"".join`` does). */
static PyObject *
join_run(PyObject *pieces, Py_ssize_t start, Py_ssize_t end)
{
    Py_ssize_t total = 0;
    for (Py_ssize_t i = start; i < end; i++) {
        Py_buffer piece;
        if (PyObject_GetBuffer(PyList_GET_ITEM(pieces, i), &piece, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        total += piece.len;
        PyBuffer_Release(&piece);
    }
    PyObject *joined = PyBytes_FromStringAndSize(NULL, total);
    if (joined == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(joined);
    Py_ssize_t at = 0;
    for (Py_ssize_t i = start; i < end; i++) {
        Py_buffer piece;
        if (PyObject_GetBuffer(PyList_GET_ITEM(pieces, i), &piece, PyBUF_SIMPLE) < 0) {
            Py_DECREF(joined);
            return NULL;
        }
        if (piece.len > total - at) { /* grew since it was measured (no Python code ran: cannot happen) */
            PyBuffer_Release(&piece);
            Py_DECREF(joined);
            PyErr_SetString(PyExc_RuntimeError, "a piece changed size while being joined");
            return NULL;
        }
        memcpy(out + at, piece.buf, (size_t)piece.len);
        at += piece.len;
        PyBuffer_Release(&piece);
    }
    if (at != total && _PyBytes_Resize(&joined, at) < 0) {
        return NULL;
    }
    return joined;
}

/* Append the run ``pieces[start:end]`` to ``result``: the piece itself when it is alone. */
static int
add_run(PyObject *result, PyObject *pieces, Py_ssize_t start, Py_ssize_t end)
{
    if (end - start == 1) {
        return PyList_Append(result, PyList_GET_ITEM(pieces, start));
    }
    PyObject *joined = join_run(pieces, start, end);
    if (joined == NULL) {
        return -1;
    }
    int rc = PyList_Append(result, joined);
    Py_DECREF(joined);
    return rc;
}

static PyObject *
coalesce(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "coalesce() takes a list of pieces and a limit");
        return NULL;
    }
    PyObject *pieces = args[0];
    Py_ssize_t limit = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *result = PyList_New(0);
    if (result == NULL) {
        return NULL;
    }
    Py_ssize_t run_start = 0;
    /* The list is only read; its size is re-read each time round all the same. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pieces); i++) {
        Py_ssize_t size = PyObject_Length(PyList_GET_ITEM(pieces, i));
        if (size < 0) {
            Py_DECREF(result);
            return NULL;
        }
        if (size < limit) {
            continue;
        }
        if (i > run_start && add_run(result, pieces, run_start, i) < 0) {
            Py_DECREF(result);
            return NULL;
        }
        if (PyList_Append(result, PyList_GET_ITEM(pieces, i)) < 0) {
            Py_DECREF(result);
            return NULL;
        }
        run_start = i + 1;
    }
    Py_ssize_t n = PyList_GET_SIZE(pieces);
    if (n > run_start && add_run(result, pieces, run_start, n) < 0) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

/* A message event of ``type`` with its ``data`` slot set to ``value`` (a new reference; steals nothing):
 * what ``object.__new__(type)`` then the slot's ``__set__`` do, the way _reader.py's Python fast loop
 * builds the frozen events (a frozen dataclass's __init__ would route through object.__setattr__). */
static PyObject *
new_event(PyTypeObject *type, PyObject *slot, PyObject *value)
{
    PyObject *event = type->tp_alloc(type, 0);
    if (event == NULL) {
        return NULL;
    }
    if (Py_TYPE(slot)->tp_descr_set(slot, event, value) < 0) {
        Py_DECREF(event);
        return NULL;
    }
    return event;
}

/* The text of a payload: unmasked straight into a new 1-byte ``str`` when every byte is ASCII (valid
 * UTF-8 by itself); otherwise decoded by CPython's strict UTF-8 codec from there. Returns NULL with no
 * exception set when the payload is not valid UTF-8 (RFC 6455 §8.1, RFC 3629): the caller stops and the
 * general path reports it at the right byte. */
static PyObject *
payload_text(const unsigned char *src, Py_ssize_t n, const unsigned char *key)
{
    PyObject *ascii = PyUnicode_New(n, 127);
    if (ascii == NULL) {
        return NULL;
    }
    /* Until it is returned nobody else sees this str: when the bytes are not all ASCII it is only a
     * scratch buffer for the decoder below, and dropped. */
    unsigned char *dst = (unsigned char *)PyUnicode_DATA(ascii);
    if (mask_copy(dst, src, n, key)) {
        return ascii;
    }
    PyObject *text = PyUnicode_DecodeUTF8((const char *)dst, n, "strict");
    Py_DECREF(ascii);
    if (text == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
    }
    return text;
}

PyDoc_STRVAR(parse_messages_doc,
"parse_messages(data, pos, masked, limit, out, text_type, text_slot, binary_type, binary_slot, /)\n--\n\n"
"Parse the whole, final, plain text and binary frames at ``data[pos:]`` into message events appended\n"
"to the list ``out``, up to the first frame that is anything else (RFC 6455 5.2-5.4, 8.1); return the\n"
"position after the last frame taken. ``masked``: the frames must be masked (a server) or not (a\n"
"client), 5.1. Frames longer than ``limit`` stop it (then the general path applies the limits, 10.4).\n"
"A frame that is cut short, fragmented, a control frame, has RSV bits, the wrong mask bit or invalid\n"
"UTF-8 is left for the caller's general path, which applies every rule to it and reports errors.\n"
"The events are ``text_type`` / ``binary_type`` instances with ``text_slot`` / ``binary_slot`` (their\n"
"``data`` member descriptors) set to the str / bytes payload.");

static int
check_event_type(PyObject *type, PyObject *slot)
{
    if (!PyType_Check(type) || Py_TYPE(slot)->tp_descr_set == NULL) {
        PyErr_SetString(PyExc_TypeError, "parse_messages() needs event types and their data descriptors");
        return -1;
    }
    return 0;
}

/* One frame at ``p`` (``left`` bytes available): its payload's offset from ``p`` and its length, or 0
 * when the fast case does not take it (then the general path does). */
static Py_ssize_t
whole_frame(const unsigned char *p, Py_ssize_t left, int masked, Py_ssize_t limit, Py_ssize_t *length)
{
    if (left < 2) {
        return 0;
    }
    /* §5.2: FIN set, RSV1-3 clear (no extension decodes these messages: the caller checked), opcode
     * text or binary. Anything else (a fragment, a continuation, a control frame, a reserved opcode,
     * RSV bits) is the general path's. */
    if (p[0] != FIN_TEXT && p[0] != FIN_BINARY) {
        return 0;
    }
    /* §5.1: a server MUST close on an unmasked frame, a client on a masked one: the general path does. */
    if (((p[1] & MASK_BIT) != 0) != masked) {
        return 0;
    }
    unsigned long long n = p[1] & LENGTH_BITS;
    Py_ssize_t start = 2;
    if (n == LENGTH_16) {
        /* §5.2: 126 means the next 2 bytes, in network byte order, are the length. */
        if (left < 4) {
            return 0;
        }
        n = (unsigned long long)p[2] << 8 | p[3];
        start = 4;
    }
    else if (n > LENGTH_16) {
        /* §5.2: 127 means the next 8 bytes, in network byte order, are the length (its most significant
         * bit MUST be 0: such a length is over any limit below, and the general path fails it). */
        if (left < 10) {
            return 0;
        }
        n = 0;
        for (int i = 2; i < 10; i++) {
            n = n << 8 | p[i];
        }
        start = 10;
    }
    if (masked) {
        start += 4; /* §5.3: the 4-byte masking key precedes the payload */
    }
    /* §10.4: over the frame or message limit: the general path fails it with 1009. (limit >= 0 here.) */
    if (n > (unsigned long long)limit || (Py_ssize_t)n > left - start) {
        return 0;
    }
    *length = (Py_ssize_t)n;
    return start;
}

/* The arguments both fast-case parsers share: ``masked`` (a truth value), ``limit`` (0 or more) and
 * ``types`` (text type, its data slot, binary type, its data slot); 0, or -1 with an exception. */
static int
fast_case_args(const char *name, PyObject *masked_obj, PyObject *limit_obj, PyObject *const *types, int *masked,
               Py_ssize_t *limit)
{
    *masked = PyObject_IsTrue(masked_obj);
    if (*masked < 0) {
        return -1;
    }
    *limit = PyNumber_AsSsize_t(limit_obj, PyExc_OverflowError);
    if (*limit == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (*limit < 0) {
        PyErr_Format(PyExc_ValueError, "%s() needs a limit of 0 or more", name);
        return -1;
    }
    if (check_event_type(types[0], types[1]) < 0 || check_event_type(types[2], types[3]) < 0) {
        return -1;
    }
    return 0;
}

/* The event of one frame taken by whole_frame: first header byte ``first``, payload at ``payload``
 * (``length`` bytes, masked with ``key`` unless NULL, §5.3); ``types``: text type, text slot, binary
 * type, binary slot.  A new reference; NULL with an exception on failure, NULL without one when a text
 * payload is not UTF-8 (the general path reports that, §8.1). */
static PyObject *
frame_event(unsigned char first, const unsigned char *payload, Py_ssize_t length, const unsigned char *key,
            PyObject *const *types)
{
    PyObject *value, *event;
    if (first == FIN_TEXT) {
        value = payload_text(payload, length, key);
        if (value == NULL) {
            return NULL;
        }
        event = new_event((PyTypeObject *)types[0], types[1], value);
    }
    else {
        value = PyBytes_FromStringAndSize(NULL, length);
        if (value == NULL) {
            return NULL;
        }
        mask_copy((unsigned char *)PyBytes_AS_STRING(value), payload, length, key);
        event = new_event((PyTypeObject *)types[2], types[3], value);
    }
    Py_DECREF(value);
    return event;
}

static PyObject *
parse_messages(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 9) {
        PyErr_Format(PyExc_TypeError, "parse_messages() takes 9 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t pos = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int masked;
    Py_ssize_t limit;
    if (fast_case_args("parse_messages", args[2], args[3], args + 5, &masked, &limit) < 0) {
        return NULL;
    }
    PyObject *out = args[4];
    if (!PyList_Check(out)) {
        PyErr_SetString(PyExc_TypeError, "parse_messages() needs a list to append the events to");
        return NULL;
    }
    Py_buffer data;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (pos < 0 || pos > data.len) {
        PyErr_Format(PyExc_ValueError, "position %zd outside a buffer of %zd bytes", pos, data.len);
        PyBuffer_Release(&data);
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)data.buf;
    int failed = 0;
    for (;;) {
        Py_ssize_t length = 0;
        Py_ssize_t start = whole_frame(buf + pos, data.len - pos, masked, limit, &length);
        if (start == 0) {
            break;
        }
        const unsigned char *payload = buf + pos + start;
        PyObject *event = frame_event(buf[pos], payload, length, masked ? payload - 4 : NULL, args + 5);
        if (event == NULL) {
            failed = PyErr_Occurred() != NULL; /* else not UTF-8: the general path fails it (§8.1) */
            break;
        }
        if (PyList_Append(out, event) < 0) {
            Py_DECREF(event);
            failed = 1;
            break;
        }
        Py_DECREF(event);
        pos += start + length;
    }
    PyBuffer_Release(&data);
    return failed ? NULL : PyLong_FromSsize_t(pos);
}

PyDoc_STRVAR(parse_message_doc,
"parse_message(data, masked, limit, text_type, text_slot, binary_type, binary_slot, /)\n--\n\n"
"The event of ``data`` when it is exactly one frame that ``parse_messages`` takes (whole, final, plain\n"
"text or binary, the right mask bit, at most ``limit`` bytes, valid UTF-8 for text); otherwise None\n"
"and nothing is built (the caller parses ``data`` as usual). The most common read: one message.");

static PyObject *
parse_message(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "parse_message() takes 7 arguments (%zd given)", nargs);
        return NULL;
    }
    int masked;
    Py_ssize_t limit;
    if (fast_case_args("parse_message", args[1], args[2], args + 3, &masked, &limit) < 0) {
        return NULL;
    }
    Py_buffer data;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)data.buf;
    Py_ssize_t length = 0;
    Py_ssize_t start = whole_frame(buf, data.len, masked, limit, &length);
    PyObject *event = NULL;
    if (start != 0 && start + length == data.len) { /* one frame, nothing after it */
        event = frame_event(buf[0], buf + start, length, masked ? buf + start - 4 : NULL, args + 3);
    }
    PyBuffer_Release(&data);
    if (event == NULL && !PyErr_Occurred()) {
        Py_RETURN_NONE;
    }
    return event;
}

/* -- parse_header: one frame header, for the reader's general path ----------------------------------- */

PyDoc_STRVAR(parse_header_doc,
"parse_header(header_type, error_type, buf, pos, /)\n--\n\n"
"The header of the frame at ``buf[pos:]`` as ``header_type(fin, rsv, opcode, mask, length, header_size)``\n"
"(a tuple subclass: _frames.FrameHeader), or None when it is not complete yet; raises ``error_type`` for\n"
"a 64-bit length with its most significant bit set (RFC 6455 5.2). Only the layout is checked, exactly\n"
"as _frames.python_parse_header, the reference, does.");

static PyObject *
parse_header(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "parse_header() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    if (!PyType_Check(args[0]) || !PyType_IsSubtype((PyTypeObject *)args[0], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "parse_header() needs a tuple subclass for the header");
        return NULL;
    }
    if (!PyExceptionClass_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "parse_header() needs an exception class for a bad header");
        return NULL;
    }
    Py_ssize_t pos = PyNumber_AsSsize_t(args[3], PyExc_OverflowError);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer data;
    if (PyObject_GetBuffer(args[2], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (pos < 0 || pos > data.len) {
        PyErr_Format(PyExc_ValueError, "position %zd outside a buffer of %zd bytes", pos, data.len);
        PyBuffer_Release(&data);
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)data.buf + pos;
    Py_ssize_t left = data.len - pos, size = 2;
    unsigned long long length = 0;
    PyObject *result = Py_None;
    if (left >= 2) {
        length = p[1] & LENGTH_BITS;
        if (length == LENGTH_16) {
            size = 4; /* §5.2: a 16-bit length follows, in network byte order */
            if (left >= size) {
                length = (unsigned long long)p[2] << 8 | p[3];
            }
        }
        else if (length == LENGTH_16 + 1) {
            size = 10; /* §5.2: a 64-bit length follows, in network byte order */
            if (left >= size) {
                length = 0;
                for (int i = 2; i < 10; i++) {
                    length = length << 8 | p[i];
                }
                if (length >> 63) {
                    /* §5.2: "the most significant bit MUST be 0" (known before the masking key is in) */
                    PyErr_SetString(args[1], "64-bit payload length has its most significant bit set");
                    PyBuffer_Release(&data);
                    return NULL;
                }
            }
        }
        if (p[1] & MASK_BIT) {
            size += 4; /* §5.3: the masking key */
        }
        result = left >= size ? NULL : Py_None;
    }
    if (result == Py_None) {
        PyBuffer_Release(&data);
        Py_RETURN_NONE;
    }
    PyObject *mask = Py_None;
    Py_INCREF(mask);
    if (p[1] & MASK_BIT) {
        Py_DECREF(mask);
        mask = PyBytes_FromStringAndSize((const char *)p + size - 4, 4);
    }
    PyObject *items[6] = {
        PyBool_FromLong(p[0] & 0x80), PyLong_FromLong(p[0] & 0x70), PyLong_FromLong(p[0] & 0x0F), mask,
        PyLong_FromUnsignedLongLong(length), PyLong_FromSsize_t(size),
    };
    PyBuffer_Release(&data);
    PyTypeObject *type = (PyTypeObject *)args[0];
    result = NULL;
    int complete = 1;
    for (int i = 0; i < 6; i++) {
        complete &= items[i] != NULL;
    }
    if (complete) {
        result = type->tp_alloc(type, 6);
    }
    for (int i = 0; i < 6; i++) {
        if (result != NULL) {
            PyTuple_SET_ITEM(result, i, items[i]); /* steals the reference */
        }
        else {
            Py_XDECREF(items[i]);
        }
    }
    return result;
}

/* -- PayloadBuffer ---------------------------------------------------------------------------------- */

/* The object being filled is private to the buffer until take() or take_text() hands it out: nobody else
 * holds a reference, so writing into it and resizing it (_PyBytes_Resize, meant for "a brand new bytes
 * object"; PyUnicode_Resize, for a str nobody else holds) is allowed. Its size is the capacity; ``size``
 * bytes of it are written. For a text message (``text=True``) it is a 1-byte ``str`` (PyUnicode_New with
 * maximum 127): when every byte appended is ASCII, take_text() hands it out as it is, with no second copy
 * of the payload into a ``str``; otherwise it was only storage, decoded into a new ``str`` and dropped. */
typedef struct {
    PyObject_HEAD
    PyObject *bytes; /* NULL until the first append, and after take() */
    Py_ssize_t size;
    Py_ssize_t hint; /* capacity to allocate at the first append (the frame length, when known) */
    int text;        /* the storage is a str (see above) */
    int nonascii;    /* a byte >= 0x80 was appended since the last take */
} PayloadBuffer;

static char *
storage(PayloadBuffer *self)
{
    return self->text ? (char *)PyUnicode_DATA(self->bytes) : PyBytes_AS_STRING(self->bytes);
}

static PyObject *
PayloadBuffer_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"capacity", "text", NULL};
    Py_ssize_t hint = 0;
    int text = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|np:PayloadBuffer", kwlist, &hint, &text)) {
        return NULL;
    }
    if (hint < 0) {
        PyErr_SetString(PyExc_ValueError, "capacity must not be negative");
        return NULL;
    }
    PayloadBuffer *self = (PayloadBuffer *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->bytes = NULL;
        self->size = 0;
        self->hint = hint;
        self->text = text;
        self->nonascii = 0;
    }
    return (PyObject *)self;
}

static void
PayloadBuffer_dealloc(PayloadBuffer *self)
{
    Py_CLEAR(self->bytes);
    PyTypeObject *type = Py_TYPE(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type); /* heap type: instances own a reference to it */
}

/* Make room for ``extra`` more bytes. Without a hint the capacity at least doubles, so n appended bytes
 * cost at most n more bytes of copying when the allocator has to move the block. */
static int
reserve(PayloadBuffer *self, Py_ssize_t extra)
{
    if (extra > PY_SSIZE_T_MAX - self->size) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = self->size + extra;
    if (self->bytes == NULL) {
        Py_ssize_t capacity = need > self->hint ? need : self->hint;
        self->bytes = self->text ? PyUnicode_New(capacity, 127) : PyBytes_FromStringAndSize(NULL, capacity);
        return self->bytes == NULL ? -1 : 0;
    }
    Py_ssize_t capacity = self->text ? PyUnicode_GET_LENGTH(self->bytes) : PyBytes_GET_SIZE(self->bytes);
    if (need <= capacity) {
        return 0;
    }
    Py_ssize_t grown = capacity <= PY_SSIZE_T_MAX / 2 ? capacity * 2 : PY_SSIZE_T_MAX;
    if (self->text) {
        /* On failure PyUnicode_Resize leaves the object as it was. */
        return PyUnicode_Resize(&self->bytes, need > grown ? need : grown);
    }
    /* On failure _PyBytes_Resize frees the object and sets it to NULL: the buffer is then empty. */
    if (_PyBytes_Resize(&self->bytes, need > grown ? need : grown) < 0) {
        self->size = 0;
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(append_doc,
"append(data, start, end, mask=None, offset=0, /)\n--\n\n"
"Append ``data[start:end]``, unmasked with ``mask`` (4 bytes; None: as it is) from payload position\n"
"``offset``. Needs 0 <= start <= end <= len(data). Returns whether every byte appended is ASCII.");

static PyObject *
PayloadBuffer_append(PayloadBuffer *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || nargs > 5) {
        PyErr_Format(PyExc_TypeError, "append() takes 3 to 5 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t start = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t end = PyNumber_AsSsize_t(args[2], PyExc_OverflowError);
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *mask_obj = nargs >= 4 ? args[3] : Py_None;
    Py_ssize_t offset = 0;
    if (nargs == 5) {
        offset = PyNumber_AsSsize_t(args[4], PyExc_OverflowError);
        if (offset == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    Py_buffer data;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    unsigned char key[4];
    int masked = mask_obj != Py_None;
    int ok = 0;
    if (start < 0 || start > end || end > data.len) {
        PyErr_Format(PyExc_ValueError, "[%zd:%zd] is not a slice of a buffer of %zd bytes", start, end, data.len);
    }
    else if (masked) {
        Py_buffer mask;
        if (PyObject_GetBuffer(mask_obj, &mask, PyBUF_SIMPLE) == 0) {
            ok = rotated_key(&mask, offset, key) == 0;
            PyBuffer_Release(&mask);
        }
    }
    else {
        ok = 1;
    }
    if (ok && reserve(self, end - start) == 0) {
        unsigned char *dst = (unsigned char *)storage(self) + self->size;
        int ascii = mask_copy(dst, (const unsigned char *)data.buf + start, end - start,
                                       masked ? key : NULL);
        self->size += end - start;
        self->nonascii |= !ascii;
        result = PyBool_FromLong(ascii);
    }
    PyBuffer_Release(&data);
    return result;
}

PyDoc_STRVAR(take_doc,
"take()\n--\n\n"
"The bytes appended so far, as one ``bytes`` (no copy); the buffer starts empty again.");

static PyObject *
PayloadBuffer_take(PayloadBuffer *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = self->bytes;
    Py_ssize_t size = self->size;
    self->bytes = NULL;
    self->size = 0;
    self->hint = 0;
    self->nonascii = 0;
    if (out == NULL) {
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    if (self->text) { /* the storage is a str: the bytes are copied out of it */
        PyObject *copy = PyBytes_FromStringAndSize((const char *)PyUnicode_DATA(out), size);
        Py_DECREF(out);
        return copy;
    }
    if (size < PyBytes_GET_SIZE(out) && _PyBytes_Resize(&out, size) < 0) {
        return NULL;
    }
    return out;
}

PyDoc_STRVAR(take_text_doc,
"take_text()\n--\n\n"
"The payload appended so far decoded as UTF-8 (strict, RFC 3629: UnicodeDecodeError when it is not);\n"
"the buffer starts empty again. With ``text=True`` and every byte ASCII, the str is the storage itself.");

static PyObject *
PayloadBuffer_take_text(PayloadBuffer *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = self->bytes;
    Py_ssize_t size = self->size;
    int ascii = !self->nonascii;
    self->bytes = NULL;
    self->size = 0;
    self->hint = 0;
    self->nonascii = 0;
    if (out == NULL) {
        return PyUnicode_New(0, 0);
    }
    if (self->text && ascii) {
        /* Only ASCII was written into this 1-byte str: it is a valid str once cut to its size (the
         * resize writes the terminating NUL; at full capacity PyUnicode_New's own one is there). */
        if (PyUnicode_Resize(&out, size) < 0) {
            Py_DECREF(out);
            return NULL;
        }
        return out;
    }
    const char *bytes = self->text ? (const char *)PyUnicode_DATA(out) : PyBytes_AS_STRING(out);
    PyObject *text = PyUnicode_DecodeUTF8(bytes, size, "strict");
    Py_DECREF(out);
    return text;
}

static Py_ssize_t
PayloadBuffer_len(PayloadBuffer *self)
{
    return self->size;
}

static PyMethodDef PayloadBuffer_methods[] = {
    {"append", (PyCFunction)(void (*)(void))PayloadBuffer_append, METH_FASTCALL, append_doc},
    {"take", (PyCFunction)PayloadBuffer_take, METH_NOARGS, take_doc},
    {"take_text", (PyCFunction)PayloadBuffer_take_text, METH_NOARGS, take_text_doc},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot PayloadBuffer_slots[] = {
    {Py_tp_doc, "PayloadBuffer(capacity=0, text=False)\n--\n\n"
                "A message payload assembled from received pieces, unmasked on the way in (RFC 6455 5.3)."},
    {Py_tp_new, PayloadBuffer_new},
    {Py_tp_dealloc, PayloadBuffer_dealloc},
    {Py_tp_methods, PayloadBuffer_methods},
    {Py_sq_length, PayloadBuffer_len},
    {0, NULL},
};

static PyType_Spec PayloadBuffer_spec = {
    .name = "wsproto_lite._cspeedups.PayloadBuffer",
    .basicsize = sizeof(PayloadBuffer),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = PayloadBuffer_slots,
};

static int
module_exec(PyObject *module)
{
    PyObject *type = PyType_FromModuleAndSpec(module, &PayloadBuffer_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "PayloadBuffer", type);
    Py_DECREF(type);
    return rc;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static PyMethodDef methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL | METH_KEYWORDS, apply_mask_doc},
    {"parse_messages", (PyCFunction)(void (*)(void))parse_messages, METH_FASTCALL, parse_messages_doc},
    {"parse_message", (PyCFunction)(void (*)(void))parse_message, METH_FASTCALL, parse_message_doc},
    {"parse_header", (PyCFunction)(void (*)(void))parse_header, METH_FASTCALL, parse_header_doc},
    {"encode_frame", (PyCFunction)(void (*)(void))encode_frame, METH_FASTCALL | METH_KEYWORDS,
     encode_frame_doc},
    {"coalesce", (PyCFunction)(void (*)(void))coalesce, METH_FASTCALL, coalesce_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "wsproto_lite._cspeedups",
    .m_doc = "Compiled masking for wsproto-lite (RFC 6455 5.3); _frames.apply_mask is the reference.",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = module_slots,
};

PyMODINIT_FUNC
PyInit__cspeedups(void)
{
    return PyModuleDef_Init(&module_def);
}
