/* plain_loop.c: the "plain C loop" peer for `make bench`.
 *
 * A straightforward single-token forward pass (llama2.c style: float buffers, a KV cache and a plain
 * matmul loop) for a *plain* Doge checkpoint (A = 0, residual weights 1), which is exactly a Qwen3 block:
 *   x += o_proj(attn(rmsnorm(x)))   q/k RMSNorm over head_dim before half-split RoPE, GQA, 1/sqrt(hd)
 *   x += down(silu(gate(h)) * up(h)), h = rmsnorm(x)
 *   logits = rmsnorm(x) @ embed^T   (tied head)
 * dt_proj and A are not read (A = 0 only adds a constant to every attention logit of a row).
 *
 * Prefill runs the prompt one token at a time through the same forward (as llama2.c does); the
 * classifier is skipped for all prompt tokens but the last. Then N greedy single-token decode steps.
 *
 *   plain_loop --model DIR [--prompt-tokens 256] [--new-tokens 128] [--threads 1]
 * prints one JSON line (runtime "plain-c", where "native" or "node" for the Emscripten build).
 * Build: tools/bench/plain_loop.sh
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *msg, const char *arg) {
  fprintf(stderr, "plain_loop: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
  exit(1);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot open", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) die("cannot read", path);
  fclose(f);
  buf[n] = 0;
  if (len) *len = (size_t)n;
  return buf;
}

/* ---- config.json: just the numeric fields we need ---- */
static double json_num(const char *json, const char *key) {
  char pat[128];
  snprintf(pat, sizeof pat, "\"%s\"", key);
  const char *p = strstr(json, pat);
  if (!p) die("config.json lacks", key);
  p = strchr(p + strlen(pat), ':');
  if (!p) die("config.json: bad field", key);
  return strtod(p + 1, NULL);
}

typedef struct {
  int vocab, dim, layers, heads, kv_heads, head_dim, hidden;
  float eps, theta;
} Config;

/* ---- safetensors: 8-byte LE header length, JSON header {name: {dtype, shape, data_offsets}}, data ---- */
typedef struct {
  const char *file;   /* whole file */
  size_t file_len;
  const char *header; /* NUL-terminated copy of the JSON header */
  const char *data;   /* start of the byte buffer */
} Safetensors;

/* Returns a freshly allocated, aligned float copy of tensor `name` (F32, `count` elements). */
static float *tensor(const Safetensors *st, const char *name, size_t count) {
  char pat[256];
  snprintf(pat, sizeof pat, "\"%s\"", name);
  const char *p = strstr(st->header, pat);
  if (!p) die("tensor not found:", name);
  const char *end = strchr(p, '}');
  const char *dt = strstr(p, "\"dtype\"");
  if (!dt || dt > end || !strstr(dt, "\"F32\"") || strstr(dt, "\"F32\"") > end) die("not F32:", name);
  const char *off = strstr(p, "\"data_offsets\"");
  if (!off || off > end) die("no data_offsets:", name);
  off = strchr(off, '[');
  char *q;
  size_t a = strtoull(off + 1, &q, 10);
  q = strchr(q, ',');
  size_t b = strtoull(q + 1, NULL, 10);
  if (b - a != count * sizeof(float)) die("unexpected size of", name);
  if ((size_t)(st->data - st->file) + b > st->file_len) die("truncated tensor", name);
  float *out = malloc(count * sizeof(float)); /* the data offsets are not 4-byte aligned in general */
  memcpy(out, st->data + a, count * sizeof(float));
  return out;
}

typedef struct {
  float *attn_norm, *wq, *wk, *wv, *wo, *q_norm, *k_norm, *mlp_norm, *w_gate, *w_up, *w_down;
} Layer;

typedef struct {
  Config c;
  float *embed, *final_norm;
  Layer *layer;
  /* activations */
  float *x, *xb, *xb2, *q, *k, *v, *att, *hb, *hb2, *logits;
  float *k_cache, *v_cache; /* [layers][max_seq][kv_heads*head_dim] */
  float *inv_freq;
  int max_seq;
} Model;

static void load_model(Model *m, const char *dir, int max_seq) {
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", dir);
  char *cfg = read_file(path, NULL);
  Config *c = &m->c;
  c->vocab = (int)json_num(cfg, "vocab_size");
  c->dim = (int)json_num(cfg, "hidden_size");
  c->hidden = (int)json_num(cfg, "intermediate_size");
  c->layers = (int)json_num(cfg, "num_hidden_layers");
  c->heads = (int)json_num(cfg, "num_attention_heads");
  c->kv_heads = (int)json_num(cfg, "num_key_value_heads");
  c->head_dim = strstr(cfg, "\"head_dim\"") ? (int)json_num(cfg, "head_dim") : c->dim / c->heads;
  c->eps = (float)json_num(cfg, "rms_norm_eps");
  c->theta = (float)json_num(cfg, "rope_theta");
  free(cfg);

  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  Safetensors st;
  st.file = read_file(path, &st.file_len);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (unsigned char)st.file[i];
  if (hlen + 8 > st.file_len) die("bad safetensors header in", path);
  char *header = malloc(hlen + 1);
  memcpy(header, st.file + 8, hlen);
  header[hlen] = 0;
  st.header = header;
  st.data = st.file + 8 + hlen;

  int D = c->dim, hd = c->head_dim, qd = c->heads * hd, kvd = c->kv_heads * hd, F = c->hidden;
  m->embed = tensor(&st, "model.embed_tokens.weight", (size_t)c->vocab * D);
  m->final_norm = tensor(&st, "model.norm.weight", D);
  m->layer = calloc(c->layers, sizeof(Layer));
  for (int l = 0; l < c->layers; l++) {
    Layer *L = &m->layer[l];
    char n[200];
#define T(field, suffix, count) \
    snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix); \
    L->field = tensor(&st, n, (size_t)(count));
    T(attn_norm, "input_layernorm.weight", D);
    T(wq, "self_attn.q_proj.weight", (size_t)qd * D);
    T(wk, "self_attn.k_proj.weight", (size_t)kvd * D);
    T(wv, "self_attn.v_proj.weight", (size_t)kvd * D);
    T(wo, "self_attn.o_proj.weight", (size_t)D * qd);
    T(q_norm, "self_attn.q_norm.weight", hd);
    T(k_norm, "self_attn.k_norm.weight", hd);
    T(mlp_norm, "post_attention_layernorm.weight", D);
    T(w_gate, "mlp.gate_proj.weight", (size_t)F * D);
    T(w_up, "mlp.up_proj.weight", (size_t)F * D);
    T(w_down, "mlp.down_proj.weight", (size_t)D * F);
#undef T
  }
  free(header);
  free((void *)st.file);

  m->max_seq = max_seq;
  m->x = calloc(D, sizeof(float));
  m->xb = calloc(D > qd ? D : qd, sizeof(float));
  m->xb2 = calloc(D, sizeof(float));
  m->q = calloc(qd, sizeof(float));
  m->k = calloc(kvd, sizeof(float));
  m->v = calloc(kvd, sizeof(float));
  m->att = calloc(max_seq, sizeof(float));
  m->hb = calloc(F, sizeof(float));
  m->hb2 = calloc(F, sizeof(float));
  m->logits = calloc(c->vocab, sizeof(float));
  m->k_cache = calloc((size_t)c->layers * max_seq * kvd, sizeof(float));
  m->v_cache = calloc((size_t)c->layers * max_seq * kvd, sizeof(float));
  m->inv_freq = calloc(hd / 2, sizeof(float));
  for (int i = 0; i < hd / 2; i++) m->inv_freq[i] = (float)pow((double)c->theta, -2.0 * i / hd);
  if (!m->k_cache || !m->v_cache) die("out of memory", NULL);
}

/* ---- the kernels ---- */
static void rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
  float ss = 0.0f;
  for (int i = 0; i < n; i++) ss += x[i] * x[i];
  float s = 1.0f / sqrtf(ss / n + eps);
  for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * s);
}

/* out[d] = W[d, n] . x[n] */
static void matmul(float *out, const float *x, const float *w, int n, int d) {
  for (int i = 0; i < d; i++) {
    const float *row = w + (size_t)i * n;
    float sum = 0.0f;
    for (int j = 0; j < n; j++) sum += row[j] * x[j];
    out[i] = sum;
  }
}

static void softmax(float *x, int n) {
  float mx = x[0];
  for (int i = 1; i < n; i++)
    if (x[i] > mx) mx = x[i];
  float sum = 0.0f;
  for (int i = 0; i < n; i++) {
    x[i] = expf(x[i] - mx);
    sum += x[i];
  }
  for (int i = 0; i < n; i++) x[i] /= sum;
}

/* half-split ("rotate_half") RoPE on one head vector */
static void rope(float *v, int hd, int pos, const float *inv_freq) {
  int half = hd / 2;
  for (int i = 0; i < half; i++) {
    float a = pos * inv_freq[i];
    float cs = cosf(a), sn = sinf(a);
    float x0 = v[i], x1 = v[i + half];
    v[i] = x0 * cs - x1 * sn;
    v[i + half] = x1 * cs + x0 * sn;
  }
}

static int argmax(const float *x, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

/* One token at position `pos`; fills m->logits when want_logits. */
static void forward(Model *m, int token, int pos, int want_logits) {
  const Config *c = &m->c;
  int D = c->dim, hd = c->head_dim, H = c->heads, KV = c->kv_heads, F = c->hidden;
  int kvd = KV * hd, group = H / KV;
  float scale = 1.0f / sqrtf((float)hd);
  float *x = m->x;
  memcpy(x, m->embed + (size_t)token * D, D * sizeof(float));

  for (int l = 0; l < c->layers; l++) {
    const Layer *L = &m->layer[l];
    float *kc = m->k_cache + (size_t)l * m->max_seq * kvd;
    float *vc = m->v_cache + (size_t)l * m->max_seq * kvd;

    /* attention */
    rmsnorm(m->xb, x, L->attn_norm, D, c->eps);
    matmul(m->q, m->xb, L->wq, D, H * hd);
    matmul(m->k, m->xb, L->wk, D, kvd);
    matmul(m->v, m->xb, L->wv, D, kvd);
    for (int h = 0; h < H; h++) {
      float *qh = m->q + h * hd;
      rmsnorm(qh, qh, L->q_norm, hd, c->eps);
      rope(qh, hd, pos, m->inv_freq);
    }
    for (int h = 0; h < KV; h++) {
      float *kh = m->k + h * hd;
      rmsnorm(kh, kh, L->k_norm, hd, c->eps);
      rope(kh, hd, pos, m->inv_freq);
    }
    memcpy(kc + (size_t)pos * kvd, m->k, kvd * sizeof(float));
    memcpy(vc + (size_t)pos * kvd, m->v, kvd * sizeof(float));

    for (int h = 0; h < H; h++) {
      const float *qh = m->q + h * hd;
      int kvh = h / group;
      for (int t = 0; t <= pos; t++) {
        const float *kt = kc + (size_t)t * kvd + kvh * hd;
        float s = 0.0f;
        for (int i = 0; i < hd; i++) s += qh[i] * kt[i];
        m->att[t] = s * scale;
      }
      softmax(m->att, pos + 1);
      float *out = m->xb + h * hd;
      memset(out, 0, hd * sizeof(float));
      for (int t = 0; t <= pos; t++) {
        const float *vt = vc + (size_t)t * kvd + kvh * hd;
        float a = m->att[t];
        for (int i = 0; i < hd; i++) out[i] += a * vt[i];
      }
    }
    matmul(m->xb2, m->xb, L->wo, H * hd, D);
    for (int i = 0; i < D; i++) x[i] += m->xb2[i];

    /* SwiGLU MLP */
    rmsnorm(m->xb, x, L->mlp_norm, D, c->eps);
    matmul(m->hb, m->xb, L->w_gate, D, F);
    matmul(m->hb2, m->xb, L->w_up, D, F);
    for (int i = 0; i < F; i++) {
      float g = m->hb[i];
      m->hb[i] = g / (1.0f + expf(-g)) * m->hb2[i];
    }
    matmul(m->xb2, m->hb, L->w_down, F, D);
    for (int i = 0; i < D; i++) x[i] += m->xb2[i];
  }

  if (want_logits) {
    rmsnorm(x, x, m->final_norm, D, c->eps);
    matmul(m->logits, x, m->embed, D, c->vocab);
  }
}

static const char *basename_of(const char *path) {
  static char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  size_t n = strlen(buf);
  while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;
  const char *s = strrchr(buf, '/');
  return s ? s + 1 : buf;
}

int main(int argc, char **argv) {
  const char *dir = NULL;
  int P = 256, N = 128, threads = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--model") && i + 1 < argc) dir = argv[++i];
    else if (!strcmp(argv[i], "--prompt-tokens") && i + 1 < argc) P = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--new-tokens") && i + 1 < argc) N = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else die("unknown argument", argv[i]);
  }
  if (!dir || P < 1 || N < 1) die("usage: plain_loop --model DIR [--prompt-tokens 256] [--new-tokens 128] [--threads 1]", NULL);
  if (threads != 1) fprintf(stderr, "plain_loop: single-threaded; --threads %d ignored\n", threads);

  Model m;
  double t0 = now_ms();
  load_model(&m, dir, P + N + 1);
  double t1 = now_ms();

  for (int i = 0; i < P; i++) forward(&m, (1000 + 37 * i) % 32768 % m.c.vocab, i, i == P - 1);
  double t2 = now_ms();
  int first = argmax(m.logits, m.c.vocab);
  double t3 = now_ms();

  int tok = first, head[8] = {first}, nhead = 1;
  for (int i = 0; i < N; i++) {
    forward(&m, tok, P + i, 1);
    tok = argmax(m.logits, m.c.vocab);
    if (nhead < 8) head[nhead++] = tok;
  }
  double t4 = now_ms();

#ifdef __EMSCRIPTEN__
  const char *where = "node";
#else
  const char *where = "native";
#endif
  printf("{\"runtime\":\"plain-c\",\"where\":\"%s\",\"weights\":\"f32\",\"model\":\"%s\",\"threads\":1,"
         "\"prompt_tokens\":%d,\"new_tokens\":%d,\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f,"
         "\"ttft_ms\":%.2f,\"load_ms\":%.2f,\"first_token\":%d,\"tokens_head\":[",
         where, basename_of(dir), P, N, P / ((t2 - t1) / 1e3), N / ((t4 - t3) / 1e3), t3 - t1, t1 - t0,
         first);
  for (int i = 0; i < nhead; i++) printf("%s%d", i ? "," : "", head[i]);
  printf("]}\n");
  return 0;
}
