// Node-API bindings: thin wrappers that check their arguments and call the kernels.
//
// Every array argument is a typed array owned by JavaScript (the tfjs backend's tensor storage),
// used in place: no copies. Sizes are checked here, before any kernel runs, because a kernel that
// reads past an array would crash the whole process instead of throwing.
#include <napi.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <cstdint>
#include <string>
#include <vector>

#include "kernels.h"
#include "pool.h"

namespace {

using namespace teamllm;

struct F32 {
  float* data;
  int64_t size;
};

[[noreturn]] void fail(const Napi::CallbackInfo& info, const std::string& msg) {
  throw Napi::TypeError::New(info.Env(), "teamllm_native: " + msg);
}

F32 f32(const Napi::CallbackInfo& info, size_t i, int64_t min_size, bool optional = false) {
  const Napi::Value v = info[i];
  if (optional && (v.IsNull() || v.IsUndefined())) return {nullptr, 0};
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    fail(info, "argument " + std::to_string(i) + " must be a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  const int64_t n = static_cast<int64_t>(a.ElementLength());
  if (n < min_size)
    fail(info, "argument " + std::to_string(i) + " has " + std::to_string(n) +
                   " elements, needs " + std::to_string(min_size));
  return {a.Data(), n};
}

const int32_t* i32(const Napi::CallbackInfo& info, size_t i, int64_t min_size) {
  const Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    fail(info, "argument " + std::to_string(i) + " must be an Int32Array");
  auto a = v.As<Napi::Int32Array>();
  if (static_cast<int64_t>(a.ElementLength()) < min_size)
    fail(info, "argument " + std::to_string(i) + " is too short");
  return a.Data();
}

int64_t num(const Napi::CallbackInfo& info, size_t i) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) fail(info, "argument " + std::to_string(i) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (d < 0) fail(info, "argument " + std::to_string(i) + " must not be negative");
  return static_cast<int64_t>(d);
}

double real(const Napi::CallbackInfo& info, size_t i) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) fail(info, "argument " + std::to_string(i) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool flag(const Napi::CallbackInfo& info, size_t i) { return info[i].ToBoolean().Value(); }

// A dropout seed: a JS number taken as an unsigned 32-bit integer (wrapping).
uint32_t seed32(const Napi::CallbackInfo& info, size_t i) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) fail(info, "argument " + std::to_string(i) + " must be a number");
  return v.As<Napi::Number>().Uint32Value();
}

float rate(const Napi::CallbackInfo& info, size_t i) {
  const double r = real(info, i);
  if (!(r >= 0.0 && r < 1.0)) fail(info, "a dropout rate must be in [0, 1)");
  return static_cast<float>(r);
}

// A shape: a JS array of up to 8 non-negative integers.
int shape(const Napi::CallbackInfo& info, size_t i, int64_t* out) {
  if (!info[i].IsArray()) fail(info, "argument " + std::to_string(i) + " must be a shape array");
  auto a = info[i].As<Napi::Array>();
  const uint32_t n = a.Length();
  if (n > 8) fail(info, "rank above 8 is not supported");
  for (uint32_t k = 0; k < n; k++) {
    const Napi::Value d = a.Get(k);
    if (!d.IsNumber()) fail(info, "shape entries must be numbers");
    out[k] = static_cast<int64_t>(d.As<Napi::Number>().DoubleValue());
    if (out[k] < 0) fail(info, "shape entries must not be negative");
  }
  return static_cast<int>(n);
}

int64_t product(const int64_t* s, int n) {
  int64_t p = 1;
  for (int i = 0; i < n; i++) p *= s[i];
  return p;
}

// info(): {threads, blas, gemm}; gemm is 'openblas' or 'own' (sgemm.cc, a build without OpenBLAS)
Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("threads", pool().size());
  o.Set("blas", std::string(blas_config()));
  o.Set("gemm", std::string(have_openblas() ? "openblas" : "own"));
  return o;
}

// Elements a row-major [rows, cols] operand with row stride ld spans (checked before a product).
int64_t span(const Napi::CallbackInfo& info, int64_t rows, int64_t cols, int64_t ld) {
  if (rows == 0 || cols == 0) return 0;
  if (ld < cols) fail(info, "leading dimension smaller than the row");
  return (rows - 1) * ld + cols;
}

// sgemm(useBlas, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc): one float32
// product on the calling thread, on OpenBLAS (useBlas and linked) or on sgemm.cc's. For tests.
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  const bool ta = flag(info, 1), tb = flag(info, 2);
  const int64_t m = num(info, 3), n = num(info, 4), k = num(info, 5);
  const int64_t lda = num(info, 8), ldb = num(info, 10), ldc = num(info, 13);
  F32 a = f32(info, 7, ta ? span(info, k, m, lda) : span(info, m, k, lda));
  F32 b = f32(info, 9, tb ? span(info, n, k, ldb) : span(info, k, n, ldb));
  F32 c = f32(info, 12, span(info, m, n, ldc));
  sgemm(ta, tb, m, n, k, static_cast<float>(real(info, 6)), a.data, lda, b.data, ldb,
        static_cast<float>(real(info, 11)), c.data, ldc, flag(info, 0));
  return info.Env().Undefined();
}

// sgemv(useBlas, m, n, alpha, a, lda, x, incx, beta, y): y = alpha·A·x + beta·y. For tests.
Napi::Value Sgemv(const Napi::CallbackInfo& info) {
  const int64_t m = num(info, 1), n = num(info, 2), lda = num(info, 5), incx = num(info, 7);
  if (incx < 1) fail(info, "incx must be at least 1");
  F32 a = f32(info, 4, span(info, m, n, lda));
  F32 x = f32(info, 6, n == 0 ? 0 : (n - 1) * incx + 1);
  F32 y = f32(info, 9, m);
  sgemv(m, n, static_cast<float>(real(info, 3)), a.data, lda, x.data, incx,
        static_cast<float>(real(info, 8)), y.data, flag(info, 0));
  return info.Env().Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  pool().resize(static_cast<int>(num(info, 0)));
  return info.Env().Undefined();
}

// matmul(a, b, c, batchA, batchB, m, n, k, transA, transB, bias|null, activation, alpha)
Napi::Value MatMul(const Napi::CallbackInfo& info) {
  const int64_t ba = num(info, 3), bb = num(info, 4), m = num(info, 5), n = num(info, 6),
                k = num(info, 7);
  const int64_t batch = std::max(ba, bb);
  if (ba < 1 || bb < 1 || (ba != bb && ba != 1 && bb != 1)) fail(info, "bad batch sizes");
  F32 a = f32(info, 0, ba * m * k), b = f32(info, 1, bb * k * n), c = f32(info, 2, batch * m * n);
  F32 bias = f32(info, 10, 1, true);
  if (bias.data && bias.size != 1 && bias.size != n) fail(info, "bias must have 1 or n elements");
  batch_matmul(a.data, b.data, c.data, ba, bb, m, n, k, flag(info, 8), flag(info, 9), bias.data,
               bias.size, static_cast<int>(num(info, 11)), static_cast<float>(real(info, 12)));
  return info.Env().Undefined();
}

// A Uint16Array (bf16 or half bits) or Int8Array argument of at least min_size elements.
template <class T, napi_typedarray_type Type>
const T* typed(const Napi::CallbackInfo& info, size_t i, int64_t min_size, const char* what) {
  const Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != Type)
    fail(info, "argument " + std::to_string(i) + " must be a " + what);
  auto a = v.As<Napi::TypedArrayOf<T>>();
  if (static_cast<int64_t>(a.ElementLength()) < min_size)
    fail(info, "argument " + std::to_string(i) + " has " + std::to_string(a.ElementLength()) +
                   " elements, needs " + std::to_string(min_size));
  return a.Data();
}

int quant_mode(const Napi::CallbackInfo& info, size_t i) {
  const int64_t mode = num(info, i);
  if (mode != kQuantBest && mode != kQuantPortable && mode != kQuantNoAmx)
    fail(info, "mode must be 0 (best), 1 (portable) or 2 (best without AMX)");
  return static_cast<int>(mode);
}

// linear16(kind, x, w, bias|null, y, m, n, k, mode): kind 0 bf16, 1 half; W [n, k] Uint16Array.
Napi::Value Linear16(const Napi::CallbackInfo& info) {
  const int64_t kind = num(info, 0), m = num(info, 5), n = num(info, 6), k = num(info, 7);
  if (kind != kBf16 && kind != kHalf) fail(info, "kind must be 0 (bf16) or 1 (half)");
  F32 x = f32(info, 1, m * k);
  const uint16_t* w = typed<uint16_t, napi_uint16_array>(info, 2, n * k, "Uint16Array");
  F32 bias = f32(info, 3, n, true);
  F32 y = f32(info, 4, m * n);
  linear16(static_cast<int>(kind), w, x.data, bias.data, y.data, m, n, k, quant_mode(info, 8));
  return info.Env().Undefined();
}

// linearInt8(x, w, scales, group, bias|null, y, m, n, k, mode): W [n, k] Int8Array, scales [n, k/group].
Napi::Value LinearInt8(const Napi::CallbackInfo& info) {
  const int64_t group = num(info, 3), m = num(info, 6), n = num(info, 7), k = num(info, 8);
  if (group < 1 || k % group != 0 || (group != k && group % 16 != 0))
    fail(info, "group must divide k and be a multiple of 16 (or k itself)");
  F32 x = f32(info, 0, m * k);
  const int8_t* w = typed<int8_t, napi_int8_array>(info, 1, n * k, "Int8Array");
  F32 scales = f32(info, 2, n * (k / group));
  F32 bias = f32(info, 4, n, true);
  F32 y = f32(info, 5, m * n);
  linear_int8(w, scales.data, group, x.data, bias.data, y.data, m, n, k, quant_mode(info, 9));
  return info.Env().Undefined();
}

// linear16T(kind, dy, w, dx, m, n, k, mode): dx [m, k] = dy [m, n] · W, W [n, k] bf16 (0) or half (1) bits.
Napi::Value Linear16T(const Napi::CallbackInfo& info) {
  const int64_t kind = num(info, 0), m = num(info, 4), n = num(info, 5), k = num(info, 6);
  if (kind != kBf16 && kind != kHalf) fail(info, "kind must be 0 (bf16) or 1 (half)");
  F32 dy = f32(info, 1, m * n);
  const uint16_t* w = typed<uint16_t, napi_uint16_array>(info, 2, n * k, "Uint16Array");
  F32 dx = f32(info, 3, m * k);
  linear16_t(static_cast<int>(kind), w, dy.data, dx.data, m, n, k, quant_mode(info, 7));
  return info.Env().Undefined();
}

// linearInt8T(dy, w, scales, group, dx, m, n, k[, mode]): dx [m, k] = dy [m, n] · W, W [n, k] Int8Array.
Napi::Value LinearInt8T(const Napi::CallbackInfo& info) {
  const int64_t group = num(info, 3), m = num(info, 5), n = num(info, 6), k = num(info, 7);
  if (group < 1 || k % group != 0 || (group != k && group % 16 != 0))
    fail(info, "group must divide k and be a multiple of 16 (or k itself)");
  F32 dy = f32(info, 0, m * n);
  const int8_t* w = typed<int8_t, napi_int8_array>(info, 1, n * k, "Int8Array");
  F32 scales = f32(info, 2, n * (k / group));
  F32 dx = f32(info, 4, m * k);
  // mode (optional, 8): 0 runs AMX where it can (per-row scales, 32 rows or more); absent: portable.
  const int mode = info.Length() > 8 && !info[8].IsUndefined() ? quant_mode(info, 8) : static_cast<int>(kQuantPortable);
  linear_int8_t(w, scales.data, group, dy.data, dx.data, m, n, k, mode);
  return info.Env().Undefined();
}

// rmsNorm(x, w, y, rows, cols, eps): row-wise RMSNorm (y may be x).
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info, 3), cols = num(info, 4);
  F32 x = f32(info, 0, rows * cols);
  F32 w = f32(info, 1, cols);
  F32 y = f32(info, 2, rows * cols);
  rms_norm(x.data, w.data, y.data, rows, cols, real(info, 5));
  return info.Env().Undefined();
}

// siluMul(gate, up, y): y = gate · sigmoid(gate) · up (y may be gate).
Napi::Value SiluMul(const Napi::CallbackInfo& info) {
  F32 gate = f32(info, 0, 0);
  F32 up = f32(info, 1, gate.size);
  F32 y = f32(info, 2, gate.size);
  silu_mul(gate.data, up.data, y.data, gate.size);
  return info.Env().Undefined();
}

// rmsNormTrain(x, w, y, rstd, rows, cols, eps): rms_norm keeping rstd [rows].
Napi::Value RmsNormTrain(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info, 4), cols = num(info, 5);
  F32 x = f32(info, 0, rows * cols);
  F32 w = f32(info, 1, cols);
  F32 y = f32(info, 2, rows * cols);
  F32 rstd = f32(info, 3, rows);
  rms_norm_train(x.data, w.data, y.data, rstd.data, rows, cols, real(info, 6));
  return info.Env().Undefined();
}

// rmsNormGrad(x, w, rstd, dy, dx, dw, rows, cols)
Napi::Value RmsNormGrad(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info, 6), cols = num(info, 7);
  F32 x = f32(info, 0, rows * cols);
  F32 w = f32(info, 1, cols);
  F32 rstd = f32(info, 2, rows);
  F32 dy = f32(info, 3, rows * cols);
  F32 dx = f32(info, 4, rows * cols);
  F32 dw = f32(info, 5, cols);
  rms_norm_grad(x.data, w.data, rstd.data, dy.data, dx.data, dw.data, rows, cols);
  return info.Env().Undefined();
}

// rope(x, cos, sin, y, b, t, heads, d, inverse): RoPE on x [b, t, heads, d], cos/sin [t, d].
Napi::Value Rope(const Napi::CallbackInfo& info) {
  const int64_t b = num(info, 4), t = num(info, 5), heads = num(info, 6), d = num(info, 7);
  if (d % 2) fail(info, "rope: the head dimension must be even");
  F32 x = f32(info, 0, b * t * heads * d);
  F32 c = f32(info, 1, t * d);
  F32 s = f32(info, 2, t * d);
  F32 y = f32(info, 3, b * t * heads * d);
  rope(x.data, c.data, s.data, y.data, b, t, heads, d, flag(info, 8));
  return info.Env().Undefined();
}

// siluMulGrad(gate, up, dy, dgate, dup)
Napi::Value SiluMulGrad(const Napi::CallbackInfo& info) {
  F32 gate = f32(info, 0, 0);
  F32 up = f32(info, 1, gate.size);
  F32 dy = f32(info, 2, gate.size);
  F32 dgate = f32(info, 3, gate.size);
  F32 dup = f32(info, 4, gate.size);
  silu_mul_grad(gate.data, up.data, dy.data, dgate.data, dup.data, gate.size);
  return info.Env().Undefined();
}

// loraForward(x, a, b, y, t, m, in, out, r, scale): t = s·x·Aᵀ, y += t·Bᵀ (y holds x·Wᵀ).
Napi::Value LoraForward(const Napi::CallbackInfo& info) {
  const int64_t m = num(info, 5), in = num(info, 6), out = num(info, 7), r = num(info, 8);
  F32 x = f32(info, 0, m * in);
  F32 a = f32(info, 1, r * in);
  F32 b = f32(info, 2, out * r);
  F32 y = f32(info, 3, m * out);
  F32 t = f32(info, 4, m * r);
  lora_forward(x.data, a.data, b.data, y.data, t.data, m, in, out, r, static_cast<float>(real(info, 9)));
  return info.Env().Undefined();
}

// loraBackward(dy, x, t, a, b, dx, da, db, m, in, out, r, scale): dx += s·dy·B·A, dA, dB.
Napi::Value LoraBackward(const Napi::CallbackInfo& info) {
  const int64_t m = num(info, 8), in = num(info, 9), out = num(info, 10), r = num(info, 11);
  F32 dy = f32(info, 0, m * out);
  F32 x = f32(info, 1, m * in);
  F32 t = f32(info, 2, m * r);
  F32 a = f32(info, 3, r * in);
  F32 b = f32(info, 4, out * r);
  F32 dx = f32(info, 5, m * in);
  F32 da = f32(info, 6, r * in);
  F32 db = f32(info, 7, out * r);
  lora_backward(dy.data, x.data, t.data, a.data, b.data, dx.data, da.data, db.data, m, in, out, r,
                static_cast<float>(real(info, 12)));
  return info.Env().Undefined();
}

// adviseHugePages(typedArray) -> boolean: backs the array's memory (its whole 2 MB pages inside
// it) with transparent huge pages: MADV_HUGEPAGE, then MADV_COLLAPSE (Linux 6.1+) to move what is
// already there into huge pages now. Streaming a model's weights once per decoded token is memory
// bound, and with 4 KB pages it ran slower (a read of 512 MB with 2 threads: ~21 GB/s with 4 KB
// pages, ~27 GB/s with 2 MB ones, on this machine). The contents do not change. True when the
// collapse succeeded; false (nothing else happens) elsewhere.
Napi::Value AdviseHugePages(const Napi::CallbackInfo& info) {
  const Napi::Value v = info[0];
  if (!v.IsTypedArray()) fail(info, "adviseHugePages: argument 0 must be a typed array");
  bool collapsed = false;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  auto a = v.As<Napi::TypedArray>();
  const uintptr_t start = reinterpret_cast<uintptr_t>(a.ArrayBuffer().Data()) + a.ByteOffset();
  const uintptr_t huge = uintptr_t{2} << 20;
  const uintptr_t begin = (start + huge - 1) & ~(huge - 1), end = (start + a.ByteLength()) & ~(huge - 1);
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
  if (end > begin && madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE) == 0)
    collapsed = madvise(reinterpret_cast<void*>(begin), end - begin, MADV_COLLAPSE) == 0;
#endif
  return Napi::Boolean::New(info.Env(), collapsed);
}

// quantKernels(): which kernel each weight format runs by default here.
Napi::Value QuantKernels(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("bf16", std::string(linear16_kernel(kBf16, kQuantBest)));
  o.Set("f16", std::string(linear16_kernel(kHalf, kQuantBest)));
  o.Set("int8", std::string(linear_int8_kernel(kQuantBest)));
  return o;
}

// unary(op, x, y)
Napi::Value Unary(const Napi::CallbackInfo& info) {
  F32 x = f32(info, 1, 0);
  F32 y = f32(info, 2, x.size);
  unary(static_cast<int>(num(info, 0)), x.data, y.data, x.size);
  return info.Env().Undefined();
}

// binary(op, a, aShape, b, bShape, y, yShape): shapes aligned to the same rank.
Napi::Value Binary(const Napi::CallbackInfo& info) {
  int64_t as[8], bs[8], ys[8];
  const int ra = shape(info, 2, as), rb = shape(info, 4, bs), ry = shape(info, 6, ys);
  if (ra != ry || rb != ry) fail(info, "binary: shapes must have the output's rank");
  for (int i = 0; i < ry; i++) {
    if ((as[i] != ys[i] && as[i] != 1) || (bs[i] != ys[i] && bs[i] != 1))
      fail(info, "binary: shapes do not broadcast to the output");
  }
  F32 a = f32(info, 1, product(as, ra)), b = f32(info, 3, product(bs, rb)),
      y = f32(info, 5, product(ys, ry));
  if (product(ys, ry) == 0) return info.Env().Undefined();
  binary(static_cast<int>(num(info, 0)), a.data, as, b.data, bs, y.data, ys, ry);
  return info.Env().Undefined();
}

// transpose(x, shape, perm, y)
Napi::Value Transpose(const Napi::CallbackInfo& info) {
  int64_t s[8], p[8];
  const int r = shape(info, 1, s);
  if (shape(info, 2, p) != r) fail(info, "transpose: perm must have the input's rank");
  bool seen[8] = {false, false, false, false, false, false, false, false};
  for (int i = 0; i < r; i++) {
    if (p[i] >= r || seen[p[i]]) fail(info, "transpose: bad permutation");
    seen[p[i]] = true;
  }
  const int64_t total = product(s, r);
  F32 x = f32(info, 0, total), y = f32(info, 3, total);
  if (total == 0) return info.Env().Undefined();
  transpose(x.data, s, p, r, y.data);
  return info.Env().Undefined();
}

// reduce(op, x, y, outer, mid, inner)
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  const int64_t outer = num(info, 3), mid = num(info, 4), inner = num(info, 5);
  F32 x = f32(info, 1, outer * mid * inner), y = f32(info, 2, outer * inner);
  reduce(static_cast<int>(num(info, 0)), x.data, y.data, outer, mid, inner);
  return info.Env().Undefined();
}

// copyBlock(src, srcOffset, srcStride, dst, dstOffset, dstStride, rows, cols)
Napi::Value CopyBlock(const Napi::CallbackInfo& info) {
  const int64_t so = num(info, 1), ss = num(info, 2), dof = num(info, 4), ds = num(info, 5),
                rows = num(info, 6), cols = num(info, 7);
  if (rows == 0 || cols == 0) return info.Env().Undefined();
  if (cols > ss || cols > ds) fail(info, "copyBlock: rows overlap");
  F32 src = f32(info, 0, so + (rows - 1) * ss + cols), dst = f32(info, 3, dof + (rows - 1) * ds + cols);
  copy_block(src.data + so, ss, dst.data + dof, ds, rows, cols);
  return info.Env().Undefined();
}

// slice(x, shape, begin, size, y)
Napi::Value Slice(const Napi::CallbackInfo& info) {
  int64_t s[8], b[8], z[8];
  const int r = shape(info, 1, s);
  if (shape(info, 2, b) != r || shape(info, 3, z) != r) fail(info, "slice: ranks differ");
  for (int i = 0; i < r; i++)
    if (b[i] + z[i] > s[i]) fail(info, "slice: out of bounds");
  F32 x = f32(info, 0, product(s, r)), y = f32(info, 4, product(z, r));
  slice(x.data, s, b, z, r, y.data);
  return info.Env().Undefined();
}

// pad(x, xShape, before, yShape, value, y)
Napi::Value Pad(const Napi::CallbackInfo& info) {
  int64_t xs[8], bf[8], ys[8];
  const int r = shape(info, 1, xs);
  if (shape(info, 2, bf) != r || shape(info, 3, ys) != r) fail(info, "pad: ranks differ");
  for (int i = 0; i < r; i++)
    if (bf[i] + xs[i] > ys[i]) fail(info, "pad: x does not fit");
  F32 x = f32(info, 0, product(xs, r)), y = f32(info, 5, product(ys, r));
  pad(x.data, xs, bf, ys, r, static_cast<float>(real(info, 4)), y.data);
  return info.Env().Undefined();
}

// addN([x...], y)
Napi::Value AddN(const Napi::CallbackInfo& info) {
  if (!info[0].IsArray()) fail(info, "addN: first argument must be an array");
  auto list = info[0].As<Napi::Array>();
  F32 y = f32(info, 1, 0);
  std::vector<const float*> xs;
  for (uint32_t i = 0; i < list.Length(); i++) {
    const Napi::Value v = list.Get(i);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      fail(info, "addN: inputs must be Float32Arrays");
    auto a = v.As<Napi::Float32Array>();
    if (static_cast<int64_t>(a.ElementLength()) < y.size) fail(info, "addN: input too short");
    xs.push_back(a.Data());
  }
  add_n(xs.data(), static_cast<int>(xs.size()), y.data, y.size);
  return info.Env().Undefined();
}

// softmax(x, y, rows, cols)
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info, 2), cols = num(info, 3);
  F32 x = f32(info, 0, rows * cols), y = f32(info, 1, rows * cols);
  softmax(x.data, y.data, rows, cols);
  return info.Env().Undefined();
}

// layerNorm(x, w, b|null, y, mean, rstd, rows, cols, eps)
Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info, 6), cols = num(info, 7);
  F32 x = f32(info, 0, rows * cols), w = f32(info, 1, cols), b = f32(info, 2, cols, true),
      y = f32(info, 3, rows * cols), mean = f32(info, 4, rows), rstd = f32(info, 5, rows);
  layer_norm(x.data, w.data, b.data, y.data, mean.data, rstd.data, rows, cols,
             static_cast<float>(real(info, 8)));
  return info.Env().Undefined();
}

// layerNormGrad(x, w, mean, rstd, dy, dx, dw, db|null, rows, cols)
Napi::Value LayerNormGrad(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info, 8), cols = num(info, 9);
  const int64_t n = rows * cols;
  F32 x = f32(info, 0, n), w = f32(info, 1, cols), mean = f32(info, 2, rows),
      rstd = f32(info, 3, rows), dy = f32(info, 4, n), dx = f32(info, 5, n),
      dw = f32(info, 6, cols), db = f32(info, 7, cols, true);
  layer_norm_grad(x.data, w.data, mean.data, rstd.data, dy.data, dx.data, dw.data, db.data, rows,
                  cols);
  return info.Env().Undefined();
}

// geluGrad(x, dy, dx)
Napi::Value GeluGrad(const Napi::CallbackInfo& info) {
  F32 x = f32(info, 0, 0);
  F32 dy = f32(info, 1, x.size), dx = f32(info, 2, x.size);
  gelu_grad(x.data, dy.data, dx.data, x.size);
  return info.Env().Undefined();
}

// attention(q, kT, v, y, p, bh, t, s, d, past, scale, causal)
Napi::Value Attention(const Napi::CallbackInfo& info) {
  const int64_t bh = num(info, 5), t = num(info, 6), s = num(info, 7), d = num(info, 8),
                past = num(info, 9);
  if (past + t > s) fail(info, "attention: past + t exceeds the key length");
  F32 q = f32(info, 0, bh * t * d), kT = f32(info, 1, bh * d * s), v = f32(info, 2, bh * s * d),
      y = f32(info, 3, bh * t * d), p = f32(info, 4, bh * t * s);
  attention(q.data, kT.data, v.data, y.data, p.data, bh, t, s, d, past,
            static_cast<float>(real(info, 10)), flag(info, 11));
  return info.Env().Undefined();
}

// attentionGrad(q, kT, v, p, dy, dq, dkT, dv, bh, t, s, d, scale)
Napi::Value AttentionGrad(const Napi::CallbackInfo& info) {
  const int64_t bh = num(info, 8), t = num(info, 9), s = num(info, 10), d = num(info, 11);
  F32 q = f32(info, 0, bh * t * d), kT = f32(info, 1, bh * d * s), v = f32(info, 2, bh * s * d),
      p = f32(info, 3, bh * t * s), dy = f32(info, 4, bh * t * d), dq = f32(info, 5, bh * t * d),
      dkT = f32(info, 6, bh * d * s), dv = f32(info, 7, bh * s * d);
  attention_grad(q.data, kT.data, v.data, p.data, dy.data, dq.data, dkT.data, dv.data, bh, t, s,
                 d, static_cast<float>(real(info, 12)));
  return info.Env().Undefined();
}

// selfAttention(qkv, y, p, b, t, heads, d, scale, dropRate, dropSeed)
Napi::Value SelfAttention(const Napi::CallbackInfo& info) {
  const int64_t b = num(info, 3), t = num(info, 4), h = num(info, 5), d = num(info, 6);
  F32 qkv = f32(info, 0, b * t * 3 * h * d), y = f32(info, 1, b * t * h * d),
      p = f32(info, 2, b * h * t * t);
  self_attention(qkv.data, y.data, p.data, b, t, h, d, static_cast<float>(real(info, 7)),
                 rate(info, 8), seed32(info, 9));
  return info.Env().Undefined();
}

// selfAttentionGrad(qkv, p, dy, dqkv, b, t, heads, d, scale, dropRate, dropSeed)
Napi::Value SelfAttentionGrad(const Napi::CallbackInfo& info) {
  const int64_t b = num(info, 4), t = num(info, 5), h = num(info, 6), d = num(info, 7);
  F32 qkv = f32(info, 0, b * t * 3 * h * d), p = f32(info, 1, b * h * t * t),
      dy = f32(info, 2, b * t * h * d), dqkv = f32(info, 3, b * t * 3 * h * d);
  self_attention_grad(qkv.data, p.data, dy.data, dqkv.data, b, t, h, d,
                      static_cast<float>(real(info, 8)), rate(info, 9), seed32(info, 10));
  return info.Env().Undefined();
}

// decodeLayer(x, kT, v, [ln1w, ln1b, attnw, attnb, projw, projb, ln2w, ln2b, fcw, fcb, fc2w, fc2b],
//             xOut, kTOut, vOut, c, heads, past, eps)   (biases may be null)
Napi::Value DecodeLayer(const Napi::CallbackInfo& info) {
  const int64_t c = num(info, 7), heads = num(info, 8), past = num(info, 9);
  if (heads < 1 || c % heads != 0) fail(info, "decodeLayer: c must be a multiple of heads");
  const int64_t s = past + 1;
  F32 x = f32(info, 0, c), kT = f32(info, 1, c * past), v = f32(info, 2, c * past),
      xo = f32(info, 4, c), kTo = f32(info, 5, c * s), vo = f32(info, 6, c * s);
  if (!info[3].IsArray() || info[3].As<Napi::Array>().Length() != 12)
    fail(info, "decodeLayer: weights must be an array of 12");
  auto list = info[3].As<Napi::Array>();
  // Expected sizes of each weight, in order; biases (odd positions) may be null.
  const int64_t sizes[12] = {c, c, c * 3 * c, 3 * c, c * c, c, c, c, c * 4 * c, 4 * c, 4 * c * c, c};
  const float* ptr[12];
  for (uint32_t i = 0; i < 12; i++) {
    const Napi::Value e = list.Get(i);
    if ((i % 2 == 1) && (e.IsNull() || e.IsUndefined())) {
      ptr[i] = nullptr;
      continue;
    }
    if (!e.IsTypedArray() || e.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      fail(info, "decodeLayer: weight " + std::to_string(i) + " must be a Float32Array");
    auto a = e.As<Napi::Float32Array>();
    if (static_cast<int64_t>(a.ElementLength()) < sizes[i])
      fail(info, "decodeLayer: weight " + std::to_string(i) + " is too short");
    ptr[i] = a.Data();
  }
  const DecodeWeights w{ptr[0], ptr[1], ptr[2], ptr[3], ptr[4],  ptr[5],
                        ptr[6], ptr[7], ptr[8], ptr[9], ptr[10], ptr[11]};
  decode_layer(x.data, w, kT.data, v.data, xo.data, kTo.data, vo.data, c, heads, past,
               static_cast<float>(real(info, 10)));
  return info.Env().Undefined();
}

// crossEntropy(logits, targets, probs, rows, vocab) -> [loss, count]
Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info, 3), vocab = num(info, 4);
  F32 logits = f32(info, 0, rows * vocab), probs = f32(info, 2, rows * vocab);
  const int32_t* targets = i32(info, 1, rows);
  int64_t count = 0;
  const float loss = cross_entropy(logits.data, targets, probs.data, rows, vocab, &count);
  Napi::Array out = Napi::Array::New(info.Env(), 2);
  out.Set(0u, Napi::Number::New(info.Env(), loss));
  out.Set(1u, Napi::Number::New(info.Env(), static_cast<double>(count)));
  return out;
}

// crossEntropyGrad(probs, targets, dlogits, rows, vocab, scale)
Napi::Value CrossEntropyGrad(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info, 3), vocab = num(info, 4);
  F32 probs = f32(info, 0, rows * vocab), d = f32(info, 2, rows * vocab);
  const int32_t* targets = i32(info, 1, rows);
  cross_entropy_grad(probs.data, targets, d.data, rows, vocab, static_cast<float>(real(info, 5)));
  return info.Env().Undefined();
}

// adamw(p, g, m, v, pOut, mOut, vOut, lr, beta1, beta2, eps, weightDecay, bc1, bc2, gradScale)
Napi::Value AdamW(const Napi::CallbackInfo& info) {
  F32 p = f32(info, 0, 0);
  const int64_t n = p.size;
  F32 g = f32(info, 1, n), m = f32(info, 2, n), v = f32(info, 3, n), po = f32(info, 4, n),
      mo = f32(info, 5, n), vo = f32(info, 6, n);
  AdamWParams a;
  a.lr = static_cast<float>(real(info, 7));
  a.beta1 = static_cast<float>(real(info, 8));
  a.beta2 = static_cast<float>(real(info, 9));
  a.eps = static_cast<float>(real(info, 10));
  a.weight_decay = static_cast<float>(real(info, 11));
  a.bc1 = static_cast<float>(real(info, 12));
  a.bc2 = static_cast<float>(real(info, 13));
  a.grad_scale = static_cast<float>(real(info, 14));
  adamw(p.data, g.data, m.data, v.data, po.data, mo.data, vo.data, n, a);
  return info.Env().Undefined();
}

// linearGrad(x, w, dy, dx, dw, m, k, n, geluPre|null)
Napi::Value LinearGrad(const Napi::CallbackInfo& info) {
  const int64_t m = num(info, 5), k = num(info, 6), n = num(info, 7);
  F32 x = f32(info, 0, m * k), w = f32(info, 1, k * n), dy = f32(info, 2, m * n),
      dx = f32(info, 3, m * k), dw = f32(info, 4, k * n), pre = f32(info, 8, m * n, true);
  linear_grad(x.data, w.data, dy.data, dx.data, dw.data, m, k, n, pre.data);
  return info.Env().Undefined();
}

// linearGelu(x, w, h, y, m, k, n)
Napi::Value LinearGelu(const Napi::CallbackInfo& info) {
  const int64_t m = num(info, 4), k = num(info, 5), n = num(info, 6);
  F32 x = f32(info, 0, m * k), w = f32(info, 1, k * n), h = f32(info, 2, m * n),
      y = f32(info, 3, m * n);
  linear_gelu(x.data, w.data, h.data, y.data, m, k, n);
  return info.Env().Undefined();
}

// A JS array argument of Float32Arrays.
std::vector<F32> f32_list(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsArray()) fail(info, "argument " + std::to_string(i) + " must be an array of Float32Arrays");
  auto a = info[i].As<Napi::Array>();
  std::vector<F32> out;
  out.reserve(a.Length());
  for (uint32_t k = 0; k < a.Length(); k++) {
    const Napi::Value v = a.Get(k);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      fail(info, "argument " + std::to_string(i) + " must hold only Float32Arrays");
    auto t = v.As<Napi::Float32Array>();
    out.push_back({t.Data(), static_cast<int64_t>(t.ElementLength())});
  }
  return out;
}

// adamwMulti(arrays, weightDecays, lr, beta1, beta2, eps, bc1, bc2, gradScale): arrays holds 7
// Float32Arrays per parameter (p, g, m, v, pOut, mOut, vOut), weightDecays one number per parameter.
Napi::Value AdamWMulti(const Napi::CallbackInfo& info) {
  const std::vector<F32> arrays = f32_list(info, 0);
  if (arrays.size() % 7 != 0) fail(info, "adamwMulti: arrays must come 7 per parameter");
  if (!info[1].IsArray()) fail(info, "argument 1 must be an array of numbers");
  auto decays = info[1].As<Napi::Array>();
  const int64_t count = static_cast<int64_t>(arrays.size() / 7);
  if (static_cast<int64_t>(decays.Length()) != count) fail(info, "adamwMulti: one weight decay per parameter");
  std::vector<AdamWTensor> ts(count);
  for (int64_t t = 0; t < count; t++) {
    const F32* a = &arrays[t * 7];
    const int64_t n = a[0].size;
    for (int j = 1; j < 7; j++)
      if (a[j].size < n) fail(info, "adamwMulti: parameter " + std::to_string(t) + " has a short array");
    const Napi::Value d = decays.Get(static_cast<uint32_t>(t));
    if (!d.IsNumber()) fail(info, "adamwMulti: weight decays must be numbers");
    ts[t] = {a[0].data, a[1].data, a[2].data, a[3].data, a[4].data, a[5].data, a[6].data, n,
             static_cast<float>(d.As<Napi::Number>().DoubleValue())};
  }
  AdamWParams p;
  p.lr = static_cast<float>(real(info, 2));
  p.beta1 = static_cast<float>(real(info, 3));
  p.beta2 = static_cast<float>(real(info, 4));
  p.eps = static_cast<float>(real(info, 5));
  p.weight_decay = 0.f;
  p.bc1 = static_cast<float>(real(info, 6));
  p.bc2 = static_cast<float>(real(info, 7));
  p.grad_scale = static_cast<float>(real(info, 8));
  adamw_multi(ts.data(), count, p);
  return info.Env().Undefined();
}

// sumSquares(arrays) -> Σ x² over all of them
Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  const std::vector<F32> arrays = f32_list(info, 0);
  std::vector<const float*> ptrs;
  std::vector<int64_t> sizes;
  for (const F32& a : arrays) {
    ptrs.push_back(a.data);
    sizes.push_back(a.size);
  }
  return Napi::Number::New(info.Env(), sum_squares(ptrs.data(), sizes.data(), static_cast<int64_t>(arrays.size())));
}

// The block's six weights (ln1, attn, proj, ln2, fc, fc2) from a JS array, sizes checked.
std::vector<F32> block_weights(const Napi::CallbackInfo& info, size_t i, int64_t c) {
  std::vector<F32> w = f32_list(info, i);
  const int64_t need[6] = {c, c * 3 * c, c * c, c, c * 4 * c, 4 * c * c};
  if (w.size() != 6) fail(info, "block: 6 weights expected (ln1, attn, proj, ln2, fc, fc2)");
  for (int j = 0; j < 6; j++)
    if (w[j].size < need[j]) fail(info, "block: weight " + std::to_string(j) + " is too small");
  return w;
}

// The 12 saved activations (a, mean1, rstd1, qkv, y, p, x1, m, mean2, rstd2, h, g), sizes checked.
BlockActivations block_activations(const Napi::CallbackInfo& info, size_t i, int64_t b, int64_t t,
                                   int64_t c, int64_t heads) {
  std::vector<F32> a = f32_list(info, i);
  const int64_t m = b * t;
  const int64_t need[12] = {m * c, m, m, m * 3 * c, m * c, b * heads * t * t, m * c, m * c, m, m, m * 4 * c, m * 4 * c};
  if (a.size() != 12) fail(info, "block: 12 activation arrays expected");
  for (int j = 0; j < 12; j++)
    if (a[j].size < need[j]) fail(info, "block: activation " + std::to_string(j) + " is too small");
  return {a[0].data, a[1].data, a[2].data, a[3].data, a[4].data, a[5].data,
          a[6].data, a[7].data, a[8].data, a[9].data, a[10].data, a[11].data};
}

// dropout(x, y, rate, seed, site)
Napi::Value DropoutOp(const Napi::CallbackInfo& info) {
  F32 x = f32(info, 0, 0);
  F32 y = f32(info, 1, x.size);
  dropout(x.data, y.data, x.size, rate(info, 2), seed32(info, 3), seed32(info, 4));
  return info.Env().Undefined();
}

// blockForward(x, weights[6], activations[12], x2, b, t, c, heads, eps, dropRate, dropSeed)
Napi::Value BlockForward(const Napi::CallbackInfo& info) {
  const int64_t b = num(info, 4), t = num(info, 5), c = num(info, 6), heads = num(info, 7);
  if (heads < 1 || c % heads != 0) fail(info, "block: c must be a multiple of heads");
  F32 x = f32(info, 0, b * t * c), x2 = f32(info, 3, b * t * c);
  const std::vector<F32> w = block_weights(info, 1, c);
  const BlockActivations s = block_activations(info, 2, b, t, c, heads);
  block_forward(x.data, {w[0].data, w[1].data, w[2].data, w[3].data, w[4].data, w[5].data}, s,
                x2.data, b, t, c, heads, static_cast<float>(real(info, 8)), rate(info, 9),
                seed32(info, 10));
  return info.Env().Undefined();
}

// blockBackward(dx2, x, weights[6], activations[12], dx, grads[6], b, t, c, heads, dropRate, dropSeed)
Napi::Value BlockBackward(const Napi::CallbackInfo& info) {
  const int64_t b = num(info, 6), t = num(info, 7), c = num(info, 8), heads = num(info, 9);
  if (heads < 1 || c % heads != 0) fail(info, "block: c must be a multiple of heads");
  F32 dx2 = f32(info, 0, b * t * c), x = f32(info, 1, b * t * c), dx = f32(info, 4, b * t * c);
  const std::vector<F32> w = block_weights(info, 2, c);
  const BlockActivations s = block_activations(info, 3, b, t, c, heads);
  const std::vector<F32> g = block_weights(info, 5, c);
  block_backward(dx2.data, x.data, {w[0].data, w[1].data, w[2].data, w[3].data, w[4].data, w[5].data},
                 s, dx.data, {g[0].data, g[1].data, g[2].data, g[3].data, g[4].data, g[5].data}, b,
                 t, c, heads, rate(info, 10), seed32(info, 11));
  return info.Env().Undefined();
}

// gatherRows(table, rows, inner, ids, count, out)
Napi::Value GatherRows(const Napi::CallbackInfo& info) {
  const int64_t rows = num(info, 1), inner = num(info, 2), count = num(info, 4);
  F32 table = f32(info, 0, rows * inner), out = f32(info, 5, count * inner);
  const int32_t* ids = i32(info, 3, count);
  gather_rows(table.data, rows, inner, ids, count, out.data);
  return info.Env().Undefined();
}

// scatterAddRows(x, ids, count, inner, out, segments)
Napi::Value ScatterAddRows(const Napi::CallbackInfo& info) {
  const int64_t count = num(info, 2), inner = num(info, 3), segments = num(info, 5);
  F32 x = f32(info, 0, count * inner), out = f32(info, 4, segments * inner);
  const int32_t* ids = i32(info, 1, count);
  scatter_add_rows(x.data, ids, count, inner, out.data, segments);
  return info.Env().Undefined();
}

// sgemmPeak(n, repeats) -> GFLOP/s
Napi::Value SgemmPeak(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(),
                           sgemm_peak_gflops(num(info, 0), static_cast<int>(num(info, 1))));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  blas_init();
  pool();  // start the workers now rather than inside the first kernel
  // Bumped whenever a function's arguments change; src/model/native/addon.ts checks it.
  exports.Set("abi", Napi::Number::New(env, 4));
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("matmul", Napi::Function::New(env, MatMul));
  exports.Set("unary", Napi::Function::New(env, Unary));
  exports.Set("binary", Napi::Function::New(env, Binary));
  exports.Set("transpose", Napi::Function::New(env, Transpose));
  exports.Set("reduce", Napi::Function::New(env, Reduce));
  exports.Set("copyBlock", Napi::Function::New(env, CopyBlock));
  exports.Set("slice", Napi::Function::New(env, Slice));
  exports.Set("pad", Napi::Function::New(env, Pad));
  exports.Set("addN", Napi::Function::New(env, AddN));
  exports.Set("softmax", Napi::Function::New(env, Softmax));
  exports.Set("layerNorm", Napi::Function::New(env, LayerNorm));
  exports.Set("layerNormGrad", Napi::Function::New(env, LayerNormGrad));
  exports.Set("geluGrad", Napi::Function::New(env, GeluGrad));
  exports.Set("attention", Napi::Function::New(env, Attention));
  exports.Set("attentionGrad", Napi::Function::New(env, AttentionGrad));
  exports.Set("selfAttention", Napi::Function::New(env, SelfAttention));
  exports.Set("selfAttentionGrad", Napi::Function::New(env, SelfAttentionGrad));
  exports.Set("decodeLayer", Napi::Function::New(env, DecodeLayer));
  exports.Set("crossEntropy", Napi::Function::New(env, CrossEntropy));
  exports.Set("crossEntropyGrad", Napi::Function::New(env, CrossEntropyGrad));
  exports.Set("adamw", Napi::Function::New(env, AdamW));
  exports.Set("adamwMulti", Napi::Function::New(env, AdamWMulti));
  exports.Set("sumSquares", Napi::Function::New(env, SumSquares));
  exports.Set("linearGrad", Napi::Function::New(env, LinearGrad));
  exports.Set("linearGelu", Napi::Function::New(env, LinearGelu));
  exports.Set("blockForward", Napi::Function::New(env, BlockForward));
  exports.Set("blockBackward", Napi::Function::New(env, BlockBackward));
  exports.Set("dropout", Napi::Function::New(env, DropoutOp));
  exports.Set("gatherRows", Napi::Function::New(env, GatherRows));
  exports.Set("scatterAddRows", Napi::Function::New(env, ScatterAddRows));
  exports.Set("sgemmPeak", Napi::Function::New(env, SgemmPeak));
  exports.Set("sgemm", Napi::Function::New(env, Sgemm));
  exports.Set("sgemv", Napi::Function::New(env, Sgemv));
  exports.Set("linear16", Napi::Function::New(env, Linear16));
  exports.Set("linearInt8", Napi::Function::New(env, LinearInt8));
  exports.Set("linear16T", Napi::Function::New(env, Linear16T));
  exports.Set("linearInt8T", Napi::Function::New(env, LinearInt8T));
  exports.Set("quantKernels", Napi::Function::New(env, QuantKernels));
  exports.Set("siluMul", Napi::Function::New(env, SiluMul));
  exports.Set("rmsNorm", Napi::Function::New(env, RmsNorm));
  exports.Set("rmsNormTrain", Napi::Function::New(env, RmsNormTrain));
  exports.Set("rmsNormGrad", Napi::Function::New(env, RmsNormGrad));
  exports.Set("siluMulGrad", Napi::Function::New(env, SiluMulGrad));
  exports.Set("rope", Napi::Function::New(env, Rope));
  exports.Set("loraForward", Napi::Function::New(env, LoraForward));
  exports.Set("loraBackward", Napi::Function::New(env, LoraBackward));
  exports.Set("adviseHugePages", Napi::Function::New(env, AdviseHugePages));
  return exports;
}

}  // namespace

NODE_API_MODULE(teamllm_native, Init)
