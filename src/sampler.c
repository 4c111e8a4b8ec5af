/* Token sampling with Hugging Face generate() semantics (RepetitionPenaltyLogitsProcessor, then
 * TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper, then multinomial). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "model.h"

struct DogeSampler {
    int V;
    DogeSamplingParams p;
    uint64_t rng;      /* xorshift64* state */
    uint8_t *seen;     /* [V] tokens in the context, for the repetition penalty */
    int32_t *order;    /* [V] token ids sorted by score (prefix only) */
    float *probs;      /* [V] scratch */
};

DogeSampler *doge_sampler_new(int vocab_size, const DogeSamplingParams *params, DogeError *err) {
    const DogeSamplingParams *p = params;
    const char *bad = !(p->temperature >= 0 && isfinite(p->temperature)) ? "temperature must be >= 0"
                      : p->top_k < 0                                       ? "top_k must be >= 0"
                      : !(p->top_p > 0 && p->top_p <= 1)                   ? "top_p must be in (0, 1]"
                      : !(p->min_p >= 0 && p->min_p <= 1)                  ? "min_p must be in [0, 1]"
                      : !(p->repetition_penalty > 0 && isfinite(p->repetition_penalty)) ? "repetition_penalty must be > 0"
                                                                                        : NULL;
    if (bad) {
        doge_set_error(err, DOGE_ERR_INPUT, "invalid sampling parameter: %s", bad);
        return NULL;
    }
    DogeSampler *sp = calloc(1, sizeof *sp);
    if (sp) {
        sp->seen = calloc((size_t)vocab_size, 1);
        sp->order = malloc(sizeof(int32_t) * (size_t)vocab_size);
        sp->probs = malloc(sizeof(float) * (size_t)vocab_size);
    }
    if (!sp || !sp->seen || !sp->order || !sp->probs) {
        doge_sampler_free(sp);
        doge_set_error(err, DOGE_ERR_NOMEM, "out of memory creating a sampler");
        return NULL;
    }
    sp->V = vocab_size;
    sp->p = *p;
    /* splitmix64 of the seed, so that nearby seeds give unrelated streams; never zero */
    uint64_t z = p->seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    sp->rng = (z ^ (z >> 31)) | 1;
    return sp;
}

void doge_sampler_free(DogeSampler *sp) {
    if (!sp) return;
    free(sp->seen);
    free(sp->order);
    free(sp->probs);
    free(sp);
}

int doge_sampler_accept(DogeSampler *sp, int32_t token, DogeError *err) {
    if (token < 0 || token >= sp->V) {
        doge_set_error(err, DOGE_ERR_INPUT, "token id %d is outside the vocabulary [0, %d)", token, sp->V);
        return err->code;
    }
    sp->seen[token] = 1;
    return DOGE_OK;
}

/* Uniform in [0, 1) with 24 bits. */
static float next_uniform(DogeSampler *sp) {
    sp->rng ^= sp->rng >> 12;
    sp->rng ^= sp->rng << 25;
    sp->rng ^= sp->rng >> 27;
    return (float)((sp->rng * 0x2545F4914F6CDD1Dull) >> 40) * (1.0f / 16777216.0f);
}

/* Descending by score, ties to the lower id (torch.sort is not stable; ties are measure-zero). */
static int by_score_desc(const void *a, const void *b, const float *s) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (s[x] != s[y]) return s[x] > s[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static _Thread_local const float *sort_scores; /* qsort has no context argument */
static int cmp_ids(const void *a, const void *b) { return by_score_desc(a, b, sort_scores); }

/* Puts the k best token ids, best first, in order[0..k), choosing among order[0..n). */
static void partial_sort(int32_t *order, int n, int k, const float *scores) {
    /* quickselect so that order[0..k) holds the k best, then sort that prefix */
    int lo = 0, hi = n - 1;
    while (lo < hi && k < n) {
        int32_t pivot = order[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (by_score_desc(&order[i], &pivot, scores) < 0) i++;
            while (by_score_desc(&order[j], &pivot, scores) > 0) j--;
            if (i <= j) {
                int32_t t = order[i];
                order[i++] = order[j];
                order[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
    sort_scores = scores;
    qsort(order, (size_t)k, sizeof *order, cmp_ids);
}

int doge_sampler_vocab_size(const DogeSampler *sp) { return sp->V; }

/* Whether the scores hold a NaN, or when sampling a +inf (the softmax of which is NaN); -inf is a token
 * removed and fine. One pass over V, cheap next to the head that produced them. */
static int scores_undefined(const float *s, int V, int sampling) {
    int bad = 0;
    for (int i = 0; i < V; i++) bad |= s[i] != s[i] || (sampling && s[i] == INFINITY);
    return bad;
}

int32_t doge_sampler_sample(DogeSampler *sp, float *s, float *probs_out) {
    const int V = sp->V;
    const DogeSamplingParams *p = &sp->p;
    /* repetition penalty on every token of the context (once per distinct token) */
    if (p->repetition_penalty != 1.0f)
        for (int i = 0; i < V; i++)
            if (sp->seen[i]) s[i] = s[i] < 0 ? s[i] * p->repetition_penalty : s[i] / p->repetition_penalty;
    if (p->temperature != 0.0f && p->temperature != 1.0f)
        for (int i = 0; i < V; i++) s[i] = s[i] / p->temperature;
    if (scores_undefined(s, V, p->temperature != 0.0f)) return -1;
    if (p->temperature == 0.0f) { /* greedy: the first maximum, like torch.argmax */
        const int best = k_argmax(s, V);
        if (probs_out) {
            memset(probs_out, 0, sizeof(float) * (size_t)V);
            probs_out[best] = 1.0f;
        }
        return best;
    }

    /* Candidates in descending order: n live tokens, of which the first `sorted` are sorted. */
    int32_t *order = sp->order;
    int n = V;
    for (int i = 0; i < V; i++) order[i] = i;
    int sorted = 0;
    if (p->top_k > 0 && p->top_k < V) {
        /* HF keeps every token >= the k-th largest score (ties at the boundary survive) */
        partial_sort(order, n, p->top_k, s);
        sorted = p->top_k;
        const float kth = s[order[p->top_k - 1]];
        n = p->top_k;
        for (int i = p->top_k; i < V; i++)
            if (s[order[i]] >= kth) order[n++] = order[i];
        if (n > sorted) {
            partial_sort(order, n, n, s);
            sorted = n;
        }
    }
    /* probabilities over the live tokens */
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = s[order[i]] > mx ? s[order[i]] : mx;
    float *pr = sp->probs;
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (pr[i] = expf(s[order[i]] - mx));
    for (int i = 0; i < n; i++) pr[i] = (float)(pr[i] / sum);
    if (p->top_p < 1.0f) {
        /* Keep the shortest best-first prefix whose mass reaches top_p (HF: drop tokens whose ascending
         * cumulative probability is <= 1 - top_p, always keeping the best). Sort more as needed. */
        double mass = 0.0;
        int keep = 0;
        while (keep < n && (keep == 0 || mass < p->top_p)) {
            if (keep == sorted) {
                int more = sorted ? sorted * 2 : 64;
                more = more > n ? n : more;
                /* re-derive the probabilities in the new order after sorting a longer prefix */
                partial_sort(order, n, more, s);
                sorted = more;
                for (int i = 0; i < n; i++) pr[i] = (float)(expf(s[order[i]] - mx) / sum);
                mass = 0.0;
                for (int i = 0; i < keep; i++) mass += pr[i];
            }
            mass += pr[keep++];
        }
        n = keep;
    }
    if (p->min_p > 0.0f) {
        /* drop tokens whose probability is below min_p x the best one's (probabilities before renormalising) */
        float best = 0.0f;
        for (int i = 0; i < n; i++) best = pr[i] > best ? pr[i] : best;
        const float cut = p->min_p * best;
        int m = 0;
        for (int i = 0; i < n; i++)
            if (pr[i] >= cut) { /* the best token always passes */
                order[m] = order[i];
                pr[m++] = pr[i];
            }
        n = m;
    }
    /* renormalise over the survivors and draw */
    double total = 0.0;
    for (int i = 0; i < n; i++) total += pr[i];
    if (probs_out) {
        memset(probs_out, 0, sizeof(float) * (size_t)V);
        for (int i = 0; i < n; i++) probs_out[order[i]] = (float)(pr[i] / total);
    }
    const double u = next_uniform(sp) * total;
    double acc = 0.0;
    for (int i = 0; i < n; i++) {
        acc += pr[i];
        if (u < acc) return order[i];
    }
    return order[n - 1];
}
