/* kernels.h: the CUDA backend's custom kernels (everything that is not a cuDNN convolution).
 *
 * Conventions for every launcher:
 *  - takes the stream it runs on as the last argument, checks its shape arguments
 *    (CG_ASSERT), launches, and checks the launch (CG_CHECK_LAUNCH); never synchronises;
 *  - activations are NHWC, dense (pixel stride = channel count), of element type dt
 *    (cg_dtype_t: f32, bf16, f16); "npix" = n * h * w pixels;
 *  - fp32 master parameters, gradients (the flat buffer of model.h), AdamW moments and all
 *    scalars of the step live in float (or wider) device memory;
 *  - values that change from step to step (learning rate, bias corrections, the loss scale)
 *    are read from device memory, never passed by value, so a captured CUDA graph replays
 *    correctly after the host updates them with a memcpy node;
 *  - reductions have a fixed order (no atomics on floats), so results are deterministic;
 *  - computations accumulate in float; outputs are rounded to dt once.
 * All pointers are device pointers (d_ prefix) unless said otherwise. */
#ifndef CG_CUDA_KERNELS_H
#define CG_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_check.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Step scalars in device memory, written by the host (through a pinned staging copy) before
 * each step, read by the kernels. */
typedef struct {
  float lr, beta1, beta2, eps, weight_decay;
  float bc1, bc2;        /* 1 - beta1^t, 1 - beta2^t */
  float ema_w;           /* the moving average's update weight (cg_optim_t.ema_w) */
} cg_step_params_t;

/* Loss-scaler state in device memory (fp16 dynamic loss scaling; inert for bf16/fp32). */
typedef struct {
  float scale;           /* current loss scale (1 when scaling is off) */
  int enabled;           /* 1 for fp16 */
  int found_inf;         /* set by cg_k_check_finite for the current step */
  int good_steps;        /* consecutive clean steps since the last change */
  long long skipped;     /* total skipped steps */
  long long steps;       /* total steps seen */
} cg_scaler_t;

/* ---- element-wise ----------------------------------------------------------------------- */

/* In place: y = act(y + bias[c]) over npix x c (bias fp32, nullable = no bias). */
void cg_k_bias_act_fwd(cg_dtype_t dt, void *d_y, int64_t npix, int c, const float *d_bias,
                       int relu, cudaStream_t s);

/* In place: dy = dy * (y > 0) when relu; then d_dbias[c] = sum over pixels of dy (overwritten,
 * fp32; nullable = no bias). d_work: cg_k_bias_act_bwd_work_bytes(npix, c) bytes of scratch
 * (a pure function of the shape, so it can be sized once; contents need no initialisation).
 * d_y is not read when relu is 0 (may be NULL). npix == 0 writes zeros to d_dbias. */
size_t cg_k_bias_act_bwd_work_bytes(int64_t npix, int c);
void cg_k_bias_act_bwd(cg_dtype_t dt, void *d_dy, const void *d_y, int64_t npix, int c, int relu,
                       float *d_dbias, void *d_work, cudaStream_t s);

/* 2x2 stride-2 max pool over n images of h x w x c (h, w even); backward routes to the first
 * maximum in scan order (as the CPU reference), dx overwritten or added to (accum). The
 * backward recomputes the argmax from d_x with the forward's comparisons; d_y is not read. */
void cg_k_maxpool_fwd(cg_dtype_t dt, const void *d_x, int n, int h, int w, int c, void *d_y,
                      cudaStream_t s);
void cg_k_maxpool_bwd(cg_dtype_t dt, const void *d_x, const void *d_y, const void *d_dy, int n,
                      int h, int w, int c, void *d_dx, int accum, cudaStream_t s);

/* cat = [a | b] per pixel (a: ca channels, b: cb channels); backward splits dcat into da and db
 * (both overwritten). */
void cg_k_concat_fwd(cg_dtype_t dt, const void *d_a, int ca, const void *d_b, int cb,
                     int64_t npix, void *d_cat, cudaStream_t s);
void cg_k_concat_bwd(cg_dtype_t dt, const void *d_dcat, int ca, int cb, int64_t npix, void *d_da,
                     void *d_db, cudaStream_t s);
/* cg_k_concat_fwd that also adds a bias (fp32, one per channel of that part; + ReLU with relu)
 * to part a (part 0) or b (part 1) on the way: e.g. cat = [act(a + bias) | b], one rounding
 * (the upconv's bias forward folded into the copy when its output is a copied concat part). */
void cg_k_concat_fwd_bias(cg_dtype_t dt, const void *d_a, int ca, const void *d_b, int cb,
                          int part, const float *d_bias, int relu, int64_t npix, void *d_cat,
                          cudaStream_t s);
/* cg_k_concat_bwd into a strided da (lda >= ca) and db (ldb >= cb): only their ca, cb
 * channels per pixel are written. */
void cg_k_concat_bwd_ld(cg_dtype_t dt, const void *d_dcat, int ca, int cb, int64_t npix,
                        void *d_da, int64_t lda, void *d_db, int64_t ldb, cudaStream_t s);

/* ---- strided and fused variants (the in-place concat and the fused backward) ------------
 * A strided activation is npix pixels x c channels whose pixel stride is ld elements (ld >= c):
 * one half of a concat buffer [up | skip] of 2c channels is a tensor with ld = 2c (the second
 * half starts c elements in). ld == c is the dense case, and the functions above are these
 * with ld == c (same kernels, same results). Only the c channels of each pixel are read or
 * written; the other ld - c elements are never touched. The 16-byte packed paths apply when c
 * and every ld are multiples of the pack (4 floats, 8 halves) and every pointer is 16-byte
 * aligned; otherwise the same kernels run one element per thread (every shape is valid). */

/* cg_k_bias_act_fwd on a strided y. */
void cg_k_bias_act_fwd_ld(cg_dtype_t dt, void *d_y, int64_t ldy, int64_t npix, int c,
                          const float *d_bias, int relu, cudaStream_t s);
/* cg_k_bias_act_bwd on a strided dy (lddy) and y (ldy; not read, nor checked, without relu);
 * the same chunking and summation order as the dense call, so the same bias gradient bitwise
 * as the dense call on the same values whenever both take the packed path or both do not
 * (always the case for a half of a [2c] concat buffer). Scratch as
 * cg_k_bias_act_bwd_work_bytes(npix, c). */
void cg_k_bias_act_bwd_ld(cg_dtype_t dt, void *d_dy, int64_t lddy, const void *d_y, int64_t ldy,
                          int64_t npix, int c, int relu, float *d_dbias, void *d_work,
                          cudaStream_t s);
/* Max pool reading a strided x (ldx); y dense (n x h/2 x w/2 x c). */
void cg_k_maxpool_fwd_ld(cg_dtype_t dt, const void *d_x, int64_t ldx, int n, int h, int w, int c,
                         void *d_y, cudaStream_t s);
/* Max-pool backward into a strided dx (lddx), x strided (ldx), dy dense, then optionally the
 * backward of the ReLU and bias that produced x, in the same pass:
 *   dx  = route(dy) (+ old, when d_old is not NULL), as cg_k_maxpool_bwd (one rounding of
 *     old + dy); old (stride ldold) is dx itself (accumulation in place, ldold == lddx) or a
 *     tensor whose bytes do not overlap dx's (dx is then only written);
 *   relu: dx = 0 where !(x > 0), applied to that final value (x is the ReLU's output), so
 *     dx is exactly what cg_k_bias_act_bwd(relu) would leave after the unfused pool backward;
 *   d_dbias (nullable): d_dbias[k] = sum over all n*h*w pixels of the final dx[.][k] as stored
 *     (rounded to dt), fp32, overwritten; a deterministic fixed-order reduction (partials per
 *     fixed chunk of windows in d_work, then a final pass; the order depends only on the shape
 *     and on the packed/unpacked choice, not the one of cg_k_bias_act_bwd). It replaces
 *     cg_k_bias_act_bwd for the layer that produced x. n == 0 writes zeros to d_dbias.
 * d_work: cg_k_maxpool_bwd_work_bytes(n, h, w, c) bytes (= cg_k_bias_act_bwd_work_bytes of
 * n*h/2*w/2 pixels; only used with d_dbias; contents need no initialisation). */
size_t cg_k_maxpool_bwd_work_bytes(int n, int h, int w, int c);
void cg_k_maxpool_bwd_ld(cg_dtype_t dt, const void *d_x, int64_t ldx, const void *d_dy, int n,
                         int h, int w, int c, void *d_dx, int64_t lddx, const void *d_old,
                         int64_t ldold, int relu, float *d_dbias, void *d_work, cudaStream_t s);

/* Several fp32 conversions in one launch: for each segment k < nseg, dst[k][i] = src[k][i] (dt)
 * for i < n[k] (the weight gradients of several layers, from the dW scratch into the flat fp32
 * gradient buffer). Destinations must not overlap (asserted). nseg <= CG_K_MAX_SEGS; n[k] may
 * be 0 (its pointers may then be NULL). src[k] aligned to the element, dst[k] to a float; a
 * segment whose src and dst are both 16-byte aligned moves 16-byte packs. The table is read
 * on the host at the call and passed to the kernel by value, so a captured graph replays
 * without reading *segs again (the caller may reuse or free it after the call). */
#define CG_K_MAX_SEGS 32
typedef struct {
  int nseg;
  const void *src[CG_K_MAX_SEGS];
  float *dst[CG_K_MAX_SEGS];
  int64_t n[CG_K_MAX_SEGS];
} cg_k_segs_t;
void cg_k_cast_segs_to_f32(cg_dtype_t dt, const cg_k_segs_t *segs, cudaStream_t s);

/* n elements of type dt at d, each an independent pseudo-random value in [lo, hi) from (seed,
 * index): realistic operands for timing and checking candidates (zeros run faster than data and
 * prove nothing). */
void cg_k_fill_uniform(cg_dtype_t dt, void *d, int64_t n, uint64_t seed, float lo, float hi,
                       cudaStream_t s);

/* Holds stream s: one thread spins until ns nanoseconds of the GPU's global timer have passed.
 * Work enqueued behind it starts only then, so the host can enqueue a whole step first (the
 * per-layer profile then times kernels, not the host's launch gaps). */
void cg_k_hold(unsigned long long ns, cudaStream_t s);

/* ---- precision casts -------------------------------------------------------------------- */

/* dst (dt) = src (fp32), n elements. */
void cg_k_cast_from_f32(cg_dtype_t dt, const float *d_src, int64_t n, void *d_dst, cudaStream_t s);
/* dst (fp32) = src (dt) * mul, n elements. */
void cg_k_cast_to_f32(cg_dtype_t dt, const void *d_src, int64_t n, float mul, float *d_dst,
                      cudaStream_t s);
/* Channel padding (e.g. the 5-channel input to 8 for tensor cores): dst[p][0..cpad) of type dt
 * from src[p][0..c) fp32, zeros in [c, cpad). */
void cg_k_pad_channels_from_f32(cg_dtype_t dt, const float *d_src, int64_t npix, int c, int cpad,
                                void *d_dst, cudaStream_t s);
/* Weight repacking for a padded input-channel count: [k][r][s][c] fp32 -> [k][r][s][cpad] dt
 * (zeros in the padding), and its gradient back: [k][r][s][cpad] dt -> [k][r][s][c] fp32. */
void cg_k_pack_weight_cpad(cg_dtype_t dt, const float *d_w, int k, int rs, int c, int cpad,
                           void *d_dst, cudaStream_t s);
void cg_k_unpack_grad_cpad(cg_dtype_t dt, const void *d_g, int k, int rs, int c, int cpad,
                           float *d_dst, cudaStream_t s);

/* ---- loss ------------------------------------------------------------------------------- */

/* BCE-with-logits + soft Dice, exactly as cg_cpu_loss (src/model/cpu_layers.h): logits (dt, n x hw,
 * one channel, dense), masks uint8 0/1, weights fp32, dice_w >= 0 the Dice term's weight
 * (--dice-weight; 1 = the reference loss), pos_weight a foreground pixel's BCE factor
 * (--pos-weight, torch's pos_weight; 1 = none, bitwise), focal the focal loss's gamma (each
 * pixel's BCE term times (1 - p_t)^focal, cg_loss_opt_t.focal; 0 = none, bitwise). Writes:
 *   d_loss[0]   (double) sum_i weight[i] * (BCE_i + dice_w Dice_i)
 *   d_dlogits   (dt) gradient of that sum times the loss scale (d_scaler->scale; pass NULL for 1);
 *               nullable (eval steps); weight-0 samples get exactly 0
 *   d_pred      (uint8, n x hw) 1 where logit > 0, nullable
 * Deterministic (fixed-order reductions in double); n <= 65535, hw >= 1; n == 0 writes 0.
 * d_work: cg_k_loss_work_bytes(n, hw) bytes of scratch. */
size_t cg_k_loss_work_bytes(int n, int64_t hw);
void cg_k_loss(cg_dtype_t dt, const void *d_logits, const uint8_t *d_mask, const float *d_weight,
               int n, int64_t hw, float dice_w, float pos_weight, float focal,
               const cg_scaler_t *d_scaler, void *d_dlogits, double *d_loss, uint8_t *d_pred,
               void *d_work, cudaStream_t s);
/* The same with an ignore label (cg_cpu_loss_k with K = 1): pixels whose mask is `ignore` are
 * left out of both terms (the BCE mean is over the others) and get exactly 0 gradient; their
 * prediction is still written. ignore = -1 is cg_k_loss, the same kernels bit for bit. d_thr:
 * OHEM's per-sample thresholds (n floats, cg_k_ohem_thr; cg_loss_opt_t.ohem), NULL = none
 * (bitwise the loss without): only the pixels kept by their sample's threshold add their BCE
 * term, the BCE mean is over them, and the others' gradient is the Dice term's alone (ignore
 * -1 is fine: the mean still needs the count of the kept pixels). */
void cg_k_loss_ign(cg_dtype_t dt, const void *d_logits, const uint8_t *d_mask,
                   const float *d_weight, int n, int64_t hw, int ignore, float dice_w,
                   float pos_weight, float focal, const float *d_thr, const cg_scaler_t *d_scaler,
                   void *d_dlogits, double *d_loss, uint8_t *d_pred, void *d_work,
                   cudaStream_t s);

/* K >= 2 classes: softmax cross-entropy + class-averaged soft Dice, exactly as cg_cpu_loss_k
 * (src/model/cpu_layers.h): logits (dt, n x hw x nclass NHWC, dense), masks uint8 class ids,
 * pixels whose mask is `ignore` (-1: none) left out of both terms, weights fp32, dice_w as
 * cg_k_loss's, d_cw the nclass class weights of the CE terms (device fp32, --class-weights:
 * torch's weight=; NULL = none, bitwise), smooth the CE's label smoothing in [0, 1)
 * (--label-smoothing: torch's label_smoothing=; 0 = none, bitwise), focal the focal loss's gamma
 * (--focal-gamma: a pixel's CE term times (1 - p_y)^focal; 0 = none, bitwise; not with smooth),
 * d_thr OHEM's per-sample thresholds as cg_k_loss_ign's (the CE terms, smoothed or focal, of the
 * kept pixels only; the mean over them, weighted with d_cw; NULL = none, bitwise).
 * Writes:
 *   d_loss[0]   (double) sum_i weight[i] * (CE_i + dice_w Dice_i)
 *   d_dlogits   (dt, n x hw x nclass) gradient of that sum times the loss scale (d_scaler,
 *               NULL for 1); nullable; ignore pixels and weight-0 samples get exactly 0
 *   d_pred      (uint8, n x hw) argmax of the pixel's logits (first max wins), nullable
 * Deterministic (fixed-order reductions in double); n <= 65535, hw >= 1, 2 <= nclass <= 255;
 * n == 0 writes 0. d_work: cg_k_loss_k_work_bytes(n, hw, nclass) bytes of scratch. */
size_t cg_k_loss_k_work_bytes(int n, int64_t hw, int nclass);
void cg_k_loss_k(cg_dtype_t dt, const void *d_logits, const uint8_t *d_mask,
                 const float *d_weight, int n, int64_t hw, int nclass, int ignore, float dice_w,
                 const float *d_cw, float smooth, float focal, const float *d_thr,
                 const cg_scaler_t *d_scaler, void *d_dlogits, double *d_loss, uint8_t *d_pred,
                 void *d_work, cudaStream_t s);

/* OHEM's threshold of each sample (cg_cpu_ohem_thr's rule: exact and deterministic, bitwise
 * cg_cpu_ohem_select of the device's keys, which are cg_cpu_ohem_key's or 1 ulp away), for the
 * loss kernels' d_thr: logits and masks as the loss takes them (nclass 1: binary, the logits
 * n x hw; else n x hw x nclass), ignore the ignore label (-1: none), thresh in (0, 1]
 * (cg_loss_opt_t.ohem), min_kept >= 0 (ohem_min_kept). d_thr[i] = max(thresh, v), v the key
 * (float)p_t of rank min_kept among sample i's valid pixels in increasing order, or +inf when
 * min_kept >= their count. d_keys: cg_k_ohem_work_bytes(n, hw) bytes of scratch, 8-aligned (a
 * key per pixel, then the select's state). Kernels and a memset on s: no sync, no allocation
 * (graph capture). n <= 65535, hw < 2^32; n == 0 writes nothing. */
size_t cg_k_ohem_work_bytes(int n, int64_t hw);
void cg_k_ohem_thr(cg_dtype_t dt, const void *d_logits, const uint8_t *d_mask, int n, int64_t hw,
                   int nclass, int ignore, float thresh, int64_t min_kept, uint32_t *d_keys,
                   float *d_thr, cudaStream_t s);

/* Test only (the backend's fault_nan_step): d_loss[0] and the first element of the loss
 * gradient d_dlogit (dt) become NaN; one thread. */
void cg_k_fault_nan(cg_dtype_t dt, void *d_dlogit, double *d_loss, cudaStream_t s);

/* ---- optimizer and loss scaling --------------------------------------------------------- */

/* Sets d_scaler->found_inf = 1 if any of the n gradients is inf or NaN (never clears it; the
 * scaler update clears it). */
void cg_k_check_finite(const float *d_g, int64_t n, cg_scaler_t *d_scaler, cudaStream_t s);

/* Gradient accumulation (--grad-accum) over n fp32 gradients: keep adds a micro-batch's
 * gradients d_g into the kept sum d_acc; take adds the kept sum into the step's last gradients
 * and zeroes it, ready for the next step. */
void cg_k_grad_keep(const float *d_g, float *d_acc, int64_t n, cudaStream_t s);
void cg_k_grad_take(float *d_g, float *d_acc, int64_t n, cudaStream_t s);

/* Gradient-norm clipping (--clip-grad-norm), as torch.nn.utils.clip_grad_norm_. */
typedef struct {
  float norm;            /* the global L2 norm of the unscaled gradient */
  float coef;            /* what AdamW multiplies the gradient by */
} cg_gnorm_t;

/* d_gn->norm = ||d_g||_2 / d_scaler->scale (d_scaler nullable: scale 1), the squares summed in
 * double over a fixed grid in a fixed order (the same bits on every run and every GPU);
 * d_gn->coef = cg_clip_coef(norm, max_norm) (src/model/backend.h): min(1, max_norm /
 * (norm + 1e-6)) in float as PyTorch rounds it, 1 when the norm or max_norm is not finite. d_work:
 * cg_k_grad_norm_work_bytes() bytes of scratch. */
size_t cg_k_grad_norm_work_bytes(void);
void cg_k_grad_norm(const float *d_g, int64_t n, const cg_scaler_t *d_scaler, float max_norm,
                    void *d_work, cg_gnorm_t *d_gn, cudaStream_t s);

/* Fused AdamW over the flat fp32 master buffer (cg_cpu_adamw semantics), gradients divided by
 * d_scaler->scale and multiplied by d_gn->coef (nullable: no clipping); skipped entirely (p, m,
 * v and d_lowp untouched) when d_scaler->found_inf. d_scaler may be NULL: scale 1, never
 * skipped. If d_lowp is not NULL it also writes the updated parameters rounded to dt (the
 * compute-precision copy). If d_ema is not NULL, the updated parameters also move the moving
 * average there as cg_cpu_ema with w = d_hp->ema_w (not on a skipped step). */
void cg_k_adamw(float *d_p, const float *d_g, float *d_m, float *d_v, int64_t n,
                const cg_step_params_t *d_hp, const cg_scaler_t *d_scaler, const cg_gnorm_t *d_gn,
                cg_dtype_t dt, void *d_lowp, float *d_ema, cudaStream_t s);

/* SGD over the flat fp32 master buffer (cg_cpu_sgd semantics: torch.optim.SGD, dampening 0,
 * L2 weight decay d_hp->weight_decay, learning rate d_hp->lr), d_buf the momentum buffer;
 * gradients unscaled and clipped, the step skipped, and d_lowp and d_ema written as cg_k_adamw
 * does. */
void cg_k_sgd(float *d_p, const float *d_g, float *d_buf, int64_t n, const cg_step_params_t *d_hp,
              const cg_scaler_t *d_scaler, const cg_gnorm_t *d_gn, float momentum, int nesterov,
              cg_dtype_t dt, void *d_lowp, float *d_ema, cudaStream_t s);

/* Exchanges d_p and d_e (n floats each), writing the new d_p rounded to dt into d_lowp when it
 * is not NULL: the moving average validated in the parameters' place, and back. */
void cg_k_ema_swap(float *d_p, float *d_e, int64_t n, cg_dtype_t dt, void *d_lowp,
                   cudaStream_t s);

/* After the step: if found_inf, scale *= 0.5 (min 1), good_steps = 0, skipped++; else
 * good_steps++, and scale *= 2 after 2000 clean steps (good_steps reset). Clears found_inf.
 * steps++. A single-thread kernel. When !enabled the scale never changes, but a step whose
 * found_inf was set (AdamW skipped it) is still counted in skipped. */
void cg_k_scaler_update(cg_scaler_t *d_scaler, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
