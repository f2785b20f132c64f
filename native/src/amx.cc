// The two frozen products of training on AMX (Advanced Matrix Extensions: Sapphire Rapids and
// later Xeons): y [m, n] = x [m, k] · Wᵀ and dx [m, k] = dy [m, n] · W for W [n, k] stored as
// bf16, or as int8 with one scale per row (quant.cc's linear16 / linear16_t / linear_int8 /
// linear_int8_t call these when amx_bf16_ready() and m is large). int8 values are exact in bf16:
// the scales go to the output columns (forward) or into dy before its rounding (backward).
//
// Why: LoRA training on a frozen bf16 base spends most of its time in these products (m = batch
// × sequence rows, thousands). AVX512_BF16's vdpbf16ps does 32 multiply-adds per instruction;
// AMX's tdpbf16ps does 16 × 16 × 32 = 8192, from eight 1 KB tile registers.
//
// Numerics: the same as the AVX512_BF16 kernels: the activations (x, or dy) rounded to bf16,
// round to nearest even, once per call; W exact; products and sums in float32 (tdpbf16ps, like
// vdpbf16ps, ignores MXCSR: round to nearest even, denormal inputs and outputs flushed to zero).
// Only the order of the float32 additions differs.
//
// One engine for both products: C [m, N] = A [m, K] · B [K, N], A the activations as bf16
// (whole 16 × 32 tiles, rows padded with zeros to a multiple of 32, columns to a multiple of 32), B read
// from W and packed per task into the tile layout tdpbf16ps takes ("VNNI": row r of a B tile
// holds, for each of its 16 columns, the pair B[2r, c], B[2r + 1, c]):
//   forward  (K = k, N = n): B[p, j] = W[j, p]: a pair is two neighbouring values of one W row,
//                            so a tile is a 16 × 16 transpose of 32-bit pairs;
//   backward (K = n, N = k): B[j, p] = W[j, p]: a pair is one column's values in two
//                            neighbouring W rows (two rows interleaved).
// Blocking: a task owns a panel of NB output columns (its B, at most KC reduction rows at a time,
// ~1 MB: stays in L2) and a range of A's rows, and runs 32 × 32 blocks of C (2 × 2 tiles: tiles
// 0-3 C, 4-5 A, 6-7 B); a long reduction into few columns is split along the reduction
// instead (amx_gemm_split_k). Tasks go to the addon's pool; a thread loads the tile configuration
// at the start of each task and releases the tiles at its end (so an idle thread carries no
// 8 KB tile state through context switches).
//
// The build needs no AMX: the functions carry a target attribute and run only when CPUID says
// AMX-TILE and AMX-BF16, the kernel grants the process the tile data state (Linux 5.16+:
// arch_prctl(ARCH_REQ_XCOMP_PERM)), and $TEAMLLM_NATIVE_AMX is not "off".
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "pool.h"

#if defined(__x86_64__) && defined(__linux__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define TEAMLLM_HAVE_AMX_PATH 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace teamllm {

#ifdef TEAMLLM_HAVE_AMX_PATH

namespace {

#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))

// Output columns per task panel, reduction rows per packed chunk: a panel holds NB × KC bf16
// values (1 MB at most), within the 2 MB L2 of these cores next to the A rows being read.
constexpr int64_t kNB = 128;
constexpr int64_t kKC = 4096;

bool cpu_has_amx_bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool amx = (d & (1u << 22)) && (d & (1u << 24));  // AMX-BF16, AMX-TILE
  // The activations are converted with AVX512_BF16 (every AMX CPU has it).
  __builtin_cpu_init();
  return amx && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}

// Linux gives a process the 8 KB AMX tile state only when asked (once, for all its threads).
bool kernel_grants_tiles() {
  constexpr long kArchGetXcompPerm = 0x1022, kArchReqXcompPerm = 0x1023, kXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXtiledata) != 0) return false;
  unsigned long mask = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &mask) != 0) return false;
  return (mask >> kXtiledata) & 1;
}

struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Eight 16-row × 64-byte tiles: C (16 × 16 float32), A (16 × 32 bf16), B (16 pairs × 16 columns).
AMX_TARGET void configure_tiles() {
  TileConfig cfg;
  std::memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; t++) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

AMX_TARGET void release_tiles() { _tile_release(); }

// The activations src [m, cols] as bf16 A tiles: rows in blocks of 16, columns in steps of 32,
// tile (row block rb, step s) the 1 KB at dst + (rb · steps + s) · 512, its 16 rows 64 bytes
// apart; zeros past cols. Whole tiles, contiguous: the tile loads stream through memory in order
// (loads of 16 rows of a row-major matrix, 2-10 KB apart, stalled the product: measured).
// f32 → bf16 rounds to nearest even (vcvtne2ps2bf16).
AMX_TARGET void to_bf16_tiles(const float* src, int64_t cols, int64_t steps, uint16_t* dst, int64_t r0, int64_t r1,
                              const float* col_scale) {
  for (int64_t i = r0; i < r1; i++) {
    const float* s = src + i * cols;
    uint16_t* d = dst + (i / 16) * steps * 512 + (i % 16) * 32;
    for (int64_t t = 0; t < steps; t++) {
      const int64_t p = t * 32, left = cols - p;
      const __mmask16 lo = left >= 16 ? 0xffff : left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1);
      const __mmask16 hi = left >= 32 ? 0xffff : left <= 16 ? 0 : static_cast<__mmask16>((1u << (left - 16)) - 1);
      __m512 a = _mm512_maskz_loadu_ps(lo, s + p);
      __m512 b = _mm512_maskz_loadu_ps(hi, s + p + 16);
      if (col_scale) {
        a = _mm512_mul_ps(a, _mm512_maskz_loadu_ps(lo, col_scale + p));
        b = _mm512_mul_ps(b, _mm512_maskz_loadu_ps(hi, col_scale + p + 16));
      }
      _mm512_storeu_si512(d + t * 512, (__m512i)_mm512_cvtne2ps_pbh(b, a));
    }
  }
}

// The activations x [m, cols] as A tiles (above) for mp = m rounded up to 32 rows, zeros past m;
// with col_scale, each column times its scale first (in float32, then rounded).
AMX_TARGET uint16_t* activations_bf16(const float* x, int64_t m, int64_t cols, int64_t mp, int64_t steps,
                                      const float* col_scale = nullptr) {
  static thread_local std::vector<uint16_t> store;
  store.resize(static_cast<size_t>(mp * steps * 32));
  uint16_t* a = store.data();
  parallel_range(m, std::max<int64_t>(1, 8192 / std::max<int64_t>(1, cols)),
                 [&](int64_t r0, int64_t r1) { to_bf16_tiles(x, cols, steps, a, r0, r1, col_scale); });
  // Rows m..mp: zero (their part of the last row block's tiles).
  for (int64_t i = m; i < mp; i++)
    for (int64_t t = 0; t < steps; t++) std::memset(a + (i / 16) * steps * 512 + t * 512 + (i % 16) * 32, 0, 64);
  return a;
}

// Where a packed panel keeps its B tile for k-step s (of `steps`) and column tile t: the two
// tiles of a 2 × 2 block side by side, and a block's steps one after the other, so that the
// product reads the panel in order.
inline int64_t panel_tile(int64_t s, int64_t t, int64_t steps) { return ((t / 2) * steps + s) * 1024 + (t % 2) * 512; }

// 16 × 16 32-bit values transposed in registers: r[c] (16 lanes) becomes row c of the transpose.
AMX_TARGET inline void transpose16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // Then, in each 128-bit lane L of r[4g + j]: rows 4g..4g+3 of column 4L + j.
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // Column 4L + j gathers lane L of r[j], r[4 + j], r[8 + j], r[12 + j] (a 4 × 4 transpose of lanes).
  for (int j = 0; j < 4; j++) {
    const __m512i u0 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0x44), u1 = _mm512_shuffle_i32x4(r[j], r[4 + j], 0xee);
    const __m512i u2 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0x44), u3 = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], 0xee);
    t[j] = _mm512_shuffle_i32x4(u0, u2, 0x88);
    t[4 + j] = _mm512_shuffle_i32x4(u0, u2, 0xdd);
    t[8 + j] = _mm512_shuffle_i32x4(u1, u3, 0x88);
    t[12 + j] = _mm512_shuffle_i32x4(u1, u3, 0xdd);
  }
  for (int i = 0; i < 16; i++) r[i] = t[i];
}

// Forward packing: B[p, j] = W[j, p]. The tile for k-step s and column tile t holds in row r the
// pairs (W[j0 + 16t + c, k0 + 32s + 2r], ... + 1) for c < 16: 16 rows' 32 values each (16 pairs)
// transposed as 32-bit values. (A scatter of each row's pairs down a column made the packing
// cost more than the product where a W is used by few rows: the LM head's loss chunks.)
struct PackForward {
  const uint16_t* w;
  int64_t n, k;  // W [n, k]
  // Fills `dst` (panel_tile's layout) for k-steps [k0, k1) and `tiles` column tiles from j0, with
  // zeros past W's rows and columns.
  AMX_TARGET void operator()(int64_t k0, int64_t k1, int64_t j0, int64_t tiles, uint16_t* dst) const {
    const int64_t steps = (k1 - k0) / 32;
    for (int64_t t = 0; t < tiles; t++) {
      for (int64_t s = 0; s < steps; s++) {
        const int64_t p = k0 + s * 32, left = k - p;
        const __mmask32 mask = left >= 32 ? ~__mmask32{0} : left <= 0 ? 0 : static_cast<__mmask32>((uint64_t{1} << left) - 1);
        __m512i r[16];
        for (int64_t c = 0; c < 16; c++) {
          const int64_t j = j0 + t * 16 + c;
          r[c] = j < n ? _mm512_maskz_loadu_epi16(mask, w + j * k + p) : _mm512_setzero_si512();
        }
        transpose16x16(r);
        uint16_t* tile = dst + panel_tile(s, t, steps);
        for (int64_t i = 0; i < 16; i++) _mm512_storeu_si512(tile + i * 32, r[i]);
      }
    }
  }
};

// The same for int8 rows (one scale per row, applied to the output columns by the caller): each
// value an integer of at most 8 bits, exact in bf16.
struct PackForwardInt8 {
  const int8_t* w;
  int64_t n, k;  // W [n, k]
  AMX_TARGET void operator()(int64_t k0, int64_t k1, int64_t j0, int64_t tiles, uint16_t* dst) const {
    const int64_t steps = (k1 - k0) / 32;
    for (int64_t t = 0; t < tiles; t++) {
      for (int64_t s = 0; s < steps; s++) {
        const int64_t p = k0 + s * 32, left = k - p;
        const __mmask16 lo = left >= 16 ? 0xffff : left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1);
        const __mmask16 hi = left >= 32 ? 0xffff : left <= 16 ? 0 : static_cast<__mmask16>((1u << (left - 16)) - 1);
        __m512i r[16];
        for (int64_t c = 0; c < 16; c++) {
          const int64_t j = j0 + t * 16 + c;
          if (j >= n) {
            r[c] = _mm512_setzero_si512();
            continue;
          }
          const int8_t* row = w + j * k + p;
          const __m512 a = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(lo, row)));
          const __m512 b = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(hi, row + 16)));
          r[c] = (__m512i)_mm512_cvtne2ps_pbh(b, a);
        }
        transpose16x16(r);
        uint16_t* tile = dst + panel_tile(s, t, steps);
        for (int64_t i = 0; i < 16; i++) _mm512_storeu_si512(tile + i * 32, r[i]);
      }
    }
  }
};

// Backward packing: B[j, p] = W[j, p]. Row r of the tile for k-step s (W rows j = k0 + 32s + 2r
// and + 1) and columns p0..p0+15 interleaves the two rows' 16 values.
struct PackBackward {
  const uint16_t* w;
  int64_t n, k;  // W [n, k]
  AMX_TARGET void operator()(int64_t j0, int64_t j1, int64_t p0, int64_t tiles, uint16_t* dst) const {
    alignas(64) static const uint16_t order[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                   8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
    const __m512i idx = _mm512_load_si512(order);
    const int64_t steps = (j1 - j0) / 32;
    for (int64_t s = 0; s < steps; s++) {
      for (int64_t t = 0; t < tiles; t++) {
        uint16_t* tile = dst + panel_tile(s, t, steps);
        const int64_t p = p0 + t * 16;
        const int64_t left = k - p;
        const __mmask16 mask = left >= 16 ? 0xffff : left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1);
        for (int64_t r = 0; r < 16; r++) {
          const int64_t j = j0 + s * 32 + 2 * r;
          const __m256i a = j < n ? _mm256_maskz_loadu_epi16(mask, w + j * k + p) : _mm256_setzero_si256();
          const __m256i b = j + 1 < n ? _mm256_maskz_loadu_epi16(mask, w + (j + 1) * k + p) : _mm256_setzero_si256();
          const __m512i v = _mm512_permutex2var_epi16(_mm512_castsi256_si512(a), idx, _mm512_castsi256_si512(b));
          _mm512_storeu_si512(tile + r * 32, v);
        }
      }
    }
  }
};

// The same for int8 rows (one scale per row, folded into the activations by the caller): each
// value is an integer of at most 8 bits, exact in bf16.
struct PackBackwardInt8 {
  const int8_t* w;
  int64_t n, k;  // W [n, k]
  AMX_TARGET static __m256i widen(const int8_t* p, __mmask16 mask) {
    const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mask, p)));
    return (__m256i)_mm512_cvtneps_pbh(f);
  }
  AMX_TARGET void operator()(int64_t j0, int64_t j1, int64_t p0, int64_t tiles, uint16_t* dst) const {
    alignas(64) static const uint16_t order[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                   8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
    const __m512i idx = _mm512_load_si512(order);
    const int64_t steps = (j1 - j0) / 32;
    for (int64_t s = 0; s < steps; s++) {
      for (int64_t t = 0; t < tiles; t++) {
        uint16_t* tile = dst + panel_tile(s, t, steps);
        const int64_t p = p0 + t * 16;
        const int64_t left = k - p;
        const __mmask16 mask = left >= 16 ? 0xffff : left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1);
        for (int64_t r = 0; r < 16; r++) {
          const int64_t j = j0 + s * 32 + 2 * r;
          const __m256i a = j < n ? widen(w + j * k + p, mask) : _mm256_setzero_si256();
          const __m256i b = j + 1 < n ? widen(w + (j + 1) * k + p, mask) : _mm256_setzero_si256();
          const __m512i v = _mm512_permutex2var_epi16(_mm512_castsi256_si512(a), idx, _mm512_castsi256_si512(b));
          _mm512_storeu_si512(tile + r * 32, v);
        }
      }
    }
  }
};

// A C tile to/from rows i.., columns j.. of c (row stride ldc) holding `rows` × `cols` of its
// 16 × 16 (the rest of the tile is padding: read as anything, never written back).
#define AMX_STORE_C(T, c, ldc, i, j, rows, cols)                                          \
  do {                                                                                    \
    if ((rows) == 16 && (cols) == 16) {                                                   \
      _tile_stored(T, (c) + (i) * (ldc) + (j), (ldc) * 4);                                \
    } else {                                                                              \
      alignas(64) float tmp_[256];                                                        \
      _tile_stored(T, tmp_, 64);                                                          \
      for (int64_t r_ = 0; r_ < (rows); r_++)                                             \
        std::memcpy((c) + ((i) + r_) * (ldc) + (j), tmp_ + r_ * 16, (cols) * 4);          \
    }                                                                                     \
  } while (0)
#define AMX_LOAD_C(T, c, ldc, i, j, rows, cols)                                           \
  do {                                                                                    \
    if ((rows) == 16 && (cols) == 16) {                                                   \
      _tile_loadd(T, (c) + (i) * (ldc) + (j), (ldc) * 4);                                 \
    } else {                                                                              \
      alignas(64) float tmp_[256] = {};                                                   \
      for (int64_t r_ = 0; r_ < (rows); r_++)                                             \
        std::memcpy(tmp_ + r_ * 16, (c) + ((i) + r_) * (ldc) + (j), (cols) * 4);          \
      _tile_loadd(T, tmp_, 64);                                                           \
    }                                                                                     \
  } while (0)

inline int64_t clamp16(int64_t v) { return v < 0 ? 0 : v > 16 ? 16 : v; }

// C rows [i0, i1) (multiples of 32 within the padded A) × the panel's columns [j0, j0 + 16·tiles),
// reduction columns [k0, k1) of A (A tiles of `steps` steps per row block) against the packed panel. `first`: C starts at 0
// (else it is read back from c and added to).
AMX_TARGET void panel_product(const uint16_t* a, int64_t steps_a, const uint16_t* panel, int64_t tiles,
                              int64_t k0, int64_t k1, float* c, int64_t ldc, int64_t m, int64_t N,
                              int64_t i0, int64_t i1, int64_t j0, bool first) {
  const int64_t steps = (k1 - k0) / 32;
  for (int64_t i = i0; i < i1; i += 32) {
    const int64_t rows0 = clamp16(m - i), rows1 = clamp16(m - i - 16);
    for (int64_t t = 0; t < tiles; t += 2) {
      const int64_t j = j0 + t * 16;
      const int64_t cols0 = clamp16(N - j), cols1 = t + 1 < tiles ? clamp16(N - j - 16) : 0;
      if (first) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      } else {
        AMX_LOAD_C(0, c, ldc, i, j, rows0, cols0);
        AMX_LOAD_C(1, c, ldc, i, j + 16, rows0, cols1);
        AMX_LOAD_C(2, c, ldc, i + 16, j, rows1, cols0);
        AMX_LOAD_C(3, c, ldc, i + 16, j + 16, rows1, cols1);
      }
      const uint16_t* a0 = a + ((i / 16) * steps_a + k0 / 32) * 512;
      const uint16_t* a1 = a0 + steps_a * 512;
      const uint16_t* b = panel + panel_tile(0, t, steps);
      for (int64_t s = 0; s < steps; s++) {
        // Each load just before the first product that needs it, so that the loads of a step
        // overlap the previous products (the tile registers are not renamed).
        _tile_loadd(4, a0 + s * 512, 64);
        _tile_loadd(6, b + s * 1024, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, b + s * 1024 + 512, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(5, a1 + s * 512, 64);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      if (rows0 > 0) {
        if (cols0 > 0) AMX_STORE_C(0, c, ldc, i, j, rows0, cols0);
        if (cols1 > 0) AMX_STORE_C(1, c, ldc, i, j + 16, rows0, cols1);
      }
      if (rows1 > 0) {
        if (cols0 > 0) AMX_STORE_C(2, c, ldc, i + 16, j, rows1, cols0);
        if (cols1 > 0) AMX_STORE_C(3, c, ldc, i + 16, j + 16, rows1, cols1);
      }
    }
  }
}

// C [m, N] = A · B for A as bf16 tiles (above; K reduction columns, zero-padded to whole steps),
// B packed by `pack(k0, k1, j0, tiles, dst)`; bias [N] (or null) added.
// The same product split along the reduction instead (for a long reduction into few columns: the
// LM head's input gradient, K = vocabulary, N = hidden): kSplitTasks tasks each sum a contiguous
// range of B's rows (W's rows, read once, in order, packed kKS at a time for all columns) into an
// accumulator of their own, added up in task order at the end (a fixed count, so the sums do not
// depend on the number of threads). Split by columns, every task read a few cache lines of each
// of the vocabulary's rows and the packing cost more than the product.
constexpr int64_t kSplitTasks = 8;
constexpr int64_t kKS = 512;

template <class Pack>
void amx_gemm_split_k(const uint16_t* a, int64_t m, int64_t mp, int64_t N, int64_t K, const Pack& pack, float* c,
                      const float* bias, const float* col_scale) {
  const int64_t Kp = (K + 31) / 32 * 32, Np = (N + 31) / 32 * 32, tiles = Np / 16;
  const int64_t chunks = (Kp + kKS - 1) / kKS;
  const int64_t tasks = std::min(kSplitTasks, chunks);
  const int64_t per_task = (chunks + tasks - 1) / tasks;
  static thread_local std::vector<float> acc_store;
  acc_store.resize(static_cast<size_t>(tasks * mp * Np));
  float* acc = acc_store.data();
  pool().parallel_for(tasks, [&](int64_t task) {
    float* ct = acc + task * mp * Np;
    static thread_local std::vector<uint16_t> panel_store;
    panel_store.resize(static_cast<size_t>(kKS * tiles * 16));
    uint16_t* panel = panel_store.data();
    const int64_t c0 = task * per_task, c1 = std::min(chunks, c0 + per_task);
    if (c0 >= c1) {
      std::memset(ct, 0, static_cast<size_t>(mp * Np) * 4);
      return;
    }
    configure_tiles();
    for (int64_t ch = c0; ch < c1; ch++) {
      const int64_t k0 = ch * kKS, k1 = std::min(Kp, k0 + kKS);
      pack(k0, k1, 0, tiles, panel);
      panel_product(a, Kp / 32, panel, tiles, k0, k1, ct, Np, mp, Np, 0, mp, 0, ch == c0);
    }
    release_tiles();
  });
  parallel_range(m, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, N)), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; i++)
      for (int64_t j = 0; j < N; j++) {
        float sum = 0.f;
        for (int64_t t = 0; t < tasks; t++) sum += acc[(t * mp + i) * Np + j];
        if (col_scale) sum *= col_scale[j];
        c[i * N + j] = sum + (bias ? bias[j] : 0.f);
      }
  });
}

template <class Pack>
void amx_gemm(const uint16_t* a, int64_t m, int64_t mp, int64_t N, int64_t K, const Pack& pack, float* c,
              const float* bias, const float* col_scale = nullptr) {
  // A long reduction into few columns, and an accumulator per task that stays small (<= 32 MB).
  if (K >= 16 * N && kSplitTasks * mp * N * 4 <= (int64_t{32} << 20)) {
    amx_gemm_split_k(a, m, mp, N, K, pack, c, bias, col_scale);
    return;
  }
  const int64_t Kp = (K + 31) / 32 * 32;
  const int64_t panels = (N + kNB - 1) / kNB;
  const int threads = pool().size();
  // Enough tasks that the threads finish together (pieces of A's rows when N has few panels).
  const int64_t blocks = mp / 32;
  const int64_t m_chunks = std::min(blocks, std::max<int64_t>(1, (4 * threads + panels - 1) / panels));
  const int64_t rows_per_chunk = (blocks + m_chunks - 1) / m_chunks * 32;
  pool().parallel_for(panels * m_chunks, [&](int64_t task) {
    const int64_t pnl = task / m_chunks, chunk = task % m_chunks;
    const int64_t j0 = pnl * kNB;
    // Tiles of 16 columns, rounded up to an even count (2 × 2 blocks; the packers zero the extra).
    const int64_t tiles = ((std::min(N, j0 + kNB) - j0 + 15) / 16 + 1) / 2 * 2;
    const int64_t i0 = chunk * rows_per_chunk, i1 = std::min(mp, i0 + rows_per_chunk);
    if (i0 >= i1) return;
    static thread_local std::vector<uint16_t> panel_store;
    panel_store.resize(static_cast<size_t>(std::min(Kp, kKC) * tiles * 16));
    uint16_t* panel = panel_store.data();
    configure_tiles();
    for (int64_t k0 = 0; k0 < Kp; k0 += kKC) {
      const int64_t k1 = std::min(Kp, k0 + kKC);
      pack(k0, k1, j0, tiles, panel);
      panel_product(a, Kp / 32, panel, tiles, k0, k1, c, N, m, N, i0, i1, j0, k0 == 0);
    }
    release_tiles();
    // Output columns times their scale (int8 weights), then the bias.
    if (bias || col_scale) {
      const int64_t je = std::min(N, j0 + kNB);
      for (int64_t i = i0; i < std::min(m, i1); i++)
        for (int64_t j = j0; j < je; j++)
          c[i * N + j] = c[i * N + j] * (col_scale ? col_scale[j] : 1.f) + (bias ? bias[j] : 0.f);
    }
  });
}

}  // namespace

bool amx_bf16_ready() {
  static const bool ready = [] {
    const char* env = std::getenv("TEAMLLM_NATIVE_AMX");
    if (env && (std::strcmp(env, "off") == 0 || std::strcmp(env, "0") == 0)) return false;
    return cpu_has_amx_bf16() && kernel_grants_tiles();
  }();
  return ready;
}

void linear_bf16_amx(const uint16_t* w, const float* x, const float* bias, float* y, int64_t m, int64_t n,
                     int64_t k) {
  const int64_t mp = (m + 31) / 32 * 32;
  const uint16_t* a = activations_bf16(x, m, k, mp, (k + 31) / 32);
  amx_gemm(a, m, mp, n, k, PackForward{w, n, k}, y, bias);
}

void linear_t_bf16_amx(const uint16_t* w, const float* dy, float* dx, int64_t m, int64_t n, int64_t k) {
  const int64_t mp = (m + 31) / 32 * 32;
  const uint16_t* a = activations_bf16(dy, m, n, mp, (n + 31) / 32);
  amx_gemm(a, m, mp, k, n, PackBackward{w, n, k}, dx, nullptr);
}

void linear_int8_amx(const int8_t* w, const float* scales, const float* x, const float* bias, float* y, int64_t m,
                     int64_t n, int64_t k) {
  const int64_t mp = (m + 31) / 32 * 32;
  const uint16_t* a = activations_bf16(x, m, k, mp, (k + 31) / 32);
  amx_gemm(a, m, mp, n, k, PackForwardInt8{w, n, k}, y, bias, scales);
}

void linear_int8_t_amx(const int8_t* w, const float* scales, const float* dy, float* dx, int64_t m, int64_t n,
                       int64_t k) {
  const int64_t mp = (m + 31) / 32 * 32;
  const uint16_t* a = activations_bf16(dy, m, n, mp, (n + 31) / 32, scales);
  amx_gemm(a, m, mp, k, n, PackBackwardInt8{w, n, k}, dx, nullptr);
}

#else

bool amx_bf16_ready() { return false; }
void linear_int8_t_amx(const int8_t*, const float*, const float*, float*, int64_t, int64_t, int64_t) {}
void linear_int8_amx(const int8_t*, const float*, const float*, const float*, float*, int64_t, int64_t, int64_t) {}
void linear_bf16_amx(const uint16_t*, const float*, const float*, float*, int64_t, int64_t, int64_t) {}
void linear_t_bf16_amx(const uint16_t*, const float*, float*, int64_t, int64_t, int64_t) {}

#endif

}  // namespace teamllm
