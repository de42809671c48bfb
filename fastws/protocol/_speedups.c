/* fastws.protocol._speedups: the optional compiled kernels of the protocol core.
 *
 * Each function has a pure-Python twin in fastws/protocol/ with the same results for every
 * input (tests/protocol/test_speedups.py checks them against each other); fastws.protocol.accel
 * picks this module when it was built and FASTWS_NO_SPEEDUPS is not set. Only what the
 * profile of the small-message path showed as Python's cost is here: unmasking a short
 * payload, recognising a lone small frame, the object every binary message is handed in
 * (MessageBase), the run of a fragmented message's pieces in one read (unmask_fragments), and
 * the bytes an ASGI application gets, received into in place (BytesTarget). Everything that
 * decides (state, limits, close codes) stays in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

/* dst[i] = src[i] ^ key[i % 4], eight bytes at a time (memcpy: no alignment assumption;
 * compilers turn it into plain loads). dst may equal src. The counters are unsigned: with
 * CPython's -fwrapv a signed index keeps gcc from vectorising the loop (2x slower). */
static void
xor_mask(unsigned char *dst, const unsigned char *src, Py_ssize_t len, const unsigned char *key)
{
    uint64_t k8;
    uint32_t k4;
    size_t n = (size_t)len, words = n / 8, i;
    memcpy(&k4, key, 4);
    k8 = ((uint64_t)k4 << 32) | k4;
    for (i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, src + 8 * i, 8);
        w ^= k8;
        memcpy(dst + 8 * i, &w, 8);
    }
    for (i = 8 * words; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}

/* xor_mask, letting other threads run meanwhile when it takes long enough to matter. */
static void
xor_n(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char *key)
{
    if (n < (1 << 16)) {
        xor_mask(dst, src, n, key);
        return;
    }
    Py_BEGIN_ALLOW_THREADS
    xor_mask(dst, src, n, key);
    Py_END_ALLOW_THREADS
}

static int
get_key(PyObject *mask, unsigned char key[4])
{
    if (!PyBytes_CheckExact(mask) || PyBytes_GET_SIZE(mask) != 4) {
        PyErr_SetString(PyExc_ValueError, "the masking key must be 4 bytes");
        return -1;
    }
    memcpy(key, PyBytes_AS_STRING(mask), 4);
    return 0;
}

PyDoc_STRVAR(unmask_doc,
"unmask(data, mask) -> bytes\n\n"
"`data` (any contiguous buffer) XORed with the 4-byte `mask`, as new bytes.");

static PyObject *
unmask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data;
    unsigned char key[4];
    PyObject *result;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "unmask() takes 2 arguments (data, mask)");
        return NULL;
    }
    if (get_key(args[1], key) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result != NULL) {
        xor_n((unsigned char *)PyBytes_AS_STRING(result), data.buf, data.len, key);
    }
    PyBuffer_Release(&data);
    return result;
}

PyDoc_STRVAR(unmask_inplace_doc,
"unmask_inplace(buf, mask) -> None\n\n"
"XOR the writable buffer `buf` with the 4-byte `mask` where it is.");

static PyObject *
unmask_inplace(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buf;
    unsigned char key[4];
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "unmask_inplace() takes 2 arguments (buf, mask)");
        return NULL;
    }
    if (get_key(args[1], key) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    xor_n(buf.buf, buf.buf, buf.len, key);
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(unmask_into_doc,
"unmask_into(data, mask, out) -> None\n\n"
"Write `data` XORed with the 4-byte `mask` into the writable buffer `out` of the same length:\n"
"one pass, where a copy and an in-place XOR take two.");

static PyObject *
unmask_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, out;
    unsigned char key[4];
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "unmask_into() takes 3 arguments (data, mask, out)");
        return NULL;
    }
    if (get_key(args[1], key) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[2], &out, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (out.len != data.len) {
        PyErr_SetString(PyExc_ValueError, "out must be as long as data");
    } else {
        xor_n(out.buf, data.buf, data.len, key);
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&data);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(lone_frame_doc,
"lone_frame(data, n, max_message_size, max_frame_size) -> bytes | str | None\n\n"
"If data[:n] is exactly one masked, final text or binary frame with a 7-bit length within\n"
"both limits, its unmasked payload: bytes for binary, str for valid UTF-8 text. None for\n"
"anything else (the caller's general parser takes the bytes and judges them).");

/* A limit as a Py_ssize_t; one beyond its range limits nothing a small frame can reach. */
static int
as_limit(PyObject *value, Py_ssize_t *limit)
{
    *limit = PyLong_AsSsize_t(value);
    if (*limit == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return -1;
        }
        PyErr_Clear();
        *limit = PY_SSIZE_T_MAX;
    }
    return 0;
}

static PyObject *
lone_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data;
    Py_ssize_t n, max_message, max_frame, length;
    const unsigned char *p;
    unsigned char b0;
    PyObject *result = NULL;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "lone_frame() takes 4 arguments (data, n, max_message_size, max_frame_size)");
        return NULL;
    }
    n = PyLong_AsSsize_t(args[1]);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 6 || n > 131) {
        Py_RETURN_NONE;
    }
    if (as_limit(args[2], &max_message) < 0 || as_limit(args[3], &max_frame) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (data.len < n) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "n is beyond the end of data");
        return NULL;
    }
    p = data.buf;
    b0 = p[0];
    length = (Py_ssize_t)p[1] - 0x80; /* MASK set and a 7-bit length, or no match below */
    if (length < 0 || length > 125 || n != length + 6 || (b0 != 0x81 && b0 != 0x82)
        || length > max_message || length > max_frame) {
        PyBuffer_Release(&data);
        Py_RETURN_NONE;
    }
    if (b0 == 0x82) {
        result = PyBytes_FromStringAndSize(NULL, length);
        if (result != NULL) {
            xor_mask((unsigned char *)PyBytes_AS_STRING(result), p + 6, length, p + 2);
        }
    } else {
        unsigned char text[125];
        xor_mask(text, p + 6, length, p + 2);
        result = PyUnicode_DecodeUTF8((const char *)text, length, NULL);
        if (result == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear(); /* the general parser fails the connection with 1007 */
            result = Py_NewRef(Py_None);
        }
    }
    PyBuffer_Release(&data);
    return result;
}

PyDoc_STRVAR(unmask_fragments_doc,
"unmask_fragments(data, pos, end, out, opos, oend, max_frame_size, max_frames)\n"
"    -> (pos, opos, frames, fin)\n\n"
"Unmask the whole masked continuation frames (opcode 0, reserved bits clear) found at\n"
"data[pos:end], one after the other, into out[opos:oend]; stop before anything else: a\n"
"frame of another kind, one not all in data, longer than max_frame_size or than the room\n"
"left in out, or after max_frames frames or a final frame (fin). The pieces of one\n"
"fragmented message in one read, in one call: the caller's parser judges what stopped it.\n"
"out None: only count (opos advances by the payload bytes the frames would write).");

static PyObject *
unmask_fragments(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, out;
    Py_ssize_t pos, end, opos, oend, max_frame, max_frames, frames = 0;
    int fin = 0, count_only = args[3] == Py_None;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "unmask_fragments() takes 8 arguments (data, pos, end, out, opos, oend,"
                        " max_frame_size, max_frames)");
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    end = PyLong_AsSsize_t(args[2]);
    opos = PyLong_AsSsize_t(args[4]);
    oend = PyLong_AsSsize_t(args[5]);
    if ((pos == -1 || end == -1 || opos == -1 || oend == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (as_limit(args[6], &max_frame) < 0 || as_limit(args[7], &max_frames) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (count_only) {
        out.buf = NULL;
        out.len = PY_SSIZE_T_MAX;
        out.obj = NULL;
    }
    else if (PyObject_GetBuffer(args[3], &out, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (pos < 0 || end > data.len || pos > end || opos < 0 || oend > out.len || opos > oend) {
        PyErr_SetString(PyExc_ValueError, "positions outside the buffers");
        goto fail;
    }
    {
        const unsigned char *p = (const unsigned char *)data.buf;
        unsigned char *o = (unsigned char *)out.buf;
        while (frames < max_frames && end - pos >= 6) {
            unsigned char b0 = p[pos], b1 = p[pos + 1];
            Py_ssize_t hlen = 2;
            uint64_t length = b1 & 0x7F;
            if ((b0 & 0x7F) != 0 || !(b1 & 0x80)) {
                break; /* not a masked continuation frame with reserved bits clear */
            }
            if (length == 126) {
                if (end - pos < 8) {
                    break;
                }
                length = ((uint64_t)p[pos + 2] << 8) | p[pos + 3];
                hlen = 4;
            }
            else if (length == 127) {
                int i;
                if (end - pos < 14) {
                    break;
                }
                length = 0;
                for (i = 0; i < 8; i++) {
                    length = (length << 8) | p[pos + 2 + i];
                }
                hlen = 10;
            }
            if (length > (uint64_t)max_frame || length > (uint64_t)(end - pos - hlen - 4) ||
                length > (uint64_t)(oend - opos)) {
                break; /* too long, not all here, or no room: the parser's to judge */
            }
            if (!count_only) {
                xor_n(o + opos, p + pos + hlen + 4, (Py_ssize_t)length, p + pos + hlen);
            }
            pos += hlen + 4 + (Py_ssize_t)length;
            opos += (Py_ssize_t)length;
            frames++;
            if (b0 & 0x80) {
                fin = 1;
                break;
            }
        }
    }
    PyBuffer_Release(&out);
    PyBuffer_Release(&data);
    return Py_BuildValue("nnnO", pos, opos, frames, fin ? Py_True : Py_False);
fail:
    PyBuffer_Release(&out);
    PyBuffer_Release(&data);
    return NULL;
}


/* MessageBase: what a received binary message holds (its buffer and size), the base class of
 * fastws.message.Message; its pure-Python twin is fastws.message._MessageBase. Made for every
 * binary message a handler receives, so construction, `buffer` and `release()` are here: a
 * Python class costs ~100 ns to make, this ~30. A buffer other than bytes (a memory region)
 * is given back through the subclass's `_give_back(buffer)`. */
typedef struct {
    PyObject_HEAD
    PyObject *buffer; /* None once released */
    Py_ssize_t size;
} MessageBase;

static PyObject *
MessageBase_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"buffer", "size", NULL};
    PyObject *buffer, *size = Py_None;
    MessageBase *self;
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (kwargs == NULL && (nargs == 1 || nargs == 2)) { /* the common call, without parsing */
        buffer = PyTuple_GET_ITEM(args, 0);
        if (nargs == 2) {
            size = PyTuple_GET_ITEM(args, 1);
        }
    } else if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:Message", keywords, &buffer,
                                            &size)) {
        return NULL;
    }
    self = (MessageBase *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->size = size == Py_None ? PyObject_Length(buffer) : PyLong_AsSsize_t(size);
    if (self->size == -1 && PyErr_Occurred()) {
        Py_DECREF(self);
        return NULL;
    }
    self->buffer = Py_NewRef(buffer);
    return (PyObject *)self;
}

static int
MessageBase_traverse(MessageBase *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buffer); /* (a heap subclass's type is visited by subtype_traverse) */
    return 0;
}

static int
MessageBase_clear(MessageBase *self)
{
    Py_CLEAR(self->buffer);
    return 0;
}

static void
MessageBase_dealloc(MessageBase *self)
{
    /* (subtype_dealloc drops a heap subclass's reference to its type, not us) */
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->buffer);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t
MessageBase_length(MessageBase *self)
{
    return self->size;
}

PyDoc_STRVAR(MessageBase_release_doc,
"release()\n\nGive the memory back now (views taken before keep it until they go). Idempotent.");

static PyObject *
MessageBase_release(MessageBase *self, PyObject *unused)
{
    PyObject *buffer = self->buffer, *done;
    if (buffer == NULL || buffer == Py_None) {
        Py_RETURN_NONE;
    }
    self->buffer = Py_NewRef(Py_None);
    if (PyBytes_CheckExact(buffer)) { /* a small message: nothing to give back */
        Py_DECREF(buffer);
        Py_RETURN_NONE;
    }
    done = PyObject_CallMethod((PyObject *)self, "_give_back", "O", buffer);
    Py_DECREF(buffer);
    return done;
}

static PyObject *
MessageBase_get_buffer(MessageBase *self, void *closure)
{
    return Py_NewRef(self->buffer == NULL ? Py_None : self->buffer);
}

static PyObject *
MessageBase_get_released(MessageBase *self, void *closure)
{
    return PyBool_FromLong(self->buffer == NULL || self->buffer == Py_None);
}

static PyMemberDef MessageBase_members[] = {
    {"_buffer", T_OBJECT, offsetof(MessageBase, buffer), 0, NULL},
    {"_size", T_PYSSIZET, offsetof(MessageBase, size), 0, NULL},
    {NULL},
};

static PyGetSetDef MessageBase_getset[] = {
    {"buffer", (getter)MessageBase_get_buffer, NULL,
     "What holds the payload: `bytes` for a small message, a memory region for a large one\n"
     "(None once released). For senders that write it as it is; use `.data` to read.", NULL},
    {"released", (getter)MessageBase_get_released, NULL, "Whether release() was called.", NULL},
    {NULL},
};

static PyMethodDef MessageBase_methods[] = {
    {"release", (PyCFunction)MessageBase_release, METH_NOARGS, MessageBase_release_doc},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods MessageBase_as_sequence = {
    .sq_length = (lenfunc)MessageBase_length,
};

static PyTypeObject MessageBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fastws.protocol._speedups.MessageBase",
    .tp_doc = "A received binary message's buffer and size (the base of fastws.message.Message).",
    .tp_basicsize = sizeof(MessageBase),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = MessageBase_new,
    .tp_traverse = (traverseproc)MessageBase_traverse,
    .tp_clear = (inquiry)MessageBase_clear,
    .tp_dealloc = (destructor)MessageBase_dealloc,
    .tp_members = MessageBase_members,
    .tp_getset = MessageBase_getset,
    .tp_methods = MessageBase_methods,
    .tp_as_sequence = &MessageBase_as_sequence,
};

/* BytesTarget: a new bytes object of n bytes that is written in place before anybody else
 * holds it, so that a received payload becomes the `bytes` an application gets without a
 * copy (fastws.asgi: ASGI delivers bytes). Until take() it exports its memory as a writable
 * buffer (the kernel reads into it, the unmasking runs on it); take() hands the bytes out
 * and refuses every later export. A view exported before take() may outlive it (an event
 * loop releases its read buffer after buffer_updated() returns): it keeps the bytes alive,
 * and is never written through again (a read writes only before buffer_updated()). The
 * pure-Python twin is fastws.buffers._BytesTarget (a bytearray, copied by take()). */
typedef struct {
    PyObject_HEAD
    PyObject *bytes; /* NULL once taken and no view is left */
    Py_ssize_t size;
    Py_ssize_t exports;
    char taken;
} BytesTarget;

static PyObject *
BytesTarget_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"size", NULL};
    Py_ssize_t size;
    BytesTarget *self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "n:BytesTarget", keywords, &size)) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    self = (BytesTarget *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    /* Not zero-filled (malloc'ed: a large one's pages are committed only when written);
     * its own object even for sizes 0 and 1 (NULL contents are never a shared singleton
     * but for size 0, which is never written). */
    self->bytes = PyBytes_FromStringAndSize(NULL, size);
    if (self->bytes == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->size = size;
    return (PyObject *)self;
}

static void
BytesTarget_dealloc(BytesTarget *self)
{
    Py_CLEAR(self->bytes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
BytesTarget_getbuffer(BytesTarget *self, Py_buffer *view, int flags)
{
    if (self->taken || self->bytes == NULL) {
        PyErr_SetString(PyExc_BufferError, "the bytes were taken: no more views");
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, PyBytes_AS_STRING(self->bytes), self->size,
                          0, flags) < 0) {
        return -1;
    }
    self->exports++;
    return 0;
}

static void
BytesTarget_releasebuffer(BytesTarget *self, Py_buffer *view)
{
    if (--self->exports == 0 && self->taken) {
        Py_CLEAR(self->bytes); /* the last view is gone: only the taker holds the bytes */
    }
}

static Py_ssize_t
BytesTarget_length(BytesTarget *self)
{
    return self->size;
}

PyDoc_STRVAR(BytesTarget_take_doc,
"take()\n\nThe bytes, written: no view can be taken any more. Once only.");

static PyObject *
BytesTarget_take(BytesTarget *self, PyObject *unused)
{
    PyObject *bytes = self->bytes;
    if (self->taken || bytes == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the bytes were taken already");
        return NULL;
    }
    self->taken = 1;
    if (self->exports) { /* a stale read view: keep the memory alive until it goes */
        return Py_NewRef(bytes);
    }
    self->bytes = NULL;
    return bytes;
}

PyDoc_STRVAR(BytesTarget_resize_doc,
"resize(size)\n\nMake it `size` bytes, keeping the first min(len, size) (the bytes after them\n"
"are not zero-filled). realloc: a large block at the top of malloc's heap grows in place\n"
"(no copy), an mmapped one by mremap. BufferError while a view is exported (its pointer\n"
"would dangle), RuntimeError once taken; the same size is a no-op.");

static PyObject *
BytesTarget_resize(BytesTarget *self, PyObject *arg)
{
    Py_ssize_t size = PyLong_AsSsize_t(arg);
    if (size == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "negative size");
        return NULL;
    }
    if (self->taken || self->bytes == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the bytes were taken already");
        return NULL;
    }
    if (size == self->size) {
        Py_RETURN_NONE;
    }
    if (self->exports) {
        PyErr_SetString(PyExc_BufferError, "cannot resize while a view is exported");
        return NULL;
    }
    /* Nobody else holds the bytes (refcount 1): _PyBytes_Resize may realloc it. On failure
     * it frees the object and leaves NULL; the contents are lost, as any failed growth of
     * a message's buffer loses the message (the connection fails with 1011 / MemoryError). */
    if (_PyBytes_Resize(&self->bytes, size) < 0) {
        self->size = 0;
        self->taken = 1;
        return NULL;
    }
    self->size = size;
    Py_RETURN_NONE;
}

static PyObject *
BytesTarget_get_taken(BytesTarget *self, void *closure)
{
    return PyBool_FromLong(self->taken);
}

static PyGetSetDef BytesTarget_getset[] = {
    {"taken", (getter)BytesTarget_get_taken, NULL, "Whether take() was called.", NULL},
    {NULL},
};

static PyMethodDef BytesTarget_methods[] = {
    {"take", (PyCFunction)BytesTarget_take, METH_NOARGS, BytesTarget_take_doc},
    {"resize", (PyCFunction)BytesTarget_resize, METH_O, BytesTarget_resize_doc},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods BytesTarget_as_sequence = {
    .sq_length = (lenfunc)BytesTarget_length,
};

static PyBufferProcs BytesTarget_as_buffer = {
    .bf_getbuffer = (getbufferproc)BytesTarget_getbuffer,
    .bf_releasebuffer = (releasebufferproc)BytesTarget_releasebuffer,
};

static PyTypeObject BytesTargetType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "fastws.protocol._speedups.BytesTarget",
    .tp_doc = "BytesTarget(size): a new bytes object, writable until take() hands it out.",
    .tp_basicsize = sizeof(BytesTarget),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = BytesTarget_new,
    .tp_dealloc = (destructor)BytesTarget_dealloc,
    .tp_getset = BytesTarget_getset,
    .tp_methods = BytesTarget_methods,
    .tp_as_sequence = &BytesTarget_as_sequence,
    .tp_as_buffer = &BytesTarget_as_buffer,
};

static PyMethodDef methods[] = {
    {"unmask", (PyCFunction)(void (*)(void))unmask, METH_FASTCALL, unmask_doc},
    {"unmask_inplace", (PyCFunction)(void (*)(void))unmask_inplace, METH_FASTCALL,
     unmask_inplace_doc},
    {"unmask_into", (PyCFunction)(void (*)(void))unmask_into, METH_FASTCALL, unmask_into_doc},
    {"lone_frame", (PyCFunction)(void (*)(void))lone_frame, METH_FASTCALL, lone_frame_doc},
    {"unmask_fragments", (PyCFunction)(void (*)(void))unmask_fragments, METH_FASTCALL,
     unmask_fragments_doc},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *module)
{
    if (PyType_Ready(&MessageBaseType) < 0) {
        return -1;
    }
    Py_INCREF(&MessageBaseType);
    if (PyModule_AddObject(module, "MessageBase", (PyObject *)&MessageBaseType) < 0) {
        Py_DECREF(&MessageBaseType);
        return -1;
    }
    if (PyType_Ready(&BytesTargetType) < 0) {
        return -1;
    }
    Py_INCREF(&BytesTargetType);
    if (PyModule_AddObject(module, "BytesTarget", (PyObject *)&BytesTargetType) < 0) {
        Py_DECREF(&BytesTargetType);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, exec_module},
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "fastws.protocol._speedups",
    "Optional compiled kernels of fastws' protocol core (pure-Python twins in fastws.protocol).",
    0,
    methods,
    slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&module);
}
