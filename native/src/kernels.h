// The compute kernels, free of any Node-API type, so each can be read (and tested) on its own.
// Every array is float32 unless its name says otherwise, row-major and contiguous.
#pragma once

#include <cstdint>

namespace teamllm {

// ---- gemm.cc -------------------------------------------------------------------------------

// Sets OpenBLAS to a single thread (we split products ourselves, see gemm.cc).
void blas_init();
// Human-readable OpenBLAS configuration (build options, core type).
const char* blas_config();

enum Activation : int {
  kLinear = 0,
  kRelu = 1,
  kRelu6 = 2,
  kSigmoid = 3,
  kLeakyRelu = 4,
  kElu = 5,
};

// c[i] = act(op(a[i % batch_a]) · op(b[i % batch_b]) + bias) for i < max(batch_a, batch_b).
// op(a) is [m, k] (stored [k, m] when trans_a), op(b) is [k, n] (stored [n, k] when trans_b).
// bias (may be null) has `bias_size` elements: 1 (a scalar) or n (one per output column).
void batch_matmul(const float* a, const float* b, float* c, int64_t batch_a, int64_t batch_b,
                  int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b,
                  const float* bias = nullptr, int64_t bias_size = 0, int activation = kLinear,
                  float leaky_alpha = 0.2f);

// Both gradients of y = x · w for x [m, k], w [k, n], dy [m, n]: dx = dy · wᵀ [m, k] and
// dw = xᵀ · dy [k, n], computed side by side on the pool. With `gelu_pre` (h [m, n]), the
// gradients of y = GELU(h), h = x · w: dy is first multiplied by GELU'(h).
void linear_grad(const float* x, const float* w, const float* dy, float* dx, float* dw, int64_t m,
                 int64_t k, int64_t n, const float* gelu_pre = nullptr);

// h = x · w and y = GELU(h) (exact GELU) for x [m, k], w [k, n]: the MLP's up-projection, with
// GELU applied to each block of rows while it is still in cache. h is kept for the gradient.
void linear_gelu(const float* x, const float* w, float* h, float* y, int64_t m, int64_t k,
                 int64_t n);

// One large sgemm ([n, n] x [n, n]) split over the pool: GFLOP/s of the machine's peak.
double sgemm_peak_gflops(int64_t n, int repeats);

// ---- sgemm.cc: float32 products of our own (the build without OpenBLAS uses them) ---------

// Row-major C [m, n] = alpha · op(A) · op(B) + beta · C, as cblas_sgemm(CblasRowMajor, ...):
// op(A) is [m, k] (stored [k, m] with row stride lda when ta), op(B) [k, n] (stored [n, k] when
// tb). beta 0 ignores what C held. Single-threaded.
void own_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
// Row-major y [m] = alpha · A [m, n] · x + beta · y, as cblas_sgemv(CblasRowMajor, CblasNoTrans).
void own_sgemv(int64_t m, int64_t n, float alpha, const float* a, int64_t lda, const float* x,
               int64_t incx, float beta, float* y);

// The float32 product the addon runs on: OpenBLAS, or the above in a -DTEAMLLM_NO_OPENBLAS build
// (gemm.cc). `use_blas` false always runs our own (tests compare the two).
void sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
           bool use_blas = true);
void sgemv(int64_t m, int64_t n, float alpha, const float* a, int64_t lda, const float* x,
           int64_t incx, float beta, float* y, bool use_blas = true);
// Whether this build links OpenBLAS.
bool have_openblas();

// ---- elementwise.cc -------------------------------------------------------------------------

enum UnaryOp : int {
  kExp = 0,
  kLog = 1,
  kNeg = 2,
  kSqrt = 3,
  kRsqrt = 4,
  kSquare = 5,
  kErf = 6,
  kTanh = 7,
  kSigmoidOp = 8,
  kReluOp = 9,
  kAbs = 10,
  kReciprocal = 11,
  kGeluOp = 12,  // exact (erf) GELU
};
void unary(int op, const float* x, float* y, int64_t size);
// Row-wise RMSNorm of x [rows, cols]: y = x / √(mean(x²) + eps) · w, the sums in double (y may be x).
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t cols, double eps);
// y = silu(gate) · up = gate · sigmoid(gate) · up (the SwiGLU of Llama-family MLPs); y may be gate.
void silu_mul(const float* gate, const float* up, float* y, int64_t size);
// Its gradients: dgate = dy · up · silu'(gate), dup = dy · silu(gate).
void silu_mul_grad(const float* gate, const float* up, const float* dy, float* dgate, float* dup, int64_t size);
// RoPE on x [b, t, heads, d] with cos, sin [t, d]: y = x·cos + rotate_half(x)·sin,
// rotate_half(x) = [−x₂, x₁] over the two halves; `inverse`: its gradient (x is then dy).
void rope(const float* x, const float* cos, const float* sin, float* y, int64_t b, int64_t t, int64_t heads,
          int64_t d, bool inverse);
// rms_norm for training: also writes rstd [rows] = 1/√(mean(x²) + eps) (as float) for the gradient.
void rms_norm_train(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t cols, double eps);
// Gradients of rms_norm: dx [rows, cols], and dw [cols] summed over rows (the same sums on any
// number of threads).
void rms_norm_grad(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                   int64_t rows, int64_t cols);

enum BinaryOp : int {
  kAdd = 0,
  kSub = 1,
  kMul = 2,
  kDiv = 3,
  kMaximum = 4,
  kMinimum = 5,
  kSquaredDifference = 6,
  kPow = 7,
};
// y = a op b with numpy broadcasting. Shapes are given already aligned to the output's rank
// (leading 1s added); `rank` <= 8.
void binary(int op, const float* a, const int64_t* a_shape, const float* b,
            const int64_t* b_shape, float* y, const int64_t* y_shape, int rank);

// y = transpose(x, perm), rank <= 8.
void transpose(const float* x, const int64_t* x_shape, const int64_t* perm, int rank, float* y);

enum ReduceOp : int { kSum = 0, kMax = 1, kMin = 2, kMean = 3, kProd = 4 };
// x viewed as [outer, mid, inner]: reduces the middle axis, y is [outer, inner].
void reduce(int op, const float* x, float* y, int64_t outer, int64_t mid, int64_t inner);

// Copies a [rows, cols] block between two row-major matrices with the given row strides
// (split and concat along an axis are such copies).
void copy_block(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                int64_t cols);

// y = x[begin : begin + size] over every axis (rank <= 8).
void slice(const float* x, const int64_t* x_shape, const int64_t* begin, const int64_t* size,
           int rank, float* y);

// y [y_shape] = `value` everywhere, with x placed at offset `before` (constant padding).
void pad(const float* x, const int64_t* x_shape, const int64_t* before, const int64_t* y_shape,
         int rank, float value, float* y);

// y = sum of `count` arrays.
void add_n(const float* const* xs, int count, float* y, int64_t size);

// ---- fused.cc -------------------------------------------------------------------------------

// Softmax over the last axis of x [rows, cols].
void softmax(const float* x, float* y, int64_t rows, int64_t cols);

// LayerNorm over the last axis: y = (x − mean)·rstd·w + b. Saves mean and rstd per row.
void layer_norm(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd,
                int64_t rows, int64_t cols, float eps);
// Gradients of layer_norm: dx, and dw, db summed over rows (db may be null). With `add`, dx gets
// add[..] added (a residual stream's gradient, summed in the same pass).
void layer_norm_grad(const float* x, const float* w, const float* mean, const float* rstd,
                     const float* dy, float* dx, float* dw, float* db, int64_t rows, int64_t cols,
                     const float* add = nullptr);

// dx = dy · GELU'(x) (exact GELU).
void gelu_grad(const float* x, const float* dy, float* dx, int64_t size);

// Causal attention for q [bh, t, d], kT [bh, d, s], v [bh, s, d] where query i sits at position
// past + i and sees keys 0..past+i. Writes y [bh, t, d] and the probabilities p [bh, t, s].
void attention(const float* q, const float* kT, const float* v, float* y, float* p, int64_t bh,
               int64_t t, int64_t s, int64_t d, int64_t past, float scale, bool causal);
void attention_grad(const float* q, const float* kT, const float* v, const float* p,
                    const float* dy, float* dq, float* dkT, float* dv, int64_t bh, int64_t t,
                    int64_t s, int64_t d, float scale);

// Causal self-attention straight from the fused projection qkv [b, t, 3c] (q, k, v side by side,
// head h in columns h·d..(h+1)·d of each), as nanoGPT lays it out: no split, no transposes.
// Writes y [b, t, c] (heads merged) and the probabilities p [b, heads, t, t].
// With drop_rate > 0, dropout on the probabilities (nanoGPT's attn_dropout), mask from
// drop_seed (see Dropout in mathfun.h); p keeps the probabilities before dropout.
void self_attention(const float* qkv, float* y, float* p, int64_t b, int64_t t, int64_t heads,
                    int64_t d, float scale, float drop_rate = 0.f, uint32_t drop_seed = 0);
// Its gradient: dqkv [b, t, 3c] from dy [b, t, c] (the same dropout settings as the forward).
void self_attention_grad(const float* qkv, const float* p, const float* dy, float* dqkv, int64_t b,
                         int64_t t, int64_t heads, int64_t d, float scale, float drop_rate = 0.f,
                         uint32_t drop_seed = 0);

// Dropout mask sites: the masks drawn from one seed differ per site. The attention mask's element
// index is its flat index in [b, heads, t, t]; the residual ones index [b, t, c].
enum DropoutSite : uint32_t {
  kAttentionSite = 0,
  kResidAttentionSite = 1,
  kResidMlpSite = 2,
};
// y = x · mask, mask from (rate, seed, site) as in the block (the gradient is the same call on dy).
void dropout(const float* x, float* y, int64_t size, float rate, uint32_t seed, uint32_t site);

// One transformer block for one new token (generation with a KV cache, batch 1), in one call:
// pre-norm attention over the cache plus the new key/value, then the MLP, as gpt.ts computes it.
// Weights are stored [in, out]; biases and LayerNorm biases may be null. The cache comes in
// gpt.ts's layout, kT [heads, d, past] and v [heads, past, d], and goes out one position longer.
struct DecodeWeights {
  const float *ln1_w, *ln1_b, *attn_w, *attn_b, *proj_w, *proj_b;
  const float *ln2_w, *ln2_b, *fc_w, *fc_b, *fc2_w, *fc2_b;
};
void decode_layer(const float* x, const DecodeWeights& w, const float* kT, const float* v,
                  float* x_out, float* kT_out, float* v_out, int64_t c, int64_t heads, int64_t past,
                  float eps);

// Mean cross-entropy of integer targets (< 0: ignored) under logits [rows, vocab].
// Saves the softmax probabilities in `probs`; returns the loss, `count` = counted rows.
float cross_entropy(const float* logits, const int32_t* targets, float* probs, int64_t rows,
                    int64_t vocab, int64_t* count);
// dlogits = (probs − onehot) · scale on counted rows, 0 on ignored ones.
void cross_entropy_grad(const float* probs, const int32_t* targets, float* dlogits, int64_t rows,
                        int64_t vocab, float scale);

// AdamW (decoupled weight decay), writing new p, m, v.
struct AdamWParams {
  float lr, beta1, beta2, eps, weight_decay, bc1, bc2, grad_scale;
};
void adamw(const float* p, const float* g, const float* m, const float* v, float* p_out,
           float* m_out, float* v_out, int64_t size, const AdamWParams& a);

// One parameter tensor of a multi-tensor update; weight_decay is its own (0 for norms and biases).
struct AdamWTensor {
  const float *p, *g, *m, *v;
  float *p_out, *m_out, *v_out;
  int64_t size;
  float weight_decay;
};
// The AdamW update of every tensor in one call (a.weight_decay is ignored): the same arithmetic
// as adamw() per element, the work spread over the pool in equal chunks across tensors.
void adamw_multi(const AdamWTensor* tensors, int64_t count, const AdamWParams& a);

// Σ x² over several arrays, accumulated in double in a fixed chunk order (the same result for
// any number of threads): the global gradient norm for clipping, in one call.
double sum_squares(const float* const* xs, const int64_t* sizes, int64_t count);

// out[i] = table[ids[i]] rows of width `inner`; ids out of range give zeros.
void gather_rows(const float* table, int64_t rows, int64_t inner, const int32_t* ids,
                 int64_t count, float* out);
// out[ids[i]] += x[i] rows (the gradient of gather_rows); out has `segments` rows.
void scatter_add_rows(const float* x, const int32_t* ids, int64_t count, int64_t inner,
                      float* out, int64_t segments);

// ---- quant.cc -------------------------------------------------------------------------------
// y [m, n] = x [m, k] · Wᵀ + bias (bias [n] or null), W [n, k] stored in 16 or 8 bits, float32 sums.

enum Weight16 : int { kBf16 = 0, kHalf = 1 };
enum QuantMode : int {
  kQuantBest = 0,      // the fastest kernel this CPU runs (AVX512_BF16, AVX512-VNNI when present)
  kQuantPortable = 1,  // the portable one (what a CPU without those instructions runs)
  kQuantNoAmx = 2,     // the best without AMX (AVX512_BF16 for bf16): what $TEAMLLM_NATIVE_AMX=off runs
};
// W as bfloat16 (kind kBf16) or IEEE half (kHalf) bits.
void linear16(int kind, const uint16_t* w, const float* x, const float* bias, float* y, int64_t m,
              int64_t n, int64_t k, int mode);
// Which kernel linear16 runs for (kind, mode) here: "amx_bf16" (products of at least
// kAmxMinRows rows of x on AMX, fewer on AVX512_BF16), "avx512_bf16" or "portable".
const char* linear16_kernel(int kind, int mode);
// Which kernel linear_int8 runs for mode here: "avx512_vnni" or "portable".
const char* linear_int8_kernel(int mode);
// W as int8 with float32 scales [n, k / group] (group divides k; a multiple of 16, or k itself for
// one scale per output row): W[j, p] = w[j, p] · scales[j, p / group]. kQuantBest on a CPU with
// AVX512-VNNI (and group k or a multiple of 32) quantises x to int8 per 32 columns first, as
// llama.cpp's Q8_0 path does (see quant.cc for the error); portable keeps x float32. kQuantBest
// with one scale per row and kAmxMinRows rows or more runs on AMX where it can (linear_int8_amx).
void linear_int8(const int8_t* w, const float* scales, int64_t group, const float* x,
                 const float* bias, float* y, int64_t m, int64_t n, int64_t k, int mode);

// The transposed direction, training's input gradient: dx [m, k] = dy [m, n] · W for the same
// stored W [n, k] (exact stored weights widened to float32, float32 sums; no bias). bf16 with
// kQuantBest on a CPU with AVX512_BF16 rounds dy to bf16 and runs vdpbf16ps (as the forward).
void linear16_t(int kind, const uint16_t* w, const float* dy, float* dx, int64_t m, int64_t n,
                int64_t k, int mode);
// kQuantBest with one scale per row (group = k), from kAmxMinRows rows where AMX runs: on AMX
// (dy times the scales rounded to bf16); otherwise the exact widened weights, float32 sums.
void linear_int8_t(const int8_t* w, const float* scales, int64_t group, const float* dy, float* dx,
                   int64_t m, int64_t n, int64_t k, int mode = kQuantPortable);

// ---- amx.cc: bf16 products on AMX tiles (Sapphire Rapids and later) ---------------------------

// Whether the AMX kernels run here: the CPU has AMX-TILE and AMX-BF16, Linux granted the tile
// state, and $TEAMLLM_NATIVE_AMX is not "off" (read once).
bool amx_bf16_ready();
// Fewer rows than this go to the AVX512_BF16 kernels: a product of a few rows (decoding) streams
// W once and is bound by memory, and AMX's packing of W would only add to that.
constexpr int64_t kAmxMinRows = 32;
// linear16 (bf16, no half) and linear16_t on AMX; callers check amx_bf16_ready(). The same
// numerics as the AVX512_BF16 kernels (activations rounded to bf16, float32 sums), sums in
// another order.
void linear_bf16_amx(const uint16_t* w, const float* x, const float* bias, float* y, int64_t m, int64_t n,
                     int64_t k);
void linear_t_bf16_amx(const uint16_t* w, const float* dy, float* dx, int64_t m, int64_t n, int64_t k);
// linear_int8 for one scale per row of W (group = k) on AMX: x rounded to bf16 (not quantised
// to int8 as on AVX512-VNNI), the int8 values exact in bf16, float32 sums, each output column
// times its row's scale.
void linear_int8_amx(const int8_t* w, const float* scales, const float* x, const float* bias, float* y, int64_t m,
                     int64_t n, int64_t k);
// linear_int8_t for one scale per row of W (group = k) on AMX: dx = (dy · diag(scales)) · W_int8,
// dy times the scales rounded to bf16, the int8 values exact in bf16, float32 sums.
void linear_int8_t_amx(const int8_t* w, const float* scales, const float* dy, float* dx, int64_t m, int64_t n,
                       int64_t k);

// ---- lora.cc: LoRA's update fused with a frozen projection --------------------------------

// With y = x·Wᵀ already in y (x [m, in], y [m, out]): t = s·x·Aᵀ [m, r] (kept for the gradient)
// and y += t·Bᵀ, for A [r, in], B [out, r].
void lora_forward(const float* x, const float* a, const float* b, float* y, float* t, int64_t m, int64_t in,
                  int64_t out, int64_t r, float scale);
// With dx = dy·W already in dx: u = s·dy·B, dx += u·A, dA = uᵀ·x [r, in], dB = dyᵀ·t [out, r].
void lora_backward(const float* dy, const float* x, const float* t, const float* a, const float* b, float* dx,
                   float* da, float* db, int64_t m, int64_t in, int64_t out, int64_t r, float scale);

// ---- block.cc -------------------------------------------------------------------------------
// One transformer block (nanoGPT's, no biases, no dropout) for training, forward and backward in
// one call each. Weights in gpt.ts's layout: ln [c], attn [c, 3c], proj [c, c], fc [c, 4c],
// fc2 [4c, c].
struct BlockParams {
  const float *ln1, *attn, *proj, *ln2, *fc, *fc2;
};
struct BlockGrads {
  float *ln1, *attn, *proj, *ln2, *fc, *fc2;
};
// What the forward pass keeps for the backward one (m = b·t rows): a, m [m, c] (the normed
// inputs), mean/rstd [m] of both norms, qkv [m, 3c], y [m, c] (attention output, heads merged),
// p [b, heads, t, t], x1 [m, c] (after the attention residual), h, g [m, 4c] (before and after GELU).
struct BlockActivations {
  float *a, *mean1, *rstd1, *qkv, *y, *p, *x1, *m, *mean2, *rstd2, *h, *g;
};
// x, x2 [b, t, c]: x2 = the block applied to x; fills `s`.
// With drop_rate > 0: nanoGPT's dropouts on the attention probabilities and on both residual
// branches, masks from drop_seed (sites above); the backward must get the same rate and seed.
void block_forward(const float* x, const BlockParams& w, const BlockActivations& s, float* x2,
                   int64_t b, int64_t t, int64_t c, int64_t heads, float eps,
                   float drop_rate = 0.f, uint32_t drop_seed = 0);
// From dx2 = ∂loss/∂x2: dx and every weight's gradient (written, not accumulated).
void block_backward(const float* dx2, const float* x, const BlockParams& w,
                    const BlockActivations& s, float* dx, const BlockGrads& dw, int64_t b,
                    int64_t t, int64_t c, int64_t heads, float drop_rate = 0.f,
                    uint32_t drop_seed = 0);

}  // namespace teamllm
