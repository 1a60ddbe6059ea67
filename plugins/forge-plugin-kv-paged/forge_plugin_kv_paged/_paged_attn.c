/* Decode attention over a paged float32 KV cache (one query token per sequence), in place.

   q, out [B, H, D]; k, v [NB, BS, KV, D]; tables [B, M] int32 block ids; lens [B] int32 (the query
   sits at position lens[b] - 1 and sees positions lo..lens[b]-1, lo = lens[b] - window when a
   sliding window cuts). Query head h reads kv head h / (H / KV) (grouped-query attention).

   Split-K: the visible positions of a row are cut into chunks of CHUNK positions counted from lo.
   A chunk is one work item: its scores (a dot product per query head, times scale, soft-capped
   c * tanh(s / c)), their max m, e = exp(s - m), l = sum e and acc = sum e * v. Rows are then
   merged chunk by chunk in ascending order: out = sum_c exp(m_c - M) acc_c / sum_c exp(m_c - M) l_c.
   The chunking depends only on the row's own length and window, and every item's arithmetic is the
   same whichever thread runs it, so a row's bits never depend on its batch or on the thread count
   (batch invariance, serial == parallel), while one long sequence still spreads over the threads.

   Why C: numba's parallel loop over (sequence, kv head) left one thread working for one sequence
   with one kv head, its thread pool cost milliseconds of CPU per call here, and numba itself costs
   ~65 MB of resident memory. GCC vector extensions (v16: 16 floats) become AVX-512 with
   -march=native and pairs of AVX2 registers elsewhere. Arguments are raw addresses from Python;
   the caller checks dtypes, shapes and contiguity, this file checks lens and block ids. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 128 /* positions per work item: ~1/256 merge overhead, 4 items per 512 keys */
#define MAXG 8   /* query heads per kv head kept in registers; larger groups are split */

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t i16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

static inline v16 ld(const float *p) {
    v16 x;
    memcpy(&x, p, sizeof x); /* unaligned load */
    return x;
}
static inline void st(float *p, v16 x) { memcpy(p, &x, sizeof x); }
static inline v16 splat(float f) { return (v16){f, f, f, f, f, f, f, f, f, f, f, f, f, f, f, f}; }

static inline float hsum(v16 x) { /* fixed tree: 8 + 8, 4 + 4, 2 + 2, 1 + 1 */
    v8 a = __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7) +
           __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
    v4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    return (b[0] + b[2]) + (b[1] + b[3]);
}

/* exp(x) for x <= 0 (scores minus their max), ~1 ulp: x = n ln2 + r, |r| <= ln2 / 2, Cephes'
   degree-6 polynomial for e^r, times 2^n built in the exponent bits; below -87.3 (2^n would be
   subnormal) the result is 0, as the float32 softmax of the reference gives there. */
static inline v16 exp_neg(v16 x) {
    const v16 magic = splat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    v16 n = (x * splat(1.44269504088896341f) + magic) - magic;
    v16 r = x - n * splat(0.693359375f) - n * splat(-2.12194440e-4f);
    v16 p = splat(1.9875691500e-4f);
    p = p * r + splat(1.3981999507e-3f);
    p = p * r + splat(8.3334519073e-3f);
    p = p * r + splat(4.1665795894e-2f);
    p = p * r + splat(1.6666665459e-1f);
    p = p * r + splat(5.0000001201e-1f);
    p = p * r * r + r + splat(1.0f);
    i16 bits = (__builtin_convertvector(n, i16) + 127) << 23;
    v16 y = p * (v16)bits;
    i16 drop = x < splat(-87.3f); /* false for NaN: a NaN score stays NaN */
    return (v16)((i16)y & ~drop);
}

/* One work item: chunk [p0, p1) of row b, kv head kvh, query heads h0 .. h0 + G - 1.
   Writes mx[G], l[G], acc[G][D]. G is a compile-time constant in each inlined copy. */
static inline __attribute__((always_inline)) void
chunk_item(const float *q, const float *k, const float *v, const int32_t *table, int64_t p0,
           int64_t p1, int64_t KV, int64_t D, int64_t BS, int64_t kvh, float scale, float softcap,
           int G, float *mx, float *l, float *acc) {
    int m = (int)(p1 - p0);
    int64_t off[CHUNK];
    float s[MAXG][CHUNK + 16]; /* scores then weights; padded to whole vectors for exp */
    for (int i = 0; i < m; i++) {
        int64_t p = p0 + i;
        off[i] = (((int64_t)table[p / BS] * BS + p % BS) * KV + kvh) * D;
    }
    /* scores: one key row at a time, in order (a single sequential stream per block is what the
       hardware prefetchers follow best: two rows in lockstep measured ~1.8x slower from DRAM) */
    for (int i = 0; i < m; i++) {
        const float *kr = k + off[i];
        v16 a[MAXG][2];
        for (int g = 0; g < G; g++) a[g][0] = a[g][1] = splat(0.0f);
        int64_t j = 0;
        for (; j + 32 <= D; j += 32) {
            v16 x0 = ld(kr + j), x1 = ld(kr + j + 16);
            for (int g = 0; g < G; g++) {
                a[g][0] += ld(q + g * D + j) * x0;
                a[g][1] += ld(q + g * D + j + 16) * x1;
            }
        }
        if (j < D) /* D % 32 == 16 */
            for (int g = 0; g < G; g++) a[g][0] += ld(q + g * D + j) * ld(kr + j);
        for (int g = 0; g < G; g++) s[g][i] = hsum(a[g][0] + a[g][1]) * scale;
    }
    for (int g = 0; g < G; g++) {
        float best = -INFINITY;
        for (int i = 0; i < m; i++) {
            if (softcap > 0.0f) s[g][i] = tanhf(s[g][i] / softcap) * softcap;
            best = s[g][i] > best ? s[g][i] : best;
        }
        for (int i = m; i < ((m + 15) & ~15); i++) s[g][i] = best; /* padding: e = 1, unused */
        v16 tot = splat(0.0f);
        for (int i = 0; i < m; i += 16) {
            v16 e = exp_neg(ld(&s[g][i]) - splat(best));
            st(&s[g][i], e);
            if (i + 16 <= m) tot += e;
            else
                for (int t = 0; t < m - i; t++) tot[t] += e[t];
        }
        mx[g] = best;
        l[g] = hsum(tot);
    }
    /* values: rows in order (as the keys), the G x D accumulators in L1 */
    for (int g = 0; g < G; g++)
        for (int64_t j = 0; j < D; j += 16) st(acc + g * D + j, splat(0.0f));
    for (int i = 0; i < m; i++) {
        const float *v0 = v + off[i];
        v16 w0[MAXG];
        for (int g = 0; g < G; g++) w0[g] = splat(s[g][i]);
        for (int64_t j = 0; j < D; j += 16) {
            v16 x0 = ld(v0 + j);
            for (int g = 0; g < G; g++) st(acc + g * D + j, ld(acc + g * D + j) + w0[g] * x0);
        }
    }
}

/* Dispatch on the group size so each copy keeps its accumulators in registers. */
static void run_item(const float *q, const float *k, const float *v, const int32_t *table,
                     int64_t p0, int64_t p1, int64_t KV, int64_t D, int64_t BS, int64_t kvh,
                     float scale, float softcap, int G, float *mx, float *l, float *acc) {
#define CASE(n)                                                                                 \
    case n:                                                                                     \
        chunk_item(q, k, v, table, p0, p1, KV, D, BS, kvh, scale, softcap, n, mx, l, acc);      \
        return;
    switch (G) {
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
    }
#undef CASE
}

/* One decode call: shapes, parameters and the work list (items in row order, KV per item). */
typedef struct {
    const float *q, *k, *v;
    const int32_t *tables, *lens;
    float *out, *part; /* part: per (item, kv head) mx[G], l[G], acc[G][D] */
    const int64_t *first, *owner; /* row b's first item; each item's row */
    int64_t H, KV, D, BS, M, G, gw, per, window;
    float scale, softcap;
} Job;

static inline int64_t row_lo(const Job *j, int64_t n) {
    return j->window > 0 && n > j->window ? n - j->window : 0;
}

static void item_work(const Job *j, int64_t w) { /* chunk w / KV of its row, kv head w % KV */
    int64_t c = w / j->KV, kvh = w % j->KV, b = j->owner[c], n = j->lens[b];
    int64_t p0 = row_lo(j, n) + (c - j->first[b]) * CHUNK, p1 = p0 + CHUNK < n ? p0 + CHUNK : n;
    float *base = j->part + w * j->per;
    for (int64_t g0 = 0; g0 < j->G; g0 += j->gw) { /* groups wider than MAXG: in slices */
        int gn = (int)(j->G - g0 < j->gw ? j->G - g0 : j->gw);
        run_item(j->q + (b * j->H + kvh * j->G + g0) * j->D, j->k, j->v, j->tables + b * j->M,
                 p0, p1, j->KV, j->D, j->BS, kvh, j->scale, j->softcap, gn, base + g0,
                 base + j->G + g0, base + 2 * j->G + g0 * j->D);
    }
}

static void merge_row(const Job *j, int64_t r) { /* row r / KV, kv head r % KV: chunks in order */
    int64_t b = r / j->KV, kvh = r % j->KV, G = j->G, D = j->D;
    for (int64_t g = 0; g < G; g++) {
        float best = -INFINITY, total = 0.0f;
        for (int64_t c = j->first[b]; c < j->first[b + 1]; c++) {
            float m = j->part[(c * j->KV + kvh) * j->per + g];
            best = m > best ? m : best;
        }
        float *o = j->out + (b * j->H + kvh * G + g) * D;
        for (int64_t d = 0; d < D; d += 16) st(o + d, splat(0.0f));
        for (int64_t c = j->first[b]; c < j->first[b + 1]; c++) {
            const float *pc = j->part + (c * j->KV + kvh) * j->per;
            float w = expf(pc[g] - best);
            total += w * pc[G + g];
            for (int64_t d = 0; d < D; d += 16)
                st(o + d, ld(o + d) + splat(w) * ld(pc + 2 * G + g * D + d));
        }
        float inv = 1.0f / total;
        for (int64_t d = 0; d < D; d += 16) st(o + d, ld(o + d) * splat(inv));
    }
}

static __thread char *scratch; /* partial results and the work list (grown, never shrunk) */
static __thread size_t scratch_cap;

/* An int32 C-contiguous buffer of `ndim` dimensions, or an error. */
static int int32_buffer(PyObject *obj, Py_buffer *view, int ndim, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *f = view->format;
    char last = f && *f ? f[strlen(f) - 1] : 0; /* "i", "<i", "=i" ...: signed, native order */
    if (view->ndim != ndim || view->itemsize != 4 || (last != 'i' && last != 'l') ||
        f[0] == '>' || f[0] == '!') {
        PyErr_Format(PyExc_TypeError, "decode(): %s must be a C-contiguous int32 array of %d "
                     "dimensions", what, ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* decode(q, k, v, tables, lens, out, H, KV, D, BS, NB, scale, window, softcap, threads,
   min_work): q, k, v, out addresses; tables [B, M] and lens [B] int32 arrays. The threads run
   only when the step has at least min_work multiply-adds. */
static PyObject *py_decode(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 16) {
        PyErr_SetString(PyExc_TypeError, "decode() takes 16 arguments");
        return NULL;
    }
    long long a[16];
    for (int i = 0; i < 16; i++) {
        if (i == 3 || i == 4 || i == 11 || i == 13) continue;
        a[i] = PyLong_AsLongLong(args[i]);
        if (a[i] == -1 && PyErr_Occurred()) return NULL;
    }
    double scale = PyFloat_AsDouble(args[11]), softcap = PyFloat_AsDouble(args[13]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer tb, lb;
    if (int32_buffer(args[3], &tb, 2, "tables") < 0) return NULL;
    if (int32_buffer(args[4], &lb, 1, "lens") < 0) {
        PyBuffer_Release(&tb);
        return NULL;
    }
    PyObject *result = NULL;
    Job j = {.q = (const float *)(intptr_t)a[0], .k = (const float *)(intptr_t)a[1],
             .v = (const float *)(intptr_t)a[2], .tables = tb.buf, .lens = lb.buf,
             .out = (float *)(intptr_t)a[5], .H = a[6], .KV = a[7], .D = a[8], .BS = a[9],
             .M = tb.shape[1], .window = a[12], .scale = (float)scale, .softcap = (float)softcap};
    int64_t B = tb.shape[0], NB = a[10], threads = a[14], min_work = a[15];
    if (lb.shape[0] != B || j.KV < 1 || j.H % j.KV || j.D < 16 || j.D % 16 || j.BS < 1 ||
        threads < 1) {
        PyErr_SetString(PyExc_ValueError, "decode(): bad shapes (head_dim must be a multiple of "
                                          "16, heads a multiple of kv heads, one length per row)");
        goto done;
    }
    /* every row's length and every block it reads are checked before any memory is touched */
    int64_t items = 0, keys = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t n = j.lens[b];
        if (n < 1 || n > j.M * j.BS) {
            PyErr_Format(PyExc_ValueError, "decode(): row %lld has length %lld (1..%lld allowed)",
                         (long long)b, (long long)n, (long long)(j.M * j.BS));
            goto done;
        }
        int64_t lo = row_lo(&j, n);
        for (int64_t i = lo / j.BS; i <= (n - 1) / j.BS; i++) {
            int32_t blk = j.tables[b * j.M + i];
            if (blk < 0 || blk >= NB) {
                PyErr_Format(PyExc_ValueError, "decode(): row %lld reads block %d of %lld",
                             (long long)b, blk, (long long)NB);
                goto done;
            }
        }
        items += (n - lo + CHUNK - 1) / CHUNK;
        keys += n - lo;
    }
    j.G = j.H / j.KV;
    j.gw = (j.G + (j.G + MAXG - 1) / MAXG - 1) / ((j.G + MAXG - 1) / MAXG);
    j.per = j.G * (j.D + 2);
    size_t part_bytes = (size_t)(items * j.KV * j.per) * sizeof(float);
    size_t need = part_bytes + (size_t)(B + 1 + items) * sizeof(int64_t);
    if (need > scratch_cap) {
        free(scratch);
        scratch = malloc(need);
        scratch_cap = scratch ? need : 0;
        if (!scratch) {
            PyErr_NoMemory();
            goto done;
        }
    }
    int64_t *first = (int64_t *)(scratch + part_bytes), *owner = first + B + 1;
    j.part = (float *)scratch;
    j.first = first;
    j.owner = owner;
    first[0] = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t n = j.lens[b];
        first[b + 1] = first[b] + (n - row_lo(&j, n) + CHUNK - 1) / CHUNK;
        for (int64_t c = first[b]; c < first[b + 1]; c++) owner[c] = b;
    }
    if (2 * keys * j.H * j.D < min_work) threads = 1;
    Py_BEGIN_ALLOW_THREADS
    if (threads == 1) { /* no parallel region at all: its set-up alone costs ~1 us */
        for (int64_t w = 0; w < items * j.KV; w++) item_work(&j, w);
        for (int64_t r = 0; r < B * j.KV; r++) merge_row(&j, r);
    } else {
#pragma omp parallel num_threads((int)threads)
        {
#pragma omp for schedule(dynamic, 1)
            for (int64_t w = 0; w < items * j.KV; w++) item_work(&j, w);
#pragma omp for schedule(static)
            for (int64_t r = 0; r < B * j.KV; r++) merge_row(&j, r);
        }
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&tb);
    PyBuffer_Release(&lb);
    return result;
}

/* write(k_cache, v_cache, k, v, slots, T, row, slot_count): copy T new rows of `row` floats
   (KV * D) of k and v [T, KV, D] into cache rows slots[t] (int64) of the two caches, one layer's
   [slot_count, KV, D] each: the per-layer KV write of a step in one call. */
static PyObject *py_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "write() takes 8 arguments");
        return NULL;
    }
    long long a[8];
    for (int i = 0; i < 8; i++) {
        a[i] = PyLong_AsLongLong(args[i]);
        if (a[i] == -1 && PyErr_Occurred()) return NULL;
    }
    float *kc = (float *)(intptr_t)a[0], *vc = (float *)(intptr_t)a[1];
    const float *k = (const float *)(intptr_t)a[2], *v = (const float *)(intptr_t)a[3];
    const int64_t *slots = (const int64_t *)(intptr_t)a[4];
    int64_t T = a[5], row = a[6], count = a[7];
    for (int64_t t = 0; t < T; t++)
        if (slots[t] < 0 || slots[t] >= count) {
            PyErr_Format(PyExc_ValueError, "write(): slot %lld outside the cache's %lld rows",
                         (long long)slots[t], (long long)count);
            return NULL;
        }
    for (int64_t t = 0; t < T; t++) {
        memcpy(kc + slots[t] * row, k + t * row, (size_t)row * sizeof(float));
        memcpy(vc + slots[t] * row, v + t * row, (size_t)row * sizeof(float));
    }
    Py_RETURN_NONE;
}

static PyMethodDef METHODS[] = {
    {"write", (PyCFunction)(void (*)(void))py_write, METH_FASTCALL,
     "write(k_cache, v_cache, k, v, slots, T, row, slot_count): store new key/value rows"},
    {"decode", (PyCFunction)(void (*)(void))py_decode, METH_FASTCALL,
     "decode(q, k, v, tables, lens, out, H, KV, D, BS, NB, scale, window, softcap, threads, "
     "min_work): paged decode attention (float32 addresses, int32 tables/lens arrays)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_paged_attn",
                                    "Paged decode attention (split-K, float32)", -1, METHODS};

PyMODINIT_FUNC PyInit__paged_attn(void) { return PyModule_Create(&MODULE); }
