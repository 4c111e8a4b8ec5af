#include "kernels.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#ifdef __wasm_simd128__
#include <wasm_simd128.h>
#endif

static inline float dot_impl(const float *a, const float *b, int n) {
    int i = 0;
#ifdef __wasm_simd128__
    v128_t s0 = wasm_f32x4_splat(0.0f), s1 = s0, s2 = s0, s3 = s0;
    for (; i + 16 <= n; i += 16) {
        s0 = wasm_f32x4_add(s0, wasm_f32x4_mul(wasm_v128_load(a + i), wasm_v128_load(b + i)));
        s1 = wasm_f32x4_add(s1, wasm_f32x4_mul(wasm_v128_load(a + i + 4), wasm_v128_load(b + i + 4)));
        s2 = wasm_f32x4_add(s2, wasm_f32x4_mul(wasm_v128_load(a + i + 8), wasm_v128_load(b + i + 8)));
        s3 = wasm_f32x4_add(s3, wasm_f32x4_mul(wasm_v128_load(a + i + 12), wasm_v128_load(b + i + 12)));
    }
    for (; i + 4 <= n; i += 4) s0 = wasm_f32x4_add(s0, wasm_f32x4_mul(wasm_v128_load(a + i), wasm_v128_load(b + i)));
    v128_t s = wasm_f32x4_add(wasm_f32x4_add(s0, s1), wasm_f32x4_add(s2, s3));
    float sum = wasm_f32x4_extract_lane(s, 0) + wasm_f32x4_extract_lane(s, 1) + wasm_f32x4_extract_lane(s, 2) +
                wasm_f32x4_extract_lane(s, 3);
#else
    /* Eight independent lanes let the compiler vectorise without reassociating a single sum. */
    float acc[8] = {0};
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
#endif
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

void k_axpy(float *y, float a, const float *x, int n) {
    int i = 0;
#ifdef __wasm_simd128__
    v128_t va = wasm_f32x4_splat(a);
    for (; i + 4 <= n; i += 4)
        wasm_v128_store(y + i, wasm_f32x4_add(wasm_v128_load(y + i), wasm_f32x4_mul(va, wasm_v128_load(x + i))));
#endif
    for (; i < n; i++) y[i] += a * x[i];
}

float k_dot(const float *a, const float *b, int n) { return dot_impl(a, b, n); }

void k_attend(float *o, const float *q, int R, const float *K, const float *V, const float *bias, const int *keys, int n,
              int hd, float scale, float *scores) {
    for (int t = 0; t < n; t++) {
        const float *kt = K + (size_t)keys[t] * hd;
        for (int r = 0; r < R; r++) scores[(size_t)r * n + t] = dot_impl(q + (size_t)r * hd, kt, hd) * scale + bias[keys[t]];
    }
    for (int r = 0; r < R; r++) k_softmax(scores + (size_t)r * n, n);
    /* o[r][i] = sum over t in order of p[r][t] V[t][i], as k_axpy would add them, 8 columns at a time in
     * registers rather than through memory once per key */
    for (int r = 0; r < R; r++) {
        const float *p = scores + (size_t)r * n;
        float *orow = o + (size_t)r * hd;
        int i = 0;
#ifdef __wasm_simd128__
        for (; i + 8 <= hd; i += 8) {
            v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0;
            for (int t = 0; t < n; t++) {
                const float *vt = V + (size_t)keys[t] * hd + i;
                const v128_t pt = wasm_f32x4_splat(p[t]);
                a0 = wasm_f32x4_add(a0, wasm_f32x4_mul(pt, wasm_v128_load(vt)));
                a1 = wasm_f32x4_add(a1, wasm_f32x4_mul(pt, wasm_v128_load(vt + 4)));
            }
            wasm_v128_store(orow + i, a0);
            wasm_v128_store(orow + i + 4, a1);
        }
#endif
        for (; i < hd; i++) {
            float a = 0.0f;
            for (int t = 0; t < n; t++) a += p[t] * V[(size_t)keys[t] * hd + i];
            orow[i] = a;
        }
    }
}

int k_argmax(const float *x, int n) {
    float mx = x[0];
    int i = 1;
#ifdef __wasm_simd128__
    if (n >= 8) {
        v128_t m = wasm_v128_load(x);
        for (i = 4; i + 4 <= n; i += 4) m = wasm_f32x4_max(m, wasm_v128_load(x + i));
        float lanes[4];
        wasm_v128_store(lanes, m);
        for (int l = 0; l < 4; l++) mx = lanes[l] > mx ? lanes[l] : mx;
    }
#endif
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    int first = 0;
    while (first < n - 1 && x[first] != mx) first++;
    return first;
}

/* ---- fp32 matmul ----------------------------------------------------------------------------------
 * Every row is one k_dot: the same summation order in prefill, decode, attention and every thread count.
 * (Blocks of 4 rows sharing each load of x were no faster in Chromium and much slower in Node 20's V8.) */

void k_matmul_rows(float *y, const float *x, const float *w, const float *b, int S, int in, int out, int o0, int o1) {
    for (int o = o0; o < o1; o++) { /* each row meets all S tokens while it is in L1 */
        const float *wo = w + (size_t)o * in;
        for (int s = 0; s < S; s++) {
            const float v = k_dot(x + (size_t)s * in, wo, in);
            y[(size_t)s * out + o] = b ? v + b[o] : v;
        }
    }
}

/* ---- int8 matmul -----------------------------------------------------------------------------------
 * x is quantized like the weights but kept in int16 lanes (SIMD: i32x4.dot_i16x8_s against the weights
 * widened to int16). Each row's result is sum over groups g, in order, of float(exact integer group sum) x
 * (wd x xd) accumulated in fp32 from 0: the same bits in every build. The weight scales of 4 consecutive
 * rows sit side by side (k_q8_scale_index), so one vector multiply scales a group of 4 rows at once. */

/* One group of Q8_GROUP values: returns d = absmax / 127 and sets q[i] = nearest(x[i] / d) in [-127, 127]. */
static float quantize_group(const float *x, int32_t *q) {
    float amax = 0.0f;
#ifdef __wasm_simd128__
    v128_t m = wasm_f32x4_abs(wasm_v128_load(x));
    for (int i = 4; i < Q8_GROUP; i += 4) m = wasm_f32x4_max(m, wasm_f32x4_abs(wasm_v128_load(x + i)));
    float lanes[4];
    wasm_v128_store(lanes, m);
    for (int l = 0; l < 4; l++) amax = lanes[l] > amax ? lanes[l] : amax;
#else
    for (int i = 0; i < Q8_GROUP; i++) {
        const float a = x[i] < 0 ? -x[i] : x[i];
        amax = a > amax ? a : amax;
    }
#endif
    const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
#ifdef __wasm_simd128__
    const v128_t vid = wasm_f32x4_splat(id);
    for (int i = 0; i < Q8_GROUP; i += 4)
        wasm_v128_store(q + i, wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(x + i), vid))));
#else
    for (int i = 0; i < Q8_GROUP; i++) q[i] = (int32_t)nearbyintf(x[i] * id);
#endif
    return d;
}

void k_quantize_q8_row(int8_t *q, float *d, size_t row, const float *x, int n) {
    int32_t t[Q8_GROUP];
    for (int g = 0; g < n / Q8_GROUP; g++) {
        d[k_q8_scale_index(row, g, n / Q8_GROUP)] = quantize_group(x + g * Q8_GROUP, t);
        for (int i = 0; i < Q8_GROUP; i++) q[g * Q8_GROUP + i] = (int8_t)t[i];
    }
}

void k_quantize_q8_wide(int16_t *q, float *d, int d_stride, const float *x, int n) {
    int32_t t[Q8_GROUP];
    for (int g = 0; g < n / Q8_GROUP; g++) {
        d[(size_t)g * d_stride] = quantize_group(x + g * Q8_GROUP, t);
        for (int i = 0; i < Q8_GROUP; i++) q[g * Q8_GROUP + i] = (int16_t)t[i];
    }
}

#ifdef __wasm_simd128__
/* One group of 32 weights widened to int16: four i16x8 vectors. */
typedef struct {
    v128_t v[4];
} WideGroup;

static inline WideGroup widen_group(const int8_t *w) {
    const v128_t w0 = wasm_v128_load(w), w1 = wasm_v128_load(w + 16);
    return (WideGroup){{wasm_i16x8_extend_low_i8x16(w0), wasm_i16x8_extend_high_i8x16(w0), wasm_i16x8_extend_low_i8x16(w1),
                        wasm_i16x8_extend_high_i8x16(w1)}};
}

/* i32x4 partial sums of one group of 32 products w[i] x[i] */
static inline v128_t wide_group_sum(const WideGroup *w, const int16_t *x) {
    v128_t s = wasm_i32x4_dot_i16x8(w->v[0], wasm_v128_load(x));
    s = wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(w->v[1], wasm_v128_load(x + 8)));
    s = wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(w->v[2], wasm_v128_load(x + 16)));
    return wasm_i32x4_add(s, wasm_i32x4_dot_i16x8(w->v[3], wasm_v128_load(x + 24)));
}

static inline v128_t group_sum(const int8_t *w, const int16_t *x) {
    const WideGroup wg = widen_group(w);
    return wide_group_sum(&wg, x);
}

/* [sum a, sum b, sum c, sum d] of four i32x4 vectors (exact: integers) */
static inline v128_t sum4x4(v128_t a, v128_t b, v128_t c, v128_t d) {
    const v128_t ab = wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 4, 1, 5), wasm_i32x4_shuffle(a, b, 2, 6, 3, 7));
    const v128_t cd = wasm_i32x4_add(wasm_i32x4_shuffle(c, d, 0, 4, 1, 5), wasm_i32x4_shuffle(c, d, 2, 6, 3, 7));
    return wasm_i32x4_add(wasm_i32x4_shuffle(ab, cd, 0, 1, 4, 5), wasm_i32x4_shuffle(ab, cd, 2, 3, 6, 7));
}
#endif

/* out[0..rows) for rows <= 4 weight rows starting at w (a 4-row block) and one token: its activations xq[in]
 * and their scales xd[g * xd_stride]; d: the block's interleaved weight scales. */
static void dot_q8_block(float *out, int rows, const int16_t *xq, const float *xd, int xd_stride, const int8_t *w, const float *d,
                         int in) {
    const int G = in / Q8_GROUP;
#ifdef __wasm_simd128__
    /* rows past the end of the matrix repeat row 0; their lanes are dropped */
    const int8_t *w0 = w, *w1 = rows > 1 ? w + in : w, *w2 = rows > 2 ? w + 2 * (size_t)in : w, *w3 = rows > 3 ? w + 3 * (size_t)in : w;
    v128_t acc = wasm_f32x4_splat(0.0f);
    for (int g = 0; g < G; g++) {
        const int16_t *xg = xq + g * Q8_GROUP;
        const size_t off = (size_t)g * Q8_GROUP;
        const v128_t isum = sum4x4(group_sum(w0 + off, xg), group_sum(w1 + off, xg), group_sum(w2 + off, xg), group_sum(w3 + off, xg));
        const v128_t scale = wasm_f32x4_mul(wasm_v128_load(d + 4 * g), wasm_f32x4_splat(xd[(size_t)g * xd_stride]));
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isum), scale));
    }
    float r[4];
    wasm_v128_store(r, acc);
    for (int k = 0; k < rows; k++) out[k] = r[k];
#else
    for (int k = 0; k < rows; k++) {
        const int8_t *wk = w + (size_t)k * in;
        float acc = 0.0f;
        for (int g = 0; g < G; g++) {
            int32_t isum = 0;
            for (int i = g * Q8_GROUP; i < (g + 1) * Q8_GROUP; i++) isum += wk[i] * xq[i];
            acc += (float)isum * (d[4 * g + k] * xd[(size_t)g * xd_stride]);
        }
        out[k] = acc;
    }
#endif
}

#ifdef __wasm_simd128__
/* One weight row w[in] against 4 consecutive tokens xq[4][in] (prefill): each group of the row is widened once
 * and meets the 4 tokens; the 4 group sums are scaled with one vector. Same sums, same bits as dot_q8_block. */
static void tile_q8_row_4_tokens(float *out, const int16_t *xq, const float *xd, int xd_stride, const int8_t *w, const float *wd,
                                 size_t row, int in) {
    const int G = in / Q8_GROUP;
    v128_t acc = wasm_f32x4_splat(0.0f);
    for (int g = 0; g < G; g++) {
        const WideGroup wg = widen_group(w + g * Q8_GROUP);
        v128_t st[4];
        for (int t = 0; t < 4; t++) st[t] = wide_group_sum(&wg, xq + (size_t)t * in + g * Q8_GROUP);
        const v128_t isum = sum4x4(st[0], st[1], st[2], st[3]);
        const v128_t scale = wasm_f32x4_mul(wasm_f32x4_splat(wd[k_q8_scale_index(row, g, G)]), wasm_v128_load(xd + (size_t)g * xd_stride));
        acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isum), scale));
    }
    wasm_v128_store(out, acc);
}
#endif

void k_matmul_q8_rows(float *y, const int16_t *xq, const float *xd, const int8_t *wq, const float *wd, const float *b, int S,
                      int in, int out, int o0, int o1) {
    const int G = in / Q8_GROUP;
    int s0 = 0;
#ifdef __wasm_simd128__
    for (int o = o0; o < o1; o++) /* 4 tokens at a time; the row stays in L1 */
        for (int s = 0; s + 4 <= S; s += 4) {
            float r[4];
            tile_q8_row_4_tokens(r, xq + (size_t)s * in, xd + s, S, wq + (size_t)o * in, wd, (size_t)o, in);
            for (int t = 0; t < 4; t++) y[(size_t)(s + t) * out + o] = b ? r[t] + b[o] : r[t];
        }
    s0 = S / 4 * 4;
#endif
    for (int o = o0; o < o1; o += 4) { /* the tokens left, 4 rows at a time */
        const int rows = o1 - o < 4 ? o1 - o : 4;
        for (int s = s0; s < S; s++) {
            float r[4];
            dot_q8_block(r, rows, xq + (size_t)s * in, xd + s, S, wq + (size_t)o * in, wd + k_q8_scale_index((size_t)o, 0, G), in);
            float *ys = y + (size_t)s * out + o;
            for (int k = 0; k < rows; k++) ys[k] = b ? r[k] + b[o + k] : r[k];
        }
    }
}

void k_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0; /* accumulated wide: closer to PyTorch's pairwise fp32 mean than one fp32 running sum */
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float var = (float)(ss / n);
    float r = 1.0f / sqrtf(var + eps);
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * r);
}

void k_residual(float *y, const float *r, const float *h, int n) {
    int i = 0;
#ifdef __wasm_simd128__
    for (; i + 4 <= n; i += 4)
        wasm_v128_store(y + i, wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(r + i), wasm_v128_load(y + i)),
                                              wasm_v128_load(h + i)));
#endif
    for (; i < n; i++) y[i] = r[i] * y[i] + h[i];
}

void k_softmax(float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

float k_silu(float x) { return x / (1.0f + expf(-x)); }

/* PyTorch's F.softplus(beta=1, threshold=20). */
float k_softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

void k_rope(float *x, const float *cos, const float *sin, int hd) {
    const int half = hd / 2;
    for (int i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * cos[i] - b * sin[i];
        x[i + half] = b * cos[i] + a * sin[i];
    }
}
