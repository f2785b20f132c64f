// exp and erf written without branches or library calls, so that GCC vectorizes the loops that
// use them (libm's expf is a call per element; these run 8-16 lanes at a time). Accuracy is that
// of float32 for exp (Cephes' polynomial, ~1 ulp) and 1.5e-7 absolute for erf, the same
// Abramowitz-Stegun 7.1.26 formula the TensorFlow.js cpu backend uses, so results match it.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace teamllm {

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// e^x for finite x; +inf above 88.72, 0 below -87.3 (where the exact result is subnormal).
inline float exp_fast(float x) {
  // Clamp with selects, not fmin/fmax: GCC does not vectorize those (their NaN rules differ).
  float xc = x < -87.3f ? -87.3f : x;
  xc = xc > 88.72283f ? 88.72283f : xc;
  const float fx = std::floor(xc * 1.44269504088896341f + 0.5f);
  float r = xc - fx * 0.693359375f;
  r = r - fx * -2.12194440e-4f;
  const float z = r * r;
  float y = 1.9875691500E-4f;
  y = y * r + 1.3981999507E-3f;
  y = y * r + 8.3334519073E-3f;
  y = y * r + 4.1665795894E-2f;
  y = y * r + 1.6666665459E-1f;
  y = y * r + 5.0000001201E-1f;
  y = y * z + r + 1.0f;
  // y · 2^n; 2^128 (n = 128 near the top of the range) is not a float, so positive n is
  // applied as 2^(n−1)·2.
  const int32_t n = static_cast<int32_t>(fx);
  const int32_t n1 = n > 0 ? n - 1 : n;
  y = y * bits_to_float(static_cast<uint32_t>(n1 + 127) << 23);
  y = n > 0 ? y * 2.0f : y;
  y = x > 88.72283f ? INFINITY : y;
  y = x < -87.3f ? 0.f : y;
  return x != x ? x : y;  // NaN stays NaN
}

// erf(x), Abramowitz-Stegun 7.1.26 (as tfjs' cpu backend computes it).
inline float erf_fast(float x) {
  const float a = std::fabs(x);
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  const float poly =
      ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t +
       0.254829592f) *
      t;
  const float r = 1.0f - poly * exp_fast(-a * a);
  return std::copysign(r, x);
}

// Exact GELU: 0.5·x·(1 + erf(x/√2)).
inline float gelu_fast(float x) { return 0.5f * x * (1.0f + erf_fast(x * 0.70710678118654752f)); }

// d GELU / dx = Φ(x) + x·φ(x).
inline float gelu_deriv(float x) {
  const float cdf = 0.5f * (1.0f + erf_fast(x * 0.70710678118654752f));
  const float pdf = exp_fast(-0.5f * x * x) * 0.3989422804014327f;
  return cdf + x * pdf;
}

inline float tanh_fast(float x) {
  // tanh(x) = 1 − 2/(e^{2x}+1), exact enough in float; saturates cleanly for large |x|.
  float xc = x < -20.f ? -20.f : x;
  xc = xc > 20.f ? 20.f : xc;
  const float e = exp_fast(2.0f * xc);
  return 1.0f - 2.0f / (e + 1.0f);
}

inline float sigmoid_fast(float x) { return 1.0f / (1.0f + exp_fast(-x)); }

// ---- dropout masks ------------------------------------------------------------------------------
// A keep/drop decision is a hash of (seed, element index): no RNG state, so the backward pass
// recomputes the forward's mask instead of storing it, and the result does not depend on how the
// work was split over threads. 32-bit integer arithmetic only, so the loops vectorize.

// Chris Wellons' "lowbias32" integer hash.
inline uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Dropout with probability `rate`: kept elements are scaled by 1/(1−rate), as tf.dropout does.
struct Dropout {
  uint32_t seed = 0;
  uint32_t threshold = 0;  // keep when hash >= threshold; 0 = dropout off
  float scale = 1.f;
  bool on() const { return threshold != 0; }
  // The multiplier of element `index`: 0 or 1/(1−rate).
  float at(uint32_t index) const { return hash32(index * 0x9E3779B9U ^ seed) >= threshold ? scale : 0.f; }
};

// `site` tells apart the masks drawn from one seed (attention, the two residual branches, ...).
inline Dropout make_dropout(float rate, uint32_t seed, uint32_t site) {
  Dropout d;
  if (!(rate > 0.f)) return d;
  d.seed = hash32(seed ^ hash32(site + 0x632be5abU));
  const double t = static_cast<double>(rate) * 4294967296.0;
  d.threshold = t >= 4294967295.0 ? 4294967295U : (t < 1.0 ? 1U : static_cast<uint32_t>(t));
  d.scale = 1.0f / (1.0f - rate);
  return d;
}

}  // namespace teamllm
