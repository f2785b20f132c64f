// A whole transformer block for training, forward and backward, one call each.
//
// Why: measured on the 2-core machine, a baby-GPT step moves ~100 MB through memory and makes
// ~25 kernel calls per block; once the products ran near the machine's sgemm speed, what was left
// was the memory passes between kernels (residual adds, gradient accumulation, fresh output
// buffers) and the per-call cost of TensorFlow.js. Here the block runs the same kernels as the
// per-op path (layer_norm, linear_gelu, self_attention, linear_grad, ...), so the arithmetic is
// the same, but residual adds and gradient sums are folded into the passes that already touch
// the data, and the gradients' temporaries live in reused per-thread buffers.
//
// The block is nanoGPT's, without biases (D = dropout, when the rate is above 0):
//   a = LN1(x); qkv = a·Wattn; y = attention(qkv) (D on its probabilities); x1 = x + D(y·Wproj)
//   m = LN2(x1); h = m·Wfc; g = GELU(h); x2 = x1 + D(g·Wfc2)
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "mathfun.h"
#include "pool.h"

namespace teamllm {

namespace {

// dst[i] = dst[i]·mask[i] + src[i] (a residual branch after its dropout), split over the pool.
void add_into(float* dst, const float* src, int64_t n, const Dropout& drop) {
  parallel_range(n, 32 * 1024, [&](int64_t lo, int64_t hi) {
    if (drop.on()) {
      for (int64_t i = lo; i < hi; i++) dst[i] = dst[i] * drop.at(static_cast<uint32_t>(i)) + src[i];
    } else {
      for (int64_t i = lo; i < hi; i++) dst[i] += src[i];
    }
  });
}

// out[i] = g[i]·mask[i]: the gradient reaching a residual branch through its dropout.
const float* through_dropout(const float* g, float* out, int64_t n, const Dropout& drop) {
  if (!drop.on()) return g;
  parallel_range(n, 32 * 1024, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) out[i] = g[i] * drop.at(static_cast<uint32_t>(i));
  });
  return out;
}

float* grow(std::vector<float>& buf, int64_t n) {
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(n);
  return buf.data();
}

}  // namespace

void block_forward(const float* x, const BlockParams& w, const BlockActivations& s, float* x2,
                   int64_t b, int64_t t, int64_t c, int64_t heads, float eps, float drop_rate,
                   uint32_t drop_seed) {
  const int64_t m = b * t, d = c / heads;
  layer_norm(x, w.ln1, nullptr, s.a, s.mean1, s.rstd1, m, c, eps);
  batch_matmul(s.a, w.attn, s.qkv, 1, 1, m, 3 * c, c, false, false);
  self_attention(s.qkv, s.y, s.p, b, t, heads, d, 1.0f / std::sqrt(static_cast<float>(d)),
                 drop_rate, drop_seed);
  batch_matmul(s.y, w.proj, s.x1, 1, 1, m, c, c, false, false);
  add_into(s.x1, x, m * c, make_dropout(drop_rate, drop_seed, kResidAttentionSite));
  layer_norm(s.x1, w.ln2, nullptr, s.m, s.mean2, s.rstd2, m, c, eps);
  linear_gelu(s.m, w.fc, s.h, s.g, m, c, 4 * c);
  batch_matmul(s.g, w.fc2, x2, 1, 1, m, c, 4 * c, false, false);
  add_into(x2, s.x1, m * c, make_dropout(drop_rate, drop_seed, kResidMlpSite));
}

void block_backward(const float* dx2, const float* x, const BlockParams& w,
                    const BlockActivations& s, float* dx, const BlockGrads& dw, int64_t b,
                    int64_t t, int64_t c, int64_t heads, float drop_rate, uint32_t drop_seed) {
  const int64_t m = b * t, d = c / heads;
  // Temporaries, reused from call to call (each is fully written before it is read).
  thread_local std::vector<float> buf_big, buf_qkv, buf_c1, buf_c2, buf_c3;
  float* dg = grow(buf_big, m * 4 * c);  // d g, [m, 4c]
  float* dqkv = grow(buf_qkv, m * 3 * c);
  float* dm = grow(buf_c1, m * c);  // d m, then d y, then d a
  float* dx1 = grow(buf_c2, m * c);
  float* dbranch = drop_rate > 0.f ? grow(buf_c3, m * c) : nullptr;  // a branch's gradient after dropout
  // x2 = x1 + dropout(g·Wfc2)
  linear_grad(s.g, w.fc2, through_dropout(dx2, dbranch, m * c, make_dropout(drop_rate, drop_seed, kResidMlpSite)),
              dg, dw.fc2, m, 4 * c, c);
  // g = GELU(m·Wfc)
  linear_grad(s.m, w.fc, dg, dm, dw.fc, m, c, 4 * c, s.h);
  // m = LN2(x1); x1 also flows straight to x2: dx1 = dx2 + LN2'(dm)
  layer_norm_grad(s.x1, w.ln2, s.mean2, s.rstd2, dm, dx1, dw.ln2, nullptr, m, c, dx2);
  // x1 = x + dropout(y·Wproj)
  float* dy = dm;
  linear_grad(s.y, w.proj,
              through_dropout(dx1, dbranch, m * c, make_dropout(drop_rate, drop_seed, kResidAttentionSite)),
              dy, dw.proj, m, c, c);
  self_attention_grad(s.qkv, s.p, dy, dqkv, b, t, heads, d, 1.0f / std::sqrt(static_cast<float>(d)),
                      drop_rate, drop_seed);
  float* da = dm;
  linear_grad(s.a, w.attn, dqkv, da, dw.attn, m, c, 3 * c);
  // a = LN1(x); x also flows straight to x1: dx = dx1 + LN1'(da)
  layer_norm_grad(x, w.ln1, s.mean1, s.rstd1, da, dx, dw.ln1, nullptr, m, c, dx1);
}

}  // namespace teamllm
