/* model.h: the UNet graph, written once and shared by every backend.
 *
 * A model is a flat list of layers in forward order over a set of activation buffers.
 * All activations are NHWC. A tensor is a view into a buffer: a channel slice
 * [c_off, c_off + c) of a buffer whose pixel stride is ld = the buffer's channel count.
 * This is how concat costs nothing: the decoder's upsampled tensor and the encoder's skip
 * tensor are the two halves of one buffer ([up | skip], upsampled first, skip second), and
 * the decoder's first convolution reads the whole buffer.
 *
 * Parameters live in one flat fp32 buffer, layer after layer in forward order, each layer's
 * weight then its bias:
 *   conv (k = 3 or 1): weight [cout][k][k][cin] (KRSC, what cuDNN calls NHWC filters), bias [cout]
 *   upconv (2x2 stride 2 transposed conv): weight [cin][2][2][cout], bias [cout]
 *   pool: no parameters
 * The gradient buffer has the same layout. Gradient buckets (cg_buckets_t) are contiguous
 * ranges of it in reverse layer order, so bucket 0 is ready first during backward.
 *
 * Ownership: cg_model_build fills a caller-owned struct with no heap memory of its own.
 */
#ifndef CG_MODEL_H
#define CG_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define CG_MAX_DEPTH 6
#define CG_MAX_LAYERS 64
#define CG_MAX_TENSORS 64
#define CG_MAX_BUFS 48
#define CG_MAX_BUCKETS 64
#define CG_MAX_CLASSES 255 /* class ids are uint8; 255 is the usual ignore label */

typedef enum { CG_OP_CONV = 0, CG_OP_POOL = 1, CG_OP_UPCONV = 2 } cg_op_t;

typedef struct {
  int h, w, c; /* per-image shape of the whole buffer */
} cg_buf_t;

typedef struct {
  int buf;    /* index into cg_model_t.bufs */
  int c_off;  /* first channel inside the buffer */
  int h, w, c;
  int ld;     /* pixel stride in elements (= bufs[buf].c) */
} cg_tensor_t;

typedef struct {
  cg_op_t op;
  char name[24];  /* "enc0.conv1", "dec2.up", "head" */
  int k;          /* kernel size: 3 or 1 for conv, 2 for pool and upconv */
  int relu;       /* conv only: ReLU after the bias */
  int in, out;    /* tensor ids */
  int cin, cout;
  size_t w_off, w_len, b_off, b_len; /* into the flat parameter buffer; 0 length for pool */
  int need_dx;    /* backward must produce the input gradient (0 for the first layer) */
  int accum_dx;   /* backward adds into the input gradient instead of overwriting it */
  double flops_fwd; /* multiply-adds x 2, per image */
} cg_layer_t;

typedef struct {
  /* architecture */
  int in_c, base, depth;
  int nclass;                 /* 1 = binary (one logit); K >= 2: K logits (softmax head) */
  int height, width;          /* input image size */
  int widths[CG_MAX_DEPTH + 1];
  /* graph */
  int nlayers, ntensors, nbufs;
  cg_layer_t layers[CG_MAX_LAYERS];
  cg_tensor_t tensors[CG_MAX_TENSORS];
  cg_buf_t bufs[CG_MAX_BUFS];
  int input_tensor, logits_tensor;
  size_t nparams;
  double flops_fwd;           /* per image */
} cg_model_t;

/* Builds the UNet with nclass output channels (1 = binary). Returns 0, or -1 with a message
 * in err when the shape is invalid (height/width not divisible by 2^depth, depth out of
 * 1..CG_MAX_DEPTH, base < 1, nclass out of 1..CG_MAX_CLASSES). */
int cg_model_build(cg_model_t *m, int in_c, int base, int depth, int height, int width,
                   int nclass, char *err, size_t errlen);

/* Number of parameters of the architecture (independent of the image size). */
size_t cg_model_param_count(int in_c, int base, int depth);

/* Deterministic He-normal init of the flat buffer (nparams floats) from seed; biases 0. */
void cg_model_init_params(const cg_model_t *m, uint64_t seed, float *params);

/* Elements of one image in a buffer / a tensor. */
static inline size_t cg_buf_elems(const cg_model_t *m, int b) {
  return (size_t)m->bufs[b].h * m->bufs[b].w * m->bufs[b].c;
}

/* Prints the layer table and the parameter count to stdout. */
void cg_model_print(const cg_model_t *m);

/* Gradient buckets: contiguous ranges of the flat gradient buffer in reverse layer order. */
typedef struct {
  int n;
  size_t off[CG_MAX_BUCKETS], len[CG_MAX_BUCKETS]; /* in elements */
  /* ready_after[l] = the bucket that becomes complete when backward has finished layer l
   * (layers run backward from nlayers-1 to 0), or -1. */
  int ready_after[CG_MAX_LAYERS];
} cg_buckets_t;

/* Groups layers (from the last) into buckets of at least bucket_bytes (of fp32 gradients);
 * layers without parameters join the current bucket. bucket_bytes <= 0 gives one bucket. */
void cg_buckets_plan(const cg_model_t *m, double bucket_bytes, cg_buckets_t *out);
/* The same, and the final bucket (the model's first layers, complete last in backward) is
 * split off as soon as those layers' gradients reach last_bytes, so little is left to reduce
 * after backward ends (--last-bucket-mb). last_bytes <= 0: no such split. */
void cg_buckets_plan_last(const cg_model_t *m, double bucket_bytes, double last_bytes,
                          cg_buckets_t *out);

#endif
