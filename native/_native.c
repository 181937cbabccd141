/*
 * native._native -- hot loops for s390-dumptools.
 *
 *   csum_partial(buffer, initial=0) -> int
 *       32-bit checksum with the semantics of the z/Architecture CKSM
 *       instruction: big-endian 32-bit words, last partial word padded with
 *       zero bytes on the right, 32-bit one's-complement (end-around carry)
 *       addition, no complement, no 16-bit fold.
 *   zero_ranges(buffer, granule=4096) -> list[tuple[int, int]]
 *   nonzero_ranges(buffer, granule=4096) -> list[tuple[int, int]]
 *   is_zero(buffer) -> bool
 *   bind_zlib_ng(path) -> str, deflate_pages(buffers, page_size, level)
 *       zlib streams of single pages, the batch without the GIL (below)
 *   page_rows(...) -> list[int]: the struct pages a dump-level scan decodes
 *
 * Every function accepts any object exporting a C-contiguous buffer and reads
 * it in place (no copy).  The scanning loops run with the GIL released.
 *
 * Why a deferred carry fold gives exactly the sequential CKSM result
 * ------------------------------------------------------------------
 * Sequential CKSM: S <- S + W, and if S >= 2^32 then S <- S - 2^32 + 1.  Each
 * step keeps S congruent to (initial + sum of words) modulo M = 2^32 - 1,
 * since the correction subtracts exactly M.  S is 0 at the end only when the
 * initial value and every word are 0 (once anything non-zero has been added,
 * S never returns to 0); otherwise it lies in 1..2^32-1, a complete set of
 * residues modulo M.  So the result is determined by T = initial + sum(W) as
 * an unbounded integer: 0 if T == 0, else the unique value in 1..2^32-1 that
 * is congruent to T modulo M.  Folding a 64-bit total with
 * T <- (T mod 2^32) + (T >> 32) preserves both the residue and "non-zero", so
 * summing the words into 64-bit accumulators and folding at the end (and
 * between blocks, to rule out overflow) is exact.
 *
 * Portable C11: unaligned loads go through memcpy, and the byte swap is only
 * compiled in on little-endian hosts (or done byte-by-byte when the host byte
 * order is unknown).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Byte order helpers                                                        */
/* ------------------------------------------------------------------------ */

#if defined(__GNUC__) || defined(__clang__)
#define NATIVE_BSWAP64(x) __builtin_bswap64(x)
#else
static inline uint64_t
native_bswap64(uint64_t x)
{
    x = ((x & 0x00FF00FF00FF00FFULL) << 8) | ((x >> 8) & 0x00FF00FF00FF00FFULL);
    x = ((x & 0x0000FFFF0000FFFFULL) << 16) | ((x >> 16) & 0x0000FFFF0000FFFFULL);
    return (x << 32) | (x >> 32);
}
#define NATIVE_BSWAP64(x) native_bswap64(x)
#endif

/* Load 8 bytes at p (any alignment) as a big-endian 64-bit integer. */
static inline uint64_t
load_be64(const unsigned char *p)
{
#if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#elif defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return NATIVE_BSWAP64(v);
#else
    /* Unknown host byte order: assemble explicitly. */
    return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) |
           ((uint64_t)p[2] << 40) | ((uint64_t)p[3] << 32) |
           ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
           ((uint64_t)p[6] << 8) | (uint64_t)p[7];
#endif
}

/* ------------------------------------------------------------------------ */
/* Optional AVX2 code paths                                                  */
/* ------------------------------------------------------------------------ */

/* The hot loops are written once, as plain C "bodies" that the compiler
 * auto-vectorizes.  With GCC or clang on x86 they are additionally compiled
 * for AVX2 (via the target attribute, not a global -m flag) and the variant is
 * picked once at import time with __builtin_cpu_supports.  Everywhere else the
 * portable build is the only one. */
#if defined(__GNUC__) || defined(__clang__)
#define NATIVE_BODY static inline __attribute__((always_inline))
#else
#define NATIVE_BODY static inline
#endif

#if (defined(__GNUC__) || defined(__clang__)) && \
    (defined(__x86_64__) || defined(__i386__)) && !defined(NATIVE_NO_DISPATCH)
#define NATIVE_X86_DISPATCH 1
#define NATIVE_TARGET_AVX2 __attribute__((target("avx2")))
#else
#define NATIVE_X86_DISPATCH 0
#endif

/* Every scanning body NAME_body is compiled twice: NAME_portable, and on x86 NAME_avx2 with
 * AVX2 enabled; module init picks one. */
#if NATIVE_X86_DISPATCH
#define NATIVE_AVX2_VARIANT(type, name) \
    NATIVE_TARGET_AVX2 static type name##_avx2(const unsigned char *p, size_t n) { return name##_body(p, n); }
#else
#define NATIVE_AVX2_VARIANT(type, name)
#endif
#define NATIVE_VARIANTS(type, name) \
    static type name##_portable(const unsigned char *p, size_t n) { return name##_body(p, n); } \
    NATIVE_AVX2_VARIANT(type, name)

/* ------------------------------------------------------------------------ */
/* CKSM                                                                      */
/* ------------------------------------------------------------------------ */

#define LO32 0xFFFFFFFFULL

/* Bytes summed between two carry folds on the generic (big-endian) path. */
#define CKSM_BLOCK ((size_t)1 << 20)

static inline uint64_t
fold_once(uint64_t t)
{
    return (t & LO32) + (t >> 32);
}

/* Which sum_words() to use.  Overridable (-DNATIVE_LITTLE_ENDIAN=0) so the
 * generic path can be tested on a little-endian machine too. */
#ifndef NATIVE_LITTLE_ENDIAN
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define NATIVE_LITTLE_ENDIAN 1
#else
#define NATIVE_LITTLE_ENDIAN 0
#endif
#endif

static inline uint64_t
fold_full(uint64_t t)
{
    while (t >> 32)
        t = fold_once(t);
    return t;
}

#if NATIVE_LITTLE_ENDIAN

static inline uint32_t
rotl32(uint32_t x, unsigned k)
{
    return (x << k) | (x >> (32 - k));
}

#define BYTE_LANES 0x00FF00FF00FF00FFULL
/* Doublewords per lane block: 256 * 0x00FF00FF00FF00FF < 2^64. */
#define LANE_BLOCK_QWORDS 256

/* Little-endian hosts: avoid the byte swap altogether.
 *
 * Load 8 bytes b0..b7 little-endian as X.  With m = 0x00FF00FF00FF00FF,
 *   E = X & m        = b0 + b2*2^16 + b4*2^32 + b6*2^48
 *   O = (X >> 8) & m = b1 + b3*2^16 + b5*2^32 + b7*2^48
 * Modulo 2^32 - 1 (where 2^32 == 1) the two big-endian words b0b1b2b3 and
 * b4b5b6b7 sum to (b0+b4)*2^24 + (b1+b5)*2^16 + (b2+b6)*2^8 + (b3+b7), which
 * is exactly 2^24*E + 2^16*O.  E and O only need masks, shifts and adds, so
 * the compiler vectorizes the loop with plain SSE2.  Multiplying a 32-bit
 * value by 2^k modulo 2^32 - 1 is a left rotation by k, which also keeps
 * "non-zero" intact (see the file comment for why that matters).
 *
 * Returns a value below 2^34 that is congruent to the sum of the words of
 * p[0 .. n) modulo 2^32 - 1 and is 0 only if every byte is 0; n is a
 * multiple of 8. */
NATIVE_BODY uint64_t
sum_words_body(const unsigned char *p, size_t n)
{
    uint64_t acc = 0;
    while (n > 0) {
        size_t nq = n / 8;
        if (nq > LANE_BLOCK_QWORDS)
            nq = LANE_BLOCK_QWORDS;
        uint64_t e = 0, o = 0;
        for (size_t i = 0; i < nq; i++) {
            uint64_t x;
            memcpy(&x, p + 8 * i, 8);
            e += x & BYTE_LANES;
            o += (x >> 8) & BYTE_LANES;
        }
        acc = fold_once(acc + rotl32((uint32_t)fold_full(e), 24) +
                        rotl32((uint32_t)fold_full(o), 16));
        p += nq * 8;
        n -= nq * 8;
    }
    return acc;
}

#else /* big-endian or unknown byte order */

/* Same contract as the little-endian version: split each big-endian
 * doubleword into its two words and add them into 64-bit accumulators. */
NATIVE_BODY uint64_t
sum_words_body(const unsigned char *p, size_t n)
{
    uint64_t acc = 0;
    while (n > 0) {
        size_t chunk = n < CKSM_BLOCK ? n : CKSM_BLOCK;
        uint64_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;
        size_t i = 0;
        for (; i + 16 <= chunk; i += 16) {
            uint64_t x0 = load_be64(p + i);
            uint64_t x1 = load_be64(p + i + 8);
            a0 += x0 >> 32;
            b0 += x0 & LO32;
            a1 += x1 >> 32;
            b1 += x1 & LO32;
        }
        if (i < chunk) {
            uint64_t x = load_be64(p + i);
            a0 += x >> 32;
            b0 += x & LO32;
        }
        /* Each accumulator < 2^32 * CKSM_BLOCK / 16 = 2^48. */
        acc = fold_once(acc + fold_once(a0 + b0) + fold_once(a1 + b1));
        p += chunk;
        n -= chunk;
    }
    return acc;
}

#endif

typedef uint64_t (*sum_words_fn)(const unsigned char *, size_t);

NATIVE_VARIANTS(uint64_t, sum_words)

/* Chosen in module init; the portable version is always correct. */
static sum_words_fn sum_words = sum_words_portable;

static uint32_t
cksm(const unsigned char *p, size_t n, uint32_t initial)
{
    size_t whole = n & ~(size_t)7;
    uint64_t total = initial;

    total += sum_words(p, whole);
    if (n > whole) {
        /* Final partial doubleword, zero padded on the right.  Zero words
         * never change a CKSM sum, so padding up to 8 bytes is harmless. */
        unsigned char tail[8] = {0};
        memcpy(tail, p + whole, n - whole);
        uint64_t x = load_be64(tail);
        total += (x >> 32) + (x & LO32);
    }
    return (uint32_t)fold_full(total);
}

/* ------------------------------------------------------------------------ */
/* Zero detection                                                            */
/* ------------------------------------------------------------------------ */

/* 1 if p[0 .. n) is all zero bytes, else 0.  Looks at the first 8 bytes
 * first (typical non-zero data exits there), then ORs 256-byte blocks
 * together: a fixed-size inner OR reduction is what the auto-vectorizer turns
 * into wide loads (smaller blocks ended up as scalar OR chains with GCC 12). */
#define ZERO_BLOCK 256

NATIVE_BODY int
region_is_zero_body(const unsigned char *p, size_t n)
{
    size_t i = 0;
    uint64_t w;

    if (n >= 8) {
        memcpy(&w, p, 8);
        if (w)
            return 0;
        i = 8;
    }
    while (n - i >= ZERO_BLOCK) {
        uint64_t acc = 0;
        for (size_t k = 0; k < ZERO_BLOCK; k += 8) {
            memcpy(&w, p + i + k, 8);
            acc |= w;
        }
        if (acc)
            return 0;
        i += ZERO_BLOCK;
    }
    while (n - i >= 8) {
        memcpy(&w, p + i, 8);
        if (w)
            return 0;
        i += 8;
    }
    while (i < n) {
        if (p[i])
            return 0;
        i++;
    }
    return 1;
}

typedef int (*is_zero_fn)(const unsigned char *, size_t);

NATIVE_VARIANTS(int, region_is_zero)

static is_zero_fn region_is_zero = region_is_zero_portable;

/* Scanner state for zero_ranges / nonzero_ranges.  Ranges are gathered in
 * batches so the C-side buffer stays bounded whatever the input looks like;
 * each batch is converted to Python objects with the GIL held. */
#define RANGE_BATCH 4096

typedef struct {
    const unsigned char *buf;
    size_t len;
    size_t granule;
    int want_zero; /* 1: runs of all-zero granules; 0: runs of non-zero ones */
    size_t pos;    /* next granule to examine (multiple of granule) */
} range_scan;

static inline size_t
granule_len(const range_scan *s)
{
    size_t left = s->len - s->pos;
    return left < s->granule ? left : s->granule;
}

/* Append up to `cap` maximal runs (start, end) to out[]; returns how many.
 * A return value below `cap` means the buffer is exhausted. */
static size_t
scan_ranges(range_scan *s, size_t *out, size_t cap)
{
    size_t count = 0;
    while (count < cap && s->pos < s->len) {
        /* Skip granules of the other kind. */
        while (s->pos < s->len) {
            size_t g = granule_len(s);
            if (region_is_zero(s->buf + s->pos, g) == s->want_zero)
                break;
            s->pos += g;
        }
        if (s->pos >= s->len)
            break;
        size_t start = s->pos;
        /* The granule at pos matches; extend the run. */
        s->pos += granule_len(s);
        while (s->pos < s->len) {
            size_t g = granule_len(s);
            if (region_is_zero(s->buf + s->pos, g) != s->want_zero)
                break;
            s->pos += g;
        }
        out[2 * count] = start;
        out[2 * count + 1] = s->pos;
        count++;
    }
    return count;
}

/* ------------------------------------------------------------------------ */
/* Argument helpers                                                          */
/* ------------------------------------------------------------------------ */

/* Get a read-only, C-contiguous view of obj without copying.  On failure an
 * exception is set, nothing needs releasing, and -1 is returned. */
static int
get_contiguous_buffer(PyObject *obj, Py_buffer *view, const char *fname)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) == 0)
        return 0;
    if (PyErr_ExceptionMatches(PyExc_BufferError) && PyObject_CheckBuffer(obj)) {
        /* The object is a buffer, but cannot be exposed as one flat run of
         * bytes (e.g. a strided memoryview).  Say so plainly. */
        Py_buffer probe;
        PyErr_Clear();
        if (PyObject_GetBuffer(obj, &probe, PyBUF_FULL_RO) == 0) {
            int contiguous = PyBuffer_IsContiguous(&probe, 'C');
            PyBuffer_Release(&probe);
            if (!contiguous) {
                PyErr_Format(PyExc_BufferError,
                             "%s() needs a C-contiguous buffer; got a "
                             "non-contiguous %.200s (copy it with bytes() "
                             "first)",
                             fname, Py_TYPE(obj)->tp_name);
                return -1;
            }
        }
        else {
            PyErr_Clear();
        }
        PyErr_Format(PyExc_BufferError,
                     "%s() cannot get a simple byte buffer from %.200s",
                     fname, Py_TYPE(obj)->tp_name);
    }
    return -1;
}

/* Convert a Python int to a positive Py_ssize_t granule. */
static int
parse_granule(PyObject *obj, size_t *out)
{
    PyObject *idx = PyNumber_Index(obj);
    if (idx == NULL)
        return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(idx, &overflow);
    Py_DECREF(idx);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow > 0) {
        /* Larger than any buffer: the whole buffer is one granule. */
        *out = (size_t)PY_SSIZE_T_MAX;
        return 0;
    }
    if (overflow < 0 || v <= 0) {
        PyErr_SetString(PyExc_ValueError, "granule must be a positive integer");
        return -1;
    }
    if ((unsigned long long)v > (unsigned long long)PY_SSIZE_T_MAX)
        v = PY_SSIZE_T_MAX;
    *out = (size_t)v;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Python functions                                                          */
/* ------------------------------------------------------------------------ */

PyDoc_STRVAR(csum_partial_doc,
"csum_partial(buffer, initial=0) -> int\n"
"\n"
"CKSM checksum of a bytes-like object: big-endian 32-bit words (the last\n"
"partial word zero-padded on the right) added to the 32-bit start value\n"
"`initial` with end-around carry.  The 32-bit result is neither complemented\n"
"nor folded to 16 bits.  Raises ValueError if initial is outside 0..2**32-1.");

static PyObject *
native_csum_partial(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"buffer", "initial", NULL};
    PyObject *obj;
    PyObject *initial_obj = NULL;
    uint32_t initial = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:csum_partial", kwlist,
                                     &obj, &initial_obj))
        return NULL;

    if (initial_obj != NULL) {
        PyObject *idx = PyNumber_Index(initial_obj);
        if (idx == NULL)
            return NULL;
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(idx, &overflow);
        Py_DECREF(idx);
        if (v == -1 && PyErr_Occurred())
            return NULL;
        if (overflow != 0 || v < 0 || v > 0xFFFFFFFFLL) {
            PyErr_SetString(PyExc_ValueError,
                            "initial must be in range 0..0xFFFFFFFF");
            return NULL;
        }
        initial = (uint32_t)v;
    }

    Py_buffer view;
    if (get_contiguous_buffer(obj, &view, "csum_partial") < 0)
        return NULL;

    uint32_t result;
    Py_BEGIN_ALLOW_THREADS
    result = cksm((const unsigned char *)view.buf, (size_t)view.len, initial);
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong((unsigned long)result);
}

static PyObject *
ranges_common(PyObject *args, PyObject *kwargs, int want_zero, const char *fmt)
{
    static char *kwlist[] = {"buffer", "granule", NULL};
    PyObject *obj;
    PyObject *granule_obj = NULL;
    size_t granule = 4096;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, fmt, kwlist, &obj,
                                     &granule_obj))
        return NULL;
    if (granule_obj != NULL && parse_granule(granule_obj, &granule) < 0)
        return NULL;

    Py_buffer view;
    if (get_contiguous_buffer(obj, &view,
                              want_zero ? "zero_ranges" : "nonzero_ranges") < 0)
        return NULL;

    PyObject *result = PyList_New(0);
    size_t *pairs = PyMem_Malloc(sizeof(size_t) * 2 * RANGE_BATCH);
    if (result == NULL || pairs == NULL) {
        if (pairs == NULL)
            PyErr_NoMemory();
        Py_XDECREF(result);
        PyMem_Free(pairs);
        PyBuffer_Release(&view);
        return NULL;
    }

    range_scan scan = {
        .buf = (const unsigned char *)view.buf,
        .len = (size_t)view.len,
        .granule = granule,
        .want_zero = want_zero,
        .pos = 0,
    };

    for (;;) {
        size_t n;
        Py_BEGIN_ALLOW_THREADS
        n = scan_ranges(&scan, pairs, RANGE_BATCH);
        Py_END_ALLOW_THREADS

        for (size_t i = 0; i < n; i++) {
            PyObject *item = Py_BuildValue("(nn)", (Py_ssize_t)pairs[2 * i],
                                           (Py_ssize_t)pairs[2 * i + 1]);
            if (item == NULL || PyList_Append(result, item) < 0) {
                Py_XDECREF(item);
                Py_DECREF(result);
                PyMem_Free(pairs);
                PyBuffer_Release(&view);
                return NULL;
            }
            Py_DECREF(item);
        }
        if (n < RANGE_BATCH)
            break;
    }

    PyMem_Free(pairs);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(zero_ranges_doc,
"zero_ranges(buffer, granule=4096) -> list[tuple[int, int]]\n"
"\n"
"Byte ranges [start, end) of the maximal runs of granules that contain only\n"
"zero bytes.  The buffer is cut into granule-sized pieces from offset 0; a\n"
"shorter last piece counts as a granule of its own length.");

static PyObject *
native_zero_ranges(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs)
{
    return ranges_common(args, kwargs, 1, "O|O:zero_ranges");
}

PyDoc_STRVAR(nonzero_ranges_doc,
"nonzero_ranges(buffer, granule=4096) -> list[tuple[int, int]]\n"
"\n"
"Complement of zero_ranges(): byte ranges [start, end) of the maximal runs\n"
"of granules that contain at least one non-zero byte.");

static PyObject *
native_nonzero_ranges(PyObject *Py_UNUSED(module), PyObject *args,
                      PyObject *kwargs)
{
    return ranges_common(args, kwargs, 0, "O|O:nonzero_ranges");
}

PyDoc_STRVAR(is_zero_doc,
"is_zero(buffer) -> bool\n"
"\n"
"True if every byte of the buffer is zero (also for an empty buffer).");

static PyObject *
native_is_zero(PyObject *Py_UNUSED(module), PyObject *obj)
{
    Py_buffer view;
    if (get_contiguous_buffer(obj, &view, "is_zero") < 0)
        return NULL;

    int zero;
    Py_BEGIN_ALLOW_THREADS
    zero = region_is_zero((const unsigned char *)view.buf, (size_t)view.len);
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&view);
    return PyBool_FromLong(zero);
}

/* ------------------------------------------------------------------------ */
/* deflate_pages: the kdump writer's page compression without the GIL
 *
 * A kdump-compressed file holds each page as a zlib stream of its own (RFC
 * 1950: header, deflate data, Adler-32), or the page itself where that stream
 * would not be smaller.  Python's zlib bindings set up and tear down a deflate
 * state on every call with the GIL held, so page-sized calls on several
 * threads run one at a time.  Here one state serves a whole batch (reset
 * between pages) and the batch runs with the GIL released.
 *
 * The deflate code is zlib-ng's own, found at run time in the shared object of
 * the zlib_ng module (bind_zlib_ng), which exports zlib-ng's native zng_*
 * functions: the streams are those zlib_ng.compress(page, level) makes, and
 * nothing is linked at build time.  ng_stream is zng_stream as zlib-ng.h 2.x
 * declares it; the binding refuses any other major version.
 */
#include <dlfcn.h>

typedef struct {
    const uint8_t *next_in;
    uint32_t avail_in;
    size_t total_in;
    uint8_t *next_out;
    uint32_t avail_out;
    size_t total_out;
    const char *msg;
    void *state;
    void *(*zalloc)(void *, unsigned int, unsigned int);
    void (*zfree)(void *, void *);
    void *opaque;
    int data_type;
    uint32_t adler;
    unsigned long reserved;
} ng_stream;

enum { NG_OK = 0, NG_STREAM_END = 1, NG_FINISH = 4, NG_DEFLATED = 8,
       NG_MAX_WBITS = 15, NG_MEM_LEVEL = 8, NG_DEFAULT_STRATEGY = 0 };

static struct {
    void *handle;
    const char *(*version)(void);
    int32_t (*init2)(ng_stream *, int32_t, int32_t, int32_t, int32_t, int32_t);
    int32_t (*deflate)(ng_stream *, int32_t);
    int32_t (*reset)(ng_stream *);
    int32_t (*end)(ng_stream *);
    unsigned long (*bound)(ng_stream *, unsigned long);
} ng;

PyDoc_STRVAR(bind_zlib_ng_doc,
"bind_zlib_ng(path) -> str\n"
"\n"
"Take zlib-ng's deflate functions from the shared object at path (the\n"
"zlib_ng module's extension) for deflate_pages; returns zlib-ng's version.\n"
"OSError when the object does not export them or is not zlib-ng 2.x.");

static PyObject *
native_bind_zlib_ng(PyObject *Py_UNUSED(module), PyObject *arg)
{
    PyObject *bytes_path;
    if (!PyUnicode_FSConverter(arg, &bytes_path))
        return NULL;
    void *h = dlopen(PyBytes_AS_STRING(bytes_path), RTLD_NOW | RTLD_LOCAL);
    Py_DECREF(bytes_path);
    if (h == NULL) {
        PyErr_Format(PyExc_OSError, "cannot open zlib-ng: %s", dlerror());
        return NULL;
    }
    const char *(*version)(void) = (const char *(*)(void))dlsym(h, "zlibng_version");
    void *init2 = dlsym(h, "zng_deflateInit2"), *deflate = dlsym(h, "zng_deflate");
    void *reset = dlsym(h, "zng_deflateReset"), *end = dlsym(h, "zng_deflateEnd");
    void *bound = dlsym(h, "zng_deflateBound");
    if (!version || !init2 || !deflate || !reset || !end || !bound) {
        dlclose(h);
        PyErr_SetString(PyExc_OSError, "the object does not export zlib-ng's native deflate API");
        return NULL;
    }
    const char *v = version();
    if (v == NULL || v[0] != '2' || v[1] != '.') {
        dlclose(h);
        PyErr_Format(PyExc_OSError, "zlib-ng %s: only 2.x is known", v ? v : "?");
        return NULL;
    }
    if (ng.handle == NULL) {          /* the first binding stays for the life of the process */
        ng.version = version;
        ng.init2 = (int32_t (*)(ng_stream *, int32_t, int32_t, int32_t, int32_t, int32_t))init2;
        ng.deflate = (int32_t (*)(ng_stream *, int32_t))deflate;
        ng.reset = (int32_t (*)(ng_stream *))reset;
        ng.end = (int32_t (*)(ng_stream *))end;
        ng.bound = (unsigned long (*)(ng_stream *, unsigned long))bound;
        ng.handle = h;
    } else {
        dlclose(h);
    }
    return PyUnicode_FromString(ng.version());
}

PyDoc_STRVAR(deflate_pages_doc,
"deflate_pages(buffers, page_size, level) -> (bytes, list[int])\n"
"\n"
"Every page of the buffers (each a whole number of pages) as a zlib stream of\n"
"its own at the level, as zlib_ng.compress(page, level) makes it, or the page\n"
"itself where the stream would not be smaller.  Returns the pieces end to end\n"
"and each page's size there (page_size: stored as it is).  Needs bind_zlib_ng.");

static PyObject *
native_deflate_pages(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *seq_obj;
    Py_ssize_t ps_arg;
    int level;
    if (!PyArg_ParseTuple(args, "Oni:deflate_pages", &seq_obj, &ps_arg, &level))
        return NULL;
    if (ng.handle == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "deflate_pages needs bind_zlib_ng first");
        return NULL;
    }
    if (ps_arg < 64 || ps_arg > (1 << 20)) {
        PyErr_SetString(PyExc_ValueError, "page_size must be 64 .. 1 MiB");
        return NULL;
    }
    if (level < 0 || level > 9) {
        PyErr_SetString(PyExc_ValueError, "level must be 0 .. 9");
        return NULL;
    }
    size_t ps = (size_t)ps_arg;
    PyObject *seq = PySequence_Fast(seq_obj, "deflate_pages takes a sequence of buffers");
    if (seq == NULL)
        return NULL;
    Py_ssize_t nbuf = PySequence_Fast_GET_SIZE(seq);
    Py_buffer *views = PyMem_Calloc(nbuf > 0 ? (size_t)nbuf : 1, sizeof(Py_buffer));
    PyObject *out = NULL, *sizes_list = NULL, *result = NULL;
    uint32_t *sizes = NULL;
    Py_ssize_t got = 0;
    size_t npages = 0;
    if (views == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < nbuf; got++) {
        if (get_contiguous_buffer(PySequence_Fast_GET_ITEM(seq, got), &views[got], "deflate_pages") < 0)
            goto done;
        if ((size_t)views[got].len % ps != 0) {
            got++;
            PyErr_SetString(PyExc_ValueError, "a buffer is not a whole number of pages");
            goto done;
        }
        npages += (size_t)views[got].len / ps;
    }
    if (npages > (size_t)PY_SSIZE_T_MAX / ps - 1) {
        PyErr_NoMemory();
        goto done;
    }

    ng_stream zs;
    memset(&zs, 0, sizeof zs);
    if (ng.init2(&zs, level, NG_DEFLATED, NG_MAX_WBITS, NG_MEM_LEVEL, NG_DEFAULT_STRATEGY) != NG_OK) {
        PyErr_NoMemory();
        goto done;
    }
    size_t bound = (size_t)ng.bound(&zs, (unsigned long)ps);
    size_t slack = bound > ps ? bound - ps : 0;     /* the last page's stream may overrun */
    sizes = PyMem_Malloc((npages ? npages : 1) * sizeof(uint32_t));
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(npages * ps + slack));
    if (sizes == NULL || out == NULL) {
        ng.end(&zs);
        if (sizes == NULL)
            PyErr_NoMemory();
        goto done;
    }
    uint8_t *dst = (uint8_t *)PyBytes_AS_STRING(out);
    size_t pos = 0, k = 0;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t b = 0; b < nbuf && !failed; b++) {
        const uint8_t *src = (const uint8_t *)views[b].buf;
        size_t n = (size_t)views[b].len / ps;
        for (size_t i = 0; i < n; i++, k++) {
            const uint8_t *page = src + i * ps;
            if (ng.reset(&zs) != NG_OK) {
                failed = 1;
                break;
            }
            zs.next_in = page;
            zs.avail_in = (uint32_t)ps;
            zs.next_out = dst + pos;
            zs.avail_out = (uint32_t)(ps + slack);
            int rc = ng.deflate(&zs, NG_FINISH);
            size_t got_bytes = ps + slack - zs.avail_out;
            if (rc == NG_STREAM_END && got_bytes < ps) {
                sizes[k] = (uint32_t)got_bytes;
            } else {                  /* not smaller (or not finished): the page as it is */
                memcpy(dst + pos, page, ps);
                sizes[k] = (uint32_t)ps;
            }
            pos += sizes[k];
        }
    }
    ng.end(&zs);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_SetString(PyExc_RuntimeError, "zlib-ng refused to reset its deflate state");
        goto done;
    }
    if (_PyBytes_Resize(&out, (Py_ssize_t)pos) < 0)
        goto done;
    sizes_list = PyList_New((Py_ssize_t)npages);
    if (sizes_list == NULL)
        goto done;
    for (size_t i = 0; i < npages; i++) {
        PyObject *v = PyLong_FromUnsignedLong(sizes[i]);
        if (v == NULL)
            goto done;
        PyList_SET_ITEM(sizes_list, (Py_ssize_t)i, v);
    }
    result = PyTuple_Pack(2, out, sizes_list);

done:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(sizes);
    Py_XDECREF(out);
    Py_XDECREF(sizes_list);
    Py_DECREF(seq);
    return result;
}

/* ------------------------------------------------------------------------ */
/* page_rows: the struct pages a dump-level scan has to decode
 *
 * Most struct pages of a kernel are kept at every dump level: not on an LRU
 * list, not anonymous, no page type in _mapcount.  This finds the others (and
 * leaves out tail pages, which go with their heads) without the GIL, so the
 * scan decodes in Python only the rows that can be left out.
 */
static uint64_t
load_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

PyDoc_STRVAR(page_rows_doc,
"page_rows(buffer, size, flags_at, mapping_at, mapcount_at, head_at, hot_flags,\n"
"          exact_types, top_types) -> list[int]\n"
"\n"
"Indices of the struct pages (big-endian, size bytes each, end to end in the\n"
"buffer) that are not tail pages (bit 0 of the u64 at head_at) and have a flag\n"
"of hot_flags (u64 at flags_at), the anon bit of the mapping (u64 at\n"
"mapping_at), or a page type in the s32 at mapcount_at (one of exact_types, or\n"
"its top byte one of top_types).  A field offset of -1: the kernel has none.");

static PyObject *
native_page_rows(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *obj, *exact_obj, *top_obj;
    Py_ssize_t size, flags_at, mapping_at, mapcount_at, head_at;
    unsigned long long hot;
    if (!PyArg_ParseTuple(args, "OnnnnnKOO:page_rows", &obj, &size, &flags_at, &mapping_at,
                          &mapcount_at, &head_at, &hot, &exact_obj, &top_obj))
        return NULL;
    if (size < 16 || size > 4096 || flags_at < 0 || flags_at + 8 > size || mapping_at < 0 ||
        mapping_at + 8 > size || mapcount_at < -1 || mapcount_at + 4 > size || head_at < -1 ||
        head_at + 8 > size) {
        PyErr_SetString(PyExc_ValueError, "page_rows: a field lies outside the struct page");
        return NULL;
    }
    int32_t exact[16];
    int nexact = 0;
    unsigned char top[256] = {0};
    PyObject *seq = PySequence_Fast(exact_obj, "exact_types must be a sequence");
    if (seq == NULL)
        return NULL;
    if (PySequence_Fast_GET_SIZE(seq) > 16) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "page_rows: at most 16 exact page types");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
        exact[nexact++] = (int32_t)v;
    }
    Py_DECREF(seq);
    seq = PySequence_Fast(top_obj, "top_types must be a sequence");
    if (seq == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if ((v == -1 && PyErr_Occurred()) || v < 0 || v > 255) {
            Py_DECREF(seq);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "page_rows: a top byte is 0..255");
            return NULL;
        }
        top[v] = 1;
    }
    Py_DECREF(seq);

    Py_buffer view;
    if (get_contiguous_buffer(obj, &view, "page_rows") < 0)
        return NULL;
    size_t rows = (size_t)view.len / (size_t)size;
    uint32_t *hits = PyMem_Malloc((rows ? rows : 1) * sizeof(uint32_t));
    if (hits == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    size_t nhits = 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *row = (const unsigned char *)view.buf;
    for (size_t i = 0; i < rows; i++, row += size) {
        if (head_at >= 0 && (row[head_at + 7] & 1))
            continue;
        int hit = (load_be(row + flags_at, 8) & hot) != 0 || (row[mapping_at + 7] & 1);
        if (!hit && mapcount_at >= 0) {
            int32_t mc = (int32_t)(uint32_t)load_be(row + mapcount_at, 4);
            hit = top[row[mapcount_at]];
            for (int k = 0; k < nexact && !hit; k++)
                hit = mc == exact[k];
        }
        if (hit)
            hits[nhits++] = (uint32_t)i;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyObject *out = PyList_New((Py_ssize_t)nhits);
    for (size_t i = 0; out != NULL && i < nhits; i++) {
        PyObject *v = PyLong_FromUnsignedLong(hits[i]);
        if (v == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, v);
    }
    PyMem_Free(hits);
    return out;
}

static PyMethodDef native_methods[] = {
    {"csum_partial", (PyCFunction)(void (*)(void))native_csum_partial,
     METH_VARARGS | METH_KEYWORDS, csum_partial_doc},
    {"zero_ranges", (PyCFunction)(void (*)(void))native_zero_ranges,
     METH_VARARGS | METH_KEYWORDS, zero_ranges_doc},
    {"nonzero_ranges", (PyCFunction)(void (*)(void))native_nonzero_ranges,
     METH_VARARGS | METH_KEYWORDS, nonzero_ranges_doc},
    {"is_zero", (PyCFunction)native_is_zero, METH_O, is_zero_doc},
    {"bind_zlib_ng", (PyCFunction)native_bind_zlib_ng, METH_O, bind_zlib_ng_doc},
    {"deflate_pages", (PyCFunction)native_deflate_pages, METH_VARARGS, deflate_pages_doc},
    {"page_rows", (PyCFunction)native_page_rows, METH_VARARGS, page_rows_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "native._native",
    .m_doc = "C implementations of CKSM and zero-page scanning for s390-dumptools.",
    .m_size = 0,
    .m_methods = native_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
#if NATIVE_X86_DISPATCH
    if (__builtin_cpu_supports("avx2")) {
        sum_words = sum_words_avx2;
        region_is_zero = region_is_zero_avx2;
    }
#endif
    return PyModuleDef_Init(&native_module);
}
