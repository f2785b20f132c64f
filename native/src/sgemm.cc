// float32 GEMM and GEMV of our own, for builds without OpenBLAS (-DTEAMLLM_NO_OPENBLAS, chosen
// by scripts/build-native.mjs when cblas.h or libopenblas is missing, or forced with
// TEAMLLM_NATIVE_BLAS=off). Always compiled, so that tests can compare it with OpenBLAS where
// both are present (addon function `sgemm`).
//
// Single-threaded, like OpenBLAS in this addon: the callers (gemm.cc, fused.cc) cut the work into
// pieces on our pool and call the product from each. Layout as in BLIS / OpenBLAS:
//   for each block of KC along k, and of NC columns of C:
//     pack op(B)[KC, NC] into panels of NR columns (k-major, zero-padded)      -> stays in L2
//     for each MR rows of C: pack op(A)[MR, KC] (k-major, zero-padded)          -> stays in L1
//       for each NR panel: MR x NR register tile, KC rank-1 updates (FMAs)
// The register tile is MR = 6 rows by NR = 2 vectors: 12 accumulators, which fits the 16 vector
// registers of AVX2/SSE and leaves room with AVX-512's 32. The vector is the build's widest
// (GCC vector extension: 16 floats with AVX-512, 8 with AVX, 4 otherwise), so -march decides.
// Packing handles all four transpose cases, so the kernel itself only ever sees one layout.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels.h"

namespace teamllm {

namespace {

#if defined(__AVX512F__)
constexpr int kVW = 16;
#elif defined(__AVX__)
constexpr int kVW = 8;
#else
constexpr int kVW = 4;
#endif
typedef float vfw __attribute__((vector_size(kVW * sizeof(float)), aligned(4)));

constexpr int64_t kMR = 6;
constexpr int64_t kNR = 2 * kVW;
constexpr int64_t kKC = 256;
constexpr int64_t kNC = 512;

inline vfw loadw(const float* p) { return *reinterpret_cast<const vfw*>(p); }
inline void storew(float* p, vfw v) { *reinterpret_cast<vfw*>(p) = v; }

// Packs op(B)[p0.., j0..] (kc x nc) into panels of kNR columns: panel q holds, for each k, kNR
// consecutive floats (columns j0 + q·kNR ...), zero beyond nc.
void pack_b(const float* b, int64_t ldb, bool tb, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
            float* out) {
  for (int64_t q = 0; q < nc; q += kNR) {
    const int64_t w = std::min(kNR, nc - q);
    float* dst = out + q * kc;
    if (!tb) {
      // op(B)(p, j) = b[p·ldb + j]: rows are contiguous.
      for (int64_t p = 0; p < kc; p++) {
        const float* src = b + (p0 + p) * ldb + j0 + q;
        float* d = dst + p * kNR;
        if (w == kNR) {
          std::memcpy(d, src, kNR * sizeof(float));
        } else {
          std::memcpy(d, src, w * sizeof(float));
          std::fill(d + w, d + kNR, 0.f);
        }
      }
    } else {
      // op(B)(p, j) = b[j·ldb + p]: each column of op(B) is a contiguous row of b.
      if (w < kNR) {
        for (int64_t p = 0; p < kc; p++) std::fill(dst + p * kNR + w, dst + (p + 1) * kNR, 0.f);
      }
      for (int64_t c = 0; c < w; c++) {
        const float* src = b + (j0 + q + c) * ldb + p0;
        for (int64_t p = 0; p < kc; p++) dst[p * kNR + c] = src[p];
      }
    }
  }
}

// Packs op(A)[i0..i0+mr, p0..p0+kc] k-major: out[p·kMR + r], zero rows beyond mr.
void pack_a(const float* a, int64_t lda, bool ta, int64_t i0, int64_t mr, int64_t p0, int64_t kc,
            float* out) {
  if (!ta) {
    // op(A)(i, p) = a[i·lda + p]
    for (int64_t r = 0; r < mr; r++) {
      const float* src = a + (i0 + r) * lda + p0;
      for (int64_t p = 0; p < kc; p++) out[p * kMR + r] = src[p];
    }
  } else {
    // op(A)(i, p) = a[p·lda + i]: kMR consecutive floats per k.
    for (int64_t p = 0; p < kc; p++) {
      const float* src = a + (p0 + p) * lda + i0;
      for (int64_t r = 0; r < mr; r++) out[p * kMR + r] = src[r];
    }
  }
  if (mr < kMR) {
    for (int64_t p = 0; p < kc; p++)
      for (int64_t r = mr; r < kMR; r++) out[p * kMR + r] = 0.f;
  }
}

// acc[kMR][2] = Σ_p pa[p] ⊗ pb[p]; then C tile = alpha·acc + (first ? beta·C : C).
// Writes straight to C for a full tile, through a local tile for an edge one.
inline void micro_kernel(int64_t kc, const float* pa, const float* pb, float* c, int64_t ldc,
                         int64_t mr, int64_t nr, float alpha, float beta, bool first) {
  vfw acc[kMR][2];
#pragma GCC unroll 6
  for (int r = 0; r < kMR; r++) acc[r][0] = acc[r][1] = vfw{};
  for (int64_t p = 0; p < kc; p++) {
    const vfw b0 = loadw(pb + p * kNR), b1 = loadw(pb + p * kNR + kVW);
    const float* ap = pa + p * kMR;
#pragma GCC unroll 6
    for (int r = 0; r < kMR; r++) {
      const float av = ap[r];
      acc[r][0] += av * b0;
      acc[r][1] += av * b1;
    }
  }
  // beta is applied once, with the first block along k; later blocks add to C.
  const float cb = first ? beta : 1.f;
  if (mr == kMR && nr == kNR) {
#pragma GCC unroll 6
    for (int r = 0; r < kMR; r++) {
      float* cr = c + r * ldc;
      if (cb == 0.f) {
        storew(cr, alpha * acc[r][0]);
        storew(cr + kVW, alpha * acc[r][1]);
      } else {
        storew(cr, alpha * acc[r][0] + cb * loadw(cr));
        storew(cr + kVW, alpha * acc[r][1] + cb * loadw(cr + kVW));
      }
    }
    return;
  }
  float tile[kMR * kNR];
  for (int r = 0; r < kMR; r++) {
    storew(tile + r * kNR, acc[r][0]);
    storew(tile + r * kNR + kVW, acc[r][1]);
  }
  for (int64_t r = 0; r < mr; r++) {
    float* cr = c + r * ldc;
    const float* t = tile + r * kNR;
    if (cb == 0.f) {
      for (int64_t j = 0; j < nr; j++) cr[j] = alpha * t[j];
    } else {
      for (int64_t j = 0; j < nr; j++) cr[j] = alpha * t[j] + cb * cr[j];
    }
  }
}

}  // namespace

void own_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0 || alpha == 0.f) {
    // C = beta·C (beta 0: zeros, whatever C held, as BLAS does).
    for (int64_t i = 0; i < m; i++) {
      float* cr = c + i * ldc;
      if (beta == 0.f) {
        std::fill(cr, cr + n, 0.f);
      } else if (beta != 1.f) {
        for (int64_t j = 0; j < n; j++) cr[j] *= beta;
      }
    }
    return;
  }
  static thread_local std::vector<float> bpack, apack;
  const int64_t kc_max = std::min(k, kKC);
  const int64_t nc_max = (std::min(n, kNC) + kNR - 1) / kNR * kNR;
  if (static_cast<int64_t>(bpack.size()) < kc_max * nc_max) bpack.resize(kc_max * nc_max);
  if (static_cast<int64_t>(apack.size()) < kc_max * kMR) apack.resize(kc_max * kMR);
  float* bp = bpack.data();
  float* ap = apack.data();
  for (int64_t p0 = 0; p0 < k; p0 += kKC) {
    const int64_t kc = std::min(kKC, k - p0);
    const bool first = p0 == 0;
    for (int64_t j0 = 0; j0 < n; j0 += kNC) {
      const int64_t nc = std::min(kNC, n - j0);
      pack_b(b, ldb, tb, p0, kc, j0, nc, bp);
      for (int64_t i0 = 0; i0 < m; i0 += kMR) {
        const int64_t mr = std::min(kMR, m - i0);
        pack_a(a, lda, ta, i0, mr, p0, kc, ap);
        for (int64_t q = 0; q < nc; q += kNR) {
          micro_kernel(kc, ap, bp + q * kc, c + i0 * ldc + j0 + q, ldc, mr, std::min(kNR, nc - q),
                       alpha, beta, first);
        }
      }
    }
  }
}

void own_sgemv(int64_t m, int64_t n, float alpha, const float* a, int64_t lda, const float* x,
               int64_t incx, float beta, float* y) {
  if (m <= 0) return;
  // A strided x is gathered once so that the rows below read it contiguously.
  static thread_local std::vector<float> xbuf;
  if (incx != 1) {
    if (static_cast<int64_t>(xbuf.size()) < n) xbuf.resize(n);
    for (int64_t i = 0; i < n; i++) xbuf[i] = x[i * incx];
    x = xbuf.data();
  }
  auto finish = [&](int64_t i, float s) { y[i] = beta == 0.f ? alpha * s : alpha * s + beta * y[i]; };
  auto hsum = [](vfw v) {
    float s = 0.f;
    for (int l = 0; l < kVW; l++) s += v[l];
    return s;
  };
  // Four rows at a time share each load of x; two accumulators per row.
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    const float* r0 = a + i * lda;
    const float* r1 = r0 + lda;
    const float* r2 = r1 + lda;
    const float* r3 = r2 + lda;
    vfw s0 = {}, s1 = {}, s2 = {}, s3 = {};
    int64_t j = 0;
    for (; j + kVW <= n; j += kVW) {
      const vfw xv = loadw(x + j);
      s0 += loadw(r0 + j) * xv;
      s1 += loadw(r1 + j) * xv;
      s2 += loadw(r2 + j) * xv;
      s3 += loadw(r3 + j) * xv;
    }
    float t0 = hsum(s0), t1 = hsum(s1), t2 = hsum(s2), t3 = hsum(s3);
    for (; j < n; j++) {
      t0 += r0[j] * x[j];
      t1 += r1[j] * x[j];
      t2 += r2[j] * x[j];
      t3 += r3[j] * x[j];
    }
    finish(i, t0);
    finish(i + 1, t1);
    finish(i + 2, t2);
    finish(i + 3, t3);
  }
  for (; i < m; i++) {
    const float* r = a + i * lda;
    vfw s = {};
    int64_t j = 0;
    for (; j + kVW <= n; j += kVW) s += loadw(r + j) * loadw(x + j);
    float t = hsum(s);
    for (; j < n; j++) t += r[j] * x[j];
    finish(i, t);
  }
}

}  // namespace teamllm
