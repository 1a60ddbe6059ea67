/* Fused float32 elementwise kernels for a decoder layer's non-matrix work (see layerops.py).

   One decode token on Gemma 3 270M runs ~500 small torch ops outside the matrix products
   (RMSNorms, q/k norms, RoPE, residual adds, GELU * up): each costs a few microseconds of
   dispatch for a few hundred floats of work. These kernels do that work in 4 calls per layer.

   Arguments are addresses and sizes (as _qgemm's), checked by the Python wrappers. Every row is
   computed by the same code whatever the number of rows (no reduction across rows, the sum of
   squares of a row always in the same fixed order, no alignment peeling), so results are batch
   invariant. Built with -ffp-contract=off: a * b + c rounds twice, as in torch. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* GCC/clang vector extensions: AVX-512 registers under -march=native on x86, split into
   narrower ones elsewhere; the same per-lane arithmetic in every case. */
#define W 16
typedef float vf __attribute__((vector_size(4 * W)));
typedef int32_t vi __attribute__((vector_size(4 * W)));

static inline vf ld(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v); /* unaligned load */
    return v;
}
static inline void st(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf splat(float a) { return (vf){0} + a; }
static inline vf sel(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }

/* Sum of x[i]^2 for i < n: 16 lane partial sums, lanes added in order, then the tail. */
static float sumsq(const float *x, int64_t n) {
    vf acc = splat(0.0f);
    int64_t i = 0;
    for (; i + W <= n; i += W) {
        vf v = ld(x + i);
        acc += v * v;
    }
    float s = 0.0f;
    for (int j = 0; j < W; j++) s += acc[j];
    for (; i < n; i++) s += x[i] * x[i];
    return s;
}

/* 1 / rms(x) as torch's rsqrt(mean(x^2) + eps). */
static inline float inv_rms(const float *x, int64_t n, float eps) {
    return 1.0f / sqrtf(sumsq(x, n) / (float)n + eps);
}

/* out[i] = x[i] * inv * w[i] (out may be x). */
static inline void scale_row(const float *x, float inv, const float *w, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * inv * w[i];
}

/* exp(a) for a in [-87, 88] (clamped): Cephes' expf polynomial on the reduced argument. */
static inline vf vexp(vf a) {
    const vf hi = splat(88.0f), lo = splat(-87.0f);
    a = sel(a > hi, hi, a);
    a = sel(a < lo, lo, a);
    /* n = round(a / ln 2) by the 1.5 * 2^23 trick (no fast-math: the adds are kept) */
    vf n = a * 1.44269504088896341f + 12582912.0f;
    n = n - 12582912.0f;
    vf r = a - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    vf p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)e;
}

/* act(g) * u for 16 lanes. act 0: silu(g) = g / (1 + exp(-g)); act 1: GELU-tanh,
   0.5 g (1 + tanh(y)) = g / (1 + exp(-2y)) with y = sqrt(2/pi) (g + 0.044715 g^3). */
static inline vf gated16(vf g, vf u, int act) {
    vf z;
    if (act == 1) {
        vf y = g * g * g * 0.044715f + g;
        z = y * -1.5957691216057308f; /* -2 sqrt(2/pi) */
    } else {
        z = -g;
    }
    return g / (vexp(z) + 1.0f) * u;
}

static void gated_row(const float *g, const float *u, float *out, int64_t n, int act) {
    int64_t i = 0;
    for (; i + W <= n; i += W) st(out + i, gated16(ld(g + i), ld(u + i), act));
    if (i < n) { /* the tail through a padded vector: the same per-lane arithmetic */
        float gb[W] = {0}, ub[W] = {0}, ob[W];
        memcpy(gb, g + i, (size_t)(n - i) * 4);
        memcpy(ub, u + i, (size_t)(n - i) * 4);
        st(ob, gated16(ld(gb), ld(ub), act));
        memcpy(out + i, ob, (size_t)(n - i) * 4);
    }
}

/* One head: optional RMSNorm (weight w), then rotate-half RoPE with table rows c, s (cos over
   both halves, sin with the first half negated), read from p, written to o. */
static void head_norm_rope(const float *p, float *o, int64_t hd, const float *w, const float *c,
                           const float *s, float eps) {
    if (w) scale_row(p, inv_rms(p, hd, eps), w, o, hd);
    else memcpy(o, p, (size_t)hd * 4);
    int64_t half = hd / 2;
    for (int64_t i = 0; i < half; i++) {
        float a = o[i], b = o[i + half];
        o[i] = a * c[i] + b * s[i];
        o[i + half] = b * c[i + half] + a * s[i + half];
    }
}

/* Parallel only when the step is large (prefill): a parallel region costs ~microseconds. */
#define PARALLEL_MIN (1 << 16)

static int get_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, const char *name,
                    long long *v, int float_at, double *f) {
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments", name, want);
        return 0;
    }
    for (Py_ssize_t i = 0; i < want; i++) {
        if (i == float_at) {
            *f = PyFloat_AsDouble(args[i]);
            if (*f == -1.0 && PyErr_Occurred()) return 0;
            v[i] = 0;
            continue;
        }
        v[i] = PyLong_AsLongLong(args[i]);
        if (v[i] == -1 && PyErr_Occurred()) return 0;
    }
    return 1;
}

#define F32(a) ((float *)(intptr_t)(a))

/* rms_norm(x, x_stride, w, out, T, D, eps, threads): out[T, D] (contiguous) =
   rms_norm(x rows) * w. */
static PyObject *py_rms_norm(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    long long v[8];
    double eps;
    if (!get_args(args, nargs, 8, "rms_norm", v, 6, &eps)) return NULL;
    const float *x = F32(v[0]), *w = F32(v[2]);
    float *out = F32(v[3]);
    int64_t xs = v[1], T = v[4], D = v[5];
    int threads = (int)v[7];
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for schedule(static) num_threads(threads) if (T * D >= PARALLEL_MIN)
    for (int64_t t = 0; t < T; t++)
        scale_row(x + t * xs, inv_rms(x + t * xs, D, (float)eps), w, out + t * D, D);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* residual_norm(x, y, y_stride, yw, w, h, T, D, eps, threads): per row, in place
   x += (yw ? rms_norm(y) * yw : y), then h = rms_norm(x) * w when w (h: [T, D] contiguous,
   x: [T, D] contiguous; yw, w: 0 for none). */
static PyObject *py_residual_norm(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    long long v[10];
    double eps;
    if (!get_args(args, nargs, 10, "residual_norm", v, 8, &eps)) return NULL;
    float *x = F32(v[0]), *h = F32(v[5]);
    const float *y = F32(v[1]), *yw = F32(v[3]), *w = F32(v[4]);
    int64_t ys = v[2], T = v[6], D = v[7];
    int threads = (int)v[9];
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for schedule(static) num_threads(threads) if (T * D >= PARALLEL_MIN)
    for (int64_t t = 0; t < T; t++) {
        float *xr = x + t * D;
        const float *yr = y + t * ys;
        if (yw) {
            float inv = inv_rms(yr, D, (float)eps);
            for (int64_t i = 0; i < D; i++) xr[i] = xr[i] + yr[i] * inv * yw[i];
        } else {
            for (int64_t i = 0; i < D; i++) xr[i] = xr[i] + yr[i];
        }
        if (w) scale_row(xr, inv_rms(xr, D, (float)eps), w, h + t * D, D);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* qk_rope(q, q_stride, H, k, k_stride, KV, hd, qw, kw, cos, sin, q_out, k_out, T, eps,
   threads): q [T, H, hd] and k [T, KV, hd] (heads contiguous within a row, rows q_stride /
   k_stride apart) -> q_out, k_out (contiguous): per-head RMSNorm by qw / kw (0: none), then
   RoPE with cos / sin rows [T, hd]. */
static PyObject *py_qk_rope(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    long long v[16];
    double eps;
    if (!get_args(args, nargs, 16, "qk_rope", v, 14, &eps)) return NULL;
    const float *q = F32(v[0]), *k = F32(v[3]);
    int64_t qs = v[1], H = v[2], ks = v[4], KV = v[5], hd = v[6], T = v[13];
    const float *qw = F32(v[7]), *kw = F32(v[8]), *cs = F32(v[9]), *sn = F32(v[10]);
    float *qo = F32(v[11]), *ko = F32(v[12]);
    int threads = (int)v[15];
    if (hd <= 0 || hd % 2) {
        PyErr_SetString(PyExc_ValueError, "qk_rope(): head_dim must be even and positive");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for schedule(static) num_threads(threads) if (T * (H + KV) * hd >= PARALLEL_MIN)
    for (int64_t t = 0; t < T; t++) {
        const float *c = cs + t * hd, *s = sn + t * hd;
        for (int64_t j = 0; j < H; j++)
            head_norm_rope(q + t * qs + j * hd, qo + (t * H + j) * hd, hd, qw, c, s, (float)eps);
        for (int64_t j = 0; j < KV; j++)
            head_norm_rope(k + t * ks + j * hd, ko + (t * KV + j) * hd, hd, kw, c, s, (float)eps);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* gated(g, u, in_stride, out, T, N, act, threads): out[T, N] (contiguous) = act(g) * u, rows
   of g and u in_stride apart (views of one fused gate/up output); act 0 silu, 1 GELU-tanh. */
static PyObject *py_gated(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    long long v[8];
    double unused;
    if (!get_args(args, nargs, 8, "gated", v, -1, &unused)) return NULL;
    const float *g = F32(v[0]), *u = F32(v[1]);
    float *out = F32(v[3]);
    int64_t is = v[2], T = v[4], N = v[5];
    int act = (int)v[6], threads = (int)v[7];
    if (act != 0 && act != 1) {
        PyErr_SetString(PyExc_ValueError, "gated(): act must be 0 (silu) or 1 (gelu_tanh)");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
#pragma omp parallel for schedule(static) num_threads(threads) if (T * N >= PARALLEL_MIN)
    for (int64_t t = 0; t < T; t++) gated_row(g + t * is, u + t * is, out + t * N, N, act);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

#define FAST(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL
static PyMethodDef METHODS[] = {
    {"rms_norm", FAST(py_rms_norm), "rms_norm(x, x_stride, w, out, T, D, eps, threads)"},
    {"residual_norm", FAST(py_residual_norm),
     "residual_norm(x, y, y_stride, yw, w, h, T, D, eps, threads)"},
    {"qk_rope", FAST(py_qk_rope),
     "qk_rope(q, q_stride, H, k, k_stride, KV, hd, qw, kw, cos, sin, q_out, k_out, T, eps, "
     "threads)"},
    {"gated", FAST(py_gated), "gated(g, u, in_stride, out, T, N, act, threads)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_layerops",
                                    "fused float32 RMSNorm / RoPE / gated-activation kernels", -1,
                                    METHODS};

PyMODINIT_FUNC PyInit__layerops(void) { return PyModule_Create(&MODULE); }
