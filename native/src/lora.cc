// LoRA's low-rank update of a frozen projection, fused with it (src/model/frozen-linear.ts,
// frozenLoraLinear): y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ for A [r, in], B [out, r], s = alpha / r.
//
// The frozen product writes y; these add the update into it (and into its input gradient) with
// sgemm's beta = 1, so that neither the update [m, out] nor its gradient [m, in] is a tensor of
// its own: through TensorFlow.js ops each projection made a delta, a sum, two transposes and
// their gradients (a third of a Qwen2.5-0.5B LoRA step once the frozen products ran on AMX).
// Rows of x are split over the pool; the weight gradients (sums over rows) over their own rows.
#include <algorithm>
#include <vector>

#include "kernels.h"
#include "pool.h"

namespace teamllm {

namespace {
// Rows of x per task: enough work per sgemm call, several tasks per thread.
int64_t row_grain(int64_t m, int64_t width) {
  return std::max<int64_t>(16, std::min<int64_t>(256, (1 << 16) / std::max<int64_t>(1, width)));
}
}  // namespace

void lora_forward(const float* x, const float* a, const float* b, float* y, float* t, int64_t m, int64_t in,
                  int64_t out, int64_t r, float scale) {
  parallel_range(m, row_grain(m, in + out), [&](int64_t r0, int64_t r1) {
    const int64_t rows = r1 - r0;
    sgemm(false, true, rows, r, in, scale, x + r0 * in, in, a, in, 0.f, t + r0 * r, r);
    sgemm(false, true, rows, out, r, 1.f, t + r0 * r, r, b, r, 1.f, y + r0 * out, out);
  });
}

void lora_backward(const float* dy, const float* x, const float* t, const float* a, const float* b, float* dx,
                   float* da, float* db, int64_t m, int64_t in, int64_t out, int64_t r, float scale) {
  std::vector<float> u(static_cast<size_t>(m * r));
  // u = s·dy·B [m, r]; dx += u·A.
  parallel_range(m, row_grain(m, in + out), [&](int64_t r0, int64_t r1) {
    const int64_t rows = r1 - r0;
    sgemm(false, false, rows, r, out, scale, dy + r0 * out, out, b, r, 0.f, u.data() + r0 * r, r);
    sgemm(false, false, rows, in, r, 1.f, u.data() + r0 * r, r, a, in, 1.f, dx + r0 * in, in);
  });
  // dB = dyᵀ·t [out, r] and dA = uᵀ·x [r, in]: sums over all rows, split by their own rows/columns.
  parallel_range(out, 64, [&](int64_t o0, int64_t o1) {
    sgemm(true, false, o1 - o0, r, m, 1.f, dy + o0, out, t, r, 0.f, db + o0 * r, r);
  });
  parallel_range(in, 64, [&](int64_t i0, int64_t i1) {
    sgemm(true, false, r, i1 - i0, m, 1.f, u.data(), r, x + i0, in, 0.f, da + i0, in);
  });
}

}  // namespace teamllm
