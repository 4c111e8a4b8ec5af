/* Compute kernels. Each has a portable scalar path and a wasm SIMD128 path (chosen at compile time by
 * __wasm_simd128__); the native build leaves vectorisation to the compiler. All fp32, no FMA contraction,
 * so a*b+c rounds twice as in PyTorch. */
#ifndef DOGE_KERNELS_H
#define DOGE_KERNELS_H

/* sum_i a[i] * b[i] */
float k_dot(const float *a, const float *b, int n);
/* y[i] += a * x[i] */
void k_axpy(float *y, float a, const float *x, int n);
#include <stddef.h>
#include <stdint.h>

/* y[s][o] = k_dot(x[s], w[o]) (+ b[o]) for s < S, o in [o0, o1); x: [S, in], w: [out, in], y: [S, out]. */
void k_matmul_rows(float *y, const float *x, const float *w, const float *b, int S, int in, int out, int o0, int o1);

/* int8 weights and activations, one fp32 scale per group of Q8_GROUP values (llama.cpp's Q8_0 scheme). */
#define Q8_GROUP 32
/* An int8 matrix keeps bands of Q8_BAND = 8 consecutive rows together, group after group: group g of a band is
 * 256 bytes, so that decoding reads one stream per band rather than one per row (faster from memory). A band's
 * group holds its 2 blocks of 4 rows one after the other (128 bytes each), and in a block the rows are
 * interleaved by pairs of values: values 2j and 2j + 1 of row 0, of row 1, of row 2, of row 3, then pair j + 1.
 * Eight bytes widened to int16 then hold one pair of each of the 4 rows, and one i32x4.dot_i16x8_s against a
 * pair of activations repeated 4 times gives the 4 rows' sums in its 4 lanes: no horizontal adds. The scales
 * follow the band order. Rows are padded to a multiple of Q8_BAND (zeros): ceil(R / 8) * 8 * G groups of
 * values and as many scales, G groups per row. */
#define Q8_BAND 8
static inline size_t k_q8_scale_index(size_t row, int g, int G) {
    return (row / Q8_BAND * (size_t)G + (size_t)g) * Q8_BAND + row % Q8_BAND;
}
/* Where value i of row `row` lives in the matrix's values. */
static inline size_t k_q8_index(size_t row, int i, int G) {
    return k_q8_scale_index(row - row % 4, i / Q8_GROUP, G) * Q8_GROUP + (size_t)(i % Q8_GROUP / 2 * 8) + row % 4 * 2 + (size_t)(i % 2);
}
/* Row `row` of an int8 matrix from x[n] (n a multiple of Q8_GROUP), into the matrix's values q and scales d:
 * d = absmax / 127, q = nearest(x / d) per group. */
void k_quantize_q8_row(int8_t *q, float *d, size_t row, const float *x, int n);
/* x[n] = row `row` of an int8 matrix (q, d as above), its values times their group scales. */
void k_dequantize_q8_row(float *x, const int8_t *q, const float *d, size_t row, int n);
/* The same values in int16 lanes: activations, ready for the int16 dot products of k_matmul_q8_rows; the
 * scale of group g goes to d[g * d_stride]. */
void k_quantize_q8_wide(int16_t *q, float *d, int d_stride, const float *x, int n);
/* As k_matmul_rows with x and w quantized: y[s][o] = sum_g xd[g][s] wd[o][g] sum_{i in g} xq[s][i] wq[o][i]
 * (+ b[o]), with the activation scales xd [in / Q8_GROUP][S]. The integer group sums are exact and the float
 * sums follow one order whatever the number of tokens, so prefill and decode give the same bits. o0 is a
 * multiple of Q8_BAND. */
void k_matmul_q8_rows(float *y, const int16_t *xq, const float *xd, const int8_t *wq, const float *wd, const float *b, int S,
                      int in, int out, int o0, int o1);
/* out = w * (x * rsqrt(mean(x^2) + eps)), statistics in fp32 as HF's RMSNorm (out may alias x). */
void k_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
/* y = r * y + h elementwise (the learnable residual: two roundings, multiply then add). */
void k_residual(float *y, const float *r, const float *h, int n);
/* Attention of R query heads q[R][hd] that share one kv head, over the n cached keys keys[0..n):
 * o[r] = sum_t softmax_t(q[r] . K[keys[t]] * scale + bias[keys[t]]) V[keys[t]]; scores: [R][n] scratch.
 * Each score and each output column is summed in one fixed order whatever R and n (values over keys in
 * order, as k_axpy one by one would), so decoding and prefill agree bitwise. */
void k_attend(float *o, const float *q, int R, const float *K, const float *V, const float *bias, const int *keys, int n,
              int hd, float scale, float *scores);
/* Index of the first maximum of x[0..n) (torch.argmax for finite values). */
int k_argmax(const float *x, int n);
/* e^x within 2 ulp; the SIMD lanes of k_softmax and k_swiglu do the same operations in the same order. */
float k_exp(float x);
/* In-place softmax over n values (fp32). */
void k_softmax(float *x, int n);
/* x * sigmoid(x) = x / (1 + e^-x) */
float k_silu(float x);
/* gate[i] = silu(gate[i]) * up[i] */
void k_swiglu(float *gate, const float *up, size_t n);
float k_softplus(float x);
/* Half-split ("rotate_half") rotary embedding on one head of size hd with cos/sin tables of hd/2. */
void k_rope(float *x, const float *cos, const float *sin, int hd);


#endif
