// Products with 16-bit and 8-bit weights: y [m, n] = x [m, k] · Wᵀ + bias, W stored [n, k]
// (PyTorch's Linear layout) as bfloat16, IEEE half or int8 with float32 scales per group of
// columns. The imported chat models (src/model/import/llama.ts) keep their weights this way, so a
// 0.5B model takes ~1 GB (bf16) or ~0.5 GB (int8) instead of 2 GB, and no float32 copy is made.
//
// Three implementations, chosen per call:
//  - portable (every CPU): each 16-column slice of W is widened to float32 in registers (bf16: a
//    shift; half: the compiler's _Float16 conversion; int8: sign-extend, convert, times its
//    group's scale) and multiplied with float32 activations, float32 sums. Plain C++ with GCC's
//    vector extension: the build's -march decides the instructions (AVX-512 on this machine).
//  - bf16 with AVX512_BF16 (vdpbf16ps), when the running CPU has it (checked at run time; the
//    code is compiled for it by a target attribute, whatever -march the build used): the
//    activations are rounded to bf16 once per call (round to nearest even), then each instruction
//    multiplies 32 pairs and adds them into 16 float32 sums. Rounding the activations is an error
//    of at most 2^-8 relative per factor (half a bf16 ulp), the same as llama.cpp's BF16 path.
//  - int8 with AVX512-VNNI (vpdpbusd), likewise chosen at run time: the activations quantised to
//    int8 per 32 columns as llama.cpp's Q8_0 path does (section below for the error).
// All run a 4 x 4 tile of (rows of x) x (rows of W) per step, or W's rows one at a time for fewer
// than 4 rows of x (each_tile says why), the rows of W split over the pool.
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
int64_t row_block(int64_t m, int64_t row_bytes) {
  const int64_t rows = (256 * 1024) / std::max<int64_t>(1, row_bytes);
  return std::min(m, std::max<int64_t>(4, rows / 4 * 4));
}

// Rows of W per parallel piece: enough work (2e5 flops) that waking a worker pays, a multiple of 4.
int64_t w_grain(int64_t m, int64_t k) {
  const int64_t g = static_cast<int64_t>(2.0e5 / std::max<double>(1.0, 2.0 * m * k));
  return std::max<int64_t>(4, (g + 3) / 4 * 4);
}

// Visits the tiles of y rows [r0, r1) x columns [j_begin, j_end): t.template run<MR, NR>(i, j).
// Four rows of x or more: 4 x 4 tiles, each row of W read once per 4 rows of x. Fewer (decoding):
// W's rows one after the other, each with every row of x: a 4-row tile reads four rows of W at
// once, four short streams (896 bytes each in a 0.5B model) that the hardware prefetcher does not
// follow, and a one-row product of a 136 MB int8 head ran at a third of the speed of streaming it
// row by row. always_inline: compiled into each caller, so that the AVX-512 kernels' tiles are
// inlined under their target attributes.
template <class T>
__attribute__((always_inline)) inline void each_tile(const T& t, int64_t r0, int64_t r1,
                                                     int64_t j_begin, int64_t j_end) {
  if (r1 - r0 < 4) {
    for (int64_t j = j_begin; j < j_end; j++)
      for (int64_t i = r0; i < r1; i++) t.template run<1, 1>(i, j);
    return;
  }
  int64_t j = j_begin;
  for (; j + 4 <= j_end; j += 4) {
    int64_t i = r0;
    for (; i + 4 <= r1; i += 4) t.template run<4, 4>(i, j);
    for (; i < r1; i++) t.template run<1, 4>(i, j);
  }
  for (; j < j_end; j++) {
    int64_t i = r0;
    for (; i + 4 <= r1; i += 4) t.template run<4, 1>(i, j);
    for (; i < r1; i++) t.template run<1, 1>(i, j);
  }
}

// Runs rows(r0, r1, j_begin, j_end) over y [m, n]: rows of W split over the pool (pieces of a
// multiple of 4), x in row blocks of x_row_bytes-wide rows.
template <class Rows>
void tiled(int64_t m, int64_t n, int64_t k, int64_t x_row_bytes, const Rows& rows) {
  const int64_t mb = row_block(m, x_row_bytes);
  parallel_range((n + 3) / 4, std::max<int64_t>(1, w_grain(m, k) / 4), [&](int64_t t0, int64_t t1) {
    const int64_t j_begin = t0 * 4, j_end = std::min(n, t1 * 4);
    for (int64_t r0 = 0; r0 < m; r0 += mb) rows(r0, std::min(m, r0 + mb), j_begin, j_end);
  });
}

struct Int8Tiles {
  const int8_t* w;
  const float* scales;
  int64_t groups;
  const float* x;
  int64_t k;
  float* y;
  int64_t n;
  const float* bias;
  template <int MR, int NR>
  void run(int64_t i, int64_t j) const {
    tile_int8<MR, NR>(w, scales, groups, x, k, i, j, y, n, bias);
  }
};

template <class W>
struct PortableTiles {
  const W& w;
  const float* x;
  int64_t k;
  float* y;
  int64_t n;
  const float* bias;
  template <int MR, int NR>
  void run(int64_t i, int64_t j) const {
    tile_portable<W, MR, NR>(w, x, k, i, j, y, n, bias);
  }
};

template <class W>
void linear_portable(const W& w, const float* x, const float* bias, float* y, int64_t m, int64_t n,
                     int64_t k) {
  const PortableTiles<W> t{w, x, k, y, n, bias};
  tiled(m, n, k, k * 4, [&](int64_t r0, int64_t r1, int64_t jb, int64_t je) { each_tile(t, r0, r1, jb, je); });
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

struct Bf16Tiles {
  const uint16_t* w;
  int64_t k;
  const uint16_t* xb;
  int64_t kp;
  float* y;
  int64_t n;
  const float* bias;
  template <int MR, int NR>
  BF16_TARGET void run(int64_t i, int64_t j) const {
    tile_bf16<MR, NR>(w, k, xb, kp, i, j, y, n, bias);
  }
};

BF16_TARGET void bf16_rows(const Bf16Tiles& t, int64_t r0, int64_t r1, int64_t j_begin, int64_t j_end) {
  each_tile(t, r0, r1, j_begin, j_end);
}

void linear_bf16_fast(const uint16_t* w, const float* x, const float* bias, float* y, int64_t m,
                      int64_t n, int64_t k) {
  const int64_t kp = (k + 31) / 32 * 32;
  static thread_local std::vector<uint16_t> xb_store;
  xb_store.assign(static_cast<size_t>(m * kp), 0);
  uint16_t* xb = xb_store.data();
  for (int64_t i = 0; i < m; i++)
    for (int64_t p = 0; p < k; p++) xb[i * kp + p] = float_to_bf16(x[i * k + p]);
  const Bf16Tiles t{w, k, xb, kp, y, n, bias};
  tiled(m, n, k, kp * 2, [&](int64_t r0, int64_t r1, int64_t jb, int64_t je) { bf16_rows(t, r0, r1, jb, je); });
}

bool cpu_has_bf16() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
  }();
  return has;
}

// ---- int8 with AVX512-VNNI ----------------------------------------------------------------
//
// As llama.cpp's Q8_0 x Q8_0 product: the activations are quantised on the fly to int8 per block
// of 32 columns (d = max|block| / 127, q = round(x / d), the error of each at most d/2), then
// vpdpbusd multiplies 64 byte pairs per instruction into 16 int32 sums (4 pairs each, exact);
// each 64-byte chunk's sums become float32 and are scaled by the two blocks' d (x's, times W's
// block scale for the blocked layout) and added into float32 sums. The per-row layout's one scale
// multiplies each output once at the end.
//
// vpdpbusd multiplies unsigned bytes by signed ones: x is kept as |q| (unsigned) with a bit mask
// of its signs, and W's bytes are negated where x's are negative before the product (llama.cpp's
// sign trick), one masked subtract per pair of 64-byte chunks, and no correction term. (An offset
// u = q + 128 with a correction of 128·Σw per chunk of W measured the same for one row of x.) A
// weight of -128, which no quantiser here writes (GGUF's Q8_0 writers keep [-127, 127] too),
// would stay -128 when negated. The 16-row panels further down use the offset instead.

#define TEAMLLM_HAVE_VNNI_PATH 1
#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

// Rows of x from which the 16-row panels below run instead of the tiles.
constexpr int64_t kPanelRows = 16;

// x [m, k] as llama.cpp's Q8_0 blocks, in 64-column chunks (kp = k rounded up to 64; padding q = 0).
struct Q8Rows {
  uint8_t* abs;      // [m, kp]: |q|
  uint64_t* neg;     // [m, kp / 64]: bit p set where q < 0
  float* d;          // [m, kp / 64, 16]: each chunk's two block scales, for lanes 0-7 and 8-15
};

VNNI_TARGET void quantize_q8_blocks(const float* x, int64_t m, int64_t k, int64_t kp, const Q8Rows& q) {
  const int64_t chunks = kp / 64;
  auto lanes = [](int64_t left) -> __mmask16 {
    return left >= 16 ? 0xffff : left > 0 ? static_cast<__mmask16>((1u << left) - 1) : 0;
  };
  for (int64_t i = 0; i < m; i++) {
    const float* xr = x + i * k;
    for (int64_t c = 0; c < chunks; c++) {
      uint64_t neg = 0;
      float scales[2];
      for (int half = 0; half < 2; half++) {
        const int64_t p = c * 64 + half * 32;
        // Loads past k are masked off (read as zeros, never touched).
        const __m512 a = _mm512_maskz_loadu_ps(lanes(k - p), xr + std::min(p, k));
        const __m512 b = _mm512_maskz_loadu_ps(lanes(k - p - 16), xr + std::min(p + 16, k));
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
        const float scale = amax / 127.f;
        const __m512 inv = _mm512_set1_ps(scale > 0.f ? 1.f / scale : 0.f);
        scales[half] = scale;
        // Round to nearest (even); |x / d| ≤ 127 up to rounding, saturated to int8 all the same.
        const __m128i qa = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(a, inv)));
        const __m128i qb = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(b, inv)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q.abs + i * kp + p), _mm_abs_epi8(qa));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q.abs + i * kp + p + 16), _mm_abs_epi8(qb));
        const uint32_t signs = static_cast<uint32_t>(_mm_movemask_epi8(qa)) | (static_cast<uint32_t>(_mm_movemask_epi8(qb)) << 16);
        neg |= static_cast<uint64_t>(signs) << (half * 32);
      }
      q.neg[i * chunks + c] = neg;
      _mm512_storeu_ps(q.d + (i * chunks + c) * 16,
                       _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(scales[0]), _mm512_set1_ps(scales[1])));
    }
  }
}

struct VnniArgs {
  const int8_t* w;
  const float* scales;
  int64_t groups, k;
  Q8Rows x;
  int64_t kp;
  const int32_t* block_group;  // [kp / 32]: W's scale group of each 32-column block (kBlocks)
  float* y;
  int64_t n;
  const float* bias;
};

// Where a tile's rows start: per row of x its |q|, sign masks and block scales, per row of W its
// weights and scales. Computed once per tile, so that a chunk's step is loads and products only
// (with the addressing done per chunk, the scalar instructions outnumbered the vector ones).
template <int MR, int NR>
struct VnniRows {
  const uint8_t* abs[MR];
  const uint64_t* neg[MR];
  const float* d[MR];
  const int8_t* w[NR];
  const float* scales[NR];
};

// Chunk c (columns 64c..64c+63) of the tile, added into acc; W's loads under `mask` (kMasked: the
// last chunk of a row, zeros past k so that they add 0).
template <int MR, int NR, bool kBlocks, bool kMasked>
VNNI_TARGET inline void vnni_chunk(const VnniRows<MR, NR>& r, const int32_t* block_group, int64_t c,
                                   __mmask64 mask, __m512 (&acc)[MR][NR]) {
  const int64_t p = c * 64;
  const __m512i zero = _mm512_setzero_si512();
  __m512i xv[MR];
  __mmask64 neg[MR];
  __m512 dx[MR];
  for (int i = 0; i < MR; i++) {
    xv[i] = _mm512_loadu_si512(r.abs[i] + p);
    neg[i] = r.neg[i][c];
    dx[i] = _mm512_loadu_ps(r.d[i] + c * 16);
  }
  for (int j = 0; j < NR; j++) {
    const __m512i wv = kMasked ? _mm512_maskz_loadu_epi8(mask, r.w[j] + p) : _mm512_loadu_si512(r.w[j] + p);
    __m512 dw;
    if (kBlocks)
      dw = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(r.scales[j][block_group[2 * c]]),
                                _mm512_set1_ps(r.scales[j][block_group[2 * c + 1]]));
    for (int i = 0; i < MR; i++) {
      const __m512i signed_w = _mm512_mask_sub_epi8(wv, neg[i], zero, wv);
      const __m512 sums = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, xv[i], signed_w));
      acc[i][j] = _mm512_fmadd_ps(sums, kBlocks ? _mm512_mul_ps(dx[i], dw) : dx[i], acc[i][j]);
    }
  }
}

// y rows i0..i0+MR, columns j0..j0+NR. kBlocks: W has a scale per group of columns (a multiple
// of 32); else one per row (groups == 1).
template <int MR, int NR, bool kBlocks>
VNNI_TARGET inline void tile_vnni(const VnniArgs& a, int64_t i0, int64_t j0) {
  const int64_t k = a.k, chunks = a.kp / 64, full = k / 64;
  VnniRows<MR, NR> r;
  for (int i = 0; i < MR; i++) {
    r.abs[i] = a.x.abs + (i0 + i) * a.kp;
    r.neg[i] = a.x.neg + (i0 + i) * chunks;
    r.d[i] = a.x.d + (i0 + i) * chunks * 16;
  }
  for (int j = 0; j < NR; j++) {
    r.w[j] = a.w + (j0 + j) * k;
    r.scales[j] = a.scales + (j0 + j) * a.groups;
  }
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) acc[i][j] = _mm512_setzero_ps();
  for (int64_t c = 0; c < full; c++) vnni_chunk<MR, NR, kBlocks, false>(r, a.block_group, c, 0, acc);
  if (full < chunks)
    vnni_chunk<MR, NR, kBlocks, true>(r, a.block_group, full, (__mmask64{1} << (k - full * 64)) - 1, acc);
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) {
      float s = _mm512_reduce_add_ps(acc[i][j]);
      if (!kBlocks) s *= a.scales[j0 + j];
      a.y[(i0 + i) * a.n + j0 + j] = s + (a.bias ? a.bias[j0 + j] : 0.f);
    }
}

template <bool kBlocks>
struct VnniTiles {
  VnniArgs a;
  template <int MR, int NR>
  VNNI_TARGET void run(int64_t i, int64_t j) const {
    tile_vnni<MR, NR, kBlocks>(a, i, j);
  }
};

template <bool kBlocks>
VNNI_TARGET void vnni_rows(const VnniTiles<kBlocks>& t, int64_t r0, int64_t r1, int64_t j_begin,
                           int64_t j_end) {
  each_tile(t, r0, r1, j_begin, j_end);
}

// ---- int8 with AVX512-VNNI, 16 rows of x at once (prefill) ----
//
// The tiles above multiply along k in each instruction's 16 lanes, so every 64 columns of every
// (row of x, row of W) pair pay a conversion to float32 and a scaled add on top of the vpdpbusd.
// With 16 rows of x or more, x is instead laid out so that the lanes are 16 rows of x (a
// "panel": 4 consecutive columns of each row per 32-bit lane), and each vpdpbusd multiplies them
// by 4 columns of one row of W broadcast to all lanes (an embedded broadcast from memory). A
// 32-column block then takes 8 vpdpbusd into one int32 sum per (row of x, row of W), and one
// conversion and one scaled add per 16 such sums: ~3x fewer instructions per product than the
// tiles. The unsigned operand is x offset by 128 (u = q + 128, and u = 0 for padding, which adds
// nothing); each sum starts at -128·Σ_block w, the block sums of W computed once per call.

struct PanelArgs {
  const int8_t* w;
  const float* scales;
  int64_t groups, k;
  const uint8_t* u;       // [panels][kp / 4][16 rows][4 columns]
  const float* d;         // [panels][kp / 32][16 rows]
  const int32_t* wsum;    // [n][kp / 32]: Σ of W's row over each block
  const int32_t* block_group;
  int64_t kp, m;
  float* y;
  int64_t n;
  const float* bias;
};

VNNI_TARGET void quantize_q8_panels(const float* x, int64_t m, int64_t k, int64_t kp, uint8_t* u,
                                    float* d) {
  const int64_t kb = kp / 32;
  const __m128i offset = _mm_set1_epi8(static_cast<char>(0x80));
  auto lanes = [](int64_t left) -> __mmask16 {
    return left >= 16 ? 0xffff : left > 0 ? static_cast<__mmask16>((1u << left) - 1) : 0;
  };
  for (int64_t i = 0; i < m; i++) {
    const int64_t panel = i / 16, lane = i % 16;
    const float* xr = x + i * k;
    for (int64_t b = 0; b < kb; b++) {
      const int64_t p = b * 32;
      const __mmask16 ma = lanes(k - p), mb = lanes(k - p - 16);
      const __m512 xa = _mm512_maskz_loadu_ps(ma, xr + std::min(p, k));
      const __m512 xb = _mm512_maskz_loadu_ps(mb, xr + std::min(p + 16, k));
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(xa), _mm512_abs_ps(xb)));
      const float scale = amax / 127.f;
      const __m512 inv = _mm512_set1_ps(scale > 0.f ? 1.f / scale : 0.f);
      d[(panel * kb + b) * 16 + lane] = scale;
      // u = q + 128 where there is a column, 0 past k.
      alignas(16) uint8_t block[32];
      _mm_store_si128(reinterpret_cast<__m128i*>(block), _mm_maskz_mov_epi8(ma, _mm_xor_si128(_mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(xa, inv))), offset)));
      _mm_store_si128(reinterpret_cast<__m128i*>(block + 16), _mm_maskz_mov_epi8(mb, _mm_xor_si128(_mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(xb, inv))), offset)));
      for (int s = 0; s < 8; s++) std::memcpy(u + ((panel * (kp / 4) + b * 8 + s) * 16 + lane) * 4, block + s * 4, 4);
    }
  }
}

// Σ of each 32-column block of W's rows j0..j1 (kp / 32 blocks; zeros past k). A vpdpbusd of
// ones per 64 bytes (a 64-row product 5% faster than with the scalar loop).
VNNI_TARGET void block_sums(const int8_t* w, int64_t k, int64_t kp, int64_t j0, int64_t j1, int32_t* wsum) {
  const int64_t kb = kp / 32;
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t j = j0; j < j1; j++) {
    const int8_t* row = w + j * k;
    for (int64_t p = 0; p < kp; p += 64) {
      const __mmask64 mask = k - p >= 64 ? ~__mmask64{0} : (__mmask64{1} << (k - p)) - 1;
      const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, _mm512_maskz_loadu_epi8(mask, row + p));
      wsum[j * kb + p / 32] = _mm512_mask_reduce_add_epi32(0x00ff, s);
      if (p / 32 + 1 < kb) wsum[j * kb + p / 32 + 1] = _mm512_mask_reduce_add_epi32(0xff00, s);
    }
  }
}

// Panel P (rows 16P..16P+15 of x) times rows j0..j0+NR of W.
template <int NR, bool kBlocks>
VNNI_TARGET inline void panel_vnni(const PanelArgs& a, int64_t P, int64_t j0) {
  __m512 acc[NR];
  for (int j = 0; j < NR; j++) acc[j] = _mm512_setzero_ps();
  const int64_t k = a.k, kb = a.kp / 32;
  const uint8_t* xp = a.u + P * (a.kp / 4) * 64;
  const int8_t* wrow[NR];
  for (int j = 0; j < NR; j++) wrow[j] = a.w + (j0 + j) * k;
  alignas(64) int8_t tail[NR][32];
  for (int64_t b = 0; b < kb; b++) {
    __m512i sum[NR];
    for (int j = 0; j < NR; j++) sum[j] = _mm512_set1_epi32(-128 * a.wsum[(j0 + j) * kb + b]);
    const int8_t* wb[NR];
    if ((b + 1) * 32 <= k) {
      for (int j = 0; j < NR; j++) wb[j] = wrow[j] + b * 32;
    } else {
      // W's last, partial block: its columns copied next to zeros (no read past the row; the
      // padding of x is 0 anyway).
      for (int j = 0; j < NR; j++) {
        std::memset(tail[j], 0, 32);
        std::memcpy(tail[j], wrow[j] + b * 32, static_cast<size_t>(k - b * 32));
        wb[j] = tail[j];
      }
    }
    for (int s = 0; s < 8; s++) {
      const __m512i xv = _mm512_loadu_si512(xp + (b * 8 + s) * 64);
      for (int j = 0; j < NR; j++) {
        int32_t four;
        std::memcpy(&four, wb[j] + s * 4, 4);
        sum[j] = _mm512_dpbusd_epi32(sum[j], xv, _mm512_set1_epi32(four));
      }
    }
    const __m512 dx = _mm512_loadu_ps(a.d + (P * kb + b) * 16);
    for (int j = 0; j < NR; j++) {
      const __m512 scale = kBlocks ? _mm512_mul_ps(dx, _mm512_set1_ps(a.scales[(j0 + j) * a.groups + a.block_group[b]])) : dx;
      acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[j]), scale, acc[j]);
    }
  }
  const int64_t rows = std::min<int64_t>(16, a.m - P * 16);
  for (int j = 0; j < NR; j++) {
    alignas(64) float out[16];
    _mm512_store_ps(out, acc[j]);
    const float s = kBlocks ? 1.f : a.scales[j0 + j];
    const float bias = a.bias ? a.bias[j0 + j] : 0.f;
    for (int64_t r = 0; r < rows; r++) a.y[(P * 16 + r) * a.n + j0 + j] = out[r] * s + bias;
  }
}

template <bool kBlocks>
VNNI_TARGET void panel_rows(const PanelArgs& a, int64_t p0, int64_t p1, int64_t j_begin, int64_t j_end) {
  int64_t j = j_begin;
  for (; j + 8 <= j_end; j += 8)
    for (int64_t P = p0; P < p1; P++) panel_vnni<8, kBlocks>(a, P, j);
  for (; j < j_end; j++)
    for (int64_t P = p0; P < p1; P++) panel_vnni<1, kBlocks>(a, P, j);
}

// Per chunk, W's scale group of each 32-column block: an integer division there cost as much as
// the products (measured).
const int32_t* block_groups(int64_t kp, int64_t group, int64_t groups) {
  static thread_local std::vector<int32_t> table;
  table.resize(static_cast<size_t>(kp / 32));
  for (int64_t t = 0; t < kp / 32; t++) table[t] = static_cast<int32_t>(std::min(groups - 1, t * 32 / group));
  return table.data();
}

void linear_int8_panels(const int8_t* w, const float* scales, int64_t group, const float* x,
                        const float* bias, float* y, int64_t m, int64_t n, int64_t k) {
  const int64_t kp = (k + 31) / 32 * 32, kb = kp / 32, panels = (m + 15) / 16;
  static thread_local std::vector<uint8_t> u_store;
  static thread_local std::vector<float> d_store;
  static thread_local std::vector<int32_t> wsum_store;
  u_store.assign(static_cast<size_t>(panels * kp * 16), 0);
  d_store.assign(static_cast<size_t>(panels * kb * 16), 0.f);
  wsum_store.resize(static_cast<size_t>(n * kb));
  quantize_q8_panels(x, m, k, kp, u_store.data(), d_store.data());
  int32_t* wsum = wsum_store.data();
  parallel_range(n, std::max<int64_t>(16, 65536 / std::max<int64_t>(1, k)), [&](int64_t j0, int64_t j1) { block_sums(w, k, kp, j0, j1, wsum); });
  const int64_t groups = k / group;
  const PanelArgs a{w, scales, groups, k, u_store.data(), d_store.data(), wsum, block_groups(kp, group, groups), kp, m, y, n, bias};
  tiled(panels, n, k * 16, kp * 16, [&](int64_t p0, int64_t p1, int64_t jb, int64_t je) {
    if (groups > 1)
      panel_rows<true>(a, p0, p1, jb, je);
    else
      panel_rows<false>(a, p0, p1, jb, je);
  });
}

void linear_int8_vnni(const int8_t* w, const float* scales, int64_t group, const float* x,
                      const float* bias, float* y, int64_t m, int64_t n, int64_t k) {
  if (m >= kPanelRows) {
    linear_int8_panels(w, scales, group, x, bias, y, m, n, k);
    return;
  }
  const int64_t kp = (k + 63) / 64 * 64;
  static thread_local std::vector<uint8_t> abs_store;
  static thread_local std::vector<uint64_t> neg_store;
  static thread_local std::vector<float> d_store;
  abs_store.resize(static_cast<size_t>(m * kp));
  neg_store.resize(static_cast<size_t>(m * kp / 64));
  d_store.resize(static_cast<size_t>(m * kp / 4));
  const Q8Rows q{abs_store.data(), neg_store.data(), d_store.data()};
  quantize_q8_blocks(x, m, k, kp, q);
  const int64_t groups = k / group;
  const VnniArgs a{w, scales, groups, k, q, kp, block_groups(kp, group, groups), y, n, bias};
  if (a.groups > 1) {
    const VnniTiles<true> t{a};
    tiled(m, n, k, kp, [&](int64_t r0, int64_t r1, int64_t jb, int64_t je) { vnni_rows(t, r0, r1, jb, je); });
  } else {
    const VnniTiles<false> t{a};
    tiled(m, n, k, kp, [&](int64_t r0, int64_t r1, int64_t jb, int64_t je) { vnni_rows(t, r0, r1, jb, je); });
  }
}

bool cpu_has_vnni() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
  }();
  return has;
}
// The VNNI kernel takes one scale per row, or per group of a multiple of 32 columns (Q8_0's 32).
bool vnni_fits(int64_t group, int64_t k) { return group == k || group % 32 == 0; }
#else
bool cpu_has_bf16() { return false; }
bool cpu_has_vnni() { return false; }
#endif


// ---- the transposed direction: dx [m, k] = dy [m, n] · W (training's input gradient) ----------
//
// LoRA training on a frozen 16/8-bit base needs, per projection, the gradient of its input:
// dx = dy · W for W [n, k] as stored. Here W's rows are the reduction axis, so the product is a
// sum of W's rows scaled by dy's entries: each tile keeps MR rows × NV·16 columns of dx in
// registers and, per row j of W, widens NV slices of it once (the same widening as the forward's
// portable kernel: exact stored weights) and adds dy[i, j] times them (float32 FMAs). W is walked
// in blocks of kTJ rows so that a panel (kTJ × 64 columns) stays in cache while every row of dy
// passes over it; the 64-column blocks of dx are split over the pool (no two threads write the
// same column).

constexpr int64_t kTJ = 256;

template <class W, int MR, int NV>
inline void tile_t(const W& w, const float* dy, float* dx, int64_t n, int64_t k, int64_t i0,
                   int64_t p0, int64_t j0, int64_t j1, bool first) {
  vf16 acc[MR][NV];
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < NV; v++) acc[i][v] = first ? vf16{} : load16(dx + (i0 + i) * k + p0 + v * kLanes);
  for (int64_t j = j0; j < j1; j++) {
    vf16 wv[NV];
    for (int v = 0; v < NV; v++) wv[v] = w.vec(j, p0 + v * kLanes);
    for (int i = 0; i < MR; i++) {
      const float s = dy[(i0 + i) * n + j];
      for (int v = 0; v < NV; v++) acc[i][v] += s * wv[v];
    }
  }
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < NV; v++) store16(dx + (i0 + i) * k + p0 + v * kLanes, acc[i][v]);
}

template <class W, int NV>
void rows_t(const W& w, const float* dy, float* dx, int64_t m, int64_t n, int64_t k, int64_t p0,
            int64_t j0, int64_t j1) {
  const bool first = j0 == 0;
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) tile_t<W, 4, NV>(w, dy, dx, n, k, i, p0, j0, j1, first);
  for (; i < m; i++) tile_t<W, 1, NV>(w, dy, dx, n, k, i, p0, j0, j1, first);
}

template <class W>
void linear_t_portable(const W& w, const float* dy, float* dx, int64_t m, int64_t n, int64_t k) {
  const int64_t kv = k / kLanes * kLanes;
  const int64_t blocks = (kv + 4 * kLanes - 1) / (4 * kLanes);
  parallel_range(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      const int64_t p0 = b * 4 * kLanes;
      const int64_t nv = std::min<int64_t>(4, (kv - p0) / kLanes);
      for (int64_t j0 = 0; j0 < n; j0 += kTJ) {
        const int64_t j1 = std::min(n, j0 + kTJ);
        switch (nv) {
          case 4: rows_t<W, 4>(w, dy, dx, m, n, k, p0, j0, j1); break;
          case 3: rows_t<W, 3>(w, dy, dx, m, n, k, p0, j0, j1); break;
          case 2: rows_t<W, 2>(w, dy, dx, m, n, k, p0, j0, j1); break;
          default: rows_t<W, 1>(w, dy, dx, m, n, k, p0, j0, j1); break;
        }
      }
    }
  });
  if (kv == k) return;
  // The last k % 16 columns, one value at a time.
  parallel_range(m, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, n * (k - kv))), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++)
      for (int64_t p = kv; p < k; p++) {
        float s = 0.f;
        for (int64_t j = 0; j < n; j++) s += dy[i * n + j] * w.at(j, p);
        dx[i * k + p] = s;
      }
  });
}

#ifdef TEAMLLM_HAVE_BF16_PATH
// The same product on AVX512_BF16 (vdpbf16ps), as the forward's fast kernel: dy rounded to bf16
// once per call (2^-8 relative at most per factor, as the forward rounds x), W's rows taken two at
// a time and interleaved (row 2q's and row 2q+1's values of 16 columns side by side: one permute),
// so that each instruction adds dy[i, 2q]·W[2q, p] + dy[i, 2q+1]·W[2q+1, p] into 16 float32 sums.
template <int MR, int NV>
BF16_TARGET inline void tile_t_bf16(const uint16_t* w, const uint32_t* dyp, int64_t pairs_row, float* dx,
                                    int64_t k, int64_t i0, int64_t p0, int64_t q0, int64_t q1, bool first) {
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < NV; v++)
      acc[i][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(dx + (i0 + i) * k + p0 + v * kLanes);
  alignas(64) static const uint16_t order[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                 8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  const __m512i idx = _mm512_load_si512(order);
  for (int64_t q = q0; q < q1; q++) {
    const uint16_t* r0 = w + 2 * q * k + p0;
    const uint16_t* r1 = r0 + k;
    __m512bh wv[NV];
    for (int v = 0; v < NV; v++) {
      const __m512i a = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0 + v * kLanes)));
      const __m512i b = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1 + v * kLanes)));
      wv[v] = (__m512bh)_mm512_permutex2var_epi16(a, idx, b);
    }
    for (int i = 0; i < MR; i++) {
      const __m512bh d = (__m512bh)_mm512_set1_epi32(static_cast<int>(dyp[(i0 + i) * pairs_row + q]));
      for (int v = 0; v < NV; v++) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], d, wv[v]);
    }
  }
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < NV; v++) _mm512_storeu_ps(dx + (i0 + i) * k + p0 + v * kLanes, acc[i][v]);
}

template <int NV>
BF16_TARGET void rows_t_bf16(const uint16_t* w, const uint32_t* dyp, int64_t pairs_row, float* dx, int64_t m,
                             int64_t k, int64_t p0, int64_t q0, int64_t q1) {
  const bool first = q0 == 0;
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) tile_t_bf16<4, NV>(w, dyp, pairs_row, dx, k, i, p0, q0, q1, first);
  for (; i < m; i++) tile_t_bf16<1, NV>(w, dyp, pairs_row, dx, k, i, p0, q0, q1, first);
}

void linear_t_bf16_fast(const uint16_t* w, const float* dy, float* dx, int64_t m, int64_t n, int64_t k) {
  const int64_t pairs = n / 2, pairs_row = (n + 1) / 2;
  static thread_local std::vector<uint16_t> dyb_store;
  dyb_store.assign(static_cast<size_t>(m * pairs_row * 2), 0);
  uint16_t* dyb = dyb_store.data();
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) dyb[i * pairs_row * 2 + j] = float_to_bf16(dy[i * n + j]);
  const uint32_t* dyp = reinterpret_cast<const uint32_t*>(dyb);
  const Bf16Rows exact{w, k};
  const int64_t kv = k / kLanes * kLanes;
  const int64_t blocks = (kv + 4 * kLanes - 1) / (4 * kLanes);
  parallel_range(blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      const int64_t p0 = b * 4 * kLanes;
      const int64_t nv = std::min<int64_t>(4, (kv - p0) / kLanes);
      for (int64_t q0 = 0; q0 < pairs; q0 += kTJ / 2) {
        const int64_t q1 = std::min(pairs, q0 + kTJ / 2);
        switch (nv) {
          case 4: rows_t_bf16<4>(w, dyp, pairs_row, dx, m, k, p0, q0, q1); break;
          case 3: rows_t_bf16<3>(w, dyp, pairs_row, dx, m, k, p0, q0, q1); break;
          case 2: rows_t_bf16<2>(w, dyp, pairs_row, dx, m, k, p0, q0, q1); break;
          default: rows_t_bf16<1>(w, dyp, pairs_row, dx, m, k, p0, q0, q1); break;
        }
      }
      // An odd last row of W on its own (float32 dy: the portable tile), added to the pairs' sums.
      if (n % 2) {
        switch (nv) {
          case 4: rows_t<Bf16Rows, 4>(exact, dy, dx, m, n, k, p0, n - 1, n); break;
          case 3: rows_t<Bf16Rows, 3>(exact, dy, dx, m, n, k, p0, n - 1, n); break;
          case 2: rows_t<Bf16Rows, 2>(exact, dy, dx, m, n, k, p0, n - 1, n); break;
          default: rows_t<Bf16Rows, 1>(exact, dy, dx, m, n, k, p0, n - 1, n); break;
        }
      }
    }
  });
  if (kv == k) return;
  parallel_range(m, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, n * (k - kv))), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++)
      for (int64_t p = kv; p < k; p++) {
        float s = 0.f;
        for (int64_t j = 0; j < n; j++) s += dy[i * n + j] * exact.at(j, p);
        dx[i * k + p] = s;
      }
  });
}
#endif

// int8 rows widened and scaled by their group's scale (a group is a multiple of 16 columns, or
// the whole row), so that a slice of 16 columns has one scale.
struct Int8ScaledRows {
  const int8_t* w;
  const float* scales;
  int64_t groups, group, k;
  vf16 vec(int64_t j, int64_t p) const { return int8_to_float(w + j * k + p) * scales[j * groups + p / group]; }
  float at(int64_t j, int64_t p) const { return static_cast<float>(w[j * k + p]) * scales[j * groups + p / group]; }
};

}  // namespace

void linear16_t(int kind, const uint16_t* w, const float* dy, float* dx, int64_t m, int64_t n,
                int64_t k, int mode) {
  if (m == 0 || k == 0) return;
  if (n == 0) {
    std::fill(dx, dx + m * k, 0.f);
    return;
  }
  if (kind == kBf16 && mode == kQuantBest && m >= kAmxMinRows && amx_bf16_ready()) {
    linear_t_bf16_amx(w, dy, dx, m, n, k);
    return;
  }
#ifdef TEAMLLM_HAVE_BF16_PATH
  if (kind == kBf16 && mode != kQuantPortable && cpu_has_bf16()) {
    linear_t_bf16_fast(w, dy, dx, m, n, k);
    return;
  }
#endif
  if (kind == kBf16)
    linear_t_portable(Bf16Rows{w, k}, dy, dx, m, n, k);
  else
    linear_t_portable(HalfRows{w, k}, dy, dx, m, n, k);
}

void linear_int8_t(const int8_t* w, const float* scales, int64_t group, const float* dy, float* dx,
                   int64_t m, int64_t n, int64_t k, int mode) {
  if (m == 0 || k == 0) return;
  if (n == 0) {
    std::fill(dx, dx + m * k, 0.f);
    return;
  }
  if (mode == kQuantBest && group == k && m >= kAmxMinRows && amx_bf16_ready()) {
    linear_int8_t_amx(w, scales, dy, dx, m, n, k);
    return;
  }
  linear_t_portable(Int8ScaledRows{w, scales, k / group, group, k}, dy, dx, m, n, k);
}

namespace {
}  // namespace

const char* linear16_kernel(int kind, int mode) {
  if (kind == kBf16 && mode == kQuantBest && amx_bf16_ready()) return "amx_bf16";
  if (kind == kBf16 && mode != kQuantPortable && cpu_has_bf16()) return "avx512_bf16";
  return "portable";
}

const char* linear_int8_kernel(int mode) {
  return mode != kQuantPortable && cpu_has_vnni() ? "avx512_vnni" : "portable";
}

void linear16(int kind, const uint16_t* w, const float* x, const float* bias, float* y, int64_t m,
              int64_t n, int64_t k, int mode) {
  if (m == 0 || n == 0) return;
  if (kind == kBf16) {
    if (mode == kQuantBest && m >= kAmxMinRows && amx_bf16_ready()) {
      linear_bf16_amx(w, x, bias, y, m, n, k);
      return;
    }
#ifdef TEAMLLM_HAVE_BF16_PATH
    if (mode != kQuantPortable && cpu_has_bf16()) {
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
                 const float* bias, float* y, int64_t m, int64_t n, int64_t k, int mode) {
  if (m == 0 || n == 0) return;
  if (mode == kQuantBest && group == k && m >= kAmxMinRows && amx_bf16_ready()) {
    linear_int8_amx(w, scales, x, bias, y, m, n, k);
    return;
  }
#ifdef TEAMLLM_HAVE_VNNI_PATH
  if (mode != kQuantPortable && cpu_has_vnni() && vnni_fits(group, k)) {
    linear_int8_vnni(w, scales, group, x, bias, y, m, n, k);
    return;
  }
#endif
  const Int8Tiles t{w, scales, k / group, x, k, y, n, bias};
  tiled(m, n, k, k * 4, [&](int64_t r0, int64_t r1, int64_t jb, int64_t je) { each_tile(t, r0, r1, jb, je); });
}

}  // namespace teamllm
