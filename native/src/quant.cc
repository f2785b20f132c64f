// Products with 16-bit and 8-bit weights: y [m, n] = x [m, k] · Wᵀ + bias, W stored [n, k]
// (PyTorch's Linear layout) as bfloat16, IEEE half or int8 with float32 scales per group of
// columns. The imported chat models (src/model/import/llama.ts) keep their weights this way, so a
// 0.5B model takes ~1 GB (bf16) or ~0.5 GB (int8) instead of 2 GB, and no float32 copy is made.
//
// Two implementations, chosen per call:
//  - portable (every CPU): each 16-column slice of W is widened to float32 in registers (bf16: a
//    shift; half: the compiler's _Float16 conversion; int8: sign-extend, convert, times its
//    group's scale) and multiplied with float32 activations, float32 sums. Plain C++ with GCC's
//    vector extension: the build's -march decides the instructions (AVX-512 on this machine).
//  - bf16 with AVX512_BF16 (vdpbf16ps), when the running CPU has it (checked at run time; the
//    code is compiled for it by a target attribute, whatever -march the build used): the
//    activations are rounded to bf16 once per call (round to nearest even), then each instruction
//    multiplies 32 pairs and adds them into 16 float32 sums. Rounding the activations is an error
//    of at most 2^-8 relative per factor (half a bf16 ulp), the same as llama.cpp's BF16 path.
// Both run a 4 x 4 tile of (rows of x) x (rows of W) per step, the rows of W split over the pool.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "pool.h"
#include "simd.h"

namespace teamllm {

namespace {

typedef uint16_t vu16 __attribute__((vector_size(32), aligned(2)));
typedef uint32_t vu32 __attribute__((vector_size(64)));
typedef int8_t vi8 __attribute__((vector_size(16), aligned(1)));
typedef int32_t vi32 __attribute__((vector_size(64)));

inline float bf16_to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// float → bf16, round to nearest even (NaN kept a NaN), as src/model/import/dtypes.ts does.
inline uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float half_to_float(uint16_t h) {
  const uint32_t s = (h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1f;
  uint32_t f = h & 0x3ffu;
  uint32_t u;
  if (e == 0) {
    if (f == 0) {
      u = s;
    } else {  // subnormal: normalise
      int shift = 0;
      while (!(f & 0x400u)) {
        f <<= 1;
        shift++;
      }
      u = s | ((113u - shift) << 23) | ((f & 0x3ffu) << 13);
    }
  } else if (e == 31) {
    u = s | 0x7f800000u | (f << 13);
  } else {
    u = s | ((e + 112u) << 23) | (f << 13);
  }
  float out;
  std::memcpy(&out, &u, 4);
  return out;
}

inline float hsum(vf16 v) {
  float s = 0.f;
  for (int l = 0; l < kLanes; l++) s += v[l];
  return s;
}

// How each weight format gives 16 float32 weights of row j from column p (p a multiple of 16 for
// `vec`), or one (`at`, for the columns past the last multiple of 16).
struct Bf16Rows {
  const uint16_t* w;
  int64_t k;
  vf16 vec(int64_t j, int64_t p) const {
    const vu16 b = *reinterpret_cast<const vu16*>(w + j * k + p);
    const vu32 u = __builtin_convertvector(b, vu32) << 16;
    return reinterpret_cast<const vf16&>(u);
  }
  float at(int64_t j, int64_t p) const { return bf16_to_float(w[j * k + p]); }
};

#if defined(__AVX__)
// Two 8-float halves as one 16-lane vector (the F16C and AVX2 widening paths).
inline vf16 join_halves(__m256 lo, __m256 hi) {
  vf16 v;
  std::memcpy(&v, &lo, 32);
  std::memcpy(reinterpret_cast<char*>(&v) + 32, &hi, 32);
  return v;
}
#endif

struct HalfRows {
  const uint16_t* w;
  int64_t k;
  // vcvtph2ps where the build has it (F16C: every x86-64-v3 CPU); else bit by bit.
  vf16 vec(int64_t j, int64_t p) const {
    const uint16_t* src = w + j * k + p;
#if defined(__AVX512F__)
    const __m512 f = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
    return reinterpret_cast<const vf16&>(f);
#elif defined(__F16C__)
    const __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
    const __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 8)));
    return join_halves(lo, hi);
#else
    vf16 v;
    for (int l = 0; l < kLanes; l++) v[l] = half_to_float(src[l]);
    return v;
#endif
  }
  float at(int64_t j, int64_t p) const { return half_to_float(w[j * k + p]); }
};

// y rows i0..i0+MR, columns j0..j0+NR: float32 activations times widened weights.
template <class W, int MR, int NR>
inline void tile_portable(const W& w, const float* x, int64_t k, int64_t i0, int64_t j0, float* y,
                          int64_t n, const float* bias) {
  vf16 acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = vf16{};
  int64_t p = 0;
  for (; p + kLanes <= k; p += kLanes) {
    vf16 xv[MR];
    for (int i = 0; i < MR; i++) xv[i] = load16(x + (i0 + i) * k + p);
    for (int j = 0; j < NR; j++) {
      const vf16 wv = w.vec(j0 + j, p);
      for (int i = 0; i < MR; i++) acc[i][j] += xv[i] * wv;
    }
  }
  for (int i = 0; i < MR; i++) {
    for (int j = 0; j < NR; j++) {
      float s = hsum(acc[i][j]);
      for (int64_t q = p; q < k; q++) s += x[(i0 + i) * k + q] * w.at(j0 + j, q);
      y[(i0 + i) * n + j0 + j] = s + (bias ? bias[j0 + j] : 0.f);
    }
  }
}

// 16 int8 → 16 float32. GCC 12 turns __builtin_convertvector from 8-bit lanes into scalar code,
// hence the intrinsics where the build has them.
inline vf16 int8_to_float(const int8_t* p) {
#if defined(__AVX512F__)
  const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  return reinterpret_cast<const vf16&>(f);
#elif defined(__AVX2__)
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
  const __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)));
  return join_halves(lo, hi);
#else
  vf16 v;
  for (int l = 0; l < kLanes; l++) v[l] = static_cast<float>(p[l]);
  return v;
#endif
}

// The same tile for int8 weights, scales [n, groups]. One scale per row (groups == 1): the sums
// are scaled once at the end. Per group (a multiple of 16 columns, as GGUF's Q8_0 blocks of 32):
// each widened slice is multiplied by its group's scale before the product.
template <int MR, int NR>
inline void tile_int8(const int8_t* w, const float* scales, int64_t groups, const float* x,
                      int64_t k, int64_t i0, int64_t j0, float* y, int64_t n, const float* bias) {
  vf16 acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = vf16{};
  auto widen = [&](int64_t j, int64_t p) { return int8_to_float(w + j * k + p); };
  int64_t p = 0;
  if (groups == 1) {
    for (; p + kLanes <= k; p += kLanes) {
      vf16 xv[MR];
      for (int i = 0; i < MR; i++) xv[i] = load16(x + (i0 + i) * k + p);
      for (int j = 0; j < NR; j++) {
        const vf16 wv = widen(j0 + j, p);
        for (int i = 0; i < MR; i++) acc[i][j] += xv[i] * wv;
      }
    }
  } else {
    const int64_t group = k / groups;
    for (int64_t g = 0; g < groups; g++) {
      float s[NR];
      for (int j = 0; j < NR; j++) s[j] = scales[(j0 + j) * groups + g];
      for (p = g * group; p < (g + 1) * group; p += kLanes) {
        vf16 xv[MR];
        for (int i = 0; i < MR; i++) xv[i] = load16(x + (i0 + i) * k + p);
        for (int j = 0; j < NR; j++) {
          const vf16 wv = widen(j0 + j, p) * s[j];
          for (int i = 0; i < MR; i++) acc[i][j] += xv[i] * wv;
        }
      }
    }
  }
  for (int i = 0; i < MR; i++) {
    for (int j = 0; j < NR; j++) {
      float s = hsum(acc[i][j]);
      for (int64_t q = p; q < k; q++) s += x[(i0 + i) * k + q] * static_cast<float>(w[(j0 + j) * k + q]);
      if (groups == 1) s *= scales[j0 + j];
      y[(i0 + i) * n + j0 + j] = s + (bias ? bias[j0 + j] : 0.f);
    }
  }
}

// Rows of x per block: a block of x (kept in L2) is read once per 4 rows of W.
int64_t row_block(int64_t m, int64_t k, int64_t bytes_per_value) {
  const int64_t rows = (256 * 1024) / std::max<int64_t>(1, k * bytes_per_value);
  return std::min(m, std::max<int64_t>(4, rows / 4 * 4));
}

// Rows of W per parallel piece: enough work (2e5 flops) that waking a worker pays, a multiple of 4.
int64_t w_grain(int64_t m, int64_t k) {
  const int64_t g = static_cast<int64_t>(2.0e5 / std::max<double>(1.0, 2.0 * m * k));
  return std::max<int64_t>(4, (g + 3) / 4 * 4);
}

// Runs Tile<MR, NR>::run(i, j) over y [m, n]: rows of W split over the pool, x in row blocks.
template <template <int, int> class Tile, class Args>
void tiled(const Args& a, int64_t m, int64_t n, int64_t k, int64_t x_bytes) {
  const int64_t mb = row_block(m, k, x_bytes);
  parallel_range((n + 3) / 4, std::max<int64_t>(1, w_grain(m, k) / 4), [&](int64_t t0, int64_t t1) {
    const int64_t j_begin = t0 * 4, j_end = std::min(n, t1 * 4);
    for (int64_t r0 = 0; r0 < m; r0 += mb) {
      const int64_t r1 = std::min(m, r0 + mb);
      int64_t j = j_begin;
      for (; j + 4 <= j_end; j += 4) {
        int64_t i = r0;
        for (; i + 4 <= r1; i += 4) Tile<4, 4>::run(a, i, j);
        for (; i < r1; i++) Tile<1, 4>::run(a, i, j);
      }
      for (; j < j_end; j++) {
        int64_t i = r0;
        for (; i + 4 <= r1; i += 4) Tile<4, 1>::run(a, i, j);
        for (; i < r1; i++) Tile<1, 1>::run(a, i, j);
      }
    }
  });
}

struct Int8Args {
  const int8_t* w;
  const float* scales;
  int64_t groups;
  const float* x;
  int64_t k;
  float* y;
  int64_t n;
  const float* bias;
};
template <int MR, int NR>
struct Int8Tile {
  static void run(const Int8Args& a, int64_t i, int64_t j) {
    tile_int8<MR, NR>(a.w, a.scales, a.groups, a.x, a.k, i, j, a.y, a.n, a.bias);
  }
};

template <class W>
struct PortableArgs {
  const W& w;
  const float* x;
  int64_t k;
  float* y;
  int64_t n;
  const float* bias;
};
template <class W>
struct PortableTiles {
  template <int MR, int NR>
  struct Tile {
    static void run(const PortableArgs<W>& a, int64_t i, int64_t j) {
      tile_portable<W, MR, NR>(a.w, a.x, a.k, i, j, a.y, a.n, a.bias);
    }
  };
};

template <class W>
void linear_portable(const W& w, const float* x, const float* bias, float* y, int64_t m, int64_t n,
                     int64_t k) {
  tiled<PortableTiles<W>::template Tile>(PortableArgs<W>{w, x, k, y, n, bias}, m, n, k, 4);
}

// ---- AVX512_BF16 --------------------------------------------------------------------------

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TEAMLLM_HAVE_BF16_PATH 1
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// xb: the activations as bf16, rows padded with zeros to kp (a multiple of 32).
template <int MR, int NR>
BF16_TARGET inline void tile_bf16(const uint16_t* w, int64_t k, const uint16_t* xb, int64_t kp,
                                  int64_t i0, int64_t j0, float* y, int64_t n, const float* bias) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
  const int64_t full = k / 32 * 32;
  for (int64_t p = 0; p < full; p += 32) {
    __m512bh xv[MR];
    for (int i = 0; i < MR; i++) xv[i] = (__m512bh)_mm512_loadu_si512(xb + (i0 + i) * kp + p);
    for (int j = 0; j < NR; j++) {
      const __m512bh wv = (__m512bh)_mm512_loadu_si512(w + (j0 + j) * k + p);
      for (int i = 0; i < MR; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv[i], wv);
    }
  }
  if (full < k) {
    // The last k % 32 columns: W loaded under a mask (zeros past the row), x is zero-padded.
    const __mmask32 mask = static_cast<__mmask32>((uint64_t{1} << (k - full)) - 1);
    __m512bh xv[MR];
    for (int i = 0; i < MR; i++) xv[i] = (__m512bh)_mm512_loadu_si512(xb + (i0 + i) * kp + full);
    for (int j = 0; j < NR; j++) {
      const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(mask, w + (j0 + j) * k + full);
      for (int i = 0; i < MR; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv[i], wv);
    }
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++)
      y[(i0 + i) * n + j0 + j] = _mm512_reduce_add_ps(acc[i][j]) + (bias ? bias[j0 + j] : 0.f);
}

BF16_TARGET void bf16_rows(const uint16_t* w, int64_t k, const uint16_t* xb, int64_t kp,
                           int64_t r0, int64_t r1, int64_t j_begin, int64_t j_end, float* y,
                           int64_t n, const float* bias) {
  int64_t j = j_begin;
  for (; j + 4 <= j_end; j += 4) {
    int64_t i = r0;
    for (; i + 4 <= r1; i += 4) tile_bf16<4, 4>(w, k, xb, kp, i, j, y, n, bias);
    for (; i < r1; i++) tile_bf16<1, 4>(w, k, xb, kp, i, j, y, n, bias);
  }
  for (; j < j_end; j++) {
    int64_t i = r0;
    for (; i + 4 <= r1; i += 4) tile_bf16<4, 1>(w, k, xb, kp, i, j, y, n, bias);
    for (; i < r1; i++) tile_bf16<1, 1>(w, k, xb, kp, i, j, y, n, bias);
  }
}

void linear_bf16_fast(const uint16_t* w, const float* x, const float* bias, float* y, int64_t m,
                      int64_t n, int64_t k) {
  const int64_t kp = (k + 31) / 32 * 32;
  static thread_local std::vector<uint16_t> xb_store;
  xb_store.assign(static_cast<size_t>(m * kp), 0);
  uint16_t* xb = xb_store.data();
  for (int64_t i = 0; i < m; i++)
    for (int64_t p = 0; p < k; p++) xb[i * kp + p] = float_to_bf16(x[i * k + p]);
  const int64_t mb = row_block(m, kp, 2);
  parallel_range((n + 3) / 4, std::max<int64_t>(1, w_grain(m, k) / 4), [&](int64_t t0, int64_t t1) {
    const int64_t j_begin = t0 * 4, j_end = std::min(n, t1 * 4);
    for (int64_t r0 = 0; r0 < m; r0 += mb)
      bf16_rows(w, k, xb, kp, r0, std::min(m, r0 + mb), j_begin, j_end, y, n, bias);
  });
}

bool cpu_has_bf16() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
  }();
  return has;
}
#else
bool cpu_has_bf16() { return false; }
#endif

}  // namespace

const char* linear16_kernel(int kind, int mode) {
  if (kind == kBf16 && mode == kQuantBest && cpu_has_bf16()) return "avx512_bf16";
  return "portable";
}

void linear16(int kind, const uint16_t* w, const float* x, const float* bias, float* y, int64_t m,
              int64_t n, int64_t k, int mode) {
  if (m == 0 || n == 0) return;
  if (kind == kBf16) {
#ifdef TEAMLLM_HAVE_BF16_PATH
    if (mode == kQuantBest && cpu_has_bf16()) {
      linear_bf16_fast(w, x, bias, y, m, n, k);
      return;
    }
#endif
    linear_portable(Bf16Rows{w, k}, x, bias, y, m, n, k);
  } else {
    linear_portable(HalfRows{w, k}, x, bias, y, m, n, k);
  }
}

void linear_int8(const int8_t* w, const float* scales, int64_t group, const float* x,
                 const float* bias, float* y, int64_t m, int64_t n, int64_t k, int /*mode*/) {
  if (m == 0 || n == 0) return;
  tiled<Int8Tile>(Int8Args{w, scales, k / group, x, k, y, n, bias}, m, n, k, 4);
}

}  // namespace teamllm
