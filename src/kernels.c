#include "kernels.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#ifdef __wasm_simd128__
#include <wasm_simd128.h>
#endif

/* out[r] = sum_i a[i] b[r][i] for `rows` (1 or 2, constant where inlined) rows b[r], each summed in one order
 * whatever `rows` is: in SIMD four f32x4 sums over steps of 16 (then of 4 into the first), added as
 * (s0 + s1) + (s2 + s3) and lane by lane; in the portable path eight lanes over steps of 8, then a fixed tree;
 * then the elements left one by one. Two rows share each load of a and keep two weight streams in flight. */
static inline __attribute__((always_inline)) void dot_rows(float *out, const float *a, const float *const *b, int rows, int n) {
    int i = 0;
#ifdef __wasm_simd128__
    v128_t s[2][4];
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < 4; j++) s[r][j] = wasm_f32x4_splat(0.0f);
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 4; j++) {
            const v128_t aj = wasm_v128_load(a + i + 4 * j);
            for (int r = 0; r < rows; r++) s[r][j] = wasm_f32x4_add(s[r][j], wasm_f32x4_mul(aj, wasm_v128_load(b[r] + i + 4 * j)));
        }
    for (; i + 4 <= n; i += 4) {
        const v128_t ai = wasm_v128_load(a + i);
        for (int r = 0; r < rows; r++) s[r][0] = wasm_f32x4_add(s[r][0], wasm_f32x4_mul(ai, wasm_v128_load(b[r] + i)));
    }
    for (int r = 0; r < rows; r++) {
        const v128_t t = wasm_f32x4_add(wasm_f32x4_add(s[r][0], s[r][1]), wasm_f32x4_add(s[r][2], s[r][3]));
        out[r] = wasm_f32x4_extract_lane(t, 0) + wasm_f32x4_extract_lane(t, 1) + wasm_f32x4_extract_lane(t, 2) +
                 wasm_f32x4_extract_lane(t, 3);
    }
#else
    /* Eight independent lanes let the compiler vectorise without reassociating a single sum. */
    for (int r = 0; r < rows; r++) {
        float acc[8] = {0};
        for (i = 0; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[r][i + j];
        out[r] = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    }
#endif
    for (; i < n; i++)
        for (int r = 0; r < rows; r++) out[r] += a[i] * b[r][i];
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

float k_dot(const float *a, const float *b, int n) {
    float v;
    dot_rows(&v, a, &b, 1, n);
    return v;
}

#ifdef __wasm_simd128__
/* [sum a, sum b, sum c, sum d] of four f32x4 vectors, each summed as (l0 + l2) + (l1 + l3) */
static inline v128_t sum4x4_f32(v128_t a, v128_t b, v128_t c, v128_t d) {
    const v128_t ab = wasm_f32x4_add(wasm_i32x4_shuffle(a, b, 0, 4, 1, 5), wasm_i32x4_shuffle(a, b, 2, 6, 3, 7));
    const v128_t cd = wasm_f32x4_add(wasm_i32x4_shuffle(c, d, 0, 4, 1, 5), wasm_i32x4_shuffle(c, d, 2, 6, 3, 7));
    return wasm_f32x4_add(wasm_i32x4_shuffle(ab, cd, 0, 1, 4, 5), wasm_i32x4_shuffle(ab, cd, 2, 3, 6, 7));
}
#endif

/* Attention keeps 8 independent sums in registers (enough to keep the adder busy): 8 keys for one query row,
 * or 4 keys for two query rows that share each load of a key (the query heads of one kv head). */
#define ATTEND_SUMS 8

/* scores[r * n + t] = sum_i q[r][i] K[keys[t]][i] for the `rows` (1 or 2, constant where inlined) query rows
 * q[rows][hd] and t < n: each key summed in 4 lanes, then (l0 + l2) + (l1 + l3), then the hd % 4 tail in
 * order, whatever `rows` is. */
static inline __attribute__((always_inline)) void key_dots(float *scores, const float *q, int rows, const float *K, const int *keys,
                                                            int n, int hd) {
    const int hd4 = hd / 4 * 4, tile = ATTEND_SUMS / rows;
    for (int t = 0; t < n; t += tile) {
        const float *k[ATTEND_SUMS]; /* a short last tile repeats its last key; those sums are dropped */
        for (int j = 0; j < tile; j++) k[j] = K + (size_t)keys[t + j < n ? t + j : n - 1] * hd;
        float sum[ATTEND_SUMS]; /* [row][key of the tile] */
#ifdef __wasm_simd128__
        v128_t a[ATTEND_SUMS];
        for (int m = 0; m < ATTEND_SUMS; m++) a[m] = wasm_f32x4_splat(0.0f);
        for (int i = 0; i < hd4; i += 4)
            for (int r = 0; r < rows; r++) {
                const v128_t qi = wasm_v128_load(q + (size_t)r * hd + i);
                for (int j = 0; j < tile; j++) a[r * tile + j] = wasm_f32x4_add(a[r * tile + j], wasm_f32x4_mul(qi, wasm_v128_load(k[j] + i)));
            }
        for (int m = 0; m < ATTEND_SUMS; m += 4) wasm_v128_store(sum + m, sum4x4_f32(a[m], a[m + 1], a[m + 2], a[m + 3]));
#else
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < tile; j++) {
                float l[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                for (int i = 0; i < hd4; i += 4)
                    for (int c = 0; c < 4; c++) l[c] += q[(size_t)r * hd + i + c] * k[j][i + c];
                sum[r * tile + j] = (l[0] + l[2]) + (l[1] + l[3]);
            }
#endif
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < tile && t + j < n; j++) {
                float v = sum[r * tile + j];
                for (int i = hd4; i < hd; i++) v += q[(size_t)r * hd + i] * k[j][i];
                scores[(size_t)r * n + t + j] = v;
            }
    }
}

/* The same sums one column at a time, for the columns i0 <= i < i1: the portable path, and the hd % 4 tail. */
static void weighted_columns(float *o, const float *p, int rows, const float *V, const int *keys, int n, int hd, int i0, int i1) {
    for (int r = 0; r < rows; r++)
        for (int i = i0; i < i1; i++) {
            float a = 0.0f;
            for (int t = 0; t < n; t++) a += p[(size_t)r * n + t] * V[(size_t)keys[t] * hd + i];
            o[(size_t)r * hd + i] = a;
        }
}

/* o[r][i] = sum over t in order of p[r][t] V[keys[t]][i] (as k_axpy would add them) for the `rows` (1 or 2)
 * rows of probabilities p[rows][n] and the 4 * cols4 columns from i0, held in registers across all keys;
 * rows * cols4 <= ATTEND_SUMS, constants where inlined. */
static inline __attribute__((always_inline)) void weighted_values(float *o, const float *p, int rows, const float *V, const int *keys,
                                                                  int n, int hd, int i0, int cols4) {
#ifdef __wasm_simd128__
    v128_t a[ATTEND_SUMS];
    for (int m = 0; m < rows * cols4; m++) a[m] = wasm_f32x4_splat(0.0f);
    for (int t = 0; t < n; t++) {
        const float *vt = V + (size_t)keys[t] * hd + i0;
        for (int r = 0; r < rows; r++) {
            const v128_t pt = wasm_f32x4_splat(p[(size_t)r * n + t]);
            for (int c = 0; c < cols4; c++) a[r * cols4 + c] = wasm_f32x4_add(a[r * cols4 + c], wasm_f32x4_mul(pt, wasm_v128_load(vt + 4 * c)));
        }
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols4; c++) wasm_v128_store(o + (size_t)r * hd + i0 + 4 * c, a[r * cols4 + c]);
#else
    weighted_columns(o, p, rows, V, keys, n, hd, i0, i0 + 4 * cols4);
#endif
}

/* s[t] = softmax over t < n of s[t] * scale + bias[keys[t]]: a query row's scores to probabilities. */
static void attention_probs(float *s, int n, float scale, const float *bias, const int *keys);

/* Attention of `rows` (1 or 2) query rows: see k_attend. */
static inline __attribute__((always_inline)) void attend_rows(float *o, const float *q, int rows, const float *K, const float *V,
                                                              const float *bias, const int *keys, int n, int hd, float scale,
                                                              float *scores) {
    key_dots(scores, q, rows, K, keys, n, hd);
    for (int r = 0; r < rows; r++) attention_probs(scores + (size_t)r * n, n, scale, bias, keys);
    const int cols4 = ATTEND_SUMS / rows;
    int i = 0;
    for (; i + 4 * cols4 <= hd; i += 4 * cols4) weighted_values(o, scores, rows, V, keys, n, hd, i, cols4);
    for (; i + 4 <= hd; i += 4) weighted_values(o, scores, rows, V, keys, n, hd, i, 1);
    weighted_columns(o, scores, rows, V, keys, n, hd, i, hd);
}

void k_attend(float *o, const float *q, int R, const float *K, const float *V, const float *bias, const int *keys, int n,
              int hd, float scale, float *scores) {
    int r = 0;
    for (; r + 2 <= R; r += 2) /* query heads in pairs share each load of a key and a value */
        attend_rows(o + (size_t)r * hd, q + (size_t)r * hd, 2, K, V, bias, keys, n, hd, scale, scores + (size_t)r * n);
    if (r < R) attend_rows(o + (size_t)r * hd, q + (size_t)r * hd, 1, K, V, bias, keys, n, hd, scale, scores + (size_t)r * n);
}

int k_argmax(const float *x, int n) {
    float mx = x[0];
    int i = 1;
#ifdef __wasm_simd128__
    if (n >= 8) {
        v128_t m = wasm_v128_load(x);
        for (i = 4; i + 4 <= n; i += 4) m = wasm_f32x4_pmax(m, wasm_v128_load(x + i));
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
 * Every row is summed as one k_dot: the same order in prefill, decode and every thread count. Decoding takes
 * two distant rows at a time (two memory streams); blocks of 4 adjacent rows sharing each load of x were no
 * faster in Chromium and much slower in Node 20's V8. */

void k_matmul_rows(float *y, const float *x, const float *w, const float *b, int S, int in, int out, int o0, int o1) {
    if (S == 1) { /* decoding: rows o and o + half together, two distant streams */
        const int half = (o1 - o0) / 2;
        for (int o = o0; o < o0 + half; o++) {
            const float *rows[2] = {w + (size_t)o * in, w + (size_t)(o + half) * in};
            float v[2];
            dot_rows(v, x, rows, 2, in);
            y[o] = b ? v[0] + b[o] : v[0];
            y[o + half] = b ? v[1] + b[o + half] : v[1];
        }
        o0 += 2 * half; /* the odd row left, if any */
    }
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

#ifdef __wasm_simd128__
/* 1.5 * 2^23: a float in [-2^22, 2^22] plus this is rounded (ties to even, as f32x4.nearest) to an integer held
 * in the sum's low mantissa bits, so that subtracting its bits as integers leaves that integer. Cheaper than
 * nearest + trunc_sat, which V8 expands to a long sequence. */
#define ROUND_MAGIC 12582912.0f

/* The nearest integers (ties to even) of 4 floats in [-2^22, 2^22], NaN to 0, in int32 lanes. */
static inline v128_t nearest_int4(v128_t y) {
    const v128_t magic = wasm_f32x4_splat(ROUND_MAGIC);
    const v128_t n = wasm_i32x4_sub(wasm_f32x4_add(y, magic), magic);
    return wasm_v128_and(n, wasm_f32x4_eq(y, y));
}
#endif

/* One group of Q8_GROUP values: returns d = absmax / 127 and sets q[i] = nearest(x[i] / d) in [-127, 127], NaN
 * to 0. A group whose scale is below the normal floats (absmax < 1.5e-36: 1 / d would overflow) is all 0; an
 * infinite value makes d infinite and the group 0 (its products then NaN, as they should). */
static float quantize_group(const float *x, int16_t *q) {
    float amax = 0.0f;
#ifdef __wasm_simd128__
    /* pmax (one x86 instruction; max is a NaN-aware sequence) keeps its first operand against a NaN, so m never
     * holds one and NaN inputs are skipped, as in the portable comparisons */
    v128_t m = wasm_f32x4_splat(0.0f);
    for (int i = 0; i < Q8_GROUP; i += 4) m = wasm_f32x4_pmax(m, wasm_f32x4_abs(wasm_v128_load(x + i)));
    m = wasm_f32x4_pmax(m, wasm_i32x4_shuffle(m, m, 2, 3, 0, 1));
    amax = wasm_f32x4_extract_lane(wasm_f32x4_pmax(m, wasm_i32x4_shuffle(m, m, 1, 0, 3, 2)), 0);
#else
    for (int i = 0; i < Q8_GROUP; i++) {
        const float a = x[i] < 0 ? -x[i] : x[i];
        amax = a > amax ? a : amax;
    }
#endif
    const float d = amax / 127.0f, id = d >= FLT_MIN ? 1.0f / d : 0.0f;
#ifdef __wasm_simd128__
    const v128_t vid = wasm_f32x4_splat(id);
    for (int i = 0; i < Q8_GROUP; i += 8)
        wasm_v128_store(q + i, wasm_i16x8_narrow_i32x4(nearest_int4(wasm_f32x4_mul(wasm_v128_load(x + i), vid)),
                                                       nearest_int4(wasm_f32x4_mul(wasm_v128_load(x + i + 4), vid))));
#else
    for (int i = 0; i < Q8_GROUP; i++) { /* NaN (an inf or NaN input) to 0, as the SIMD path's mask */
        const float v = nearbyintf(x[i] * id);
        q[i] = v == v ? (int16_t)v : 0;
    }
#endif
    return d;
}

void k_quantize_q8_row(int8_t *q, float *d, size_t row, const float *x, int n) {
    const int G = n / Q8_GROUP;
    int16_t t[Q8_GROUP];
    for (int g = 0; g < G; g++) {
        d[k_q8_scale_index(row, g, G)] = quantize_group(x + g * Q8_GROUP, t);
        for (int i = 0; i < Q8_GROUP; i++) q[k_q8_index(row, g * Q8_GROUP + i, G)] = (int8_t)t[i];
    }
}

void k_dequantize_q8_row(float *x, const int8_t *q, const float *d, size_t row, int n) {
    const int G = n / Q8_GROUP;
    for (int i = 0; i < n; i++) x[i] = (float)q[k_q8_index(row, i, G)] * d[k_q8_scale_index(row, i / Q8_GROUP, G)];
}

void k_quantize_q8_wide(int16_t *q, float *d, int d_stride, const float *x, int n) {
    for (int g = 0; g < n / Q8_GROUP; g++) d[(size_t)g * d_stride] = quantize_group(x + g * Q8_GROUP, q + g * Q8_GROUP);
}

#ifdef __wasm_simd128__
/* Pair j of a group of a 4-row block (8 bytes: 2 values of each row, see k_q8_index) widened to int16 as it is
 * loaded (v128.load8x8_s: one x86 instruction). */
static inline v128_t load_pair_of_4_rows(const int8_t *block_group, int j) { return wasm_i16x8_load8x8(block_group + 8 * j); }

/* Activations 2j, 2j + 1 of a group (int16) repeated in all 4 lanes: against load_pair_of_4_rows, one dot
 * product adds the pair to each row's lane. */
static inline v128_t load_pair_splat(const int16_t *group, int j) { return wasm_v128_load32_splat(group + 2 * j); }

/* s[k][t] += pair j of block k (from w[k]) times pair j of token t (from xg + t * in): one pair of the group. */
static inline __attribute__((always_inline)) void q8_pair_step(v128_t s[4][4], const int8_t *const *w, const int16_t *xg, int in,
                                                               int NB, int NT, int j) {
    v128_t wj[4];
    for (int k = 0; k < NB; k++) wj[k] = load_pair_of_4_rows(w[k], j);
    for (int t = 0; t < NT; t++) {
        const v128_t x = load_pair_splat(xg + (size_t)t * in, j);
        for (int k = 0; k < NB; k++) s[k][t] = wasm_i32x4_add(s[k][t], wasm_i32x4_dot_i16x8(wj[k], x));
    }
}

/* y[t][o[k] .. o[k] + rows[k]) (+ b) for NB 4-row blocks starting at rows o[k] and NT consecutive tokens
 * xq[NT][in] (scales xd[g * xd_stride + t]), NB * NT <= 8, constants where inlined: 4 blocks x 1 token decode,
 * 2 blocks x 4 tokens prefill. The sums of block k and token t stay in the 4 lanes of one vector: each pair of
 * weights is widened once for NT tokens and each pair of activations loaded once for 4 * NB rows. */
static inline __attribute__((always_inline)) void q8_blocks_tokens(float *y, int out, const int *o, const int *rows, int NB, int NT,
                                                                   const int16_t *xq, int in, const float *xd, int xd_stride,
                                                                   const int8_t *wq, const float *wd, const float *b) {
    const int G = in / Q8_GROUP;
    v128_t acc[4][4];
    for (int k = 0; k < NB; k++)
        for (int t = 0; t < NT; t++) acc[k][t] = wasm_f32x4_splat(0.0f);
    for (int g = 0; g < G; g++) {
        const int8_t *w[4];
        v128_t s[4][4]; /* [block][token] exact integer sums of the group */
        for (int k = 0; k < NB; k++) {
            w[k] = wq + k_q8_index((size_t)o[k], g * Q8_GROUP, G);
            for (int t = 0; t < NT; t++) s[k][t] = wasm_i32x4_splat(0);
        }
        /* Pairs of the group in rounds, the pointers stepped once a round so that every load has a constant
         * offset: two pairs a round when decoding, one in prefill (already 8 products a pair). Unrolled further,
         * the compiler hoists every load of the round to its top and V8 spills them (measured 35% slower). */
        const int per_round = NT == 1 ? 2 : 1;
        const int16_t *xp = xq + g * Q8_GROUP;
#pragma clang loop unroll(disable)
        for (int j = 0; j < Q8_GROUP / 2; j += per_round) {
            for (int u = 0; u < per_round; u++) q8_pair_step(s, w, xp, in, NB, NT, u);
            for (int k = 0; k < NB; k++) w[k] += 8 * per_round;
            xp += 2 * per_round;
        }
        for (int t = 0; t < NT; t++) {
            const v128_t xdt = wasm_f32x4_splat(xd[(size_t)g * xd_stride + t]);
            for (int k = 0; k < NB; k++) {
                const v128_t scale = wasm_f32x4_mul(wasm_v128_load(wd + k_q8_scale_index((size_t)o[k], g, G)), xdt);
                acc[k][t] = wasm_f32x4_add(acc[k][t], wasm_f32x4_mul(wasm_f32x4_convert_i32x4(s[k][t]), scale));
            }
        }
    }
    for (int k = 0; k < NB; k++)
        for (int t = 0; t < NT; t++) {
            float *yt = y + (size_t)t * out + o[k];
            if (rows[k] == 4) {
                wasm_v128_store(yt, b ? wasm_f32x4_add(acc[k][t], wasm_v128_load(b + o[k])) : acc[k][t]);
            } else { /* the last block of the matrix: its padding rows are dropped */
                float r[4];
                wasm_v128_store(r, acc[k][t]);
                for (int i = 0; i < rows[k]; i++) yt[i] = b ? r[i] + b[o[k] + i] : r[i];
            }
        }
}
#else
/* The portable q8_blocks_tokens: the same integer sums and float operations, reading a block's bytes in the
 * order the layout keeps them (8 independent lanes the compiler can vectorise). */
static void q8_blocks_tokens(float *y, int out, const int *o, const int *rows, int NB, int NT, const int16_t *xq, int in,
                             const float *xd, int xd_stride, const int8_t *wq, const float *wd, const float *b) {
    const int G = in / Q8_GROUP;
    for (int k = 0; k < NB; k++)
        for (int t = 0; t < NT; t++) {
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int g = 0; g < G; g++) {
                const int8_t *wg = wq + k_q8_index((size_t)o[k], g * Q8_GROUP, G);
                const int16_t *xg = xq + (size_t)t * in + g * Q8_GROUP;
                const float *dg = wd + k_q8_scale_index((size_t)o[k], g, G);
                int32_t lane[8] = {0}; /* byte l of each pair step: row l / 2, value l % 2 of the pair */
                for (int j = 0; j < Q8_GROUP / 2; j++)
                    for (int l = 0; l < 8; l++) lane[l] += wg[8 * j + l] * xg[2 * j + l % 2];
                for (int r = 0; r < 4; r++) acc[r] += (float)(lane[2 * r] + lane[2 * r + 1]) * (dg[r] * xd[(size_t)g * xd_stride + t]);
            }
            for (int r = 0; r < rows[k]; r++) y[(size_t)t * out + o[k] + r] = b ? acc[r] + b[o[k] + r] : acc[r];
        }
}
#endif

/* Block k of a q8_blocks_tokens call: its first row `first`, and how many of its 4 rows are below o1. */
static inline void q8_block_at(int *o, int *rows, int k, int first, int o1) {
    o[k] = first;
    rows[k] = o1 - first < 4 ? o1 - first : 4;
}

void k_matmul_q8_rows(float *y, const int16_t *xq, const float *xd, const int8_t *wq, const float *wd, const float *b, int S,
                      int in, int out, int o0, int o1) {
    int o[4], rows[4];
    int tiled = 0; /* tokens done by the prefill tiles */
#ifdef __wasm_simd128__
    tiled = S / 4 * 4;
    const int blocks = (o1 - o0 + 3) / 4;
    for (int j = 0; j < blocks; j += 2) { /* prefill: 2 blocks x 4 tokens at a time; the blocks stay in L1 */
        const int nb = blocks - j < 2 ? 1 : 2;
        for (int k = 0; k < nb; k++) q8_block_at(o, rows, k, o0 + 4 * (j + k), o1);
        for (int s = 0; s < tiled; s += 4) {
            if (nb == 2) q8_blocks_tokens(y + (size_t)s * out, out, o, rows, 2, 4, xq + (size_t)s * in, in, xd + s, S, wq, wd, b);
            else q8_blocks_tokens(y + (size_t)s * out, out, o, rows, 1, 4, xq + (size_t)s * in, in, xd + s, S, wq, wd, b);
        }
    }
#endif
    if (tiled == S) return;
    /* the tokens left (decoding): band j of the first half of the bands with band j of the second half, 4 blocks
     * in all: two distant streams read memory faster than one */
    const int bands = (o1 - o0 + Q8_BAND - 1) / Q8_BAND, half = (bands + 1) / 2;
    for (int j = 0; j < half; j++) {
        int nb = 0;
        for (int h = 0; h < 2 && j + h * half < bands; h++)
            for (int ob = o0 + Q8_BAND * (j + h * half), k = 0; k < Q8_BAND / 4 && ob + 4 * k < o1; k++, nb++)
                q8_block_at(o, rows, nb, ob + 4 * k, o1);
        for (int s = tiled; s < S; s++) {
            const int16_t *x = xq + (size_t)s * in;
            float *ys = y + (size_t)s * out;
            switch (nb) { /* constant block counts: the sums stay in registers */
            case 4: q8_blocks_tokens(ys, out, o, rows, 4, 1, x, in, xd + s, S, wq, wd, b); break;
            case 3: q8_blocks_tokens(ys, out, o, rows, 3, 1, x, in, xd + s, S, wq, wd, b); break;
            case 2: q8_blocks_tokens(ys, out, o, rows, 2, 1, x, in, xd + s, S, wq, wd, b); break;
            default: q8_blocks_tokens(ys, out, o, rows, 1, 1, x, in, xd + s, S, wq, wd, b);
            }
        }
    }
}

void k_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    /* the squares summed wide, in 4 interleaved lanes added as (l0 + l2) + (l1 + l3), then the tail in order:
     * closer to PyTorch's pairwise fp32 mean than one fp32 running sum, and 4 independent sums */
    double lane[4] = {0.0, 0.0, 0.0, 0.0};
    int i = 0;
#ifdef __wasm_simd128__
    v128_t s01 = wasm_f64x2_splat(0.0), s23 = s01;
    for (; i + 4 <= n; i += 4) {
        const v128_t v = wasm_v128_load(x + i), lo = wasm_f64x2_promote_low_f32x4(v);
        const v128_t hi = wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(v, v, 2, 3, 2, 3));
        s01 = wasm_f64x2_add(s01, wasm_f64x2_mul(lo, lo));
        s23 = wasm_f64x2_add(s23, wasm_f64x2_mul(hi, hi));
    }
    wasm_v128_store(lane, s01);
    wasm_v128_store(lane + 2, s23);
#else
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++) lane[l] += (double)x[i + l] * x[i + l];
#endif
    double ss = (lane[0] + lane[2]) + (lane[1] + lane[3]);
    for (; i < n; i++) ss += (double)x[i] * x[i];
    const float var = (float)(ss / n), r = 1.0f / sqrtf(var + eps);
    i = 0;
#ifdef __wasm_simd128__
    const v128_t vr = wasm_f32x4_splat(r);
    for (; i + 4 <= n; i += 4) wasm_v128_store(out + i, wasm_f32x4_mul(wasm_v128_load(w + i), wasm_f32x4_mul(wasm_v128_load(x + i), vr)));
#endif
    for (; i < n; i++) out[i] = w[i] * (x[i] * r);
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

/* ---- exp ------------------------------------------------------------------------------------------
 * e^x = 2^n e^r with n = nearest(x / ln2) and r = x - n ln2 (ln2 split in two, Cody-Waite, exact without
 * FMA); e^r by Cephes' expf polynomial (about 1 ulp); 2^n applied as two exact power-of-two factors so that
 * overflow (inf) and underflow (subnormals, 0) come out as from expf. The scalar and SIMD paths do the same
 * operations in the same order, so both give the same values. NaN stays NaN. */
/* Cephes' expf polynomial, highest degree first: e^r ~ 1 + r + r^2 (C0 r^5 + ... + C5) */
static const float EXP_C[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f,
                               5.0000001201e-1f};
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI 0.693359375f
#define EXP_LN2_LO -2.12194440e-4f

static inline float pow2i(int k) { /* 2^k for k in [-126, 127] */
    const uint32_t bits = (uint32_t)(k + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float k_exp(float x) {
    if (x != x) return x; /* NaN (the SIMD lanes get NaN from the polynomial) */
    x = x > 89.0f ? 89.0f : x; /* beyond these e^x is inf or 0 anyway; n then fits the two factors */
    x = x < -104.0f ? -104.0f : x;
    const float z = nearbyintf(x * EXP_LOG2E);
    const float r = (x - z * EXP_LN2_HI) - z * EXP_LN2_LO;
    float p = EXP_C[0];
    for (int k = 1; k < 6; k++) p = p * r + EXP_C[k];
    p = (p * (r * r) + r) + 1.0f;
    const int n = (int)z, n1 = n >> 1;
    return p * pow2i(n1) * pow2i(n - n1);
}

#ifdef __wasm_simd128__
static inline v128_t exp4(v128_t x) {
    x = wasm_f32x4_pmin(x, wasm_f32x4_splat(89.0f));
    x = wasm_f32x4_pmax(x, wasm_f32x4_splat(-104.0f));
    /* z = nearest(x log2 e) by the ROUND_MAGIC addition, which also leaves n in the low bits */
    const v128_t magic = wasm_f32x4_splat(ROUND_MAGIC), zm = wasm_f32x4_add(wasm_f32x4_mul(x, wasm_f32x4_splat(EXP_LOG2E)), magic);
    const v128_t z = wasm_f32x4_sub(zm, magic);
    const v128_t r = wasm_f32x4_sub(wasm_f32x4_sub(x, wasm_f32x4_mul(z, wasm_f32x4_splat(EXP_LN2_HI))),
                                    wasm_f32x4_mul(z, wasm_f32x4_splat(EXP_LN2_LO)));
    v128_t p = wasm_f32x4_splat(EXP_C[0]);
    for (int k = 1; k < 6; k++) p = wasm_f32x4_add(wasm_f32x4_mul(p, r), wasm_f32x4_splat(EXP_C[k]));
    p = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(p, wasm_f32x4_mul(r, r)), r), wasm_f32x4_splat(1.0f));
    const v128_t n = wasm_i32x4_sub(zm, magic), n1 = wasm_i32x4_shr(n, 1), bias = wasm_i32x4_splat(127);
    const v128_t f1 = wasm_i32x4_shl(wasm_i32x4_add(n1, bias), 23), f2 = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_sub(n, n1), bias), 23);
    return wasm_f32x4_mul(wasm_f32x4_mul(p, f1), f2);
}
#endif

/* x[i] = e^(x[i] - mx) / sum_j e^(x[j] - mx): the sum in 4 interleaved lanes, as the SIMD path adds them. */
static void softmax_from_max(float *x, int n, float mx) {
    float lane[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int i = 0;
#ifdef __wasm_simd128__
    const v128_t vmx = wasm_f32x4_splat(mx);
    v128_t vsum = wasm_f32x4_splat(0.0f);
    for (; i + 4 <= n; i += 4) {
        const v128_t e = exp4(wasm_f32x4_sub(wasm_v128_load(x + i), vmx));
        wasm_v128_store(x + i, e);
        vsum = wasm_f32x4_add(vsum, e);
    }
    wasm_v128_store(lane, vsum);
#else
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++) lane[l] += x[i + l] = k_exp(x[i + l] - mx);
#endif
    float sum = (lane[0] + lane[1]) + (lane[2] + lane[3]);
    for (; i < n; i++) sum += x[i] = k_exp(x[i] - mx);
    i = 0;
#ifdef __wasm_simd128__
    const v128_t vsum_all = wasm_f32x4_splat(sum);
    for (; i + 4 <= n; i += 4) wasm_v128_store(x + i, wasm_f32x4_div(wasm_v128_load(x + i), vsum_all));
#endif
    for (; i < n; i++) x[i] /= sum;
}

/* The largest of mx and x[0..n) (pmax keeps mx on a NaN, as the scalar comparison does; the order of
 * comparisons cannot change a maximum of numbers). */
static float max_from(const float *x, int n, float mx) {
    int i = 0;
#ifdef __wasm_simd128__
    v128_t vmx = wasm_f32x4_splat(mx);
    for (; i + 4 <= n; i += 4) vmx = wasm_f32x4_pmax(vmx, wasm_v128_load(x + i));
    float lanes[4];
    wasm_v128_store(lanes, vmx);
    for (int l = 0; l < 4; l++) mx = lanes[l] > mx ? lanes[l] : mx;
#endif
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

void k_softmax(float *x, int n) { softmax_from_max(x, n, max_from(x, n, x[0])); }

static void attention_probs(float *s, int n, float scale, const float *bias, const int *keys) {
    int t = 0;
#ifdef __wasm_simd128__
    const v128_t vscale = wasm_f32x4_splat(scale);
    for (; t + 4 <= n; t += 4) {
        const v128_t b = wasm_f32x4_make(bias[keys[t]], bias[keys[t + 1]], bias[keys[t + 2]], bias[keys[t + 3]]);
        wasm_v128_store(s + t, wasm_f32x4_add(wasm_f32x4_mul(wasm_v128_load(s + t), vscale), b));
    }
#endif
    for (; t < n; t++) s[t] = s[t] * scale + bias[keys[t]];
    softmax_from_max(s, n, max_from(s, n, s[0]));
}

float k_silu(float x) { return x / (1.0f + k_exp(-x)); }

void k_swiglu(float *gate, const float *up, size_t n) {
    size_t i = 0;
#ifdef __wasm_simd128__
    const v128_t one = wasm_f32x4_splat(1.0f);
    for (; i + 4 <= n; i += 4) {
        const v128_t g = wasm_v128_load(gate + i);
        const v128_t silu = wasm_f32x4_div(g, wasm_f32x4_add(one, exp4(wasm_f32x4_neg(g))));
        wasm_v128_store(gate + i, wasm_f32x4_mul(silu, wasm_v128_load(up + i)));
    }
#endif
    for (; i < n; i++) gate[i] = k_silu(gate[i]) * up[i];
}

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
