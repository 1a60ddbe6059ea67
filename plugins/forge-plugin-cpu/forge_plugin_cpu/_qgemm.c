/* int8-activation x packed-weight matrix products with AVX512-VNNI (the cpu backend's fast path).

   y[t, n] = sum_k w[n, k] * x[t, k]. x is quantized per row and per 32 columns to int8 (one
   float scale per block, as llama.cpp's Q8_0 dot products). Weights are integer levels with
   per-block scales: int8 (forms I8_32, I8_16: the level + 128 stored as a byte), 5-bit (Q5:
   level + 16) or 4-bit with a per-block minimum (Q4K, the GGUF Q4_K blocks as they are).

   Interleaved layout. The columns of a row are cut into groups of g 64-column steps (g = 8, or
   4 for 16-column blocks, then 4, 2, 1 for the tail) holding B = 16 blocks (fewer in a tail).
   In step s of a group, dpbusd lane i (4 bytes) holds 4 columns of block i % B, so chaining the
   g dpbusd of a group into one int32 accumulator leaves block i's exact integer dot product in
   lane i (B == 16) or split over lanes i, i + B, ... (tails). Weights are stored in that order
   (packed.py) and the activations are put in it when quantized, so a group costs g dpbusd and
   one int32->float convert + scale + FMA instead of one of each per step.

   Arithmetic of one (token, row) pair, the same in every kernel variant, tile shape, thread
   split and batch size (batch invariance): acc[16] = 0; per group, in column order,
     acc = fma(float(int32 lane sums), wscale * xscale, acc)   (Q4K also: acc -= wmin * xmin)
   then the 16 lanes summed by one fixed tree (reduce16, the pairing of _mm512_reduce_add_ps:
   i + 8, then + 4, + 2, + 1), for 16 rows at once. Integer parts are exact, so only this float
   sequence matters, and every path runs it identically.

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

/* Forms (the `form` argument): weight bytes per 64-column step, block columns, scale layout.
   I8_32: 64 bytes, float16 d per 32 columns.   I8_16: 64 bytes, float32 per 16 columns.
   Q5: 40 bytes (32 of nibbles: byte j = position j low, j + 32 high; 8 of fifth bits, bit p =
       position p), float16 d per 32 columns.
   Q4K: 32 bytes of nibbles as Q5; per row the scale bytes are sc[K/32] u8, m[K/32] u8,
       d[K/256] float16, dmin[K/256] float16: w = d * sc * level - dmin * m.
   Q6K: 48 bytes, nibbles as Q4K then 16 of high 2-bit pairs (byte j, bits 2c..2c+1: position
       16c + j), level - 32; per row sc[K/16] int8, d[K/256] float16: w = d * sc * level. */
enum { F_I8_32 = 0, F_I8_16 = 1, F_Q5 = 2, F_Q4K = 3, F_Q6K = 4, F_COUNT = 5 };

static inline int block_cols(int F) { return F == F_I8_16 || F == F_Q6K ? 16 : 32; }
static inline int step_bytes(int F) {
    return F == F_Q5 ? 40 : F == F_Q4K ? 32 : F == F_Q6K ? 48 : 64;
}
/* steps of the group starting with `left` steps to go */
static inline int group_steps(int F, int64_t left) {
    int g = block_cols(F) == 16 ? 4 : 8;
    while (g > left) g >>= 1;
    return g;
}
static int64_t n_groups(int F, int64_t K) {
    int64_t n = 0;
    for (int64_t left = K / 64; left > 0; left -= group_steps(F, left)) n++;
    return n;
}

#ifdef __AVX512VNNI__
/* Per-thread activation scratch (grown, never shrunk). */
static __thread uint8_t *scratch;
static __thread size_t scratch_cap;

/* One row of K floats -> K int8 in the interleaved order of form F (round to nearest even, scale
   = amax / 127 per 32 columns) and per group 16 lanes of: the int32 start value of the
   accumulator (the offset correction -offset * sum(x) of the lane's columns), the activation
   scale of the lane's block, and (Q4K) d_x * sum(x) of the block in its first lane, 0 elsewhere. */
static void quantize_row(const float *x, int64_t K, int F, int8_t *q, int32_t *corr, float *sl,
                         float *xm, int8_t *tmp, float *d) {
    for (int64_t b = 0; b < K / 32; b++) {
        __m512 lo = _mm512_loadu_ps(x + 32 * b), hi = _mm512_loadu_ps(x + 32 * b + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i qlo = _mm512_cvtps_epi32(_mm512_mul_ps(lo, vid));
        __m512i qhi = _mm512_cvtps_epi32(_mm512_mul_ps(hi, vid));
        _mm_storeu_si128((__m128i *)(tmp + 32 * b), _mm512_cvtsepi32_epi8(qlo));
        _mm_storeu_si128((__m128i *)(tmp + 32 * b + 16), _mm512_cvtsepi32_epi8(qhi));
        d[b] = amax / 127.0f;
    }
    const int bc = block_cols(F), cpb = bc / 4; /* 4-column chunks per block */
    const int offset = F == F_Q5 ? 16 : F == F_Q4K ? 0 : F == F_Q6K ? 32 : 128;
    int64_t col0 = 0, gi = 0;
    while (col0 < K) {
        int g = group_steps(F, (K - col0) / 64), B = g * 16 / cpb;
        int32_t lane_sum[16] = {0};
        for (int s = 0; s < g; s++)
            for (int i = 0; i < 16; i++) {
                int blk = i % B, c = s * (16 / B) + i / B;
                const int8_t *src = tmp + col0 + blk * bc + 4 * c;
                memcpy(q + col0 + 64 * s + 4 * i, src, 4);
                lane_sum[i] += src[0] + src[1] + src[2] + src[3];
            }
        for (int i = 0; i < 16; i++) {
            int blk = i % B;
            corr[gi * 16 + i] = -offset * lane_sum[i];
            sl[gi * 16 + i] = d[(col0 + blk * bc) / 32];
            if (F == F_Q4K) {
                int32_t block_sum = 0;
                for (int l = blk; l < 16; l += B) block_sum += lane_sum[l];
                xm[gi * 16 + i] = i < B ? d[(col0 + blk * bc) / 32] * (float)block_sum : 0.0f;
            }
        }
        col0 += 64 * g;
        gi++;
    }
}

/* lane i -> element i % B of a vector (the block of lane i in a group of B blocks) */
static inline __m512 spread(__m512 v, int B) {
    if (B == 16) return v;
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    return _mm512_permutexvar_ps(_mm512_and_si512(lane, _mm512_set1_epi32(B - 1)), v);
}

/* 64 unsigned levels of one step: bytes (I8), 5-bit (Q5), 4-bit (Q4K) or 6-bit (Q6K) */
static inline __m512i load_step(const int F, const uint8_t *p) {
    if (F == F_I8_32 || F == F_I8_16) return _mm512_loadu_si512(p);
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
    both = _mm512_and_si512(both, _mm512_set1_epi8(0x0F));
    if (F == F_Q4K) return both;
    if (F == F_Q6K) { /* 128-bit chunk c: the pairs at bits 2c of the 16 high bytes, << 4 */
        __m512i h = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(p + 32)));
        const __m512i count = _mm512_set_epi64(6, 6, 4, 4, 2, 2, 0, 0);
        __m512i cnt16 = _mm512_or_si512(count, _mm512_slli_epi64(count, 16));
        cnt16 = _mm512_or_si512(cnt16, _mm512_slli_epi64(cnt16, 32));
        h = _mm512_and_si512(_mm512_srlv_epi16(h, cnt16), _mm512_set1_epi8(0x03));
        return _mm512_or_si512(both, _mm512_slli_epi16(h, 4));
    }
    uint64_t bits;
    memcpy(&bits, p + 32, 8);
    return _mm512_or_si512(both, _mm512_maskz_mov_epi8(bits, _mm512_set1_epi8(0x10)));
}

/* Weight scales of a group of B blocks starting at block b0 (lanes as the accumulator); Q4K
   also sets *wmin = dmin * m. */
static inline __m512 group_scale(const int F, const uint8_t *S, int64_t K, int64_t b0, int B,
                                 __m512 *wmin) {
    const __mmask16 m = (__mmask16)((1u << B) - 1);
    if (F == F_I8_16) return spread(_mm512_maskz_loadu_ps(m, (const float *)S + b0), B);
    if (F == F_Q6K) { /* a group lies in one 256-column superblock */
        uint16_t dh;
        memcpy(&dh, S + K / 16 + 2 * (b0 / 16), 2);
        __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
        __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, S + b0)));
        return spread(_mm512_mul_ps(d, sc), B);
    }
    if (F != F_Q4K)
        return spread(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)S + b0)), B);
    const int64_t nb = K / 32;
    /* superblock of lane i: b0 / 8 + (i % B) / 8 (B == 16 spans two superblocks) */
    const __m512i sb = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i pick = B == 16 ? sb : _mm512_setzero_si512();
    const uint16_t *dd = (const uint16_t *)(S + 2 * nb) + b0 / 8;
    __m512 d = _mm512_permutexvar_ps(pick, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(3, dd)));
    __m512 dmin = _mm512_permutexvar_ps(
        pick, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(3, dd + nb / 8)));
    __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, S + b0)));
    __m512 mn = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, S + nb + b0)));
    *wmin = spread(_mm512_mul_ps(mn, dmin), B);
    return spread(_mm512_mul_ps(sc, d), B);
}

static int64_t scale_row_bytes(int F, int64_t K) {
    return F == F_I8_16 ? K / 16 * 4 : F == F_Q4K ? K / 16 + K / 64
         : F == F_Q6K ? K / 16 + K / 128 : K / 32 * 2;
}

/* A tile of NN weight rows x TT tokens (lane accumulators to red[token - t0][row % NB]).
   Constant NN/TT/F let the compiler keep the accumulators in registers; every pair runs the same
   arithmetic in every variant. */
/* Tile shapes (rows x tokens) and next-item prefetch, measured on the default model's matrices
   (1 thread): decode streams one row at a time (2 or 4 interleaved rows: half the bandwidth, and
   software prefetch only slows it); batches use 2 x 4 tiles (3 x 4 and 4 x 4 spill registers)
   with the next 16 rows prefetched (LM head at 16 tokens 44 -> 39 ms; decode: slower).
   tune() changes them for tests and benchmarks; every shape gives the same bits. */
static int GEMV_NN = 1, TILE_NN = 2, TILE_TT = 4, PREFETCH = 1;

static inline __attribute__((always_inline)) void tile(
    const int NN, const int TT, const int F, const uint8_t *W, const uint8_t *S, int64_t K,
    const int8_t *XQ, const int32_t *XC, const float *XS, const float *XM, float *red,
    int64_t n0, int64_t t0, int pf) {
    const int64_t rowb = K / 64 * step_bytes(F), srow = scale_row_bytes(F, K);
    const int64_t ng = n_groups(F, K);
    const int sb = step_bytes(F);
    __m512 facc[4][4];
#define FACC(i, j) facc[i][j]
    /* the float accumulators live in red (L1): touched once a group, they leave the registers
       to the int32 ones */
    _Pragma("GCC unroll 4") for (int i = 0; i < NN; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < TT; j++) FACC(i, j) = _mm512_setzero_ps();
    int64_t k = 0, b0 = 0;
    for (int64_t gi = 0; gi < ng; gi++) {
        const int g = group_steps(F, (K - k) / 64), B = g * 16 / (block_cols(F) / 4);
        __m512i acc[4][4];
        _Pragma("GCC unroll 4") for (int j = 0; j < TT; j++) {
            __m512i c = _mm512_loadu_si512(XC + ((t0 + j) * ng + gi) * 16);
            _Pragma("GCC unroll 4") for (int i = 0; i < NN; i++) acc[i][j] = c;
        }
        const uint8_t *wp = W + n0 * rowb + k / 64 * sb;
        /* a constant step count per group size: the accumulators then stay in their registers */
#define STEPS(G)                                                                               \
    for (int s = 0; s < G; s++) {                                                              \
        __m512i w[4];                                                                          \
        if (pf) /* the next work item's rows, while this one is computed */                   \
            _Pragma("GCC unroll 4") for (int i = 0; i < NN; i++)                               \
                _mm_prefetch((const char *)wp + (NB + i) * rowb + s * sb, _MM_HINT_T0);        \
        _Pragma("GCC unroll 4") for (int i = 0; i < NN; i++)                                   \
            w[i] = load_step(F, wp + i * rowb + s * sb);                                       \
        _Pragma("GCC unroll 4") for (int j = 0; j < TT; j++) {                                 \
            __m512i x = _mm512_loadu_si512(XQ + (t0 + j) * K + k + 64 * s);                   \
            _Pragma("GCC unroll 4") for (int i = 0; i < NN; i++)                               \
                acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], w[i], x);                           \
        }                                                                                      \
    }
        switch (g) {
        case 8: STEPS(8) break;
        case 4: STEPS(4) break;
        case 2: STEPS(2) break;
        default: STEPS(1)
        }
#undef STEPS
        __m512 ws[4], wm[4];
        _Pragma("GCC unroll 4") for (int i = 0; i < NN; i++)
            ws[i] = group_scale(F, S + (n0 + i) * srow, K, b0, B, &wm[i]);
        _Pragma("GCC unroll 4") for (int j = 0; j < TT; j++) {
            __m512 sx = _mm512_loadu_ps(XS + ((t0 + j) * ng + gi) * 16);
            _Pragma("GCC unroll 4") for (int i = 0; i < NN; i++) {
                FACC(i, j) = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[i][j]), _mm512_mul_ps(ws[i], sx),
                                             FACC(i, j));
                if (F == F_Q4K)
                    FACC(i, j) = _mm512_fnmadd_ps(
                        wm[i], _mm512_loadu_ps(XM + ((t0 + j) * ng + gi) * 16), FACC(i, j));
            }
        }
        k += 64 * g;
        b0 += B;
    }
    _Pragma("GCC unroll 4") for (int i = 0; i < NN; i++)
        _Pragma("GCC unroll 4") for (int j = 0; j < TT; j++)
            _mm512_store_ps(red + (j * NB + n0 % NB + i) * 16, facc[i][j]);
}
#undef FACC

/* out[r] = the sum of the 16 lanes of v[r] for 16 vectors, each by the same tree: lanes i and
   i + 8, then i + 4, i + 2, i + 1 (transposed, ~3 instructions per sum instead of ~8). */
static inline __m512 reduce16(const float *v) {
    __m512 t[8], u[4], w[2];
    for (int r = 0; r < 8; r++) { /* [v0 lo + v0 hi | v1 lo + v1 hi] (256-bit halves) */
        __m512 a = _mm512_load_ps(v + 32 * r), b = _mm512_load_ps(v + 32 * r + 16);
        t[r] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    }
    for (int r = 0; r < 4; r++) /* 128-bit chunk c: row 4r + c, lanes i + i + 4 */
        u[r] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * r], t[2 * r + 1], 0x88),
                             _mm512_shuffle_f32x4(t[2 * r], t[2 * r + 1], 0xDD));
    for (int r = 0; r < 2; r++) { /* per chunk [a0 + a2, a1 + a3, b0 + b2, b1 + b3] */
        __m512d a = _mm512_castps_pd(u[2 * r]), b = _mm512_castps_pd(u[2 * r + 1]);
        w[r] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    /* per chunk [a, b, c, d] = even + odd lanes; chunk c holds rows c, 4 + c, 8 + c, 12 + c */
    __m512 s = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], 0x88), _mm512_shuffle_ps(w[0], w[1], 0xDD));
    const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    return _mm512_permutexvar_ps(order, s);
}

typedef void (*tile_fn)(const uint8_t *, const uint8_t *, int64_t, const int8_t *,
                        const int32_t *, const float *, const float *, float *, int64_t, int64_t,
                        int);
#define TILE(NN, TT, F)                                                                       \
    static void tile_##NN##_##TT##_##F(const uint8_t *W, const uint8_t *S, int64_t K,        \
                                       const int8_t *XQ, const int32_t *XC, const float *XS, \
                                       const float *XM, float *red, int64_t n0, int64_t t0,  \
                                       int pf) {                                              \
        tile(NN, TT, F, W, S, K, XQ, XC, XS, XM, red, n0, t0, pf);                            \
    }
#define TILES_T(NN, F) TILE(NN, 1, F) TILE(NN, 2, F) TILE(NN, 3, F) TILE(NN, 4, F)
#define TILES(F) TILES_T(1, F) TILES_T(2, F) TILES_T(3, F) TILES_T(4, F)
TILES(0)
TILES(1)
TILES(2)
TILES(3)
TILES(4)
#define ROW_T(NN, F) {tile_##NN##_1_##F, tile_##NN##_2_##F, tile_##NN##_3_##F, tile_##NN##_4_##F}
#define FORM_T(F) {ROW_T(1, F), ROW_T(2, F), ROW_T(3, F), ROW_T(4, F)}
static const tile_fn TILE_FNS[F_COUNT][4][4] = {FORM_T(0), FORM_T(1), FORM_T(2), FORM_T(3),
                                                   FORM_T(4)};

static void gemm(const uint8_t *W, const uint8_t *S, int form, int64_t N, int64_t K,
                 const int8_t *XQ, const int32_t *XC, const float *XS, const float *XM,
                 int64_t T, float *out, int threads) {
    int64_t items = (N + NB - 1) / NB;
    const int maxnn = T <= 2 ? GEMV_NN : TILE_NN, maxtt = T <= 2 ? 2 : TILE_TT;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t item = 0; item < items; item++) {
        int64_t n_end = (item + 1) * NB < N ? (item + 1) * NB : N;
        float red[4 * NB * 16] __attribute__((aligned(64)));
        for (int64_t t0 = 0; t0 < T; t0 += maxtt) {
            int tt = T - t0 < maxtt ? (int)(T - t0) : maxtt;
            if (n_end - item * NB < NB) memset(red, 0, sizeof(red)); /* unused rows: sum 0 */
            for (int64_t n0 = item * NB; n0 < n_end; n0 += maxnn) {
                int nn = n_end - n0 < maxnn ? (int)(n_end - n0) : maxnn;
                TILE_FNS[form][nn - 1][tt - 1](W, S, K, XQ, XC, XS, XM, red, n0, t0,
                                               PREFETCH && T > 2 && t0 == 0 && item + 1 < items);
            }
            const __mmask16 keep = (__mmask16)((1u << (n_end - item * NB)) - 1);
            for (int j = 0; j < tt; j++)
                _mm512_mask_storeu_ps(out + (t0 + j) * N + item * NB, keep,
                                      reduce16(red + j * NB * 16));
        }
    }
}
#endif /* __AVX512VNNI__ */

/* linear(x, T, K, w, scale, form, N, out, threads): out[T, N] = x[T, K] @ w.T (addresses; form
   0 I8_32, 1 I8_16, 2 Q5, 3 Q4K, 4 Q6K, see above). */
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
    int form = (int)v[5], threads = (int)v[8];
    if (K % 64 || form < 0 || form >= F_COUNT || ((form == F_Q4K || form == F_Q6K) && K % 256) ||
        T < 0 || N < 0 || threads < 1) {
        PyErr_SetString(PyExc_ValueError,
                        "linear(): K must be a multiple of 64 (Q4K, Q6K: 256), form 0 to 4");
        return NULL;
    }
    /* below ~256K multiply-adds a parallel region costs more than it saves */
    if (T * N * K < (1 << 18)) threads = 1;
    const int64_t ng = n_groups(form, K);
    /* per token: K int8, per group 16 x (int32 corr, float scale, float min) */
    const size_t per_row = (size_t)K + (size_t)ng * 16 * 12;
    /* + per token the natural-order levels (K bytes) and block scales (K / 8 bytes) */
    size_t need = (size_t)T * (per_row + (size_t)K + (size_t)K / 8) + 64;
    Py_BEGIN_ALLOW_THREADS
    if (need > scratch_cap) {
        free(scratch);
        scratch = aligned_alloc(64, (need + 63) / 64 * 64);
        scratch_cap = scratch ? need : 0;
    }
    if (scratch_cap >= need) {
        /* locals: inside the parallel region the thread-local names are the workers' own */
        int32_t *xc = (int32_t *)scratch;
        float *xs = (float *)(xc + T * ng * 16);
        float *xm = xs + T * ng * 16;
        int8_t *xq = (int8_t *)(xm + T * ng * 16);
        int8_t *tmp = xq + T * K;
        float *d = (float *)(((uintptr_t)(tmp + T * K) + 63) & ~(uintptr_t)63);
#pragma omp parallel for schedule(static) num_threads(threads) if (T > 8)
        for (int64_t t = 0; t < T; t++)
            quantize_row(x + t * K, K, form, xq + t * K, xc + t * ng * 16, xs + t * ng * 16,
                         xm + t * ng * 16, tmp + t * K, d + t * (K / 32));
        gemm((const uint8_t *)(intptr_t)v[3], (const uint8_t *)(intptr_t)v[4], form, N, K, xq,
             xc, xs, xm, T, (float *)(intptr_t)v[7], threads);
    }
    Py_END_ALLOW_THREADS
    if (scratch_cap < need) return PyErr_NoMemory();
    Py_RETURN_NONE;
#else
    PyErr_SetString(PyExc_RuntimeError, "built without AVX512-VNNI");
    return NULL;
#endif
}

/* tune(gemv_rows, tile_rows, tile_tokens, prefetch=1): the tile shapes (tests, benchmarks). */
static PyObject *py_tune(PyObject *self, PyObject *args) {
    int a, b, c, d = 1;
    if (!PyArg_ParseTuple(args, "iii|i", &a, &b, &c, &d)) return NULL;
#ifdef __AVX512VNNI__
    if (a < 1 || a > 4 || b < 1 || b > 4 || c < 1 || c > 4) {
        PyErr_SetString(PyExc_ValueError, "tune(): 1..4");
        return NULL;
    }
    GEMV_NN = a;
    TILE_NN = b;
    TILE_TT = c;
    PREFETCH = d != 0;
#endif
    Py_RETURN_NONE;
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
     "linear(x, T, K, w, scale, form, N, out, threads): int8-activation product (addresses)"},
    {"tune", py_tune, METH_VARARGS, "tune(gemv_rows, tile_rows, tile_tokens, prefetch=1)"},
    {"available", py_available, METH_NOARGS, "True when the VNNI kernel can run here"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_qgemm",
                                    "AVX512-VNNI int8 matrix products", -1, METHODS};

PyMODINIT_FUNC PyInit__qgemm(void) { return PyModule_Create(&MODULE); }
