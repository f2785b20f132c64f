// Elementwise operations, broadcasting, transposes and reductions, parallel over the pool.
//
// These are memory-bound: the win over TensorFlow.js's cpu backend comes from tight loops the
// compiler vectorizes (its JavaScript kernels compute a multi-dimensional index per element) and
// from using both cores. Shapes are first collapsed (adjacent axes that broadcast the same way are
// merged), so the common cases -- same shape, a bias row, a scalar, a [T, S] mask over
// [B, H, T, S] -- all become one flat inner loop.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "mathfun.h"
#include "pool.h"

namespace teamllm {

namespace {

// Elements per parallel chunk for cheap (memory-bound) and expensive (exp/erf) loops.
constexpr int64_t kGrainCheap = 32 * 1024;
constexpr int64_t kGrainHeavy = 8 * 1024;

template <typename F>
void map_unary(const float* x, float* y, int64_t size, int64_t grain, F f) {
  parallel_range(size, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) y[i] = f(x[i]);
  });
}

}  // namespace

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t cols, double eps) {
  parallel_range(rows, std::max<int64_t>(1, kGrainCheap / std::max<int64_t>(1, cols)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * cols;
      float* yr = y + r * cols;
      double ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int64_t c = 0; c < cols; c++) ss += static_cast<double>(xr[c]) * xr[c];
      const double inv = 1.0 / std::sqrt(ss / static_cast<double>(cols) + eps);
      for (int64_t c = 0; c < cols; c++) yr[c] = static_cast<float>(xr[c] * inv * w[c]);
    }
  });
}

void rms_norm_train(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t cols, double eps) {
  parallel_range(rows, std::max<int64_t>(1, kGrainCheap / std::max<int64_t>(1, cols)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * cols;
      float* yr = y + r * cols;
      double ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int64_t c = 0; c < cols; c++) ss += static_cast<double>(xr[c]) * xr[c];
      const double inv = 1.0 / std::sqrt(ss / static_cast<double>(cols) + eps);
      rstd[r] = static_cast<float>(inv);
      for (int64_t c = 0; c < cols; c++) yr[c] = static_cast<float>(xr[c] * inv * w[c]);
    }
  });
}

void rms_norm_grad(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                   int64_t rows, int64_t cols) {
  // dw is a sum over rows: a fixed number of row chunks (not one per thread, so the sums do not
  // depend on the thread count), each with its own partial sums, added in chunk order.
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(8, rows * cols / kGrainCheap));
  const int64_t step = (rows + chunks - 1) / chunks;
  std::vector<float> partial(static_cast<size_t>(chunks * cols), 0.f);
  pool().parallel_for(chunks, [&](int64_t t) {
    float* pw = partial.data() + t * cols;
    for (int64_t r = t * step; r < std::min(rows, (t + 1) * step); r++) {
      const float* xr = x + r * cols;
      const float* gr = dy + r * cols;
      float* out = dx + r * cols;
      const float rs = rstd[r];
      // y = x·r·w with r = (mean(x²) + eps)^-1/2: with g = dy·w, dx = r·g − x·r³·mean(g·x).
      float sgx = 0.f;
#pragma omp simd reduction(+ : sgx)
      for (int64_t j = 0; j < cols; j++) {
        sgx += gr[j] * w[j] * xr[j];
        pw[j] += gr[j] * xr[j] * rs;
      }
      const float k = rs * rs * rs * sgx / static_cast<float>(cols);
      for (int64_t j = 0; j < cols; j++) out[j] = rs * gr[j] * w[j] - xr[j] * k;
    }
  });
  for (int64_t j = 0; j < cols; j++) {
    float sum = 0.f;
    for (int64_t t = 0; t < chunks; t++) sum += partial[t * cols + j];
    dw[j] = sum;
  }
}

void silu_mul_grad(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t size) {
  parallel_range(size, kGrainHeavy, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      // silu(g) = g·σ(g), silu'(g) = σ(g)·(1 + g·(1 − σ(g))).
      const float g = gate[i], s = sigmoid_fast(g);
      dup[i] = dy[i] * g * s;
      dgate[i] = dy[i] * up[i] * s * (1.f + g * (1.f - s));
    }
  });
}

void rope(const float* x, const float* cos, const float* sin, float* y, int64_t b, int64_t t, int64_t heads,
          int64_t d, bool inverse) {
  const int64_t half = d / 2;
  parallel_range(b * t * heads, std::max<int64_t>(1, kGrainCheap / std::max<int64_t>(1, d)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const int64_t pos = (r / heads) % t;
      const float* c = cos + pos * d;
      const float* s = sin + pos * d;
      const float* x1 = x + r * d;
      const float* x2 = x1 + half;
      float* y1 = y + r * d;
      float* y2 = y1 + half;
      if (!inverse) {
        // y = x·cos + rotate_half(x)·sin, rotate_half(x) = [−x₂, x₁].
        for (int64_t i = 0; i < half; i++) {
          const float a = x1[i], bb = x2[i];
          y1[i] = a * c[i] - bb * s[i];
          y2[i] = bb * c[half + i] + a * s[half + i];
        }
      } else {
        // The gradient: dy·cos + rotate_halfᵀ(dy·sin), rotate_halfᵀ(g) = [g₂, −g₁].
        for (int64_t i = 0; i < half; i++) {
          const float a = x1[i], bb = x2[i];
          y1[i] = a * c[i] + bb * s[half + i];
          y2[i] = bb * c[half + i] - a * s[i];
        }
      }
    }
  });
}

void silu_mul(const float* gate, const float* up, float* y, int64_t size) {
  parallel_range(size, kGrainHeavy, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) y[i] = gate[i] * sigmoid_fast(gate[i]) * up[i];
  });
}

void unary(int op, const float* x, float* y, int64_t size) {
  switch (op) {
    case kExp:
      return map_unary(x, y, size, kGrainHeavy, [](float v) { return exp_fast(v); });
    case kLog:
      return map_unary(x, y, size, kGrainHeavy, [](float v) { return std::log(v); });
    case kNeg:
      return map_unary(x, y, size, kGrainCheap, [](float v) { return -v; });
    case kSqrt:
      return map_unary(x, y, size, kGrainCheap, [](float v) { return std::sqrt(v); });
    case kRsqrt:
      return map_unary(x, y, size, kGrainCheap, [](float v) { return 1.0f / std::sqrt(v); });
    case kSquare:
      return map_unary(x, y, size, kGrainCheap, [](float v) { return v * v; });
    case kErf:
      return map_unary(x, y, size, kGrainHeavy, [](float v) { return erf_fast(v); });
    case kTanh:
      return map_unary(x, y, size, kGrainHeavy, [](float v) { return std::tanh(v); });
    case kSigmoidOp:
      return map_unary(x, y, size, kGrainHeavy, [](float v) { return sigmoid_fast(v); });
    case kReluOp:
      return map_unary(x, y, size, kGrainCheap, [](float v) { return v > 0.f ? v : (v != v ? v : 0.f); });
    case kAbs:
      return map_unary(x, y, size, kGrainCheap, [](float v) { return std::fabs(v); });
    case kReciprocal:
      return map_unary(x, y, size, kGrainCheap, [](float v) { return 1.0f / v; });
    case kGeluOp:
      return map_unary(x, y, size, kGrainHeavy, [](float v) { return gelu_fast(v); });
    default:
      return;
  }
}

namespace {

template <int Op>
inline float apply_binary(float a, float b) {
  if constexpr (Op == kAdd) return a + b;
  if constexpr (Op == kSub) return a - b;
  if constexpr (Op == kMul) return a * b;
  if constexpr (Op == kDiv) return a / b;
  if constexpr (Op == kMaximum) return (a != a || b != b) ? NAN : (a > b ? a : b);
  if constexpr (Op == kMinimum) return (a != a || b != b) ? NAN : (a < b ? a : b);
  if constexpr (Op == kSquaredDifference) return (a - b) * (a - b);
  if constexpr (Op == kPow) return std::pow(a, b);
  return 0.f;
}

// y[0..n) = a[i·sa] op b[i·sb] with sa, sb in {0, 1}: three loops so each one vectorizes.
template <int Op>
inline void binary_row(const float* a, int64_t sa, const float* b, int64_t sb, float* y,
                       int64_t n) {
  if (sa && sb) {
    for (int64_t i = 0; i < n; i++) y[i] = apply_binary<Op>(a[i], b[i]);
  } else if (sa) {
    const float bv = b[0];
    for (int64_t i = 0; i < n; i++) y[i] = apply_binary<Op>(a[i], bv);
  } else if (sb) {
    const float av = a[0];
    for (int64_t i = 0; i < n; i++) y[i] = apply_binary<Op>(av, b[i]);
  } else {
    const float v = apply_binary<Op>(a[0], b[0]);
    for (int64_t i = 0; i < n; i++) y[i] = v;
  }
}

struct Collapsed {
  int rank = 0;
  int64_t y[8], a[8], b[8];  // dims (a, b: 1 where broadcast)
};

// Merges adjacent axes whose broadcast pattern (a broadcast? b broadcast?) is the same, and drops
// axes of size 1.
Collapsed collapse(const int64_t* as, const int64_t* bs, const int64_t* ys, int rank) {
  Collapsed c;
  int last_pattern = -1;
  for (int i = 0; i < rank; i++) {
    if (ys[i] == 1) continue;
    const int pattern = (as[i] == 1 ? 1 : 0) | (bs[i] == 1 ? 2 : 0);
    if (pattern == last_pattern) {
      c.y[c.rank - 1] *= ys[i];
      c.a[c.rank - 1] *= as[i];
      c.b[c.rank - 1] *= bs[i];
    } else {
      c.y[c.rank] = ys[i];
      c.a[c.rank] = as[i];
      c.b[c.rank] = bs[i];
      c.rank++;
      last_pattern = pattern;
    }
  }
  if (c.rank == 0) {
    c.rank = 1;
    c.y[0] = c.a[0] = c.b[0] = 1;
  }
  return c;
}

template <int Op>
void binary_impl(const float* a, const int64_t* as, const float* b, const int64_t* bs, float* y,
                 const int64_t* ys, int rank) {
  const Collapsed c = collapse(as, bs, ys, rank);
  const int r = c.rank;
  const int64_t inner = c.y[r - 1];
  const int64_t sa = c.a[r - 1] == 1 ? 0 : 1, sb = c.b[r - 1] == 1 ? 0 : 1;
  int64_t outer = 1;
  for (int i = 0; i < r - 1; i++) outer *= c.y[i];
  const int64_t grain = Op == kPow ? kGrainHeavy : kGrainCheap;
  if (outer == 1) {
    // One flat row: split it.
    parallel_range(inner, grain, [&](int64_t lo, int64_t hi) {
      binary_row<Op>(a + lo * sa, sa, b + lo * sb, sb, y + lo, hi - lo);
    });
    return;
  }
  // Element strides of a and b along the outer axes (0 where broadcast).
  int64_t astr[8], bstr[8];
  int64_t ac = c.a[r - 1], bc = c.b[r - 1];
  for (int i = r - 2; i >= 0; i--) {
    astr[i] = c.a[i] == 1 ? 0 : ac;
    bstr[i] = c.b[i] == 1 ? 0 : bc;
    ac *= c.a[i];
    bc *= c.b[i];
  }
  const int64_t row_grain = std::max<int64_t>(1, grain / std::max<int64_t>(inner, 1));
  parallel_range(outer, row_grain, [&](int64_t lo, int64_t hi) {
    // Decompose `lo` into an index over the outer axes, then step it like an odometer.
    int64_t idx[8];
    int64_t rem = lo, ao = 0, bo = 0;
    for (int i = r - 2; i >= 0; i--) {
      idx[i] = rem % c.y[i];
      rem /= c.y[i];
      ao += idx[i] * astr[i];
      bo += idx[i] * bstr[i];
    }
    for (int64_t o = lo; o < hi; o++) {
      binary_row<Op>(a + ao, sa, b + bo, sb, y + o * inner, inner);
      for (int i = r - 2; i >= 0; i--) {
        idx[i]++;
        ao += astr[i];
        bo += bstr[i];
        if (idx[i] < c.y[i]) break;
        ao -= astr[i] * c.y[i];
        bo -= bstr[i] * c.y[i];
        idx[i] = 0;
      }
    }
  });
}

}  // namespace

void binary(int op, const float* a, const int64_t* as, const float* b, const int64_t* bs, float* y,
            const int64_t* ys, int rank) {
  switch (op) {
    case kAdd:
      return binary_impl<kAdd>(a, as, b, bs, y, ys, rank);
    case kSub:
      return binary_impl<kSub>(a, as, b, bs, y, ys, rank);
    case kMul:
      return binary_impl<kMul>(a, as, b, bs, y, ys, rank);
    case kDiv:
      return binary_impl<kDiv>(a, as, b, bs, y, ys, rank);
    case kMaximum:
      return binary_impl<kMaximum>(a, as, b, bs, y, ys, rank);
    case kMinimum:
      return binary_impl<kMinimum>(a, as, b, bs, y, ys, rank);
    case kSquaredDifference:
      return binary_impl<kSquaredDifference>(a, as, b, bs, y, ys, rank);
    case kPow:
      return binary_impl<kPow>(a, as, b, bs, y, ys, rank);
    default:
      return;
  }
}

void transpose(const float* x, const int64_t* x_shape, const int64_t* perm, int rank, float* y) {
  // Collapse: output axes j, j+1 merge when they come from adjacent input axes perm[j], perm[j]+1.
  // Axes of size 1 are dropped first.
  int64_t shape[8];
  int64_t p[8];
  int r = 0;
  {
    int map[8];
    int kept = 0;
    for (int i = 0; i < rank; i++) map[i] = x_shape[i] == 1 ? -1 : kept++;
    for (int i = 0; i < rank; i++)
      if (x_shape[i] != 1) shape[map[i]] = x_shape[i];
    for (int j = 0; j < rank; j++)
      if (map[perm[j]] >= 0) p[r++] = map[perm[j]];
  }
  int64_t total = 1;
  for (int i = 0; i < r; i++) total *= shape[i];
  // Merge runs.
  int64_t mshape[8];  // merged input dims, in input order
  int64_t mperm[8];
  int mr = 0;
  {
    // Groups of output positions j with p[j+1] == p[j] + 1.
    int group_of_input[8];
    int groups = 0;
    int start[8], len[8];
    for (int j = 0; j < r; j++) {
      if (j > 0 && p[j] == p[j - 1] + 1) {
        len[groups - 1]++;
      } else {
        start[groups] = j;
        len[groups] = 1;
        groups++;
      }
    }
    // Each group is a run of consecutive input axes; order groups by their first input axis.
    int order[8];
    for (int g = 0; g < groups; g++) order[g] = g;
    std::sort(order, order + groups, [&](int u, int v) { return p[start[u]] < p[start[v]]; });
    for (int k = 0; k < groups; k++) {
      const int g = order[k];
      int64_t d = 1;
      for (int j = start[g]; j < start[g] + len[g]; j++) d *= shape[p[j]];
      mshape[k] = d;
      group_of_input[g] = k;
    }
    for (int g = 0; g < groups; g++) mperm[g] = group_of_input[g];
    mr = groups;
  }
  if (mr <= 1) {
    // Identity: a copy.
    parallel_range(total, kGrainCheap * 4, [&](int64_t b, int64_t e) {
      std::memcpy(y + b, x + b, (e - b) * sizeof(float));
    });
    return;
  }
  // Input strides of the merged axes, and output dims in output order.
  int64_t xstride[8];
  {
    int64_t s = 1;
    for (int i = mr - 1; i >= 0; i--) {
      xstride[i] = s;
      s *= mshape[i];
    }
  }
  int64_t ydim[8], ystr_in[8];  // for output axis j: its size and its stride in x
  for (int j = 0; j < mr; j++) {
    ydim[j] = mshape[mperm[j]];
    ystr_in[j] = xstride[mperm[j]];
  }
  const int64_t inner = ydim[mr - 1];
  const int64_t inner_stride = ystr_in[mr - 1];
  int64_t outer = total / inner;
  if (inner_stride == 1) {
    // The last axis stays last: copy contiguous rows.
    parallel_range(outer, std::max<int64_t>(1, kGrainCheap / inner), [&](int64_t lo, int64_t hi) {
      int64_t idx[8];
      int64_t rem = lo, off = 0;
      for (int j = mr - 2; j >= 0; j--) {
        idx[j] = rem % ydim[j];
        rem /= ydim[j];
        off += idx[j] * ystr_in[j];
      }
      for (int64_t o = lo; o < hi; o++) {
        std::memcpy(y + o * inner, x + off, inner * sizeof(float));
        for (int j = mr - 2; j >= 0; j--) {
          idx[j]++;
          off += ystr_in[j];
          if (idx[j] < ydim[j]) break;
          off -= ystr_in[j] * ydim[j];
          idx[j] = 0;
        }
      }
    });
    return;
  }
  // A batch of 2-D transposes in tiles: output axis mr-1 reads x with stride inner_stride; find
  // the output axis that is contiguous in x (stride 1) and tile over the pair.
  int cj = -1;
  for (int j = 0; j < mr - 1; j++)
    if (ystr_in[j] == 1) cj = j;
  if (cj == mr - 2) {
    // [.., R, C] from x [.., C, R]: tile 32x32 so that reads and writes both stay in cache.
    const int64_t rows = ydim[mr - 2];
    const int64_t batch = outer / rows;
    constexpr int64_t T = 32;
    const int64_t row_tiles = (rows + T - 1) / T;
    parallel_range(batch * row_tiles, std::max<int64_t>(1, kGrainCheap / (T * inner)),
                   [&](int64_t lo, int64_t hi) {
      for (int64_t task = lo; task < hi; task++) {
        const int64_t bi = task / row_tiles, rt = task % row_tiles;
        // x offset of this batch entry.
        int64_t rem = bi, off = 0;
        for (int j = mr - 3; j >= 0; j--) {
          off += (rem % ydim[j]) * ystr_in[j];
          rem /= ydim[j];
        }
        const float* xb = x + off;
        float* yb = y + bi * rows * inner;
        const int64_t r0 = rt * T, r1 = std::min(rows, r0 + T);
        for (int64_t c0 = 0; c0 < inner; c0 += T) {
          const int64_t c1 = std::min(inner, c0 + T);
          for (int64_t rr = r0; rr < r1; rr++)
            for (int64_t cc = c0; cc < c1; cc++) yb[rr * inner + cc] = xb[cc * inner_stride + rr];
        }
      }
    });
    return;
  }
  // General case: strided gather along the output's last axis.
  parallel_range(outer, std::max<int64_t>(1, kGrainCheap / inner), [&](int64_t lo, int64_t hi) {
    int64_t idx[8];
    int64_t rem = lo, off = 0;
    for (int j = mr - 2; j >= 0; j--) {
      idx[j] = rem % ydim[j];
      rem /= ydim[j];
      off += idx[j] * ystr_in[j];
    }
    for (int64_t o = lo; o < hi; o++) {
      float* yr = y + o * inner;
      const float* xr = x + off;
      for (int64_t i = 0; i < inner; i++) yr[i] = xr[i * inner_stride];
      for (int j = mr - 2; j >= 0; j--) {
        idx[j]++;
        off += ystr_in[j];
        if (idx[j] < ydim[j]) break;
        off -= ystr_in[j] * ydim[j];
        idx[j] = 0;
      }
    }
  });
}

namespace {

template <int Op>
inline float reduce_init() {
  if constexpr (Op == kMax) return -INFINITY;
  if constexpr (Op == kMin) return INFINITY;
  if constexpr (Op == kProd) return 1.f;
  return 0.f;
}

template <int Op>
inline float reduce_step(float acc, float v) {
  if constexpr (Op == kMax) return (v > acc || v != v) ? v : acc;
  if constexpr (Op == kMin) return (v < acc || v != v) ? v : acc;
  if constexpr (Op == kProd) return acc * v;
  return acc + v;
}

template <int Op>
void reduce_impl(const float* x, float* y, int64_t outer, int64_t mid, int64_t inner) {
  const float scale = Op == kMean ? 1.0f / static_cast<float>(mid) : 1.0f;
  if (inner == 1) {
    // Rows: reduce each contiguous row. `omp simd` lets GCC vectorize the sum and max (several
    // partial accumulators: not IEEE left-to-right order, and a little more accurate).
    parallel_range(outer, std::max<int64_t>(1, kGrainCheap / std::max<int64_t>(mid, 1)),
                   [&](int64_t lo, int64_t hi) {
      for (int64_t o = lo; o < hi; o++) {
        const float* row = x + o * mid;
        if constexpr (Op == kSum || Op == kMean) {
          float s = 0.f;
#pragma omp simd reduction(+ : s)
          for (int64_t i = 0; i < mid; i++) s += row[i];
          y[o] = s * scale;
        } else if constexpr (Op == kMax) {
          float acc = -INFINITY;
          bool nan = false;
#pragma omp simd reduction(max : acc) reduction(|| : nan)
          for (int64_t i = 0; i < mid; i++) {
            acc = acc > row[i] ? acc : row[i];
            nan = nan || row[i] != row[i];
          }
          y[o] = nan ? NAN : acc;
        } else {
          float acc = reduce_init<Op>();
          for (int64_t i = 0; i < mid; i++) acc = reduce_step<Op>(acc, row[i]);
          y[o] = acc;
        }
      }
    });
    return;
  }
  // Columns: y[o, j] = reduce_i x[o, i, j]. Parallel over (outer, column blocks).
  const int64_t col_block = std::max<int64_t>(64, std::min<int64_t>(inner, 1024));
  const int64_t blocks = (inner + col_block - 1) / col_block;
  parallel_range(outer * blocks, std::max<int64_t>(1, kGrainCheap / std::max<int64_t>(mid * col_block, 1)),
                 [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; task++) {
      const int64_t o = task / blocks, blk = task % blocks;
      const int64_t j0 = blk * col_block, j1 = std::min(inner, j0 + col_block);
      float* yr = y + o * inner;
      for (int64_t j = j0; j < j1; j++) yr[j] = reduce_init<Op>();
      const float* xo = x + o * mid * inner;
      for (int64_t i = 0; i < mid; i++) {
        const float* xr = xo + i * inner;
        for (int64_t j = j0; j < j1; j++) yr[j] = reduce_step<Op>(yr[j], xr[j]);
      }
      if constexpr (Op == kMean)
        for (int64_t j = j0; j < j1; j++) yr[j] *= scale;
    }
  });
}

}  // namespace

void reduce(int op, const float* x, float* y, int64_t outer, int64_t mid, int64_t inner) {
  switch (op) {
    case kSum:
      return reduce_impl<kSum>(x, y, outer, mid, inner);
    case kMax:
      return reduce_impl<kMax>(x, y, outer, mid, inner);
    case kMin:
      return reduce_impl<kMin>(x, y, outer, mid, inner);
    case kMean:
      return reduce_impl<kMean>(x, y, outer, mid, inner);
    case kProd:
      return reduce_impl<kProd>(x, y, outer, mid, inner);
    default:
      return;
  }
}

void copy_block(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                int64_t cols) {
  if (src_stride == cols && dst_stride == cols) {
    const int64_t n = rows * cols;
    parallel_range(n, kGrainCheap * 4, [&](int64_t b, int64_t e) {
      std::memcpy(dst + b, src + b, (e - b) * sizeof(float));
    });
    return;
  }
  parallel_range(rows, std::max<int64_t>(1, kGrainCheap * 4 / std::max<int64_t>(cols, 1)),
                 [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; r++)
      std::memcpy(dst + r * dst_stride, src + r * src_stride, cols * sizeof(float));
  });
}

void slice(const float* x, const int64_t* x_shape, const int64_t* begin, const int64_t* size,
           int rank, float* y) {
  // Trailing axes taken whole merge into one contiguous run per outer index.
  int64_t inner = 1;
  int split = rank;  // axes [split, rank) are copied whole
  while (split > 0 && begin[split - 1] == 0 && size[split - 1] == x_shape[split - 1]) {
    split--;
    inner *= x_shape[split];
  }
  // The last partially taken axis is part of the run too.
  int64_t run = inner;
  int64_t run_offset = 0;
  int outer_rank = split;
  if (split > 0) {
    run = size[split - 1] * inner;
    run_offset = begin[split - 1] * inner;
    outer_rank = split - 1;
  }
  // Strides of x (in elements) for the outer axes.
  int64_t stride[8];
  int64_t acc = 1;
  for (int i = rank - 1; i >= 0; i--) {
    stride[i] = acc;
    acc *= x_shape[i];
  }
  int64_t outer = 1;
  for (int i = 0; i < outer_rank; i++) outer *= size[i];
  if (run == 0 || outer == 0) return;
  parallel_range(outer, std::max<int64_t>(1, kGrainCheap * 4 / run), [&](int64_t lo, int64_t hi) {
    int64_t idx[8];
    int64_t rem = lo, off = run_offset;
    for (int i = outer_rank - 1; i >= 0; i--) {
      idx[i] = rem % size[i];
      rem /= size[i];
      off += (begin[i] + idx[i]) * stride[i];
    }
    for (int64_t o = lo; o < hi; o++) {
      std::memcpy(y + o * run, x + off, run * sizeof(float));
      for (int i = outer_rank - 1; i >= 0; i--) {
        idx[i]++;
        off += stride[i];
        if (idx[i] < size[i]) break;
        off -= stride[i] * size[i];
        idx[i] = 0;
      }
    }
  });
}

void pad(const float* x, const int64_t* x_shape, const int64_t* before, const int64_t* y_shape,
         int rank, float value, float* y) {
  int64_t total = 1, xtotal = 1;
  for (int i = 0; i < rank; i++) {
    total *= y_shape[i];
    xtotal *= x_shape[i];
  }
  parallel_range(total, kGrainCheap * 4, [&](int64_t b, int64_t e) { std::fill(y + b, y + e, value); });
  if (xtotal == 0) return;
  // Copy each row of x's last axis to its place in y.
  const int64_t inner = rank > 0 ? x_shape[rank - 1] : 1;
  int64_t ystride[8];
  int64_t acc = 1;
  for (int i = rank - 1; i >= 0; i--) {
    ystride[i] = acc;
    acc *= y_shape[i];
  }
  const int64_t outer = xtotal / inner;
  const int outer_rank = rank > 0 ? rank - 1 : 0;
  parallel_range(outer, std::max<int64_t>(1, kGrainCheap * 4 / inner), [&](int64_t lo, int64_t hi) {
    int64_t idx[8];
    int64_t rem = lo, off = rank > 0 ? before[rank - 1] : 0;
    for (int i = outer_rank - 1; i >= 0; i--) {
      idx[i] = rem % x_shape[i];
      rem /= x_shape[i];
      off += (before[i] + idx[i]) * ystride[i];
    }
    for (int64_t o = lo; o < hi; o++) {
      std::memcpy(y + off, x + o * inner, inner * sizeof(float));
      for (int i = outer_rank - 1; i >= 0; i--) {
        idx[i]++;
        off += ystride[i];
        if (idx[i] < x_shape[i]) break;
        off -= ystride[i] * x_shape[i];
        idx[i] = 0;
      }
    }
  });
}

void add_n(const float* const* xs, int count, float* y, int64_t size) {
  parallel_range(size, kGrainCheap, [&](int64_t b, int64_t e) {
    if (count == 0) {
      std::fill(y + b, y + e, 0.f);
      return;
    }
    std::memcpy(y + b, xs[0] + b, (e - b) * sizeof(float));
    for (int k = 1; k < count; k++) {
      const float* x = xs[k];
      for (int64_t i = b; i < e; i++) y[i] += x[i];
    }
  });
}

}  // namespace teamllm
