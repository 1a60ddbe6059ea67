/* int8-activation x int8-weight matrix products with AVX512-VNNI (the cpu backend's fast path).

   y[t, n] = sum_k w[n, k] * x[t, k], w = scale[n, k >> shift] * q[n, k] (q int8; shift 5: float16
   scales, shift 4: float32),
   x quantized per row and per 32 columns to int8 (xq, one float scale per block), as llama.cpp
   does for its Q8_0 dot products. Each 64-column step of one (row, token) pair is
   dpbusd (exact int32 block sums) -> int32 to float -> * (weight scale * activation scale)
   -> fma into 16 float lanes, then one fixed reduction. The pair's arithmetic is the same
   whatever the tile, the thread split or the number of tokens, so a token's output never depends
   on what it is batched with (batch invariance), and one kernel serves decode and prefill.

   Why C: numba cannot emit vpdpbusd, which multiplies 64 int8 pairs per instruction; this file is
   compiled at install time with the machine's compiler (-march=native). OpenMP binds to the
   libgomp that torch has already loaded (same soname), so torch, numba and this share one pool.
   Arguments are raw addresses from Python (the callers own and check every buffer). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef __AVX512VNNI__
#include <immintrin.h>
#endif

#define NB 16 /* weight rows per parallel work item */

#ifdef __AVX512VNNI__
/* Per-thread activation scratch (grown, never shrunk): T*K bytes of int8, 4*T*K/4 of lane
   corrections and 4*T*K/4 of lane scales. */
static __thread int8_t *scratch;
static __thread size_t scratch_cap;

/* One row of K floats -> K int8 (round to nearest even, scale = amax / 127 per 32 columns), the
   scale of every dpbusd lane (K/4 floats) and the lanes' offset correction (K/4 int32). */
static void quantize_row(const float *x, int64_t K, int8_t *q, int32_t *corr, float *sl) {
    const __m512i flip = _mm512_set1_epi8((char)0x80), zero = _mm512_setzero_si512();
    for (int64_t b = 0; b < K / 32; b++) {
        __m512 lo = _mm512_loadu_ps(x + 32 * b), hi = _mm512_loadu_ps(x + 32 * b + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
        float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i qlo = _mm512_cvtps_epi32(_mm512_mul_ps(lo, vid));
        __m512i qhi = _mm512_cvtps_epi32(_mm512_mul_ps(hi, vid));
        _mm_storeu_si128((__m128i *)(q + 32 * b), _mm512_cvtsepi32_epi8(qlo));
        _mm_storeu_si128((__m128i *)(q + 32 * b + 16), _mm512_cvtsepi32_epi8(qhi));
        _mm256_storeu_ps(sl + 8 * b, _mm256_set1_ps(d)); /* lanes 8b..8b+7 cover block b */
    }
    /* -128 * (sum of each lane's 4 bytes): dpbusd of (q + 128) then starts from the exact
       int32 correction, so its lanes hold sum(q_w * x_q) */
    for (int64_t k = 0; k < K; k += 64) {
        __m512i v = _mm512_loadu_si512(q + k);
        _mm512_storeu_si512(corr + k / 4, _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, flip, v)));
    }
}

/* Scales of the 16 dpbusd lanes of a 64-column step: lane i covers columns 4i..4i+3. */
static inline __m512 lanes_g32(const uint16_t *s) { /* float16 s[0]: lanes 0-7, s[1]: 8-15 */
    const __m512i idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    int32_t two;
    memcpy(&two, s, 4);
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(two));
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}
static inline __m512 lanes_g16(const float *s) { /* s[j] for lanes 4j..4j+3 */
    const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_loadu_ps(s)));
}

/* Weight forms: F_G32 int8 + float16 scale per 32 columns, F_G16 int8 + float32 per 16,
   F_Q5 (Q5_0 kept at 5 bits): per 64-column step 40 bytes, 32 of nibbles (byte j: column j
   low, column j + 32 high) and 8 of fifth bits (bit j: column j), level = value - 16, float16
   scale per 32 columns. 44 instead of 68 bytes per 64 weights streamed. */
enum { F_G32 = 0, F_G16 = 1, F_Q5 = 2 };

static inline __m512i unpack_q5(const uint8_t *p) { /* 64 unsigned levels 0..31 */
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
    uint64_t bits;
    memcpy(&bits, p + 32, 8);
    both = _mm512_and_si512(both, _mm512_set1_epi8(0x0F));
    return _mm512_or_si512(both, _mm512_maskz_mov_epi8(bits, _mm512_set1_epi8(0x10)));
}

/* A tile of NN weight rows x TT tokens. Constant NN/TT/F let the compiler keep the NN*TT
   accumulators in registers; every pair runs the same instruction sequence in every variant. */
static inline __attribute__((always_inline)) void tile(
    const int NN, const int TT, const int F, const int8_t *W, const void *S, int64_t K,
    const int8_t *XQ, const int32_t *XC, const float *XS, float *out, int64_t N, int64_t n0,
    int64_t t0) {
    const int64_t G = F == F_G16 ? K / 16 : K / 32;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512 acc[4][4];
    _Pragma("GCC unroll 4")
    for (int i = 0; i < NN; i++)
        _Pragma("GCC unroll 4")
        for (int j = 0; j < TT; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k += 64) {
        __m512i w[4];
        __m512 sw[4];
        _Pragma("GCC unroll 4")
        for (int i = 0; i < NN; i++) {
            /* dpbusd multiplies unsigned by signed bytes: feed q + 128 and take 128 * sum(x)
               back below (exact in int32). */
            if (F == F_Q5)
                w[i] = unpack_q5((const uint8_t *)W + (n0 + i) * (K / 64 * 40) + k / 64 * 40);
            else
                w[i] = _mm512_xor_si512(_mm512_loadu_si512(W + (n0 + i) * K + k), flip);
            sw[i] = F == F_G16 ? lanes_g16((const float *)S + (n0 + i) * G + k / 16)
                               : lanes_g32((const uint16_t *)S + (n0 + i) * G + k / 32);
        }
        _Pragma("GCC unroll 4")
        for (int j = 0; j < TT; j++) {
            __m512i x = _mm512_loadu_si512(XQ + (t0 + j) * K + k);
            __m512i corr = _mm512_loadu_si512(XC + (t0 + j) * (K / 4) + k / 4);
            if (F == F_Q5) corr = _mm512_srai_epi32(corr, 3); /* -16 * sum(x): exact */
            __m512 sx = _mm512_loadu_ps(XS + (t0 + j) * (K / 4) + k / 4);
            _Pragma("GCC unroll 4")
            for (int i = 0; i < NN; i++) {
                __m512 dot = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(corr, w[i], x));
                acc[i][j] = _mm512_fmadd_ps(dot, _mm512_mul_ps(sw[i], sx), acc[i][j]);
            }
        }
    }
    _Pragma("GCC unroll 4")
    for (int i = 0; i < NN; i++)
        _Pragma("GCC unroll 4")
        for (int j = 0; j < TT; j++) out[(t0 + j) * N + n0 + i] = _mm512_reduce_add_ps(acc[i][j]);
}

typedef void (*tile_fn)(const int8_t *, const void *, int64_t, const int8_t *, const int32_t *,
                        const float *, float *, int64_t, int64_t, int64_t);
#define TILE(NN, TT, G)                                                                        \
    static void tile_##NN##_##TT##_##G(const int8_t *W, const void *S, int64_t K,             \
                                       const int8_t *XQ, const int32_t *XC, const float *XS,  \
                                       float *out, int64_t N, int64_t n0, int64_t t0) {       \
        tile(NN, TT, G, W, S, K, XQ, XC, XS, out, N, n0, t0);                                  \
    }
#define TILES_T(NN, G) TILE(NN, 1, G) TILE(NN, 2, G) TILE(NN, 3, G) TILE(NN, 4, G)
#define TILES(G) TILES_T(1, G) TILES_T(2, G) TILES_T(3, G) TILES_T(4, G)
TILES(0)
TILES(1)
TILES(2)
#define ROW_T(NN, G) {tile_##NN##_1_##G, tile_##NN##_2_##G, tile_##NN##_3_##G, tile_##NN##_4_##G}
static const tile_fn TILE_FNS[3][4][4] = {
    {ROW_T(1, 0), ROW_T(2, 0), ROW_T(3, 0), ROW_T(4, 0)},
    {ROW_T(1, 1), ROW_T(2, 1), ROW_T(3, 1), ROW_T(4, 1)},
    {ROW_T(1, 2), ROW_T(2, 2), ROW_T(3, 2), ROW_T(4, 2)}};

static void gemm(const int8_t *W, const void *S, int form, int64_t N, int64_t K,
                 const int8_t *XQ, const int32_t *XC, const float *XS, int64_t T, float *out,
                 int threads) {
    int64_t items = (N + NB - 1) / NB;
    /* Decode: one weight row at a time streams memory fastest (4 interleaved rows measured at
       half the bandwidth); from 3 tokens on, 4-row tiles reuse each activation load 4 times. */
    const int maxnn = T <= 2 ? 1 : 4;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t item = 0; item < items; item++) {
        int64_t n_end = (item + 1) * NB < N ? (item + 1) * NB : N;
        for (int64_t t0 = 0; t0 < T; t0 += 4) {
            int tt = T - t0 < 4 ? (int)(T - t0) : 4;
            for (int64_t n0 = item * NB; n0 < n_end; n0 += maxnn) {
                int nn = n_end - n0 < maxnn ? (int)(n_end - n0) : maxnn;
                TILE_FNS[form][nn - 1][tt - 1](W, S, K, XQ, XC, XS, out, N, n0, t0);
            }
        }
    }
}
#endif /* __AVX512VNNI__ */

/* linear(x, T, K, q, scale, form, N, out, threads): out[T, N] = x[T, K] @ w.T (addresses;
   form 5: int8 + float16 per 32 columns, 4: int8 + float32 per 16, 50: Q5 packed). */
static PyObject *py_linear(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "linear() takes 9 arguments");
        return NULL;
    }
    long long v[9];
    for (int i = 0; i < 9; i++) {
        v[i] = PyLong_AsLongLong(args[i]);
        if (v[i] == -1 && PyErr_Occurred()) return NULL;
    }
#ifdef __AVX512VNNI__
    const float *x = (const float *)(intptr_t)v[0];
    int64_t T = v[1], K = v[2], N = v[6];
    int shift = (int)v[5], threads = (int)v[8];
    int form = shift == 5 ? F_G32 : shift == 4 ? F_G16 : shift == 50 ? F_Q5 : -1;
    if (K % 64 || form < 0 || T < 0 || N < 0 || threads < 1) {
        PyErr_SetString(PyExc_ValueError, "linear(): K must be a multiple of 64, form 4, 5 or 50");
        return NULL;
    }
    /* below ~256K multiply-adds a parallel region costs more than it saves */
    if (T * N * K < (1 << 18)) threads = 1;
    size_t need = (size_t)(T * K) * 3;
    Py_BEGIN_ALLOW_THREADS
    if (need > scratch_cap) {
        free(scratch);
        scratch = aligned_alloc(64, (need + 63) / 64 * 64);
        scratch_cap = scratch ? need : 0;
    }
    if (scratch_cap >= need) {
        /* locals: inside the parallel region the thread-local names are the workers' own */
        int32_t *xc = (int32_t *)scratch;
        float *xs = (float *)(scratch + T * K);
        int8_t *xq = scratch + 2 * T * K;
#pragma omp parallel for schedule(static) num_threads(threads) if (T > 8)
        for (int64_t t = 0; t < T; t++)
            quantize_row(x + t * K, K, xq + t * K, xc + t * (K / 4), xs + t * (K / 4));
        gemm((const int8_t *)(intptr_t)v[3], (const void *)(intptr_t)v[4], form, N, K,
             xq, xc, xs, T, (float *)(intptr_t)v[7], threads);
    }
    Py_END_ALLOW_THREADS
    if (scratch_cap < need) return PyErr_NoMemory();
    Py_RETURN_NONE;
#else
    PyErr_SetString(PyExc_RuntimeError, "built without AVX512-VNNI");
    return NULL;
#endif
}

/* available() -> True when this build has the VNNI kernel and the CPU runs it. */
static PyObject *py_available(PyObject *self, PyObject *unused) {
#ifdef __AVX512VNNI__
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw"))
        Py_RETURN_TRUE;
#endif
    Py_RETURN_FALSE;
}

static PyMethodDef METHODS[] = {
    {"linear", (PyCFunction)(void (*)(void))py_linear, METH_FASTCALL,
     "linear(x, T, K, q, scale, shift, N, out, threads): int8-activation product (addresses)"},
    {"available", py_available, METH_NOARGS, "True when the VNNI kernel can run here"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_qgemm",
                                    "AVX512-VNNI int8 matrix products", -1, METHODS};

PyMODINIT_FUNC PyInit__qgemm(void) { return PyModule_Create(&MODULE); }
