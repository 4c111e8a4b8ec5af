#include "kernels.h"

#include <math.h>

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

void k_matmul_rows(float *y, const float *x, const float *w, const float *b, int S, int in, int out, int o0, int o1) {
    for (int o = o0; o < o1; o++) {
        const float *wr = w + (long)o * in;
        const float bias = b ? b[o] : 0.0f;
        for (int s = 0; s < S; s++) {
            float v = k_dot(x + (long)s * in, wr, in);
            y[(long)s * out + o] = b ? v + bias : v;
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
