#include "kernels.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#ifdef __wasm_simd128__
#include <wasm_simd128.h>
#endif

float k_dot(const float *a, const float *b, int n) {
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

/* ---- fp32 matmul ----------------------------------------------------------------------------------
 * The order of one dot product of length n: lanes a[0..7] take the products of elements i = 8k + j
 * (k ascending), then t[j] = a[j] + a[j + 4] and sum = (t[0] + t[1]) + (t[2] + t[3]); elements past the
 * last multiple of 8 are added one by one at the end. */

static float finish_dot8(const float *a, const float *x, const float *w, int i, int n) {
    float sum = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    for (; i < n; i++) sum += x[i] * w[i];
    return sum;
}

#if defined(__GNUC__)
/* Four-lane vectors through the GCC/clang vector extension: f32x4 SIMD128 in the wasm build (-msimd128),
 * SSE in the native one. Same lanes, same operations, so both builds give the same bits. */
#define DOGE_F4 1
typedef float f4 __attribute__((vector_size(16)));
static inline f4 load4(const float *p) {
    f4 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static float hsum_pair(f4 a0, f4 a1, const float *x, const float *w, int i, int n) {
    float a[8];
    memcpy(a, &a0, sizeof a0);
    memcpy(a + 4, &a1, sizeof a1);
    return finish_dot8(a, x, w, i, n);
}
#endif

/* Four rows w0..w3 against one x. */
static void dot4(float *out, const float *x, const float *w0, const float *w1, const float *w2, const float *w3, int n) {
    int i = 0;
#ifdef DOGE_F4
    f4 a0 = {0}, a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
    for (; i + 8 <= n; i += 8) {
        const f4 x0 = load4(x + i), x1 = load4(x + i + 4);
        a0 += x0 * load4(w0 + i);
        a1 += x1 * load4(w0 + i + 4);
        b0 += x0 * load4(w1 + i);
        b1 += x1 * load4(w1 + i + 4);
        c0 += x0 * load4(w2 + i);
        c1 += x1 * load4(w2 + i + 4);
        d0 += x0 * load4(w3 + i);
        d1 += x1 * load4(w3 + i + 4);
    }
    out[0] = hsum_pair(a0, a1, x, w0, i, n);
    out[1] = hsum_pair(b0, b1, x, w1, i, n);
    out[2] = hsum_pair(c0, c1, x, w2, i, n);
    out[3] = hsum_pair(d0, d1, x, w3, i, n);
#else
    float a[4][8] = {{0}};
    const float *w[4] = {w0, w1, w2, w3};
    for (; i + 8 <= n; i += 8)
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 8; j++) a[r][j] += x[i + j] * w[r][i + j];
    for (int r = 0; r < 4; r++) out[r] = finish_dot8(a[r], x, w[r], i, n);
#endif
}

static float dot1(const float *x, const float *w, int n) {
    int i = 0;
#ifdef DOGE_F4
    f4 a0 = {0}, a1 = a0;
    for (; i + 8 <= n; i += 8) {
        a0 += load4(x + i) * load4(w + i);
        a1 += load4(x + i + 4) * load4(w + i + 4);
    }
    return hsum_pair(a0, a1, x, w, i, n);
#else
    float a[8] = {0};
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) a[j] += x[i + j] * w[i + j];
    return finish_dot8(a, x, w, i, n);
#endif
}

/* y[s][o .. o+rows) for rows <= 4 weight rows starting at w (row o of the matrix). */
static void rows_block(float *y, const float *x, const float *w, const float *b, int S, int in, int out, int o, int rows) {
    for (int s = 0; s < S; s++) {
        const float *xs = x + (size_t)s * in;
        float r[4];
        if (rows == 4) dot4(r, xs, w, w + in, w + 2 * (size_t)in, w + 3 * (size_t)in, in);
        else
            for (int k = 0; k < rows; k++) r[k] = dot1(xs, w + (size_t)k * in, in);
        float *ys = y + (size_t)s * out + o;
        for (int k = 0; k < rows; k++) ys[k] = b ? r[k] + b[o + k] : r[k];
    }
}

void k_matmul_rows(float *y, const float *x, const float *w, const float *b, int S, int in, int out, int o0, int o1) {
    for (int o = o0; o < o1; o += 4) /* the 4 rows stay in L1 while the tokens stream past */
        rows_block(y, x, w + (size_t)o * in, b, S, in, out, o, o1 - o < 4 ? o1 - o : 4);
}

void k_matmul_q8w_rows(float *y, const float *x, const int8_t *wq, const float *wd, const float *b, int S, int in, int out,
                       int o0, int o1, float *wbuf) {
    const int G = in / Q8_GROUP;
    for (int o = o0; o < o1; o += 4) {
        const int rows = o1 - o < 4 ? o1 - o : 4;
        for (int k = 0; k < rows; k++)
            for (int i = 0; i < in; i++)
                wbuf[(size_t)k * in + i] = (float)wq[(size_t)(o + k) * in + i] * wd[(size_t)(o + k) * G + i / Q8_GROUP];
        rows_block(y, x, wbuf, b, S, in, out, o, rows);
    }
}

/* ---- int8 matmul -----------------------------------------------------------------------------------
 * A group's integer sum is split into four lanes exactly as the SIMD path forms them (lane j: elements
 * 2j, 2j+1, 2j+8, 2j+9 of each 16); each lane is scaled and accumulated in fp32, then reduced as
 * (l0 + l1) + (l2 + l3). */

void k_quantize_q8(int8_t *q, float *d, const float *x, int n) {
    for (int g = 0; g < n / Q8_GROUP; g++) {
        const float *xg = x + g * Q8_GROUP;
        int8_t *qg = q + g * Q8_GROUP;
        float amax = 0.0f;
        for (int i = 0; i < Q8_GROUP; i++) amax = fmaxf(amax, fabsf(xg[i]));
        const float dg = amax / 127.0f, id = dg > 0.0f ? 1.0f / dg : 0.0f;
        d[g] = dg;
#ifdef __wasm_simd128__
        const v128_t vid = wasm_f32x4_splat(id);
        for (int i = 0; i < Q8_GROUP; i += 16) {
            v128_t r[4];
            for (int k = 0; k < 4; k++)
                r[k] = wasm_i32x4_trunc_sat_f32x4(wasm_f32x4_nearest(wasm_f32x4_mul(wasm_v128_load(xg + i + 4 * k), vid)));
            wasm_v128_store(qg + i, wasm_i8x16_narrow_i16x8(wasm_i16x8_narrow_i32x4(r[0], r[1]), wasm_i16x8_narrow_i32x4(r[2], r[3])));
        }
#else
        for (int i = 0; i < Q8_GROUP; i++) qg[i] = (int8_t)nearbyintf(xg[i] * id);
#endif
    }
}

#ifdef __wasm_simd128__
/* i32x4 lane sums of one group of 32 products */
static inline v128_t group_sum(const int8_t *a, const int8_t *b) {
    const v128_t a0 = wasm_v128_load(a), a1 = wasm_v128_load(a + 16), b0 = wasm_v128_load(b), b1 = wasm_v128_load(b + 16);
    /* |q| <= 127, so two products fit in an i16 lane */
    const v128_t p0 = wasm_i16x8_add(wasm_i16x8_extmul_low_i8x16(a0, b0), wasm_i16x8_extmul_high_i8x16(a0, b0));
    const v128_t p1 = wasm_i16x8_add(wasm_i16x8_extmul_low_i8x16(a1, b1), wasm_i16x8_extmul_high_i8x16(a1, b1));
    return wasm_i32x4_add(wasm_i32x4_extadd_pairwise_i16x8(p0), wasm_i32x4_extadd_pairwise_i16x8(p1));
}

static inline v128_t scaled(v128_t acc, v128_t isum, float scale) {
    return wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(isum), wasm_f32x4_splat(scale)));
}

static inline float hsum4(v128_t a) {
    return (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 1)) +
           (wasm_f32x4_extract_lane(a, 2) + wasm_f32x4_extract_lane(a, 3));
}
#else
static void group_sum_lanes(int32_t *lane, const int8_t *a, const int8_t *b) {
    for (int j = 0; j < 4; j++) {
        int32_t s = 0;
        for (int h = 0; h < 32; h += 16)
            s += a[h + 2 * j] * b[h + 2 * j] + a[h + 2 * j + 8] * b[h + 2 * j + 8] + a[h + 2 * j + 1] * b[h + 2 * j + 1] +
                 a[h + 2 * j + 9] * b[h + 2 * j + 9];
        lane[j] = s;
    }
}
#endif

static void dot_q8_rows(float *out, int rows, const int8_t *xq, const float *xd, const int8_t *wq, const float *wd, int in) {
    const int G = in / Q8_GROUP;
#ifdef __wasm_simd128__
    if (rows == 4) {
        v128_t a0 = wasm_f32x4_splat(0.0f), a1 = a0, a2 = a0, a3 = a0;
        const int8_t *w1 = wq + in, *w2 = wq + 2 * (size_t)in, *w3 = wq + 3 * (size_t)in;
        for (int g = 0; g < G; g++) {
            const int8_t *xg = xq + g * Q8_GROUP;
            const size_t off = (size_t)g * Q8_GROUP;
            a0 = scaled(a0, group_sum(wq + off, xg), wd[g] * xd[g]);
            a1 = scaled(a1, group_sum(w1 + off, xg), wd[G + g] * xd[g]);
            a2 = scaled(a2, group_sum(w2 + off, xg), wd[2 * G + g] * xd[g]);
            a3 = scaled(a3, group_sum(w3 + off, xg), wd[3 * G + g] * xd[g]);
        }
        out[0] = hsum4(a0);
        out[1] = hsum4(a1);
        out[2] = hsum4(a2);
        out[3] = hsum4(a3);
        return;
    }
    for (int r = 0; r < rows; r++) {
        v128_t a = wasm_f32x4_splat(0.0f);
        for (int g = 0; g < G; g++)
            a = scaled(a, group_sum(wq + (size_t)r * in + (size_t)g * Q8_GROUP, xq + g * Q8_GROUP), wd[(size_t)r * G + g] * xd[g]);
        out[r] = hsum4(a);
    }
#else
    for (int r = 0; r < rows; r++) {
        float a[4] = {0};
        for (int g = 0; g < G; g++) {
            int32_t lane[4];
            group_sum_lanes(lane, wq + (size_t)r * in + (size_t)g * Q8_GROUP, xq + g * Q8_GROUP);
            const float scale = wd[(size_t)r * G + g] * xd[g];
            for (int j = 0; j < 4; j++) a[j] += (float)lane[j] * scale;
        }
        out[r] = (a[0] + a[1]) + (a[2] + a[3]);
    }
#endif
}

void k_matmul_q8_rows(float *y, const int8_t *xq, const float *xd, const int8_t *wq, const float *wd, const float *b, int S,
                      int in, int out, int o0, int o1) {
    const int G = in / Q8_GROUP;
    for (int o = o0; o < o1; o += 4) {
        const int rows = o1 - o < 4 ? o1 - o : 4;
        for (int s = 0; s < S; s++) {
            float r[4];
            dot_q8_rows(r, rows, xq + (size_t)s * in, xd + (size_t)s * G, wq + (size_t)o * in, wd + (size_t)o * G, in);
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
