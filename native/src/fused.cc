// Fused kernels for the transformer's hot paths, each one pass over memory instead of the 5-15
// separate TensorFlow.js ops (and intermediate tensors) the composite form takes:
// softmax, LayerNorm, GELU's gradient, causal attention, cross-entropy and the AdamW update.
//
// Row reductions (max, sums) carry `#pragma omp simd reduction`: without it GCC keeps IEEE
// left-to-right order and will not vectorize them (built with -fopenmp-simd, no OpenMP runtime).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "mathfun.h"
#include "pool.h"
#include "simd.h"

namespace teamllm {

namespace {

constexpr int64_t kGrain = 16 * 1024;

int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1)); }


// Softmax of one row of n values, into out (may alias in).
inline void softmax_row(const float* in, float* out, int64_t n) {
  const float mx = row_max(in, n);
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; j++) {
    const float e = exp_fast(in[j] - mx);
    out[j] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < n; j++) out[j] *= inv;
}

}  // namespace

void softmax(const float* x, float* y, int64_t rows, int64_t cols) {
  parallel_range(rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) softmax_row(x + r * cols, y + r * cols, cols);
  });
}

void layer_norm(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd,
                int64_t rows, int64_t cols, float eps) {
  parallel_range(rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      const float* xr = x + r * cols;
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < cols; j++) s += xr[j];
      const float mu = s / static_cast<float>(cols);
      float v = 0.f;
#pragma omp simd reduction(+ : v)
      for (int64_t j = 0; j < cols; j++) v += (xr[j] - mu) * (xr[j] - mu);
      const float rs = 1.0f / std::sqrt(v / static_cast<float>(cols) + eps);
      mean[r] = mu;
      rstd[r] = rs;
      float* yr = y + r * cols;
      if (b) {
        for (int64_t j = 0; j < cols; j++) yr[j] = (xr[j] - mu) * rs * w[j] + b[j];
      } else {
        for (int64_t j = 0; j < cols; j++) yr[j] = (xr[j] - mu) * rs * w[j];
      }
    }
  });
}

void layer_norm_grad(const float* x, const float* w, const float* mean, const float* rstd,
                     const float* dy, float* dx, float* dw, float* db, int64_t rows, int64_t cols,
                     const float* add) {
  // dw and db are sums over rows: each task accumulates its own partial sums, added at the end.
  const int64_t grain = row_grain(cols);
  const int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(pool().size() * 2, rows / grain));
  std::vector<float> partial(static_cast<size_t>(tasks) * 2 * cols, 0.f);
  const int64_t step = (rows + tasks - 1) / tasks;
  pool().parallel_for(tasks, [&](int64_t t) {
    const int64_t lo = t * step, hi = std::min(rows, lo + step);
    float* pw = partial.data() + t * 2 * cols;
    float* pb = pw + cols;
    for (int64_t r = lo; r < hi; r++) {
      const float* xr = x + r * cols;
      const float* gr = dy + r * cols;
      float* out = dx + r * cols;
      const float mu = mean[r], rs = rstd[r];
      // With x̂ = (x−μ)·rstd and g = dy·w: dx = rstd·(g − mean(g) − x̂·mean(g·x̂)).
      float sg = 0.f, sgx = 0.f;
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t j = 0; j < cols; j++) {
        const float xh = (xr[j] - mu) * rs;
        const float g = gr[j] * w[j];
        sg += g;
        sgx += g * xh;
        pw[j] += gr[j] * xh;
        pb[j] += gr[j];
      }
      const float inv_n = 1.0f / static_cast<float>(cols);
      sg *= inv_n;
      sgx *= inv_n;
      if (add) {
        const float* ar = add + r * cols;
        for (int64_t j = 0; j < cols; j++) {
          const float xh = (xr[j] - mu) * rs;
          out[j] = rs * (gr[j] * w[j] - sg - xh * sgx) + ar[j];
        }
      } else {
        for (int64_t j = 0; j < cols; j++) {
          const float xh = (xr[j] - mu) * rs;
          out[j] = rs * (gr[j] * w[j] - sg - xh * sgx);
        }
      }
    }
  });
  for (int64_t j = 0; j < cols; j++) {
    float sw = 0.f, sb = 0.f;
    for (int64_t t = 0; t < tasks; t++) {
      sw += partial[t * 2 * cols + j];
      sb += partial[t * 2 * cols + cols + j];
    }
    dw[j] = sw;
    if (db) db[j] = sb;
  }
}

void gelu_grad(const float* x, const float* dy, float* dx, int64_t size) {
  parallel_range(size, 8 * 1024, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) dx[i] = dy[i] * gelu_deriv(x[i]);
  });
}

// ---- attention --------------------------------------------------------------------------------
// One (batch, head) pair is one task: the scores of a head fit in L1/L2, so the whole
// product-softmax-product chain stays in cache, and heads are spread over the pool.

void attention(const float* q, const float* kT, const float* v, float* y, float* p, int64_t bh,
               int64_t t, int64_t s, int64_t d, int64_t past, float scale, bool causal) {
  pool().parallel_for(bh, [&](int64_t h) {
    const float* qh = q + h * t * d;
    const float* kh = kT + h * d * s;
    const float* vh = v + h * s * d;
    float* ph = p + h * t * s;
    float* yh = y + h * t * d;
    // scores = scale · q · kT  [t, s]
    sgemm(false, false, t, s, d, scale, qh, d, kh, s, 0.f, ph,
                s);
    for (int64_t i = 0; i < t; i++) {
      float* row = ph + i * s;
      // Query i sits at position past + i and sees keys 0..past+i.
      const int64_t visible = causal ? std::min<int64_t>(s, past + i + 1) : s;
      softmax_row(row, row, visible);
      for (int64_t j = visible; j < s; j++) row[j] = 0.f;
    }
    // y = p · v  [t, d]
    sgemm(false, false, t, d, s, 1.f, ph, s, vh, d, 0.f, yh, d);
  });
}

void attention_grad(const float* q, const float* kT, const float* v, const float* p,
                    const float* dy, float* dq, float* dkT, float* dv, int64_t bh, int64_t t,
                    int64_t s, int64_t d, float scale) {
  pool().parallel_for(bh, [&](int64_t h) {
    thread_local std::vector<float> scratch;
    if (static_cast<int64_t>(scratch.size()) < t * s) scratch.resize(t * s);
    float* ds = scratch.data();
    const float* qh = q + h * t * d;
    const float* kh = kT + h * d * s;
    const float* vh = v + h * s * d;
    const float* ph = p + h * t * s;
    const float* gh = dy + h * t * d;
    // dp = dy · vᵀ  [t, s]
    sgemm(false, true, t, s, d, 1.f, gh, d, vh, d, 0.f, ds, s);
    // dv = pᵀ · dy  [s, d]
    sgemm(true, false, s, d, t, 1.f, ph, s, gh, d, 0.f,
                dv + h * s * d, d);
    // Through the softmax: ds = p ∘ (dp − Σ dp∘p); masked entries have p = 0 and stay 0.
    for (int64_t i = 0; i < t; i++) {
      const float* pr = ph + i * s;
      float* r = ds + i * s;
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < s; j++) dot += pr[j] * r[j];
      for (int64_t j = 0; j < s; j++) r[j] = pr[j] * (r[j] - dot);
    }
    // scores = scale · q · kT:  dq = scale · ds · kTᵀ [t, d];  dkT = scale · qᵀ · ds [d, s]
    sgemm(false, true, t, d, s, scale, ds, s, kh, s, 0.f,
                dq + h * t * d, d);
    sgemm(true, false, d, s, t, scale, qh, d, ds, s, 0.f,
                dkT + h * d * s, s);
  });
}

// Causal self-attention from qkv, with loops of our own rather than sgemm: a head is only
// 64x64x32 here, where sgemm's packing costs more than the arithmetic (measured 10 GFLOP/s), and
// causality lets row i stop at key i (half the work).
//
// Loops over keys or over the head width run in blocks of 16 floats held in one vector value;
// the head's keys, values and queries are first copied into per-thread buffers padded to whole
// blocks (zeros), so no block needs a remainder loop.

namespace {

inline int64_t round_up(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// out[0..kLanes) = Σ_e a[e]·B[e·ldb + 0..kLanes)  (B rows padded, so the block may over-read).
// Four accumulators: one chain of dependent FMAs would wait on each one's latency.
inline void dot_block(const float* a, int64_t len, const float* b, int64_t ldb, float* out) {
  vf16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int64_t e = 0;
  for (; e + 4 <= len; e += 4) {
    a0 += a[e] * load16(b + e * ldb);
    a1 += a[e + 1] * load16(b + (e + 1) * ldb);
    a2 += a[e + 2] * load16(b + (e + 2) * ldb);
    a3 += a[e + 3] * load16(b + (e + 3) * ldb);
  }
  for (; e < len; e++) a0 += a[e] * load16(b + e * ldb);
  store16(out, (a0 + a1) + (a2 + a3));
}

// Σ_j w[j]·X[j·ldx + 0..kLanes), j < n (weighted sum of rows), four chains as above.
inline vf16 rows_block(const float* w, int64_t n, const float* x, int64_t ldx) {
  vf16 a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    a0 += w[j] * load16(x + j * ldx);
    a1 += w[j + 1] * load16(x + (j + 1) * ldx);
    a2 += w[j + 2] * load16(x + (j + 2) * ldx);
    a3 += w[j + 3] * load16(x + (j + 3) * ldx);
  }
  for (; j < n; j++) a0 += w[j] * load16(x + j * ldx);
  return (a0 + a1) + (a2 + a3);
}

// out[0..kLanes) += s · x[0..kLanes)
inline void axpy_block(float s, const float* x, float* out) { store16(out, load16(out) + s * load16(x)); }

// dst[0..n) = src[0..n) for the short rows of one head (a libc memcpy call per 128-byte row
// costs more than the copy).
inline void copy_row(float* dst, const float* src, int64_t n) {
  int64_t e = 0;
  for (; e + kLanes <= n; e += kLanes) store16(dst + e, load16(src + e));
  for (; e < n; e++) dst[e] = src[e];
}

// Per-thread scratch, grown as needed and zero-filled (the padding must read as zeros).
float* scratch(std::vector<float>& buf, int64_t n) {
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(n);
  std::fill(buf.begin(), buf.begin() + n, 0.f);
  return buf.data();
}

}  // namespace

namespace {

// Query rows per block of the product form below: a block's scores [kQB, keys so far] stay in L2.
constexpr int64_t kQB = 128;

// Without dropout, one (batch, head) as a few float32 products (sgemm, on this thread) per block
// of kQB queries, over the keys that block sees (causal: the blocks above the diagonal are
// skipped): S = scale·Q·Kᵀ into p's rows, the row softmax (the entries past the diagonal set to
// 0), Y = P·V. The row-at-a-time form (self_attention_rows) ran at ~15 GFLOP/s; these products
// run at the machine's sgemm speed.
void attention_head_products(const float* q, const float* k, const float* v, int64_t ld, float* ph, float* yb,
                             int64_t c, int64_t t, int64_t d, float scale) {
  for (int64_t i0 = 0; i0 < t; i0 += kQB) {
    const int64_t i1 = std::min(t, i0 + kQB), rows = i1 - i0;
    float* pr = ph + i0 * t;
    sgemm(false, true, rows, i1, d, scale, q + i0 * ld, ld, k, ld, 0.f, pr, t);
    for (int64_t i = i0; i < i1; i++) {
      float* row = ph + i * t;
      softmax_row(row, row, i + 1);
      for (int64_t j = i + 1; j < t; j++) row[j] = 0.f;
    }
    sgemm(false, false, rows, d, i1, 1.f, pr, t, v, ld, 0.f, yb + i0 * c, c);
  }
}

// Its gradient, the same blocks: dP = dY·Vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale (in a
// scratch block), dQ = dS·K, and dK += dSᵀ·Q, dV += Pᵀ·dY over the keys the block sees.
void attention_head_grad_products(const float* q, const float* k, const float* v, int64_t ld, const float* ph,
                                  const float* g, float* dq, float* dk, float* dv, int64_t c, int64_t t, int64_t d,
                                  float scale, float* ds) {
  for (int64_t j = 0; j < t; j++) {
    std::memset(dk + j * ld, 0, d * sizeof(float));
    std::memset(dv + j * ld, 0, d * sizeof(float));
  }
  for (int64_t i0 = 0; i0 < t; i0 += kQB) {
    const int64_t i1 = std::min(t, i0 + kQB), rows = i1 - i0;
    const float* pr = ph + i0 * t;
    sgemm(false, true, rows, i1, d, 1.f, g + i0 * c, c, v, ld, 0.f, ds, i1);
    for (int64_t i = i0; i < i1; i++) {
      const float* p_i = ph + i * t;
      float* ds_i = ds + (i - i0) * i1;
      const int64_t n = i + 1;
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < n; j++) dot += p_i[j] * ds_i[j];
      for (int64_t j = 0; j < n; j++) ds_i[j] = p_i[j] * (ds_i[j] - dot) * scale;
      for (int64_t j = n; j < i1; j++) ds_i[j] = 0.f;
    }
    sgemm(false, false, rows, d, i1, 1.f, ds, i1, k, ld, 0.f, dq + i0 * ld, ld);
    sgemm(true, false, i1, d, rows, 1.f, ds, i1, q + i0 * ld, ld, 1.f, dk, ld);
    sgemm(true, false, i1, d, rows, 1.f, pr, t, g + i0 * c, c, 1.f, dv, ld);
  }
}

}  // namespace

void self_attention(const float* qkv, float* y, float* p, int64_t b, int64_t t, int64_t heads,
                    int64_t d, float scale, float drop_rate, uint32_t drop_seed) {
  if (drop_rate <= 0.f) {
    const int64_t c = heads * d, ld = 3 * c;
    pool().parallel_for(b * heads, [&](int64_t task) {
      const int64_t bi = task / heads, h = task % heads;
      const float* q = qkv + bi * t * ld + h * d;
      attention_head_products(q, q + c, q + 2 * c, ld, p + task * t * t, y + bi * t * c + h * d, c, t, d, scale);
    });
    return;
  }
  const Dropout drop = make_dropout(drop_rate, drop_seed, kAttentionSite);
  const int64_t c = heads * d, ld = 3 * c;
  const int64_t tp = round_up(t), dp = round_up(d);
  pool().parallel_for(b * heads, [&](int64_t task) {
    thread_local std::vector<float> buf;
    float* kt = scratch(buf, d * tp + t * dp + tp);  // kᵀ [d, tp], v [t, dp], one score row
    float* vl = kt + d * tp;
    float* row = vl + t * dp;
    const int64_t bi = task / heads, h = task % heads;
    const float* q = qkv + bi * t * ld + h * d;
    const float* k = q + c;
    const float* v = q + 2 * c;
    float* ph = p + task * t * t;
    float* yb = y + bi * t * c + h * d;
    for (int64_t j = 0; j < t; j++) {
      for (int64_t e = 0; e < d; e++) kt[e * tp + j] = k[j * ld + e];
      copy_row(vl + j * dp, v + j * ld, d);
    }
    for (int64_t i = 0; i < t; i++) {
      const int64_t n = i + 1;  // query i sees keys 0..i
      const float* qi = q + i * ld;
      for (int64_t j0 = 0; j0 < n; j0 += kLanes) dot_block(qi, d, kt + j0, tp, row + j0);
      for (int64_t j = 0; j < n; j++) row[j] *= scale;
      softmax_row(row, row, n);
      float* pr = ph + i * t;
      std::memcpy(pr, row, n * sizeof(float));
      for (int64_t j = n; j < t; j++) pr[j] = 0.f;
      // p keeps the probabilities before dropout (the softmax's gradient needs them); the
      // product with v uses the dropped ones.
      if (drop.on()) {
        const uint32_t base = static_cast<uint32_t>((task * t + i) * t);
        for (int64_t j = 0; j < n; j++) row[j] *= drop.at(base + static_cast<uint32_t>(j));
      }
      // y_i = Σ_j p_ij · v_j, a block of head columns at a time.
      float* yi = yb + i * c;
      for (int64_t e0 = 0; e0 < dp; e0 += kLanes) {
        const vf16 acc = rows_block(row, n, vl + e0, dp);
        float tmp[kLanes];
        store16(tmp, acc);
        std::memcpy(yi + e0, tmp, std::min(kLanes, d - e0) * sizeof(float));
      }
    }
  });
}

void self_attention_grad(const float* qkv, const float* p, const float* dy, float* dqkv, int64_t b,
                         int64_t t, int64_t heads, int64_t d, float scale, float drop_rate,
                         uint32_t drop_seed) {
  if (drop_rate <= 0.f) {
    const int64_t c = heads * d, ld = 3 * c;
    pool().parallel_for(b * heads, [&](int64_t task) {
      thread_local std::vector<float> ds;
      if (static_cast<int64_t>(ds.size()) < kQB * t) ds.resize(kQB * t);
      const int64_t bi = task / heads, h = task % heads;
      const float* q = qkv + bi * t * ld + h * d;
      float* dq = dqkv + bi * t * ld + h * d;
      attention_head_grad_products(q, q + c, q + 2 * c, ld, p + task * t * t, dy + bi * t * c + h * d, dq, dq + c,
                                   dq + 2 * c, c, t, d, scale, ds.data());
    });
    return;
  }
  const Dropout drop = make_dropout(drop_rate, drop_seed, kAttentionSite);
  const int64_t c = heads * d, ld = 3 * c;
  const int64_t tp = round_up(t), dp = round_up(d);
  pool().parallel_for(b * heads, [&](int64_t task) {
    thread_local std::vector<float> buf;
    // vᵀ [d, tp]; k, q, dy [t, dp]; the score gradients ds [t, tp]; one column of the dropout mask
    float* vt = scratch(buf, d * tp + 3 * t * dp + t * tp + tp);
    float* kl = vt + d * tp;
    float* ql = kl + t * dp;
    float* gl = ql + t * dp;
    float* ds = gl + t * dp;
    float* keep = ds + t * tp;
    const int64_t bi = task / heads, h = task % heads;
    const float* q = qkv + bi * t * ld + h * d;
    const float* k = q + c;
    const float* v = q + 2 * c;
    const float* ph = p + task * t * t;
    const float* g = dy + bi * t * c + h * d;
    float* dq = dqkv + bi * t * ld + h * d;
    float* dk = dq + c;
    float* dv = dq + 2 * c;
    for (int64_t j = 0; j < t; j++) {
      for (int64_t e = 0; e < d; e++) vt[e * tp + j] = v[j * ld + e];
      copy_row(kl + j * dp, k + j * ld, d);
      copy_row(ql + j * dp, q + j * ld, d);
      copy_row(gl + j * dp, g + j * c, d);
    }
    // Pass 1, over queries i: score gradients and dq_i.
    for (int64_t i = 0; i < t; i++) {
      const int64_t n = i + 1;
      const float* pr = ph + i * t;
      float* dsr = ds + i * tp;
      // dp_ij = dy_i · v_j (through the dropout, when on)
      for (int64_t j0 = 0; j0 < n; j0 += kLanes) dot_block(gl + i * dp, d, vt + j0, tp, dsr + j0);
      if (drop.on()) {
        const uint32_t base = static_cast<uint32_t>((task * t + i) * t);
        for (int64_t j = 0; j < n; j++) dsr[j] *= drop.at(base + static_cast<uint32_t>(j));
      }
      // Through the softmax, with the score scale folded in.
      float dot = 0.f;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < n; j++) dot += pr[j] * dsr[j];
      for (int64_t j = 0; j < n; j++) dsr[j] = pr[j] * (dsr[j] - dot) * scale;
      // dq_i = Σ_j ds_ij · k_j
      float* dqi = dq + i * ld;
      for (int64_t e0 = 0; e0 < dp; e0 += kLanes) {
        float tmp[kLanes];
        store16(tmp, rows_block(dsr, n, kl + e0, dp));
        std::memcpy(dqi + e0, tmp, std::min(kLanes, d - e0) * sizeof(float));
      }
    }
    // Pass 2, over keys j (queries i >= j see key j): dv_j = Σ_i p_ij·dy_i, dk_j = Σ_i ds_ij·q_i,
    // summed in registers.
    for (int64_t j = 0; j < t; j++) {
      // dv uses the probabilities after dropout: p_ij times the mask's column j.
      if (drop.on()) {
        for (int64_t i = j; i < t; i++) {
          keep[i] = ph[i * t + j] * drop.at(static_cast<uint32_t>((task * t + i) * t + j));
        }
      } else {
        for (int64_t i = j; i < t; i++) keep[i] = ph[i * t + j];
      }
      for (int64_t e0 = 0; e0 < dp; e0 += kLanes) {
        vf16 av = {}, ak = {};
        for (int64_t i = j; i < t; i++) {
          av += keep[i] * load16(gl + i * dp + e0);
          ak += ds[i * tp + j] * load16(ql + i * dp + e0);
        }
        float tv[kLanes], tk[kLanes];
        store16(tv, av);
        store16(tk, ak);
        const int64_t w = std::min(kLanes, d - e0);
        std::memcpy(dv + j * ld + e0, tv, w * sizeof(float));
        std::memcpy(dk + j * ld + e0, tk, w * sizeof(float));
      }
    }
  });
}

void dropout(const float* x, float* y, int64_t size, float rate, uint32_t seed, uint32_t site) {
  const Dropout drop = make_dropout(rate, seed, site);
  parallel_range(size, 32 * 1024, [&](int64_t lo, int64_t hi) {
    if (!drop.on()) {
      std::memcpy(y + lo, x + lo, (hi - lo) * sizeof(float));
      return;
    }
    for (int64_t i = lo; i < hi; i++) y[i] = x[i] * drop.at(static_cast<uint32_t>(i));
  });
}

// ---- one-token decoding ----------------------------------------------------------------------
// Generation runs ~28 small ops per block per token; through TensorFlow.js each costs more in
// bookkeeping than in arithmetic (measured: ~5 ms of a 10 ms token for the 10M model). Here the
// whole block is one call; the products are the vector x matrix kernel split over the pool.

void decode_layer(const float* x, const DecodeWeights& w, const float* kT, const float* v,
                  float* x_out, float* kT_out, float* v_out, int64_t c, int64_t heads, int64_t past,
                  float eps) {
  const int64_t d = c / heads, s = past + 1;
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < 12 * c + heads * s + 4) buf.resize(12 * c + heads * s + 4);
  float* a = buf.data();   // normed input [c]
  float* qkv = a + c;      // [3c]
  float* y = qkv + 3 * c;  // attention output [c]
  float* x1 = y + c;       // after the attention residual [c]
  float* hid = x1 + c;     // MLP hidden [4c]
  float* tmp = hid + 4 * c;  // [c]
  float* p = tmp + c;      // probabilities [heads, s]
  float* stats = p + heads * s;  // mean, rstd
  layer_norm(x, w.ln1_w, w.ln1_b, a, stats, stats + 1, 1, c, eps);
  batch_matmul(a, w.attn_w, qkv, 1, 1, 1, 3 * c, c, false, false, w.attn_b, w.attn_b ? 3 * c : 0);
  // Append the new key (a column of kT) and value (a row of v) to each head's cache.
  parallel_range(heads, 1, [&](int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; h++) {
      const float* k_new = qkv + c + h * d;
      const float* v_new = qkv + 2 * c + h * d;
      for (int64_t e = 0; e < d; e++) {
        float* dst = kT_out + (h * d + e) * s;
        std::memcpy(dst, kT + (h * d + e) * past, past * sizeof(float));
        dst[past] = k_new[e];
      }
      std::memcpy(v_out + h * s * d, v + h * past * d, past * d * sizeof(float));
      std::memcpy(v_out + (h * s + past) * d, v_new, d * sizeof(float));
    }
  });
  // q [heads, 1, d] is qkv[0..c) and y [heads, 1, d] is the merged [c]: the same memory order.
  attention(qkv, kT_out, v_out, y, p, heads, 1, s, d, past, 1.0f / std::sqrt(static_cast<float>(d)),
            true);
  batch_matmul(y, w.proj_w, tmp, 1, 1, 1, c, c, false, false, w.proj_b, w.proj_b ? c : 0);
  for (int64_t i = 0; i < c; i++) x1[i] = x[i] + tmp[i];
  layer_norm(x1, w.ln2_w, w.ln2_b, a, stats, stats + 1, 1, c, eps);
  batch_matmul(a, w.fc_w, hid, 1, 1, 1, 4 * c, c, false, false, w.fc_b, w.fc_b ? 4 * c : 0);
  for (int64_t i = 0; i < 4 * c; i++) hid[i] = gelu_fast(hid[i]);
  batch_matmul(hid, w.fc2_w, tmp, 1, 1, 1, c, 4 * c, false, false, w.fc2_b, w.fc2_b ? c : 0);
  for (int64_t i = 0; i < c; i++) x_out[i] = x1[i] + tmp[i];
}

// ---- cross-entropy ----------------------------------------------------------------------------

float cross_entropy(const float* logits, const int32_t* targets, float* probs, int64_t rows,
                    int64_t vocab, int64_t* count) {
  const int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(pool().size() * 2, rows / row_grain(vocab)));
  std::vector<double> loss(tasks, 0.0);
  std::vector<int64_t> counted(tasks, 0);
  const int64_t step = (rows + tasks - 1) / tasks;
  pool().parallel_for(tasks, [&](int64_t task) {
    const int64_t lo = task * step, hi = std::min(rows, lo + step);
    double l = 0.0;
    int64_t c = 0;
    for (int64_t r = lo; r < hi; r++) {
      const float* in = logits + r * vocab;
      float* out = probs + r * vocab;
      const float mx = row_max(in, vocab);
      float sum = 0.f;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < vocab; j++) {
        const float e = exp_fast(in[j] - mx);
        out[j] = e;
        sum += e;
      }
      const float inv = 1.0f / sum;
      for (int64_t j = 0; j < vocab; j++) out[j] *= inv;
      const int32_t tgt = targets[r];
      if (tgt >= 0 && tgt < vocab) {
        l += static_cast<double>(mx) + std::log(static_cast<double>(sum)) - in[tgt];
        c++;
      }
    }
    loss[task] = l;
    counted[task] = c;
  });
  double total = 0.0;
  int64_t n = 0;
  for (int64_t i = 0; i < tasks; i++) {
    total += loss[i];
    n += counted[i];
  }
  *count = n;
  return static_cast<float>(total / static_cast<double>(std::max<int64_t>(n, 1)));
}

void cross_entropy_grad(const float* probs, const int32_t* targets, float* dlogits, int64_t rows,
                        int64_t vocab, float scale) {
  parallel_range(rows, row_grain(vocab), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
      const float* pr = probs + r * vocab;
      float* out = dlogits + r * vocab;
      const int32_t tgt = targets[r];
      if (tgt < 0 || tgt >= vocab) {
        std::fill(out, out + vocab, 0.f);
        continue;
      }
      for (int64_t j = 0; j < vocab; j++) out[j] = pr[j] * scale;
      out[tgt] -= scale;
    }
  });
}

// ---- optimizer ---------------------------------------------------------------------------------

namespace {

// Elements [lo, hi) of one AdamW update.
inline void adamw_range(const float* p, const float* g, const float* m, const float* v,
                        float* p_out, float* m_out, float* v_out, int64_t lo, int64_t hi,
                        const AdamWParams& a, float weight_decay) {
  const float b1 = a.beta1, b2 = a.beta2, eps = a.eps, scale = a.grad_scale;
  const float decay = 1.0f - a.lr * weight_decay;
  const float step_size = a.lr / a.bc1;
  const float inv_sqrt_bc2 = 1.0f / std::sqrt(a.bc2);
  for (int64_t i = lo; i < hi; i++) {
    const float gi = g[i] * scale;
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m_out[i] = mi;
    v_out[i] = vi;
    p_out[i] = p[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

// A list of (array, lo, hi) chunks of at most `chunk` elements covering several arrays.
struct Chunk {
  int64_t index, lo, hi;
};
std::vector<Chunk> chunks_of(const int64_t* sizes, int64_t count, int64_t chunk) {
  std::vector<Chunk> out;
  for (int64_t t = 0; t < count; t++) {
    for (int64_t lo = 0; lo < sizes[t]; lo += chunk) out.push_back({t, lo, std::min(sizes[t], lo + chunk)});
  }
  return out;
}

}  // namespace

void adamw(const float* p, const float* g, const float* m, const float* v, float* p_out,
           float* m_out, float* v_out, int64_t size, const AdamWParams& a) {
  parallel_range(size, 32 * 1024, [&](int64_t lo, int64_t hi) {
    adamw_range(p, g, m, v, p_out, m_out, v_out, lo, hi, a, a.weight_decay);
  });
}

void adamw_multi(const AdamWTensor* tensors, int64_t count, const AdamWParams& a) {
  std::vector<int64_t> sizes(count);
  for (int64_t t = 0; t < count; t++) sizes[t] = tensors[t].size;
  const std::vector<Chunk> chunks = chunks_of(sizes.data(), count, 32 * 1024);
  pool().parallel_for(static_cast<int64_t>(chunks.size()), [&](int64_t c) {
    const Chunk& ch = chunks[c];
    const AdamWTensor& t = tensors[ch.index];
    adamw_range(t.p, t.g, t.m, t.v, t.p_out, t.m_out, t.v_out, ch.lo, ch.hi, a, t.weight_decay);
  });
}

double sum_squares(const float* const* xs, const int64_t* sizes, int64_t count) {
  const std::vector<Chunk> chunks = chunks_of(sizes, count, 64 * 1024);
  std::vector<double> partial(chunks.size(), 0.0);
  pool().parallel_for(static_cast<int64_t>(chunks.size()), [&](int64_t c) {
    const Chunk& ch = chunks[c];
    const float* x = xs[ch.index];
    // Float lanes within a short run, double across runs: exact enough for a norm, and vectorized.
    double total = 0.0;
    for (int64_t lo = ch.lo; lo < ch.hi; lo += 1024) {
      const int64_t hi = std::min(ch.hi, lo + 1024);
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t i = lo; i < hi; i++) s += x[i] * x[i];
      total += s;
    }
    partial[c] = total;
  });
  double sum = 0.0;
  for (double v : partial) sum += v;
  return sum;
}

// ---- embeddings ---------------------------------------------------------------------------------

void gather_rows(const float* table, int64_t rows, int64_t inner, const int32_t* ids,
                 int64_t count, float* out) {
  parallel_range(count, row_grain(inner) * 4, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) {
      const int32_t id = ids[i];
      if (id >= 0 && id < rows) {
        std::memcpy(out + i * inner, table + id * inner, inner * sizeof(float));
      } else {
        std::fill(out + i * inner, out + (i + 1) * inner, 0.f);
      }
    }
  });
}

void scatter_add_rows(const float* x, const int32_t* ids, int64_t count, int64_t inner, float* out,
                      int64_t segments) {
  std::fill(out, out + segments * inner, 0.f);
  // Threads own column ranges, so no two threads write the same element.
  parallel_range(inner, std::max<int64_t>(16, inner / 2), [&](int64_t c0, int64_t c1) {
    for (int64_t i = 0; i < count; i++) {
      const int32_t id = ids[i];
      if (id < 0 || id >= segments) continue;
      const float* src = x + i * inner;
      float* dst = out + id * inner;
      for (int64_t j = c0; j < c1; j++) dst[j] += src[j];
    }
  });
}

}  // namespace teamllm
