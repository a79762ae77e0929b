/* export.h: `cogpu-dist export` and `cogpu-dist import` — the trained weights as a safetensors
 * file that PyTorch (python/cogpu_torch.py) and, through it, ONNX load, and back.
 *
 * File (safetensors): u64 little-endian N, N bytes of JSON header padded with spaces to a
 * multiple of 8, then the raw tensors (little-endian float32, C order, back to back in header
 * order). The header maps each tensor name to {"dtype":"F32","shape":[...],"data_offsets":[b,e]}
 * (offsets relative to the end of the header) and "__metadata__" to string -> string:
 *   format "cogpu-unet", format_version "1", producer "cogpu-dist X.Y.Z", in_c, base, depth,
 *   nclass, height, width (the training image size), ignore_index (-1: none), palette (hex RGB
 *   triples of the training masks' palette, "" when none).
 * Tensor names and layouts are those of the state_dict of cogpu_torch.CogpuUNet:
 *   enc.L.conv{1,2}.{weight,bias}  L = 0..depth        Conv2d weight OIHW (out, in, 3, 3)
 *   up.L.{weight,bias}             L = 0..depth-1      ConvTranspose2d weight (in, out, 2, 2)
 *   dec.L.conv{1,2}.{weight,bias}  L = 0..depth-1      decoder level L (input [up | skip])
 *   head.{weight,bias}                                 Conv2d 1x1 (nclass, base, 1, 1)
 * in state_dict order (enc, up, dec by level, head). model.h's flat layout (KRSC conv weights,
 * [cin][2][2][cout] upconv weights) is transposed on the way out and back on the way in.
 *
 * Both are single-process tools (no MPI). Return: the process exit code — 0, 1 when a file
 * cannot be read or written, 2 for usage errors and refused (incompatible) input files. */
#ifndef CG_EXPORT_H
#define CG_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "ckpt.h"  /* cg_ckpt_info_t: the palette and ignore label read back */
#include "model.h" /* cg_model_t: the model the metadata describes */

int cg_export_main(int argc, char **argv);
int cg_import_main(int argc, char **argv);

/* What import reads: buf (the whole file, len bytes) parsed and checked into m (the metadata's
 * model), info's palette, npal and ignore_index, names (optional, CG_CLASSNAMES_LEN bytes: the
 * metadata's class_names as a checked list, "" without), and *params (malloc'd, m->nparams
 * floats, in model.h's layout). 0, or -1 with err and *params NULL. Nothing is allocated by the
 * size the file claims before the file is known to hold that many bytes. (Exposed for the
 * fuzzer and --init-from.) */
int cg_import_parse(const uint8_t *buf, size_t len, cg_model_t *m, cg_ckpt_info_t *info,
                    char *names, float **params, char *err, size_t errlen);

#endif
