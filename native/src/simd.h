// A 16-float vector type for the hand-written loops (GCC/Clang vector extension): one AVX-512
// register, or two AVX ones, or four SSE ones, whatever the build targets.
#pragma once

#include <cmath>
#include <cstdint>

namespace teamllm {

constexpr int64_t kLanes = 16;

// 16 floats as one value (one AVX-512 register, two AVX ones). GCC's vector extension: plain
// fixed-size loops over a local array were compiled to 16 scalar FMAs. aligned(4): unaligned
// loads and stores are fine.
typedef float vf16 __attribute__((vector_size(kLanes * sizeof(float)), aligned(4)));

inline vf16 load16(const float* p) { return *reinterpret_cast<const vf16*>(p); }
inline void store16(float* p, vf16 v) { *reinterpret_cast<vf16*>(p) = v; }

// Largest of n values (a NaN may or may not win; softmax turns it into NaNs either way).
// Written with vectors: `omp simd reduction(max)` over std::max came out scalar and slow.
inline float row_max(const float* x, int64_t n) {
  float mx = -INFINITY;
  int64_t j = 0;
  if (n >= kLanes) {
    vf16 m = load16(x);
    for (j = kLanes; j + kLanes <= n; j += kLanes) {
      const vf16 v = load16(x + j);
      m = m > v ? m : v;
    }
    for (int l = 0; l < kLanes; l++) mx = m[l] > mx ? m[l] : mx;
  }
  for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
  return mx;
}

}  // namespace teamllm
