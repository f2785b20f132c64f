// Matrix products on OpenBLAS (or, in a build without it, on sgemm.cc's), split over our own
// thread pool.
//
// OpenBLAS runs single-threaded here (blas_init): the transformer's products are small (768 rows
// by 128..512 columns), and OpenBLAS's own threads would busy-wait against our pool's on a 2-core
// machine. Instead we cut each product into row (or column) blocks, or a batch of small products
// into groups of matrices, and call single-threaded sgemm on each piece from the pool. Transposed
// operands are passed to sgemm as transposed (no copies): that is what keeps autodiff's gradients,
// which set transposeA/transposeB, on the fast path.
#ifndef TEAMLLM_NO_OPENBLAS
#include <cblas.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "kernels.h"
#include "mathfun.h"
#include "pool.h"
#include "simd.h"

// Declared weak so that the addon still links against a BLAS that is not OpenBLAS.
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
extern "C" char* openblas_get_config(void) __attribute__((weak));

namespace teamllm {

void blas_init() {
  if (openblas_set_num_threads) openblas_set_num_threads(1);
}

#ifdef TEAMLLM_NO_OPENBLAS
const char* blas_config() { return "teamllm sgemm (no OpenBLAS)"; }
bool have_openblas() { return false; }
#else
const char* blas_config() { return openblas_get_config ? openblas_get_config() : "unknown BLAS"; }
bool have_openblas() { return true; }
#endif

void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
           bool use_blas) {
#ifndef TEAMLLM_NO_OPENBLAS
  if (use_blas) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
#endif
  (void)use_blas;
  own_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void sgemv(int64_t m, int64_t n, float alpha, const float* a, int64_t lda, const float* x,
           int64_t incx, float beta, float* y, bool use_blas) {
#ifndef TEAMLLM_NO_OPENBLAS
  if (use_blas) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, m, n, alpha, a, lda, x, incx, beta, y, 1);
    return;
  }
#endif
  (void)use_blas;
  own_sgemv(m, n, alpha, a, lda, x, incx, beta, y);
}

namespace {

// Below this many flops a product runs on one thread: waking a worker costs more than it saves.
constexpr double kParallelFlops = 2.0e5;

inline float activate(float x, int act, float alpha) {
  switch (act) {
    case kRelu:
      return x > 0.f ? x : 0.f;
    case kRelu6:
      return std::min(std::max(x, 0.f), 6.f);
    case kSigmoid:
      return 1.f / (1.f + std::exp(-x));
    case kLeakyRelu:
      return x > 0.f ? x : alpha * x;
    case kElu:
      return x > 0.f ? x : std::expm1(x);
    default:
      return x;
  }
}

// Adds the bias and applies the activation to rows [r0, r1) and columns [c0, c1) of c [.., n].
void epilogue(float* c, int64_t n, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
              const float* bias, int64_t bias_size, int act, float alpha) {
  if (!bias && act == kLinear) return;
  for (int64_t r = r0; r < r1; r++) {
    float* row = c + r * n;
    if (bias) {
      if (bias_size == 1) {
        const float b0 = bias[0];
        for (int64_t j = c0; j < c1; j++) row[j] += b0;
      } else {
        for (int64_t j = c0; j < c1; j++) row[j] += bias[j];
      }
    }
    if (act == kRelu) {
      for (int64_t j = c0; j < c1; j++) row[j] = row[j] > 0.f ? row[j] : 0.f;
    } else if (act != kLinear) {
      for (int64_t j = c0; j < c1; j++) row[j] = activate(row[j], act, alpha);
    }
  }
}

// y[0..cols) = Σ_k a[k·inc_a] · b[k·ldb + 0..cols): a row vector times a row-major matrix, the
// product generation runs for every weight matrix at every token. Columns go in blocks of 128
// (eight 16-float accumulators, so the FMAs do not wait on each other), the matrix streams once.
// Measured ~2x faster than OpenBLAS's sgemv for these shapes (384 x 1536).
void gemv_rows(const float* a, int64_t inc_a, const float* b, int64_t ldb, int64_t k, int64_t cols,
               float* y) {
  int64_t c = 0;
  for (; c + 8 * kLanes <= cols; c += 8 * kLanes) {
    vf16 acc[8] = {};
    for (int64_t kk = 0; kk < k; kk++) {
      const float av = a[kk * inc_a];
      const float* br = b + kk * ldb + c;
      for (int u = 0; u < 8; u++) acc[u] += av * load16(br + u * kLanes);
    }
    for (int u = 0; u < 8; u++) store16(y + c + u * kLanes, acc[u]);
  }
  for (; c + kLanes <= cols; c += kLanes) {
    vf16 acc = {};
    for (int64_t kk = 0; kk < k; kk++) acc += a[kk * inc_a] * load16(b + kk * ldb + c);
    store16(y + c, acc);
  }
  for (; c < cols; c++) {
    float s = 0.f;
    for (int64_t kk = 0; kk < k; kk++) s += a[kk * inc_a] * b[kk * ldb + c];
    y[c] = s;
  }
}

// One product, rows [m0, m1) and columns [n0, n1) of c, on the calling thread.
void gemm_block(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t k,
                bool ta, bool tb, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t rows = m1 - m0, cols = n1 - n0;
  if (rows <= 0 || cols <= 0) return;
  if (k == 0) {
    for (int64_t r = m0; r < m1; r++) std::fill(c + r * n + n0, c + r * n + n1, 0.f);
    return;
  }
  // Row block of op(a): stored [m, k] -> start at row m0; stored [k, m] -> start at column m0.
  const float* a_blk = ta ? a + m0 : a + m0 * k;
  const int64_t lda = ta ? m : k;
  // Column block of op(b): stored [k, n] -> column n0; stored [n, k] -> row n0.
  const float* b_blk = tb ? b + n0 * k : b + n0;
  const int64_t ldb = tb ? k : n;
  float* c_blk = c + m0 * n + n0;
  if (rows == 1) {
    // A vector times a matrix (generation with a KV cache): gemv streams the matrix once.
    // y[cols] = op(b)ᵀ-block · a-row; the a row has stride lda when stored transposed.
    const int64_t inc_a = ta ? m : 1;
    if (tb) {
      // b_blk is [cols, k] row-major: y = b_blk · a
      sgemv(cols, k, 1.f, b_blk, ldb, a_blk, inc_a, 0.f, c_blk);
    } else {
      // b_blk is [k, cols] with row stride n: y = b_blkᵀ · a
      gemv_rows(a_blk, inc_a, b_blk, ldb, k, cols, c_blk);
    }
    return;
  }
  sgemm(ta, tb, rows, cols, k, 1.f, a_blk, lda, b_blk, ldb, 0.f, c_blk, n);
}

}  // namespace

void batch_matmul(const float* a, const float* b, float* c, int64_t batch_a, int64_t batch_b,
                  int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b, const float* bias,
                  int64_t bias_size, int activation, float leaky_alpha) {
  const int64_t batch = std::max(batch_a, batch_b);
  if (batch == 0 || m == 0 || n == 0) return;
  const int64_t a_stride = m * k, b_stride = k * n, c_stride = m * n;
  const double flops = 2.0 * m * n * k;
  const int threads = pool().size();

  auto one = [&](int64_t i, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    float* ci = c + i * c_stride;
    gemm_block(a + (i % batch_a) * a_stride, b + (i % batch_b) * b_stride, ci, m, n, k, trans_a,
               trans_b, m0, m1, n0, n1);
    epilogue(ci, n, m0, m1, n0, n1, bias, bias_size, activation, leaky_alpha);
  };

  if (threads == 1 || flops * batch < kParallelFlops) {
    for (int64_t i = 0; i < batch; i++) one(i, 0, m, 0, n);
    return;
  }
  // Many small products (attention's per-head ones): give each thread whole matrices.
  if (batch >= threads && flops < 4.0e6) {
    const int64_t grain = std::max<int64_t>(1, static_cast<int64_t>(kParallelFlops / flops));
    parallel_range(batch, grain, [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; i++) one(i, 0, m, 0, n);
    });
    return;
  }
  // Large products: split each matrix into blocks along its longer side (rows when m is large;
  // columns for a single row, as in generation). Blocks stay multiples of 16 for the kernels.
  // One block per thread by default: splitting finer (so that the calling thread could take the
  // blocks of a worker that starts late on a busy machine) measured no better on the shared
  // 2-core machine, and ~5% slower when it was quiet (B is repacked per block).
  // TEAMLLM_NATIVE_GEMM_PIECES sets the blocks per thread.
  const bool split_rows = m >= n || m >= 64 * threads;
  const int64_t len = split_rows ? m : n;
  static const int64_t per_thread = [] {
    const char* env = std::getenv("TEAMLLM_NATIVE_GEMM_PIECES");
    const int64_t v = env && *env ? std::atoll(env) : 1;
    return v < 1 ? int64_t{1} : v;
  }();
  int64_t pieces = std::min<int64_t>(threads * per_thread, std::max<int64_t>(1, len / 64));
  pieces = std::max<int64_t>(pieces, std::min<int64_t>(threads, std::max<int64_t>(1, len / 16)));
  if (flops < kParallelFlops) pieces = 1;
  const int64_t step = ((len + pieces - 1) / pieces + 15) / 16 * 16;
  pieces = (len + step - 1) / step;
  pool().parallel_for(batch * pieces, [&](int64_t task) {
    const int64_t i = task / pieces, p = task % pieces;
    const int64_t lo = p * step, hi = std::min(len, lo + step);
    if (split_rows) {
      one(i, lo, hi, 0, n);
    } else {
      one(i, 0, m, lo, hi);
    }
  });
}

void linear_gelu(const float* x, const float* w, float* h, float* y, int64_t m, int64_t k,
                 int64_t n) {
  // Row blocks small enough that a block of h is still in cache when GELU reads it back.
  const int64_t rows_per_block = std::max<int64_t>(16, (64 * 1024 / std::max<int64_t>(n, 1)) / 16 * 16);
  const int64_t blocks = (m + rows_per_block - 1) / rows_per_block;
  auto block = [&](int64_t b) {
    const int64_t r0 = b * rows_per_block, r1 = std::min(m, r0 + rows_per_block);
    gemm_block(x, w, h, m, n, k, false, false, r0, r1, 0, n);
    const float* hb = h + r0 * n;
    float* yb = y + r0 * n;
    const int64_t len = (r1 - r0) * n;
    for (int64_t i = 0; i < len; i++) yb[i] = gelu_fast(hb[i]);
  };
  if (pool().size() == 1 || 2.0 * m * n * k < kParallelFlops) {
    for (int64_t b = 0; b < blocks; b++) block(b);
    return;
  }
  pool().parallel_for(blocks, block);
}

void linear_grad(const float* x, const float* w, const float* dy_in, float* dx, float* dw, int64_t m,
                 int64_t k, int64_t n, const float* gelu_pre) {
  // With a GELU after the product, the gradient reaching the product is dy · GELU'(h).
  static thread_local std::vector<float> scratch;
  const float* dy = dy_in;
  if (gelu_pre) {
    scratch.resize(static_cast<size_t>(m * n));
    float* d = scratch.data();
    parallel_range(m * n, 16 * 1024, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; i++) d[i] = dy_in[i] * gelu_deriv(gelu_pre[i]);
    });
    dy = d;
  }
  if (m == 0 || k == 0 || n == 0) {
    std::fill(dx, dx + m * k, 0.f);
    std::fill(dw, dw + k * n, 0.f);
    return;
  }
  // dx [m, k] = dy [m, n] · wᵀ (w stored [k, n]); dw [k, n] = xᵀ (x stored [m, k]) · dy.
  auto dx_rows = [&](int64_t r0, int64_t r1) { gemm_block(dy, w, dx, m, k, n, false, true, r0, r1, 0, k); };
  auto dw_rows = [&](int64_t r0, int64_t r1) { gemm_block(x, dy, dw, k, n, m, true, false, r0, r1, 0, n); };
  const int threads = pool().size();
  if (threads == 1 || 4.0 * m * n * k < kParallelFlops) {
    dx_rows(0, m);
    dw_rows(0, k);
    return;
  }
  // The two products are independent and cost the same, so each gets half the threads; with two
  // threads each runs whole on its own core instead of being cut in half (no operand packed
  // twice, one wake-up for the pair). Measured in docs/benchmarks-native.md.
  const int64_t per = std::max(1, threads / 2);
  auto blocks = [per](int64_t len) { return std::max<int64_t>(16, ((len + per - 1) / per + 15) / 16 * 16); };
  const int64_t step_x = blocks(m), step_w = blocks(k);
  const int64_t pieces_x = (m + step_x - 1) / step_x, pieces_w = (k + step_w - 1) / step_w;
  pool().parallel_for(pieces_x + pieces_w, [&](int64_t t) {
    if (t < pieces_x) {
      dx_rows(t * step_x, std::min(m, (t + 1) * step_x));
    } else {
      const int64_t p = t - pieces_x;
      dw_rows(p * step_w, std::min(k, (p + 1) * step_w));
    }
  });
}

double sgemm_peak_gflops(int64_t n, int repeats) {
  std::vector<float> a(n * n), b(n * n), c(n * n);
  for (int64_t i = 0; i < n * n; i++) {
    a[i] = static_cast<float>((i * 7) % 13) * 0.01f;
    b[i] = static_cast<float>((i * 5) % 11) * 0.01f;
  }
  batch_matmul(a.data(), b.data(), c.data(), 1, 1, n, n, n, false, false);  // warm up
  double best = 0;
  for (int r = 0; r < repeats; r++) {
    const auto t0 = std::chrono::steady_clock::now();
    batch_matmul(a.data(), b.data(), c.data(), 1, 1, n, n, n, false, false);
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * n / s / 1e9);
  }
  return best;
}

}  // namespace teamllm
