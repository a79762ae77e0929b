/* init_from.h: `train --init-from SRC`, fine-tuning: a new run starts from the weights of a
 * trained model instead of a fresh initialisation.
 *
 * SRC is a checkpoint FILE, a pointer file DIR/best or DIR/last, a checkpoint DIR (its newest
 * valid checkpoint, as --resume DIR picks it: cg_ckpt_resolve), or a .safetensors file written
 * by `cogpu-dist export` (or by anything writing that format: export.h).
 *
 *   model    --model-base and --model-depth come from SRC when they are not given; given, they
 *            must equal SRC's (exit 2 naming the flag and both values). The image size may
 *            differ: the network is fully convolutional, its weights do not depend on it.
 *   head     with SRC's number of classes every weight is SRC's. With another --num-classes
 *            (a new label set) every layer but the head is SRC's, and the head (the final 1x1
 *            convolution) is initialised as a fresh run of that --seed initialises it, as
 *            torchvision's fine-tuning recipes replace the classifier. --num-classes must be
 *            given when SRC has K >= 2 classes: its default, 1, would replace a K-class head
 *            with a binary one unasked.
 *   afresh   AdamW's moments, the step count, the learning-rate schedule, the data position and
 *            the run id start as in a new run: only the weights come from SRC.
 *   resume   with --resume too, a checkpoint found there wins (a requeued fine-tuning job goes
 *            on from its own checkpoints, with the same command line); --init-from is used only
 *            when there is none.
 * The file the weights came from is stored in the run's checkpoints (the settings' init-from,
 * its absolute path), for the record: a resume does not read it again.
 *
 * Both calls are collective: rank 0 reads SRC, every rank gets the verdict and the weights. */
#ifndef CG_INIT_FROM_H
#define CG_INIT_FROM_H

#include <stddef.h>

#include "comm.h"
#include "config.h"
#include "model.h"

/* Before the run is set up (after cg_settings_resume): with --init-from and no checkpoint to
 * resume, rank 0 reads SRC's model; the model flags are taken or checked as above, and
 * cfg->init_from becomes the absolute path of the file the weights will come from. Returns 0,
 * or CG_EXIT_USAGE after rank 0 printed why. */
int cg_init_from_settings(cg_config_t *cfg, cg_comm_t *c);

/* The run's initial weights into params (m->nparams floats) on every rank: SRC's, with a fresh
 * head as above when the class counts differ. 0, or -1 with err (the same on every rank: a file
 * changed since cg_init_from_settings read it). */
int cg_init_from_load(const cg_config_t *cfg, const cg_comm_t *c, const cg_model_t *m,
                      float *params, char *err, size_t errlen);

#endif
