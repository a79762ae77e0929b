/* cli.c: the cogpu-dist command line — the table of every option of train and info, the
 * command names, the checks across options, and the --help texts.
 *
 * The table is the single source of truth: parsing, range checks, error messages and --help
 * all come from it through the option engine (opts.h), so a documented flag cannot drift from
 * what is parsed. cogpu-bench overlap and scaling take the same train rows (cg_cli_opts). */
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* access: --class-names FILE */

#include "cli.h"    // cg_cli_*: this file's contract
#include "cgds.h"     // cg_cgds_label_map: the map a shard --data was packed with
#include "classnames.h" // cg_classnames_parse: --class-names kept as a list
#include "augment.h"  // CG_ROTATE_MAX_DEG: --rotate's range
#include "fit.h"      // CG_CROP_SCALE_MAX: --crop-scale's range
#include "labelmap.h" // cg_labelmap_parse: --label-map read once, its table kept
#include "log.h"      // cg_malloc: the defaults beside a config
#include "opts.h"   // cg_opts_*: the engine: parse, range checks, messages, --help lines
#include "path.h"   // cg_path_abs: --data and --val-data independent of the working directory
#include "png_io.h" // CG_PNG_DEFAULT_MAX_PIXELS: the --max-image-pixels default
#include "rank_view.h" // cg_rank_view_parse: --report-ranks

/* --crop-scale's default, as check_train_flags writes a value back ("%.15g:%.15g") */
#define CROP_SCALE_DEFAULT "0.75:1"

/* Which commands take an option (cg_opt_t.cmds). */
#define C_TRAIN (1u << CG_CMD_TRAIN)
#define C_INFO (1u << CG_CMD_INFO)
#define O(f) CG_OPT_FIELD(cg_config_t, f)

static const cg_opt_t g_opts[] = {
    /* backend */
    CG_OPT_ROW_TEXT(STR, "backend", O(backend), "auto|cpu|cuda", C_TRAIN | C_INFO, "B",
        "compute backend; auto = cuda when a GPU is usable, else cpu (it says which)"),
    CG_OPT_ROW_TEXT(STR, "precision", O(precision), "auto|fp32|bf16|fp16", C_TRAIN, "P",
        "compute precision: auto, fp32, bf16 or fp16; auto = bf16 on a GPU, fp32 on the cpu "
        "backend (fp32 only)"),
    CG_OPT_ROW_NUM(INT, "threads", O(threads), 0, 4096, C_TRAIN, "N",
        "compute threads per rank; 0 = the rank's share of the cores it may use"),
    CG_OPT_ROW_ONOFF("cuda-graph", O(cuda_graph), C_TRAIN,
        "cuda: replay the steady-state step as a CUDA graph"),
    CG_OPT_ROW_TEXT(STR, "tf32", O(tf32), "auto|on|off", C_TRAIN, "T",
        "cuda fp32: TF32 tensor cores in the convolutions; auto = on, as PyTorch's default for "
        "cuDNN convolutions; off = strict fp32"),
    CG_OPT_ROW_TEXT(STR, "algo-cache", O(algo_cache), NULL, C_TRAIN, "FILE",
        "cuda: keep the cuDNN algorithm choices in FILE and reuse them in later runs"),
    /* model */
    CG_OPT_ROW_NUM(INT, "model-base", O(model_base), 1, 1024, C_TRAIN | C_INFO, "N",
        "UNet base width b, 1..1024 (widths b, 2b, ..., b*2^depth)"),
    CG_OPT_ROW_NUM(INT, "model-depth", O(model_depth), 1, 6, C_TRAIN | C_INFO, "N",
        "UNet depth d, 1..6 (number of 2x2 poolings)"),
    CG_OPT_ROW_NUM(INT, "image-size", O(image_size), 2, 8192, C_TRAIN | C_INFO, "N",
        "images are N x N, 2..8192; N must be a multiple of 2^depth"),
    CG_OPT_ROW_NUM(INT, "num-classes", O(num_classes), 1, 255, C_TRAIN | C_INFO, "K",
        "classes, 1..255: 1 = binary (mask pixel > 0 is foreground); K >= 2: masks hold class ids "
        "0..K-1 (gray values or palette indices of PNG, GIF, TIFF or BMP masks), softmax "
        "cross-entropy + soft Dice (--dice-weight)"),
    {"ignore-index", CG_OPT_INT, O(ignore_index), -1, 255, CG_OPT_NODEF, NULL, C_TRAIN | C_INFO, "I",
     "mask label left out of the loss and the metrics, not a class id (>= --num-classes); "
     "-1 = none; default 255 when --num-classes >= 2, none for binary"},
    CG_OPT_ROW_TEXT(STR, "class-names", O(class_names), NULL, C_TRAIN, "LIST|FILE",
        "--num-classes K >= 2: the classes' names, K of them in class-id order, comma-separated "
        "(road,sidewalk,...) or (a value without a comma) a FILE of one name a line ('#' "
        "comments), as mmsegmentation's class lists: shown beside the ids in the per-class "
        "tables (validation, check-data, predict --masks), --metrics-out's per_class[].name and "
        "TensorBoard's val_class_iou/NAME and val_class_acc/NAME tags; stored in checkpoints "
        "(predict, export and --init-from take them from there); each 1..48 bytes of UTF-8, "
        "unique, without commas, quotes, backslashes or control characters, 2047 bytes in all; "
        "default none: the ids alone (none given on a resume drops the checkpoint's names)"),
    /* data */
    CG_OPT_ROW_TEXT(STR, "data", O(data), NULL, C_TRAIN | C_INFO, "SRC",
        "training data: synthetic (built in), a directory DIR with DIR/images/*.png, *.jpg, "
        "*.jpeg, *.gif, *.tif, *.tiff or *.bmp (any case) and DIR/masks/ of the same formats "
        "(JPEG: binary masks only) paired by name, a shard "
        "FILE.cgds written by "
        "`cogpu-dist pack`, or a text file LIST of 'IMAGE MASK' lines (paths relative to LIST's "
        "directory; separated by spaces, or a tab when names hold spaces; '#' comments), for "
        "layouts such as VOC's JPEGImages/ and SegmentationClass/"),
    CG_OPT_ROW_TEXT(STR, "val-data", O(val_data), NULL, C_TRAIN, "SRC",
        "separate validation data (directory, .cgds or list), with real --data; default: "
        "--val-fraction of --data"),
    CG_OPT_ROW_TEXT(STR, "label-map", O(label_map), NULL, C_TRAIN, "SPEC",
        "image files' mask values turned into class ids as they are read: reduce-zero (0 = the "
        "ignore label, v = v - 1: ADE20K's masks) or a file of 'FROM TO' lines, 0..255 each "
        "('* TO': every value not listed; without it such a value is a bad sample), e.g. "
        "Cityscapes' labelIds to its 19 train ids"),
    CG_OPT_ROW_NUM(DBL, "val-fraction", O(val_fraction), 0, 0.9, C_TRAIN | C_INFO, "F",
        "real data without --val-data: fraction held out for validation (0 to 0.9), chosen by "
        "a hash of the file names"),
    CG_OPT_ROW_NUM(I64, "train-samples", O(train_samples), 1, 1e12, C_TRAIN, "N",
        "synthetic: size of the training set"),
    CG_OPT_ROW_NUM(I64, "val-samples", O(val_samples), 0, 1e12, C_TRAIN, "N",
        "synthetic: size of the held-out validation set (0 = no validation)"),
    CG_OPT_ROW_FLAG("skip-bad", O(skip_bad), C_TRAIN | C_INFO,
        "leave out and count bad samples (an image or mask that is empty, not a "
        "PNG/JPEG/GIF/TIFF/BMP, "
        "truncated, corrupt or over --max-image-pixels; a mask value that is no class id; an "
        "image and mask of different sizes; a shard record failing its CRC), at start-up and "
        "while training, instead of ending the job with exit code 2"),
    CG_OPT_ROW_NUM(I64, "max-image-pixels", O(max_image_pixels), 1, 1073741824, C_TRAIN | C_INFO,
        "N",
        "an image of more pixels (width x height, read from the file's header before "
        "anything is allocated) is a bad sample; the default is Pillow's decompression-bomb "
        "limit, about 9459 x 9459, far more than any image worth fitting to --image-size"),
    CG_OPT_ROW_TEXT(STR, "exif-orientation", O(exif_orientation), "stored|apply",
        C_TRAIN | C_INFO, "E",
        "a JPEG image's EXIF orientation (phone photos: how a viewer turns or mirrors it): "
        "stored = the pixels as stored, as PIL's Image.open and torchvision read them (train "
        "warns of the images a viewer turns); apply = as a viewer shows them, and as a "
        "labelling tool (CVAT, LabelMe) drew their masks over them: PIL's "
        "ImageOps.exif_transpose, OpenCV's imread (masks are read as stored; pack and predict "
        "take the same flag; predict's default is the run's)"),
    CG_OPT_ROW_FLAG("check-data", O(check_data), C_TRAIN,
        "decode every sample once at start-up (split over the ranks and each rank's cores), list "
        "every bad file and a summary; then exit 2 if any is bad, or with --skip-bad train without "
        "them; it also prints the classes' shares of --data's pixels (the images whole at "
        "--image-size, as random crops see them; with --crop off their fitted squares; a held-out "
        "--val-fraction part included) and the balanced weights they give, as the "
        "--class-weights or --pos-weight flag to pass"),
    CG_OPT_ROW_ONOFF("crop", O(crop), C_TRAIN,
        "real data: random square crops as augmentation, with the flips: a window of "
        "--crop-scale of the image's shorter side, anywhere in the whole image (of a wide photo "
        "its edges too), resampled to --image-size; off: the centred square (as validation)"),
    CG_OPT_ROW_TEXT(STR, "crop-scale", O(crop_scale), NULL, C_TRAIN, "A:B",
        "the crops' side, uniform in A..B of the image's shorter side, 0 < A <= B <= 4 (of a "
        "shard: of its records, the fitted squares, or the whole images of pack --store whole); "
        "above 1 a crop zooms out: the image lies at a random place inside a larger window, "
        "the rest padded mid-gray (0 once normalised) with masks of the ignore label (left out "
        "of the loss and metrics, as mmsegmentation pads; 0 when there is none); 0.5:2 spans "
        "the scales of mmsegmentation's resize ratio 0.5..2 (its ratio is uniform, here the "
        "window's side: more of the crops zoom out); another value than the default is refused "
        "with synthetic data or --crop off"),
    CG_OPT_ROW_NUM(DBL, "crop-cat-max", O(crop_cat_max), 0, 1, C_TRAIN, "R",
        "real data's crops: a window whose mask has one label on R or more of its labelled "
        "pixels (the ignore label left out), or a single label, is moved to a new place of the "
        "same side, up to 10 times, the next taken as it is: mmsegmentation's "
        "RandomCrop(cat_max_ratio=R), 0.75 in its Cityscapes, ADE20K and VOC recipes; each try "
        "reads the window's mask alone (image files decode no image for it), the accepted "
        "window's image is then read alone; below 1 refused "
        "with synthetic data or --crop off; 1 = off"),
    CG_OPT_ROW_TEXT(STR, "color-jitter", O(color_jitter), NULL, C_TRAIN, "B:C:S:H",
        "training images' random colour jitter, as torchvision's ColorJitter(brightness=B, "
        "contrast=C, saturation=S, hue=H) on uint8 tensors: factors uniform in [max(0, 1-B), "
        "1+B] (C, S alike) and [-H, H], H <= 0.5, applied in a random order; 0 leaves one out; "
        "0.4:0.4:0.4:0.1 is a common choice"),
    CG_OPT_ROW_TEXT(STR, "rotate", O(rotate), NULL, C_TRAIN, "D[:P]",
        "random rotation as augmentation, as torchvision's RandomRotation(D) (bilinear, masks "
        "nearest) made with probability P (like mmsegmentation's RandomRotate(prob=P, "
        "degree=D)): each training sample, after its crop, flips and colour jitter, turned about "
        "its centre by an angle uniform in [-D, D] degrees (0 < D <= 180), its size kept; the "
        "corners it uncovers padded as zoom-out crops pad (mid-gray, masks the ignore label, 0 "
        "when there is none); P in (0, 1], default 1; 0 = off"),
    CG_OPT_ROW_TEXT(STR, "flip", O(flip), "on|off|horizontal|vertical|d4|1|0", C_TRAIN, "F",
        "random flips as augmentation, each made with probability 0.5 from the sample's own "
        "stream: on = horizontal and vertical, as torchvision's RandomHorizontalFlip and "
        "RandomVerticalFlip; horizontal = left-right only, as mmsegmentation's RandomFlip(prob="
        "0.5) (street scenes, anything with an up and a down); vertical = up-down only; d4 = "
        "each of the square's 8 symmetries with probability 1/8 (the flips and the rotations "
        "by 90 degrees, as albumentations' D4: aerial, satellite and microscopy tiles); a "
        "sample's left-right and up-down draws are the same in every mode; off: none (--crop "
        "off --flip off trains on exactly the pixels of the files); 1 and 0 are on and off"),
    CG_OPT_ROW_NUM(INT, "cpu-workers", O(cpu_workers), -1, 1024, C_TRAIN, "N",
        "helper threads per rank preparing batches; -1 = auto"),
    CG_OPT_ROW_NUM(INT, "prefetch", O(prefetch), 1, 64, C_TRAIN, "N",
        "batches prepared ahead of the one being trained"),
    CG_OPT_ROW_TEXT(STR, "split", O(split), "auto|cpu|gpu", C_TRAIN, "S",
        "where features, normalisation and metrics run: the helpers (cpu), the device (gpu), or "
        "auto: a controller moves samples between them so the device never waits for data"),
    CG_OPT_ROW_NUM(INT, "split-every", O(split_every), 1, 1e6, C_TRAIN, "N",
        "steps per window of the auto split controller"),
    /* training */
    CG_OPT_ROW_NUM(INT, "batch", O(batch), 1, 65536, C_TRAIN, "N",
        "samples per micro-batch per rank: each rank trains --grad-accum micro-batches of N a "
        "step (global batch = ranks x N x --grad-accum)"),
    CG_OPT_ROW_NUM(INT, "grad-accum", O(grad_accum), 1, CG_GRAD_ACCUM_MAX, C_TRAIN, "A",
        "gradient accumulation: micro-batches of --batch per rank per step, their gradients "
        "summed before one all-reduce and one optimizer step, as accumulating loss.backward() "
        "over A batches of loss / A before optimizer.step(); the same global batch on fewer "
        "ranks or in less memory (4 ranks x --grad-accum 2 = 8 ranks)"),
    CG_OPT_ROW_NUM(I64, "steps", O(steps), 0, 1e15, C_TRAIN, "N",
        "training steps; 0 = run --epochs epochs"),
    CG_OPT_ROW_NUM(I64, "epochs", O(epochs), 1, 1e9, C_TRAIN, "N",
        "epochs to train when --steps is 0"),
    CG_OPT_ROW_TEXT(STR, "optimizer", O(optimizer), "adamw|sgd", C_TRAIN, "O",
        "adamw: torch.optim.AdamW (--beta1, --beta2, --eps; decoupled weight decay); sgd: "
        "torch.optim.SGD with --momentum (dampening 0) and --nesterov, its --weight-decay the L2 "
        "term added to the gradient as SGD's weight_decay (the segmentation recipe, with "
        "--lr-schedule poly: mmsegmentation's --lr 0.01 --momentum 0.9 --weight-decay 5e-4); "
        "each parameter's state is one buffer instead of AdamW's two"),
    CG_OPT_ROW_NUM_GT(DBL, "lr", O(lr), 0, 10, C_TRAIN, "X", "learning rate, in (0, 10]"),
    CG_OPT_ROW_NUM(DBL, "weight-decay", O(weight_decay), 0, 1, C_TRAIN, "X",
        "weight decay of every parameter, in [0, 1]: AdamW's decoupled decay (p times 1 - lr "
        "X), SGD's L2 term (X p added to the gradient)"),
    CG_OPT_ROW_NUM(DBL, "beta1", O(beta1), 0, 1, C_TRAIN, "X", "AdamW beta1, in [0, 1)"),
    CG_OPT_ROW_NUM(DBL, "beta2", O(beta2), 0, 1, C_TRAIN, "X", "AdamW beta2, in [0, 1)"),
    CG_OPT_ROW_NUM_GT(DBL, "eps", O(eps), 0, 1, C_TRAIN, "X", "AdamW epsilon"),
    CG_OPT_ROW_NUM(DBL, "momentum", O(momentum), 0, 1, C_TRAIN, "M",
        "--optimizer sgd: momentum, in [0, 1) (PyTorch's SGD default is 0; segmentation "
        "recipes use 0.9)"),
    CG_OPT_ROW_ONOFF("nesterov", O(nesterov), C_TRAIN,
        "--optimizer sgd: Nesterov momentum, as SGD(nesterov=True); needs --momentum above 0"),
    CG_OPT_ROW_NUM(DBL, "dice-weight", O(dice_weight), 0, 100, C_TRAIN, "W",
        "the loss: cross-entropy (binary: BCE-with-logits) + W x soft Dice, per sample; 0 = "
        "cross-entropy alone, as torch.nn.CrossEntropyLoss / BCEWithLogitsLoss (each sample's "
        "mean over its pixels that are not --ignore-index, averaged over the samples); the "
        "validation loss is the same"),
    CG_OPT_ROW_TEXT(STR, "class-weights", O(class_weights), NULL, C_TRAIN, "W,...|balanced",
        "--num-classes K >= 2: a weight for each class's cross-entropy terms, K of them, as "
        "torch.nn.CrossEntropyLoss(weight=...), but normalised per sample: each sample's "
        "cross-entropy is the weighted mean over its pixels, sum w[y] CE / sum w[y] (a sample of "
        "one class is not changed by them; one with none of positive weight adds no "
        "cross-entropy); each 0 or in [1.2e-38, 1e6], not all 0; the Dice term is not weighted; "
        "the validation loss is the same; --check-data prints balanced ones; balanced: the run "
        "counts --data's class pixels at start-up as --check-data does (every sample decoded "
        "once, over the ranks and cores, and checked, --val-data's too; a held-out "
        "--val-fraction part counted) and takes "
        "those weights as --check-data prints them (4 digits), pixels / (K x the class's "
        "pixels) (a binary model: its --pos-weight, background / foreground pixels), written "
        "into checkpoints as numbers; default none (all 1)"),
    CG_OPT_ROW_NUM(DBL, "label-smoothing", O(label_smoothing), 0, 1, C_TRAIN, "E",
        "--num-classes K >= 2: the cross-entropy's targets smoothed, (1 - E) one-hot + E/K, as "
        "torch.nn.CrossEntropyLoss(label_smoothing=E) (with --class-weights, its weighted "
        "form), in [0, 1); the Dice term keeps the true labels; the validation loss is the "
        "same; 0 = none"),
    CG_OPT_ROW_NUM(DBL, "focal-gamma", O(focal_gamma), 0, 10, C_TRAIN, "G",
        "the focal loss (Lin et al.): each pixel's cross-entropy term times (1 - p_t)^G, p_t "
        "the predicted probability of its true class, so well-classified pixels count less: "
        "binary as torchvision.ops.sigmoid_focal_loss(alpha=-1, gamma=G) (with --pos-weight X "
        "the foreground's terms times X: its alpha = X / (1 + X), up to a factor), K classes "
        "on the softmax (-(1 - p_y)^G log p_y), the mean and --class-weights as the "
        "cross-entropy's; 2 is the paper's choice; the Dice term is not focal; not with "
        "--label-smoothing; the validation loss is the same; 0 = none"),
    CG_OPT_ROW_NUM(DBL, "ohem-thresh", O(ohem_thresh), 0, 1, C_TRAIN, "P",
        "online hard example mining, as mmsegmentation's OHEMPixelSampler(thresh=P) and "
        "HRNet's OhemCrossEntropy: per sample, only the cross-entropy (binary: BCE) terms of "
        "its hard pixels count, those whose predicted probability of their true class is "
        "below P, and at least the --ohem-min-kept hardest; the mean is over the kept pixels "
        "(with --class-weights their weighted mean; mmsegmentation divides by every pixel); "
        "mmsegmentation's Cityscapes recipes use 0.7 (HRNet's 0.9); the Dice term takes every "
        "pixel; the validation loss does not mine; 0 = off"),
    CG_OPT_ROW_NUM(I64, "ohem-min-kept", O(ohem_min_kept), 0, 1e12, C_TRAIN, "N",
        "--ohem-thresh: the pixels of each sample kept at least, the hardest ones (all of its "
        "valid pixels when it has no more); below the sample's pixels; 0 = a fifth of them "
        "(13107 at --image-size 256: mmsegmentation's min_kept=100000 is about a fifth of its "
        "512 x 1024 crops)"),
    CG_OPT_ROW_NUM_GT(DBL, "pos-weight", O(pos_weight), 0, 1e6, C_TRAIN, "X",
        "binary models: each foreground pixel's BCE term times X, as "
        "torch.nn.BCEWithLogitsLoss(pos_weight=X) (the mean still over the pixels): above 1 "
        "for a rare foreground (--check-data prints background / foreground pixels); the Dice "
        "term is not weighted"),
    CG_OPT_ROW_NUM(DBL, "clip-grad-norm", O(clip_grad_norm), 0, 1e9, C_TRAIN, "X",
        "clip the gradient to global L2 norm X before the optimizer step, as "
        "torch.nn.utils.clip_grad_norm_(params, X) after the all-reduce (fp16: of the unscaled "
        "gradient, a skipped step is not clipped); the norm is reported (step lines, "
        "--metrics-out, the history's grad_norm, --tensorboard train/grad_norm); a value it "
        "never reaches (1e9) measures without clipping; 0 = off"),
    CG_OPT_ROW_NUM(DBL, "ema-decay", O(ema_decay), 0, 1, C_TRAIN, "D",
        "keep an exponential moving average of the weights, as "
        "torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(D)) "
        "updated after every optimizer step (the first copies the weights; then avg = avg + "
        "(1 - D) (w - avg), rounded as torch.lerp on a CPU (fused multiply-adds); an fp16 step "
        "skipped for inf/NaN leaves it) "
        "and used where Lightning's EMAWeightAveraging and mmengine's EMAHook use theirs: "
        "validation, --best-metric, early stopping, DIR/best, --params-out, --metrics-out, "
        "predict, export and --init-from see the average; training goes on from the weights "
        "themselves, which checkpoints keep beside it for --resume (stored: a resume keeps it; "
        "--ema-decay 0 on a resume goes on from the weights and drops the average, and a "
        "resume with it from a checkpoint without one starts it there); 0 < D < 1, e.g. 0.999 "
        "or 0.9999 (the average spans about 1 / (1 - D) steps); 0 = off"),
    CG_OPT_ROW_NUM(I64, "warmup-steps", O(warmup_steps), 0, 1e15, C_TRAIN, "N",
        "linear learning-rate warm-up over the first N steps"),
    CG_OPT_ROW_TEXT(STR, "lr-schedule", O(lr_schedule), "constant|cosine|poly|multistep|plateau",
        C_TRAIN, "S",
        "learning rate after warm-up: constant; cosine decay to --min-lr at the end of the last "
        "step (PyTorch's CosineAnnealingLR over the steps after warm-up); poly: (--lr - "
        "--min-lr) (1 - p)^--lr-power + --min-lr, p the fraction of the steps after warm-up done "
        "(PyTorch's PolynomialLR, mmsegmentation's PolyLR: the segmentation recipe); or "
        "multistep: --lr times --lr-gamma once for each of --lr-milestones reached (PyTorch's "
        "MultiStepLR stepped every step); or plateau: --lr, times --lr-gamma whenever "
        "--best-metric has not improved for more than --lr-patience validations in a row, down "
        "to --min-lr (PyTorch's ReduceLROnPlateau(mode, factor=--lr-gamma, patience, threshold, "
        "cooldown, min_lr=--min-lr) stepped with each validation's figure; needs validations "
        "during the run)"),
    CG_OPT_ROW_NUM_GT(DBL, "lr-power", O(lr_power), 0, 100, C_TRAIN, "P",
        "--lr-schedule poly: the exponent, in (0, 100]"),
    CG_OPT_ROW_NUM(DBL, "min-lr", O(min_lr), 0, 10, C_TRAIN, "X",
        "--lr-schedule cosine or poly: the learning rate they end at, in [0, --lr]; plateau: "
        "the lowest it reduces to"),
    CG_OPT_ROW_TEXT(STR, "lr-milestones", O(lr_milestones), NULL, C_TRAIN, "N[,N...]",
        "--lr-schedule multistep: the steps after which the learning rate is multiplied by "
        "--lr-gamma, counted from the run's start (none before --warmup-steps; steps, not "
        "epochs), increasing, at most 16"),
    CG_OPT_ROW_NUM_GT(DBL, "lr-gamma", O(lr_gamma), 0, 1, C_TRAIN, "X",
        "--lr-schedule multistep: the factor at each milestone, in (0, 1]; plateau: at each "
        "reduction (ReduceLROnPlateau's factor), below 1"),
    CG_OPT_ROW_NUM(I64, "lr-patience", O(lr_patience), 0, 1e15, C_TRAIN, "N",
        "--lr-schedule plateau: the validations in a row without improvement it bears; the "
        "next one without reduces the rate (ReduceLROnPlateau's patience)"),
    CG_OPT_ROW_NUM(DBL, "lr-threshold", O(lr_threshold), 0, 1, C_TRAIN, "T",
        "--lr-schedule plateau: a validation improves when --best-metric beats the best so far "
        "by more than T of it (relative: below best x (1 - T) for val_loss, above best x (1 + T) "
        "for IoU: ReduceLROnPlateau's threshold, threshold_mode 'rel')"),
    CG_OPT_ROW_NUM(I64, "lr-cooldown", O(lr_cooldown), 0, 1e15, C_TRAIN, "N",
        "--lr-schedule plateau: validations after a reduction during which none counts as "
        "without improvement (ReduceLROnPlateau's cooldown)"),
    CG_OPT_ROW_NUM(U64, "seed", O(seed), 0, 1.8e19, C_TRAIN | C_INFO, "N",
        "seed of the initial weights, the data and the shuffles"),
    CG_OPT_ROW_NUM(I64, "early-stop-patience", O(early_stop_patience), 0, 1e15, C_TRAIN, "N",
        "early stopping, as PyTorch Lightning's EarlyStopping(monitor=--best-metric, patience=N): "
        "when N validations in a row have not improved on the best value of --best-metric "
        "so far by more than --early-stop-min-delta, the run ends at that validation's step "
        "as if --steps were that step (its final validation, checkpoint, metrics and history; "
        "the learning-rate schedule stays the planned one's); needs validations during the "
        "run; checkpoints keep the count, so a resumed run stops where it would have; 0 = off"),
    CG_OPT_ROW_NUM(I64, "lr-find", O(lr_find), 0, 1e4, C_TRAIN, "N",
        "a learning-rate range test instead of training, as PyTorch Lightning's Tuner.lr_find "
        "and fastai's lr_find: N steps (as --steps N; the data, model and optimizer as given) "
        "whose learning rate grows exponentially over --lr-find-range, each step's loss (the "
        "mean over the ranks) smoothed (a running mean, beta 0.98, debiased); the test ends "
        "early when the smoothed loss passes 4 x its best or a loss is not finite; prints a "
        "table and the suggested --lr, fastai's valley (its default: about half way down the "
        "longest fall of the smoothed loss); the lowest smoothed loss (fastai's minimum) and "
        "Lightning 2's rule are printed too; validates nothing and writes no weights; 0 = off"),
    CG_OPT_ROW_TEXT(STR, "lr-find-range", O(lr_find_range), NULL, C_TRAIN, "A:B",
        "--lr-find: the first and the last step's learning rate, 0 < A < B <= 1e6 "
        "(Lightning's min_lr, max_lr)"),
    CG_OPT_ROW_OUT(STR, "lr-find-out", O(lr_find_out), C_TRAIN, "FILE",
        "--lr-find: write every step as CSV (step,lr,loss,smoothed_loss) to FILE"),
    CG_OPT_ROW_NUM(DBL, "early-stop-min-delta", O(early_stop_min_delta), 0, 1e6, C_TRAIN, "D",
        "--early-stop-patience: a validation improves when --best-metric beats the best so far "
        "by more than D (Lightning's min_delta)"),
    {"val-every", CG_OPT_I64, O(val_every), 0, 1e15, CG_OPT_NODEF, NULL, C_TRAIN, "N",
     "validate every N steps; 0 = only at the end; default: once per epoch (and at the end)"},
    CG_OPT_ROW_TEXT(STR, "val-mode", O(val_mode), "square|whole|full", C_TRAIN, "M",
        "what validation scores: square = each image's centred --image-size square (the "
        "fitting rule: one sample an image, fast); whole = each image whole at the training "
        "scale (its shorter side scaled to --image-size, the longer at most 64 times that, as "
        "pack --store whole stores it; a shard's record as stored) by "
        "overlapping tiles blended as predict blends them (overlap 0.5), scored at that scale: the "
        "loss a mean over images, the counts over every pixel; full = the same, with the logits "
        "scaled back to each image's own size (bilinear) and scored against its mask at full "
        "resolution, as predict --resize fit scores it (mmsegmentation's whole-image mIoU; image "
        "files only: a shard keeps no full-size masks); ranks take images dealt by their tile "
        "counts"),
    CG_OPT_ROW_NUM(I64, "report-every", O(report_every), 1, 1e15, C_TRAIN, "N",
        "print the performance line every N steps"),
    CG_OPT_ROW_TEXT(STR, "report-ranks", O(report_ranks), NULL, C_TRAIN, "MODE",
        "rows of the balance table and the start-up binding report: all = every rank; nodes = one "
        "row per node (the means over its ranks and its slowest rank, named); top[:N] = the N "
        "slowest ranks (default 8); auto = all up to 16 ranks, above that nodes on several nodes, "
        "else top. --stats-out, --prom-out and info --topology keep every rank"),
    CG_OPT_ROW_OUT(STR, "metrics-out", O(metrics_out), C_TRAIN, "FILE",
        "write the final metrics as one JSON object to FILE"),
    CG_OPT_ROW_OUT(STR, "params-out", O(params_out), C_TRAIN, "FILE",
        "write the final fp32 parameters to FILE (raw little-endian floats, model.h layout)"),
    CG_OPT_ROW_OUT(STR, "prom-out", O(prom_out), C_TRAIN, "FILE",
        "rewrite FILE, the name as given (atomically), with the same figures in the Prometheus "
        "text format, for node_exporter's textfile collector (which reads only *.prom)"),
    CG_OPT_ROW_TEXT(STR, "trace-out", O(trace_out), NULL, C_TRAIN, "PREFIX",
        "write a Chrome/Perfetto timeline per rank to PREFIX.rank<R>.json: the h2d, compute, comm "
        "and d2h streams and every helper thread over --trace-steps"),
    CG_OPT_ROW_TEXT(STR, "trace-steps", O(trace_steps), NULL, C_TRAIN, "A:B",
        "the steps the timeline covers"),
    CG_OPT_ROW_OUT(STR, "stats-out", O(stats_out), C_TRAIN, "FILE",
        "append the balance report as one JSON line per report to FILE (for monitors; a FIFO or "
        "/dev/stdout too)"),
    CG_OPT_ROW_OUT(STR, "history-out", O(history_out), C_TRAIN, "FILE",
        "append one JSON line per validation (step, epoch, wall time, train and val loss, IoU or "
        "mIoU and per-class IoU, mAcc and per-class accuracy, learning rate, img/s, with "
        "--clip-grad-norm the mean gradient norm) to FILE; default: history.jsonl in "
        "--checkpoint-dir, none without it; a resumed run drops the records after its step, a "
        "fresh run replaces an earlier run's FILE (warned)"),
    CG_OPT_ROW_OUT(STR, "history-csv", O(history_csv), C_TRAIN, "FILE",
        "the same validation history as CSV (a header, one row per validation)"),
    CG_OPT_ROW_OUT(STR, "tensorboard", O(tensorboard), C_TRAIN, "DIR",
        "write TensorBoard scalars to a new event file in DIR (made if missing), as PyTorch's "
        "SummaryWriter(DIR): train/loss, train/img_per_s, train/lr (and train/grad_norm with "
        "--clip-grad-norm) every --report-every steps; val/loss, val/iou (val/miou), val/dice "
        "(val/mdice), val/acc and K >= 2 val/macc and val_class_iou/C and val_class_acc/C (C "
        "the class's --class-names name or id) at each validation; `tensorboard --logdir DIR` "
        "shows them"),
    CG_OPT_ROW_NUM(DBL, "bucket-mb", O(bucket_mb), 0, 1e6, C_TRAIN, "X",
        "gradient all-reduce bucket size in MB (0 = one bucket, besides --last-bucket-mb's)"),
    CG_OPT_ROW_NUM(DBL, "last-bucket-mb", O(last_bucket_mb), 0, 1e6, C_TRAIN, "X",
        "a final bucket of the fewest first layers holding at least X MB (backward finishes "
        "them last, so a small one shortens the exposed all-reduce); 0 = none"),
    CG_OPT_ROW_FLAG("deterministic", O(deterministic), C_TRAIN,
        "fixed summation orders: results independent of --bucket-mb and timing"),
    CG_OPT_ROW_TEXT(STR, "allreduce", O(allreduce), "auto|nccl|mpi", C_TRAIN, "M",
        "gradient all-reduce: auto = nccl when every rank has its own GPU, else mpi (it says why)"),
    CG_OPT_ROW_TEXT(STR, "grad-comm", O(grad_comm), "fp32|bf16", C_TRAIN, "T",
        "element type of the gradient all-reduce, fp32 or bf16: bf16 rounds each bucket to bf16 "
        "(half the bytes), sums in bf16 and widens the sums into the fp32 gradients the "
        "optimizer reads; no effect on one rank"),
    CG_OPT_ROW_TEXT(STR, "progress", O(progress), "auto|bar|plain|off", C_TRAIN, "M",
        "rank 0 progress: bar, plain (log lines), off, or auto: a bar on a terminal, plain "
        "log lines otherwise"),
    /* checkpoints and failures */
    CG_OPT_ROW_OUT(STR, "checkpoint-dir", O(checkpoint_dir), C_TRAIN, "DIR",
        "write checkpoints (weights, optimizer, loss scaler, data position) to DIR, created if "
        "missing; one at the end and one when stopped by SIGTERM/SIGINT/SIGUSR1"),
    /* the checkpoint options are outputs too (CG_OPT_OUTPUT): a benchmark refuses them */
    {"checkpoint-every", CG_OPT_I64, O(checkpoint_every), 0, 1e15, CG_OPT_OUTPUT, NULL, C_TRAIN,
     "N", "also write a checkpoint every N steps (0 = only at the end and on a stop signal)"},
    {"keep", CG_OPT_INT, O(keep), 1, 1e6, CG_OPT_OUTPUT, NULL, C_TRAIN, "K",
     "checkpoints of this run kept in --checkpoint-dir besides the one DIR/best names (the K "
     "newest others; best does not count, so K + 1 files while it is not the newest; older "
     "ones of this run are removed, another run's never are)"},
    {"best-metric", CG_OPT_STR, O(best_metric), 0, 0, CG_OPT_OUTPUT,
     "auto|val_loss|val_iou|val_miou", C_TRAIN, "M", "what DIR/best is chosen by: the highest "
     "validation IoU (val_iou; val_miou, the mean over classes, for --num-classes >= 2; auto = "
     "that one) or the lowest val_loss"},
    {"overwrite-checkpoints", CG_OPT_FLAG, O(overwrite_checkpoints), 0, 1, CG_OPT_OUTPUT, NULL,
     C_TRAIN, "", "start afresh in a --checkpoint-dir that already holds checkpoints: the "
     "earlier run's checkpoints, best, last and history.jsonl are moved into "
     "DIR/previous-<UTC time>/ (nothing is deleted); without this flag, or --resume, such a run "
     "refuses to start"},
    {"resume", CG_OPT_OPTSTR, O(resume), 0, 0, CG_OPT_OUTPUT, CG_RESUME_LATEST, C_TRAIN,
     "[FILE|DIR]", "continue from a checkpoint: FILE (DIR/last or DIR/best: the file it names; "
     "an older one than the newest goes on from its step, and the later checkpoints of its run "
     "are removed as an abandoned attempt's), or in DIR (bare: --checkpoint-dir) the "
     "newest run's last written valid one: the run of the file DIR/last names, not the highest "
     "step (a corrupt one is reported and the next older used; none: start afresh)"},
    {"init-from", CG_OPT_STR, O(init_from), 0, 0, CG_OPT_OUTPUT, NULL, C_TRAIN, "SRC",
     "fine-tune: start from the weights of a trained model, SRC a checkpoint FILE, DIR/best, "
     "DIR/last, a checkpoint DIR (its newest valid one, as --resume DIR) or a .safetensors file "
     "of `cogpu-dist export`; --model-base and --model-depth are its own unless given (then "
     "they must match); --num-classes must be given for a model of K >= 2 classes: K keeps its "
     "head (and its --class-names, unless given), another count gets a new head, initialised "
     "as a fresh run's, the other layers keep theirs; the optimizer's state, the step count "
     "and the schedule start afresh; with "
     "--resume, a checkpoint found there is used instead (a requeued job goes on)"},
    CG_OPT_ROW_NUM(DBL, "timeout-s", O(timeout_s), 0, 1e7, C_TRAIN, "S",
        "a rank that makes no progress for S seconds (hung peer, dead NCCL) ends the job with a "
        "message; 0 = no watchdog"),
    CG_OPT_ROW_TEXT(STR, "max-time", O(max_time), NULL, C_TRAIN, "T",
        "stop the run with a checkpoint once it has lasted T (counted from train's start, after "
        "MPI_Init): seconds (a bare number is seconds, where Slurm's --time=N is minutes), or N "
        "with a unit (90m, 12h, 2d), or Slurm's --time forms ([D-]HH:MM:SS, MM:SS, D-HH) or "
        "Lightning's DD:HH:MM:SS; the step in flight finishes, a validation in progress is cut "
        "short, the checkpoint is written and the run exits 0 for --resume to go on (Lightning's "
        "max_time); leave launch, a step and a checkpoint write of room below a job's time "
        "limit; needs --checkpoint-dir (or --resume DIR|FILE, which writes beside it; --lr-find "
        "prints what it has); not stored: a resume's clock starts afresh"),
    CG_OPT_ROW_NUM(I64, "max-bad-steps", O(max_bad_steps), 0, 1e15, C_TRAIN, "N",
        "fp16: stop after more than N consecutive steps skipped for inf/NaN gradients"),
    /* test-only faults */
    CG_OPT_ROW_NUM(I64, "test-nan-step", O(test_nan_step), 0, 1e15, C_TRAIN, "N",
        "testing: make the loss and gradient of step N (1-based) NaN on every rank; 0 = off"),
    CG_OPT_ROW_NUM(INT, "test-slow-rank", O(test_slow_rank), -1, 1e6, C_TRAIN, "R",
        "testing: rank R sleeps --test-slow-ms per step (a straggler)"),
    CG_OPT_ROW_NUM(INT, "test-slow-ms", O(test_slow_ms), 0, 1e6, C_TRAIN, "MS",
        "testing: milliseconds the --test-slow-rank sleeps per step"),
    CG_OPT_ROW_NUM(DBL, "test-feature-ms", O(test_feat_ms), 0, 1e4, C_TRAIN, "MS",
        "testing: extra helper milliseconds per sample featurised on the CPU (starved helpers)"),
    CG_OPT_ROW_NUM(DBL, "test-val-ms", O(test_val_ms), 0, 1e5, C_TRAIN, "MS",
        "testing: extra milliseconds per validation batch of --val-mode square (a long pass "
        "for a stop to cut short)"),
    CG_OPT_ROW_NUM(INT, "test-ckpt-ms", O(test_ckpt_ms), 0, 1e6, C_TRAIN, "MS",
        "testing: rank 0 sleeps MS in each checkpoint write, after the file is complete (a slow "
        "file system, for a stop to land in)"),
    /* info */
    CG_OPT_ROW_FLAG("model", O(info_model), C_INFO, "print the layer table"),
    CG_OPT_ROW_FLAG("topology", O(info_topology), C_INFO,
        "print each rank's host, GPU, NUMA node and cores"),
    CG_OPT_ROW_FLAG("split", O(info_split), C_INFO,
        "print which samples of --data train and which --val-fraction holds out for validation, "
        "as train splits them: one line 'train NAME' or 'val NAME' per sample"),
};
#define NOPTS (sizeof g_opts / sizeof g_opts[0])

void cg_cli_defaults(cg_config_t *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->backend, sizeof c->backend, "auto");
  snprintf(c->precision, sizeof c->precision, "auto");
  c->threads = 0;
  c->cuda_graph = 1;
  snprintf(c->tf32, sizeof c->tf32, "auto");
  c->model_base = 32;
  c->model_depth = 4;
  c->image_size = 256;
  c->num_classes = 1;
  c->ignore_index = CG_IGNORE_DEFAULT;
  snprintf(c->data, sizeof c->data, "synthetic");
  c->val_fraction = 0.1;
  c->crop = 1;
  snprintf(c->crop_scale, sizeof c->crop_scale, "%s", CROP_SCALE_DEFAULT);
  snprintf(c->color_jitter, sizeof c->color_jitter, "0:0:0:0");
  snprintf(c->rotate, sizeof c->rotate, "0");
  snprintf(c->lr_find_range, sizeof c->lr_find_range, "1e-08:1");
  c->crop_cat_max = 1;
  snprintf(c->flip, sizeof c->flip, "on");
  snprintf(c->exif_orientation, sizeof c->exif_orientation, "stored");
  c->max_image_pixels = CG_PNG_DEFAULT_MAX_PIXELS;
  c->train_samples = 4096;
  c->val_samples = 512;
  c->cpu_workers = -1;
  c->prefetch = 3;
  snprintf(c->split, sizeof c->split, "auto");
  c->split_every = 10;
  snprintf(c->trace_steps, sizeof c->trace_steps, "10:20");
  c->batch = 32;
  c->grad_accum = 1;
  c->steps = 0;
  c->epochs = 1;
  snprintf(c->optimizer, sizeof c->optimizer, "adamw");
  c->lr = 1e-3;
  c->weight_decay = 1e-4;
  c->momentum = 0.9;
  c->beta1 = 0.9;
  c->beta2 = 0.999;
  c->eps = 1e-8;
  c->warmup_steps = 0;
  snprintf(c->lr_schedule, sizeof c->lr_schedule, "constant");
  c->lr_power = 0.9;
  c->lr_gamma = 0.1;
  c->lr_patience = 10; /* PyTorch's ReduceLROnPlateau defaults */
  c->lr_threshold = 1e-4;
  c->dice_weight = 1;
  c->pos_weight = 1;
  c->min_lr = 0;
  c->seed = 1;
  c->val_every = -1; /* once per epoch */
  c->report_every = 100;
  snprintf(c->report_ranks, sizeof c->report_ranks, "auto");
  c->bucket_mb = 25;
  c->last_bucket_mb = 1;
  snprintf(c->progress, sizeof c->progress, "auto");
  snprintf(c->allreduce, sizeof c->allreduce, "auto");
  snprintf(c->grad_comm, sizeof c->grad_comm, "fp32");
  c->test_slow_rank = -1;
  c->checkpoint_every = 0;
  c->keep = 3;
  snprintf(c->best_metric, sizeof c->best_metric, "auto");
  snprintf(c->val_mode, sizeof c->val_mode, "square");
  c->timeout_s = 60;
  c->max_bad_steps = 20;
  c->test_nan_step = 0;
}

static const char *cmd_name(cg_command_t c) {
  switch (c) {
    case CG_CMD_TRAIN: return "train";
    case CG_CMD_INFO: return "info";
    default: return "";
  }
}

cg_opts_set_t cg_cli_opts(cg_command_t cmd, cg_config_t *cfg) {
  return (cg_opts_set_t){g_opts, NOPTS, 1u << cmd, cfg, 0};
}

void cg_cli_print_help(FILE *f, cg_command_t cmd) {
  if (cmd == CG_CMD_NONE) {
    fprintf(f,
            "cogpu-dist %s: CPU-GPU cooperative, MPI-distributed UNet trainer for image "
            "segmentation\n\n"
            "usage: mpirun -np N cogpu-dist COMMAND [options]\n\n"
            "commands:\n"
            "  train    train the UNet data-parallel over all ranks\n"
            "  info     print the model (--model), the ranks' placement (--topology) or the\n"
            "           training / validation split of --data (--split)\n"
            "  pack     pack a directory of images and masks (PNG, JPEG, GIF, TIFF, BMP) into a\n"
            "           .cgds shard (one process; see pack --help)\n"
            "  predict  run a checkpoint's model on images (PNG, JPEG, GIF, TIFF, BMP) and write\n"
            "           their masks (see predict --help)\n"
            "  inspect  print a checkpoint's header and verify its CRC (one process)\n"
            "  export   write a checkpoint's weights as safetensors for PyTorch/ONNX (one process;\n"
            "           see export --help)\n"
            "  import   make a step-0 checkpoint from an exported safetensors file (one process;\n"
            "           see import --help)\n"
            "  colors-to-ids\n"
            "           turn masks that name classes by RGB colours (ISPRS, DeepGlobe) into\n"
            "           class-id masks (one process; see colors-to-ids --help)\n\n"
            "cogpu-dist COMMAND --help lists the options of a command.\n"
            "cogpu-dist --version prints the version.\n",
            COGPU_VERSION);
    return;
  }
  fprintf(f, "usage: cogpu-dist %s [options]\n\n", cmd_name(cmd));
  cg_config_t d;
  cg_cli_defaults(&d);
  const cg_opts_set_t set = cg_cli_opts(cmd, &d);
  cg_opts_print(f, "options (default in brackets):", &set);
  cg_opts_print_help(f);
}

/* argv[1]: the command, or help / the version. 0 = a command (cfg->cmd), 1 = cfg->show. */
static int parse_command(int argc, char **argv, cg_config_t *cfg, char *err, size_t errlen) {
  static const char cmds[] =
      "(commands: train, info, predict, pack, inspect, export, import, colors-to-ids; see "
      "cogpu-dist --help)";
  if (argc < 2) {
    snprintf(err, errlen, "no command given %s", cmds);
    return -1;
  }
  const char *c = argv[1];
  if (!strcmp(c, "-h") || !strcmp(c, "--help") || !strcmp(c, "help")) {
    cfg->show = CG_SHOW_HELP;
    return 1;
  }
  if (!strcmp(c, "--version")) {
    cfg->show = CG_SHOW_VERSION;
    return 1;
  }
  if (!strcmp(c, "train")) cfg->cmd = CG_CMD_TRAIN;
  else if (!strcmp(c, "info")) cfg->cmd = CG_CMD_INFO;
  else {
    snprintf(err, errlen, "unknown command '%s' %s", c, cmds);
    return -1;
  }
  return 0;
}

int cg_cli_parse(int argc, char **argv, cg_config_t *cfg, char *err, size_t errlen) {
  cg_cli_defaults(cfg);
  err[0] = 0;
  int rc = parse_command(argc, argv, cfg, err, errlen);
  if (rc) return rc;
  char prog[32];
  snprintf(prog, sizeof prog, "cogpu-dist %s", cmd_name(cfg->cmd));
  const cg_opts_set_t set = cg_cli_opts(cfg->cmd, cfg);
  rc = cg_opts_parse(&set, 1, argc - 2, argv + 2, cmd_name(cfg->cmd), prog, err, errlen);
  cfg->argc = argc - 2;
  cfg->argv = argv + 2;
  if (rc == 1) cfg->show = CG_SHOW_HELP;
  if (rc) return rc;
  return cg_cli_check(cfg, err, errlen);
}

int cg_cli_data_path(const char *in, char *out, size_t outlen) {
  if (!in[0] || !strcmp(in, "synthetic")) {
    if (out != in) snprintf(out, outlen, "%s", in);
    return 0;
  }
  return cg_path_abs(in, out, outlen);
}

/* The checks below run in this order, and the first that fails gives cg_cli_check's message:
 * a command line with several mistakes is told the same one first, whatever the grouping. */

/* Whether the stored settings a resume merges are in cfg: always for a fresh run. */
static int settings_known(const cg_config_t *cfg) { return !cfg->resume[0] || cfg->merged; }

/* Resolves --ignore-index's default (cfg changed), then checks it is no class id. */
static int check_labels(cg_config_t *cfg, char *err, size_t errlen) {
  if (cfg->ignore_index == CG_IGNORE_DEFAULT)
    cfg->ignore_index = cfg->num_classes >= 2 ? 255 : -1;
  const int lo = cfg->num_classes > 1 ? cfg->num_classes : 2; /* binary masks hold 0 and 1 */
  if (cfg->ignore_index >= 0 && cfg->ignore_index < lo) {
    snprintf(err, errlen, "--ignore-index: %d is a class id (--num-classes %d); give a label "
             ">= %d, or -1 for none", cfg->ignore_index, cfg->num_classes, lo);
    return -1;
  }
  return 0;
}

/* --rotate D[:P]: written back in one spelling (a resume compares the stored text): "0" when
 * off, "D" when P is 1; rotate_deg and rotate_prob are read from that text, so a resumed run
 * uses the numbers its checkpoint stores. */
static int check_rotate(cg_config_t *cfg, char *err, size_t errlen) {
  double d = -1, p = 1;
  char *end = NULL;
  errno = 0;
  d = strtod(cfg->rotate, &end);
  int ok = end != cfg->rotate && !isspace((unsigned char)cfg->rotate[0]);
  if (ok && *end == ':') {
    const char *ps = end + 1;
    p = strtod(ps, &end);
    ok = end != ps && !isspace((unsigned char)*ps);
  }
  if (!ok || *end || errno || !(d >= 0) || !(d <= CG_ROTATE_MAX_DEG) || !(p > 0) || !(p <= 1)) {
    snprintf(err, errlen, "--rotate: '%s' is not D or D:P with 0 <= D <= %g degrees and "
             "0 < P <= 1", cfg->rotate, CG_ROTATE_MAX_DEG);
    return -1;
  }
  char canon[sizeof cfg->rotate];
  if (d == 0)
    snprintf(canon, sizeof canon, "0");
  else
    snprintf(canon, sizeof canon, "%.15g:%.15g", d, p);
  d = strtod(canon, &end);
  p = *end == ':' ? strtod(end + 1, NULL) : 1;
  if (p == 1) *end = 0; /* "D:1" is "D" */
  snprintf(cfg->rotate, sizeof cfg->rotate, "%s", canon);
  cfg->rotate_deg = d;
  cfg->rotate_prob = d > 0 ? p : 0;
  return 0;
}

/* --lr-find N [--lr-find-range A:B] [--lr-find-out FILE]: the range parsed; what a range test
 * cannot go with refused (it sets every step's learning rate, its length, and writes no
 * checkpoint); --steps set to N. */
static int check_lr_find(cg_config_t *cfg, const cg_opts_set_t *given, char *err,
                         size_t errlen) {
  const int argc = cfg->argc;
  char *const *argv = cfg->argv;
  if (!cfg->lr_find) {
    const char *stray = cg_opts_given(given, argc, argv, "lr-find-range") ? "lr-find-range"
                        : cg_opts_given(given, argc, argv, "lr-find-out") ? "lr-find-out"
                                                                          : NULL;
    if (!stray) return 0;
    snprintf(err, errlen, "--%s: for the learning-rate range test, which --lr-find N runs",
             stray);
    return -1;
  }
  double a = 0, b = 0;
  char tail = 0;
  if (sscanf(cfg->lr_find_range, "%lf:%lf%c", &a, &b, &tail) != 2 || !(a > 0) || !(b > a) ||
      !(b <= 1e6)) {
    snprintf(err, errlen, "--lr-find-range: '%s' is not A:B with 0 < A < B <= 1e6",
             cfg->lr_find_range);
    return -1;
  }
  cfg->lrf_lo = a;
  cfg->lrf_hi = b;
  /* the schedule, the length, and what a range test neither writes (its weights are lost at
   * the end, by design) nor validates */
  static const char *const kNot[] = {"steps", "epochs", "checkpoint-dir", "resume",
                                     "early-stop-patience", "warmup-steps", "lr-schedule",
                                     "params-out", "history-out", "history-csv", "val-every",
                                     "ema-decay"};
  for (size_t i = 0; i < sizeof kNot / sizeof kNot[0]; i++)
    if (cg_opts_given(given, argc, argv, kNot[i])) {
      snprintf(err, errlen, "--lr-find: a range test sets every step's learning rate and runs "
               "--lr-find N steps, validating nothing and writing no weights; it does not take "
               "--%s", kNot[i]);
      return -1;
    }
  if (cfg->lr_find < 2) {
    snprintf(err, errlen, "--lr-find %lld: the test needs 2 steps or more (Lightning's default "
             "is 100)", (long long)cfg->lr_find);
    return -1;
  }
  cfg->steps = cfg->lr_find;
  return 0;
}

/* --class-names kept as its comma list (cfg changed): what the checkpoint stores, not the
 * FILE's name, and what a resume compares with it; none: no names. The count is checked
 * against the run's classes, which a resume knows once the settings are merged. */
static int check_class_names(cg_config_t *cfg, char *err, size_t errlen) {
  if (cfg->cmd != CG_CMD_TRAIN || !cfg->class_names[0]) return 0;
  if (!strcmp(cfg->class_names, "none")) {
    cfg->class_names[0] = 0;
    return 0;
  }
  cg_classnames_t *n = cg_malloc(sizeof *n, "class names");
  char why[1024];
  const int k = settings_known(cfg) ? cfg->num_classes : 0; /* 0: the spelling alone */
  /* a resume's merged value is a list: the command line's, made one in the first pass, or the
   * checkpoint's, which is never opened as a file */
  const int rc = cfg->merged ? cg_classnames_from_list(cfg->class_names, k, n, why, sizeof why)
                             : cg_classnames_parse(cfg->class_names, k, n, why, sizeof why);
  /* a FILE: counted once merged (a resume), and never an output path (run_setup.c) */
  if (!cfg->merged && !strchr(cfg->class_names, ',') &&
      (!k || access(cfg->class_names, F_OK) == 0))
    snprintf(cfg->class_names_file, sizeof cfg->class_names_file, "%s", cfg->class_names);
  const char *file = cfg->merged ? cfg->class_names_file : "";
  if (rc) snprintf(err, errlen, "--class-names: %.1000s%s%s", file, file[0] ? ": " : "", why);
  else cg_classnames_join(n, cfg->class_names, sizeof cfg->class_names);
  free(n);
  return rc;
}

/* --lr-schedule plateau's flags: refused without it; it needs validations during the run and a
 * factor below 1. */
static int check_plateau(const cg_config_t *cfg, const cg_opts_set_t *given, char *err,
                         size_t errlen) {
  const int on = !strcmp(cfg->lr_schedule, "plateau");
  static const char *const kOwn[] = {"lr-patience", "lr-threshold", "lr-cooldown"};
  for (size_t i = 0; !on && i < sizeof kOwn / sizeof kOwn[0]; i++)
    if (cg_opts_given(given, cfg->argc, cfg->argv, kOwn[i]) && settings_known(cfg)) {
      snprintf(err, errlen, "--%s: for --lr-schedule plateau (this run's is %s)", kOwn[i],
               cfg->lr_schedule);
      return -1;
    }
  if (!on) return 0;
  if (cfg->val_every == 0) {
    snprintf(err, errlen, "--lr-schedule plateau: lowers the rate after validations during the "
             "run, and --val-every 0 validates only at the end (give --val-every N)");
    return -1;
  }
  if (!(cfg->lr_gamma < 1)) {
    snprintf(err, errlen, "--lr-schedule plateau: --lr-gamma 1 would never lower the rate "
             "(ReduceLROnPlateau's factor is below 1)");
    return -1;
  }
  return 0;
}

/* --early-stop-patience's flags, --lr-schedule plateau's (and --flip's 1/0 as on/off),
 * --trace-steps, --crop-scale, --color-jitter, --rotate, --min-lr against --lr, --image-size
 * against --model-depth (info too), --report-ranks, --checkpoint-every's directory. */
static int check_train_flags(cg_config_t *cfg, char *err, size_t errlen) {
  const cg_opts_set_t given = cg_cli_opts(CG_CMD_TRAIN, cfg);
  if (cfg->early_stop_patience <= 0 && cfg->early_stop_min_delta != 0 &&
      cg_opts_given(&given, cfg->argc, cfg->argv, "early-stop-min-delta")) {
    snprintf(err, errlen, "--early-stop-min-delta: for early stopping, which "
             "--early-stop-patience N turns on");
    return -1;
  }
  if (check_plateau(cfg, &given, err, errlen)) return -1;
  if (!strcmp(cfg->flip, "1") || !strcmp(cfg->flip, "0")) /* --flip's on/off days: one spelling */
    snprintf(cfg->flip, sizeof cfg->flip, "%s", cfg->flip[0] == '1' ? "on" : "off");
  if (cfg->early_stop_patience > 0 && cfg->val_every == 0) {
    snprintf(err, errlen, "--early-stop-patience: counts validations during the run, and "
             "--val-every 0 validates only at the end (give --val-every N)");
    return -1;
  }
  if (cfg->cmd == CG_CMD_TRAIN) {
    long long a = -1, b = -1;
    char tail = 0;
    if (sscanf(cfg->trace_steps, "%lld:%lld%c", &a, &b, &tail) != 2 || a < 1 || b < a) {
      snprintf(err, errlen, "--trace-steps: '%s' is not A:B with 1 <= A <= B", cfg->trace_steps);
      return -1;
    }
  }
  if (cfg->cmd == CG_CMD_TRAIN) {
    double lo = 0, hi = 0;
    char tail = 0;
    if (sscanf(cfg->crop_scale, "%lf:%lf%c", &lo, &hi, &tail) != 2 || !(lo > 0) || !(hi >= lo) ||
        !(hi <= CG_CROP_SCALE_MAX)) {
      snprintf(err, errlen, "--crop-scale: '%s' is not A:B with 0 < A <= B <= %g",
               cfg->crop_scale, CG_CROP_SCALE_MAX);
      return -1;
    }
    cfg->crop_lo = lo;
    cfg->crop_hi = hi;
    /* one spelling for equal values: a resume compares the stored text */
    snprintf(cfg->crop_scale, sizeof cfg->crop_scale, "%.15g:%.15g", lo, hi);
    double *j = cfg->jitter;
    if (sscanf(cfg->color_jitter, "%lf:%lf:%lf:%lf%c", &j[0], &j[1], &j[2], &j[3], &tail) != 4 ||
        !(j[0] >= 0 && j[1] >= 0 && j[2] >= 0 && j[3] >= 0 && j[3] <= 0.5) ||
        !(j[0] <= 1e6 && j[1] <= 1e6 && j[2] <= 1e6)) {
      snprintf(err, errlen, "--color-jitter: '%s' is not B:C:S:H with B, C, S >= 0 and "
               "0 <= H <= 0.5", cfg->color_jitter);
      return -1;
    }
    snprintf(cfg->color_jitter, sizeof cfg->color_jitter, "%.9g:%.9g:%.9g:%.9g", j[0], j[1], j[2],
             j[3]);
    if (check_rotate(cfg, err, errlen)) return -1;
    if (check_lr_find(cfg, &given, err, errlen)) return -1;
    if (!(cfg->crop_cat_max > 0)) {
      snprintf(err, errlen, "--crop-cat-max: 0 refuses every window; R is in (0, 1] (1 = off)");
      return -1;
    }
    if (cfg->min_lr > cfg->lr) {
      snprintf(err, errlen, "--min-lr %g is above --lr %g: the schedule decays to --min-lr",
               cfg->min_lr, cfg->lr);
      return -1;
    }
  }
  /* --init-from without --model-depth: the depth is its model's, known once it is read */
  const int depth_known = !cfg->init_from[0] || cfg->init_read || cfg->resume_found ||
                          cg_opts_given(&given, cfg->argc, cfg->argv, "model-depth");
  if ((cfg->cmd == CG_CMD_TRAIN && depth_known) || cfg->cmd == CG_CMD_INFO) {
    int div = 1 << cfg->model_depth;
    if (cfg->image_size % div) {
      snprintf(err, errlen, "--image-size: %d is not divisible by 2^depth = %d (--model-depth %d)",
               cfg->image_size, div, cfg->model_depth);
      return -1;
    }
  }
  if (cfg->cmd == CG_CMD_TRAIN) {
    cg_rank_view_t v;
    char why[128];
    if (cg_rank_view_parse(cfg->report_ranks, &v, why, sizeof why)) {
      snprintf(err, errlen, "--report-ranks: %s", why);
      return -1;
    }
  }
  /* --resume DIR|FILE without --checkpoint-dir writes beside it: known once it is merged */
  const int ckpt_later = cfg->cmd == CG_CMD_TRAIN && cfg->resume[0] && !cfg->merged;
  if (cfg->checkpoint_every > 0 && !cfg->checkpoint_dir[0] && !ckpt_later) {
    snprintf(err, errlen, "--checkpoint-every: needs --checkpoint-dir DIR");
    return -1;
  }
  cfg->max_time_s = 0;
  if (cfg->cmd == CG_CMD_TRAIN && cfg->max_time[0]) {
    if (cg_cli_parse_duration(cfg->max_time, &cfg->max_time_s)) {
      snprintf(err, errlen, "--max-time: '%s' is not a duration (seconds, 90m, 12h, 2d, "
               "HH:MM:SS, D-HH:MM:SS, MM:SS or DD:HH:MM:SS, above 0)", cfg->max_time);
      return -1;
    }
    /* a range test writes no checkpoint: it prints what its search has */
    if (!cfg->checkpoint_dir[0] && !ckpt_later && !cfg->lr_find) {
      snprintf(err, errlen, "--max-time: stops the run with a checkpoint for --resume to go on "
               "from: needs --checkpoint-dir DIR (or --resume DIR|FILE, which writes beside it)");
      return -1;
    }
  }
  return 0;
}

int cg_cli_parse_duration(const char *s, double *out) {
  *out = 0;
  if (!strchr(s, ':') && !strchr(s, '-')) { /* N[smhd], N digits with a fraction */
    const char *p = s;
    size_t nd = strspn(p, "0123456789");
    p += nd;
    if (*p == '.') {
      const size_t nf = strspn(p + 1, "0123456789");
      nd += nf;
      p += 1 + nf;
    }
    if (!nd || (*p && (p[1] || !strchr("smhd", *p)))) return -1; /* no 0x10, 1e3, 5 m */
    char *end;
    errno = 0;
    const double v = strtod(s, &end);
    const double unit = !*end ? 1 : !strcmp(end, "s") ? 1 : !strcmp(end, "m") ? 60
                      : !strcmp(end, "h") ? 3600 : !strcmp(end, "d") ? 86400 : 0;
    if (end == s || !unit || errno || !(v > 0) || !isfinite(v * unit) ||
        !isdigit((unsigned char)*s))
      return -1;
    *out = v * unit;
    return 0;
  }
  long long f[4] = {0, 0, 0, 0}, days = 0;
  int n = 0;
  const char *p = s;
  const char *dash = strchr(s, '-');
  if (dash) { /* Slurm's D-HH[:MM[:SS]] */
    char *end;
    if (!isdigit((unsigned char)*s)) return -1;
    days = strtoll(s, &end, 10);
    if (end != dash) return -1;
    p = dash + 1;
  }
  for (;;) {
    char *end;
    if (!isdigit((unsigned char)*p) || n == 4) return -1;
    errno = 0;
    f[n++] = strtoll(p, &end, 10);
    if (errno || f[n - 1] > 1000000) return -1;
    if (!*end) break;
    if (*end != ':') return -1;
    p = end + 1;
  }
  /* a field below a larger one is below its unit: 10:99 is no time */
  for (int i = 1; i < n; i++)
    if (f[i] >= 60 || (i == 1 && n == 4 && f[i] >= 24)) return -1;
  if (dash && f[0] >= 24) return -1;
  double t;
  if (dash) { /* D-H, D-H:M, D-H:M:S */
    if (n > 3 || days > 100000) return -1;
    t = days * 86400.0 + f[0] * 3600.0 + f[1] * 60.0 + f[2];
  } else if (n == 2) { /* Slurm's MM:SS */
    t = f[0] * 60.0 + f[1];
  } else if (n == 3) { /* HH:MM:SS */
    t = f[0] * 3600.0 + f[1] * 60.0 + f[2];
  } else if (n == 4) { /* Lightning's DD:HH:MM:SS */
    t = f[0] * 86400.0 + f[1] * 3600.0 + f[2] * 60.0 + f[3];
  } else {
    return -1;
  }
  if (!(t > 0)) return -1;
  *out = t;
  return 0;
}

/* The --label-map a shard --data was packed with (its table into table; "" when none, or when
 * data is no shard: the open says what is wrong with it). */
static void shard_label_map(const char *data, char *table) {
  table[0] = 0;
  if (cg_source_spec_kind(data) != CG_SPEC_SHARD) return;
  char err[256];
  const char *t;
  cg_source_t *s = cg_source_cgds(data, err, sizeof err);
  if (s && cg_cgds_label_map(s, &t)) snprintf(table, CG_LABELMAP_TABLE_LEN, "%s", t);
  cg_source_destroy(s);
}

/* The run's label map into cfg->label_map_table: --label-map parsed for the run's classes, or
 * without it the one a shard --data was packed with; a resumed run's table (from its
 * checkpoint) must be the one the file (or shard) gives now. */
static int check_label_map(cg_config_t *cfg, char *err, size_t errlen) {
  const cg_opts_set_t set = cg_cli_opts(CG_CMD_TRAIN, cfg);
  const int given = cg_opts_given(&set, cfg->argc, cfg->argv, "label-map");
  /* a resume without the flag: the checkpoint's map as the run read it, even if its file has
   * gone (another node, a moved data set); a shard --data is compared when it is opened */
  if (cfg->merged && cfg->resume[0] && !given && cfg->label_map_table[0]) return 0;
  cg_labelmap_t m;
  char table[CG_LABELMAP_TABLE_LEN] = "";
  if (!cfg->label_map[0]) {
    if (!given) shard_label_map(cfg->data, table); /* given: --label-map none */
  } else if (cg_labelmap_parse(cfg->label_map, cfg->num_classes, cfg->ignore_index, &m, err,
                               errlen)) {
    return -1;
  } else {
    cg_labelmap_table(&m, table);
  }
  if (cfg->merged && cfg->resume[0] && strcmp(table, cfg->label_map_table)) {
    snprintf(err, errlen, "--label-map %s: maps otherwise than the checkpoint's map (%s): a "
             "resumed run cannot change its labels (leave the flag out to go on with the "
             "checkpoint's map, or start a new run with another --checkpoint-dir)",
             cfg->label_map[0] ? cfg->label_map : given ? "none" : "(the shard's)",
             cfg->label_map_table[0] ? "it has one" : "it has none");
    return -1;
  }
  snprintf(cfg->label_map_table, sizeof cfg->label_map_table, "%s", table);
  return 0;
}

/* --data, --val-data and --val-fraction together; then (cfg changed) val_fraction is 0 beside
 * --val-data and train's data paths are made absolute. */
static int check_data_flags(cg_config_t *cfg, char *err, size_t errlen) {
  /* synthetic data brings its own held-out set (--val-samples); files have --val-data */
  const int data_known = cfg->cmd == CG_CMD_TRAIN && settings_known(cfg);
  const cg_opts_set_t given = cg_cli_opts(CG_CMD_TRAIN, cfg);
  if (data_known && cfg->val_data[0] &&
      (!strcmp(cfg->data, "synthetic") || !strcmp(cfg->val_data, "synthetic"))) {
    snprintf(err, errlen, "--val-data %s: separate validation data goes with --data DIR, "
             "FILE.cgds or LIST; synthetic data validates on its own held-out samples "
             "(--val-samples)", cfg->val_data);
    return -1;
  }
  if (!strcmp(cfg->label_map, "none")) cfg->label_map[0] = 0; /* as predict's none */
  if (data_known && cfg->label_map[0] && !strcmp(cfg->data, "synthetic")) {
    snprintf(err, errlen, "--label-map %s: maps the masks of image files; synthetic data makes "
             "its own class ids", cfg->label_map);
    return -1;
  }
  if (data_known && !strcmp(cfg->data, "synthetic") && cfg->val_fraction > 0 &&
      cg_opts_given(&given, cfg->argc, cfg->argv, "val-fraction")) {
    snprintf(err, errlen, "--val-fraction %g: synthetic data validates on its own held-out "
             "samples (--val-samples); --val-fraction splits real data", cfg->val_fraction);
    return -1;
  }
  /* the crops' flags shape random crops, which synthetic data and --crop off do not make (their
   * defaults, given, change nothing: accepted); a resumed run's are its checkpoint's (a job
   * started before this check goes on when requeued) */
  static const char *const crop_flag[2] = {"crop-scale", "crop-cat-max"};
  for (int i = 0; i < 2 && data_known && !cfg->resume_found; i++) {
    const int synthetic = !strcmp(cfg->data, "synthetic");
    const int other = i ? cfg->crop_cat_max < 1 : strcmp(cfg->crop_scale, CROP_SCALE_DEFAULT);
    if ((synthetic || !cfg->crop) && other &&
        cg_opts_given(&given, cfg->argc, cfg->argv, crop_flag[i])) {
      snprintf(err, errlen, "--%s: shapes the random crops of real data, and %s", crop_flag[i],
               synthetic ? "synthetic data is not cropped (give --data DIR, FILE.cgds or LIST)"
                         : "--crop off takes each image's centred square (leave --crop on)");
      return -1;
    }
  }
  if (data_known && cfg->val_data[0] && cfg->val_fraction > 0 &&
      cg_opts_given(&given, cfg->argc, cfg->argv, "val-fraction")) {
    snprintf(err, errlen, "--val-fraction: %g of --data held out, and --val-data %s: give one "
             "of the two (with --val-data every sample of --data trains)", cfg->val_fraction,
             cfg->val_data);
    return -1;
  }
  if (data_known && cfg->val_data[0]) cfg->val_fraction = 0; /* unused: stored as such */
  /* the data paths as the checkpoint stores them: a resumed run started from another
   * directory must read the same files, not whatever is there under the same relative name */
  char *paths[3] = {cfg->data, cfg->val_data, cfg->label_map};
  static const char *const flag[3] = {"data", "val-data", "label-map"};
  for (int i = 0; i < 3 && cfg->cmd == CG_CMD_TRAIN; i++)
    if ((i < 2 || strcmp(paths[i], "reduce-zero")) &&
        cg_cli_data_path(paths[i], paths[i], CG_PATH_MAX) != 0) {
      snprintf(err, errlen, "--%s: '%.200s' cannot be made an absolute path (no working "
               "directory, or longer than %d bytes)", flag[i], paths[i], CG_PATH_MAX - 1);
      return -1;
    }
  return data_known ? check_label_map(cfg, err, errlen) : 0;
}

/* --resume with --overwrite-checkpoints, and --resume's default source. */
static int check_resume_flags(cg_config_t *cfg, char *err, size_t errlen) {
  if (cfg->resume[0] && cfg->overwrite_checkpoints) {
    snprintf(err, errlen, "--overwrite-checkpoints: not with --resume (a resumed run continues "
             "its checkpoints; to start afresh leave --resume out)");
    return -1;
  }
  if (!strcmp(cfg->resume, CG_RESUME_LATEST) && !cfg->checkpoint_dir[0]) {
    snprintf(err, errlen, "--resume: without a FILE or DIR it loads from --checkpoint-dir, which "
             "is not set");
    return -1;
  }
  return 0;
}

/* --lr-milestones into cfg->milestone (written back in one spelling: a resume compares the
 * stored text); --lr-schedule multistep needs them. */
static int check_milestones(cg_config_t *cfg, char *err, size_t errlen) {
  cfg->nmilestones = 0;
  const char *s = cfg->lr_milestones;
  while (*s) {
    char *end = NULL;
    errno = 0;
    const long long v = *s >= '0' && *s <= '9' ? strtoll(s, &end, 10) : -1;
    const int prev = cfg->nmilestones ? (int)cfg->nmilestones - 1 : -1;
    if (v < 1 || errno || (*end && *end != ',') || (*end == ',' && !end[1]) ||
        cfg->nmilestones == CG_MILESTONES_MAX || (prev >= 0 && v <= cfg->milestone[prev])) {
      snprintf(err, errlen, "--lr-milestones: '%s' is not increasing step counts N,N,... (each "
               ">= 1, at most %d)", cfg->lr_milestones, CG_MILESTONES_MAX);
      return -1;
    }
    cfg->milestone[cfg->nmilestones++] = v;
    s = *end ? end + 1 : end;
  }
  /* on a resume the stored milestones are known once the settings are merged */
  const int known = settings_known(cfg);
  if (known && !strcmp(cfg->lr_schedule, "multistep") && !cfg->nmilestones) {
    snprintf(err, errlen, "--lr-schedule multistep: give the steps of its decays "
             "(--lr-milestones N[,N...])");
    return -1;
  }
  if (known && !strcmp(cfg->lr_schedule, "multistep") &&
      cfg->milestone[0] < cfg->warmup_steps) { /* the warm-up would ramp to --lr past it */
    snprintf(err, errlen, "--lr-milestones: %lld is within the warm-up (--warmup-steps %lld): "
             "the milestones count from the run's start, give them at or after its end",
             (long long)cfg->milestone[0], (long long)cfg->warmup_steps);
    return -1;
  }
  size_t len = 0;
  for (int i = 0; i < cfg->nmilestones; i++)
    len += (size_t)snprintf(cfg->lr_milestones + len, sizeof cfg->lr_milestones - len, "%s%lld",
                            i ? "," : "", (long long)cfg->milestone[i]);
  return 0;
}

/* What a positive v below FLT_MIN is as a float: 0, or a subnormal (too few digits to train
 * with), for the messages of the flags the backends take as floats. */
static const char *float_small(double v) {
  return (float)v == 0.0f ? "0" : "below the smallest normal float";
}

/* The shortest text that reads back as the float v. */
static void fmt_float(float v, char *buf, size_t len) {
  for (int p = 6; p <= 9; p++) { /* %.6g is the shortest text of any float that has one of 6 */
    snprintf(buf, len, "%.*g", p, (double)v);
    if ((float)strtod(buf, NULL) == v) return;
  }
}

/* The loss's flags: --class-weights into cfg->class_weight (written back in one spelling: a
 * resume compares the stored text; balanced: left for the run to count), or --pos-weight as the
 * one weight of a binary model, --label-smoothing, --focal-gamma, --ohem-thresh and
 * --ohem-min-kept; each is for its kind of model, known on a resume once the settings are
 * merged. */
static int check_loss_flags(cg_config_t *cfg, char *err, size_t errlen) {
  float w[255];
  int n = 0, pos = 0;
  const int balanced = cg_cfg_class_weights_balanced(cfg); /* the run counts them (run_setup.c) */
  const char *s = balanced ? "" : cfg->class_weights;
  while (*s) {
    char *end = NULL;
    errno = 0;
    const size_t len = strcspn(s, ",");
    const int hex = memchr(s, 'x', len) || memchr(s, 'X', len);
    const double v = ((*s >= '0' && *s <= '9') || *s == '.') && !hex ? strtod(s, &end) : -1;
    if (!(v >= 0 && v <= 1e6) || (v > 0 && (float)v < FLT_MIN) || errno ||
        (*end && *end != ',') || (*end == ',' && !end[1]) || n == 255) {
      snprintf(err, errlen, "--class-weights: '%.200s' is not weights W,W,... (one for each "
               "class, each 0 or in [%g, 1e6], at most 255)", cfg->class_weights,
               (double)FLT_MIN);
      return -1;
    }
    w[n] = (float)v;
    pos += w[n++] > 0.0f;
    s = *end ? end + 1 : end;
  }
  if (n && !pos) {
    snprintf(err, errlen, "--class-weights: every weight is 0: no pixel would have a "
             "cross-entropy term (give at least one above 0)");
    return -1;
  }
  if ((float)cfg->pos_weight < FLT_MIN) { /* 0 as a float */
    snprintf(err, errlen, "--pos-weight: %g is below the smallest float (%g)", cfg->pos_weight,
             (double)FLT_MIN);
    return -1;
  }
  const int known = settings_known(cfg), K = cfg->num_classes;
  const cg_opts_set_t given = cg_cli_opts(CG_CMD_TRAIN, cfg);
  if (balanced && cfg->pos_weight != 1 && /* not a resumed binary run's stored weight */
      cg_opts_given(&given, cfg->argc, cfg->argv, "pos-weight")) {
    snprintf(err, errlen, "--class-weights balanced and --pos-weight %g: give one of the two "
             "(balanced sets a binary model's pos_weight from its pixels)", cfg->pos_weight);
    return -1;
  }
  if (known && n && K < 2) {
    snprintf(err, errlen, "--class-weights: this model is binary (--num-classes 1): weight its "
             "foreground with --pos-weight X");
    return -1;
  }
  if (known && n && n != K) {
    snprintf(err, errlen, "--class-weights: %d weights for --num-classes %d: give one for each "
             "class", n, K);
    return -1;
  }
  if (known && cfg->label_smoothing > 0 && K < 2) {
    snprintf(err, errlen, "--label-smoothing: for --num-classes K >= 2 (the binary BCE has no "
             "smoothing, as in PyTorch)");
    return -1;
  }
  if ((float)cfg->label_smoothing >= 1.0f ||
      (cfg->label_smoothing > 0 && (float)cfg->label_smoothing < FLT_MIN)) {
    snprintf(err, errlen, "--label-smoothing: %.9g is %s as a float: give 0 or a value in "
             "[%g, 1)", cfg->label_smoothing,
             (float)cfg->label_smoothing >= 1.0f ? "1 or more"
                                                 : float_small(cfg->label_smoothing),
             (double)FLT_MIN);
    return -1;
  }
  if (cfg->focal_gamma > 0 && cfg->label_smoothing > 0) {
    snprintf(err, errlen, "--focal-gamma: not with --label-smoothing %g (choose one way to soften "
             "the cross-entropy of easy pixels; --label-smoothing 0 turns smoothing off, also "
             "on a resume)", cfg->label_smoothing);
    return -1;
  }
  if (cfg->focal_gamma > 0 && (float)cfg->focal_gamma < FLT_MIN) {
    snprintf(err, errlen, "--focal-gamma: %g is %s as a float: give 0 or a value in [%g, 10]",
             cfg->focal_gamma, float_small(cfg->focal_gamma), (double)FLT_MIN);
    return -1;
  }
  if (cfg->ohem_thresh > 0 && (float)cfg->ohem_thresh < FLT_MIN) {
    snprintf(err, errlen, "--ohem-thresh: %g is %s as a float: give 0 or a value in [%g, 1]",
             cfg->ohem_thresh, float_small(cfg->ohem_thresh), (double)FLT_MIN);
    return -1;
  }
  /* a resume's stored N with --ohem-thresh 0 given: mining off, N kept for later */
  if (cfg->ohem_min_kept > 0 && cfg->ohem_thresh <= 0 &&
      cg_opts_given(&given, cfg->argc, cfg->argv, "ohem-min-kept")) {
    snprintf(err, errlen, "--ohem-min-kept: for online hard example mining, which --ohem-thresh "
             "P turns on (mmsegmentation's recipes use 0.7)");
    return -1;
  }
  const int64_t px = (int64_t)cfg->image_size * cfg->image_size;
  if (known && cfg->ohem_thresh > 0 && cfg->ohem_min_kept >= px) {
    snprintf(err, errlen, "--ohem-min-kept: %lld is not below the %lld pixels of a %dx%d sample: "
             "every pixel would be kept; give fewer (0: a fifth of them, %lld)",
             (long long)cfg->ohem_min_kept, (long long)px, cfg->image_size, cfg->image_size,
             (long long)(px / 5));
    return -1;
  }
  if (known && cfg->pos_weight != 1 && K >= 2) {
    snprintf(err, errlen, "--pos-weight: for binary models; with --num-classes %d weight the "
             "classes with --class-weights W,W,...", K);
    return -1;
  }
  return balanced ? 0 : cg_cli_set_class_weights(cfg, w, n, err, errlen);
}

int cg_cli_set_class_weights(cg_config_t *cfg, const float *w, int n, char *err, size_t errlen) {
  char text[sizeof cfg->class_weights];
  size_t len = 0;
  text[0] = 0;
  for (int i = 0; i < n && len < sizeof text; i++) {
    char num[24];
    fmt_float(w[i], num, sizeof num);
    len += (size_t)snprintf(text + len, sizeof text - len, "%s%s", i ? "," : "", num);
  }
  if (len >= sizeof text) {
    snprintf(err, errlen, "--class-weights: longer than %zu characters written as numbers",
             sizeof text - 1);
    return -1;
  }
  memcpy(cfg->class_weights, text, len + 1);
  memcpy(cfg->class_weight, w, sizeof(float) * (size_t)n);
  cfg->nclass_weights = n;
  if (!n && cfg->pos_weight != 1 && cfg->num_classes < 2) {
    cfg->class_weight[0] = (float)cfg->pos_weight;
    cfg->nclass_weights = 1;
  }
  return 0;
}

/* --optimizer and the flags of each: another optimizer's flag away from its default is refused
 * (it would do nothing); known on a resume once the settings are merged. */
static int check_optimizer(cg_config_t *cfg, char *err, size_t errlen) {
  if (cfg->beta1 >= 1.0 || cfg->beta2 >= 1.0) {
    snprintf(err, errlen, "--%s: must be below 1", cfg->beta1 >= 1.0 ? "beta1" : "beta2");
    return -1;
  }
  /* the backends take it as a float: 1 - 1e-9 would be 1 there, 1e-50 would be 0 */
  const float mu = (float)cfg->momentum;
  if (mu >= 1.0f || (cfg->momentum > 0 && mu < FLT_MIN)) {
    snprintf(err, errlen, "--momentum: %.9g is %s as a float: give 0 or a value in [%g, 1)",
             cfg->momentum, mu >= 1.0f ? "1 or more" : float_small(cfg->momentum),
             (double)FLT_MIN);
    return -1;
  }
  if (!settings_known(cfg)) return 0;
  const int sgd = cg_cfg_sgd(cfg);
  cg_config_t *def = cg_malloc(sizeof *def, "default settings");
  cg_cli_defaults(def);
  const char *other = sgd ? (cfg->beta1 != def->beta1   ? "beta1"
                             : cfg->beta2 != def->beta2 ? "beta2"
                             : cfg->eps != def->eps     ? "eps"
                                                        : NULL)
                          : (cfg->momentum != def->momentum   ? "momentum"
                             : cfg->nesterov != def->nesterov ? "nesterov"
                                                              : NULL);
  free(def);
  if (other) {
    snprintf(err, errlen, "--%s: for --optimizer %s; this run uses --optimizer %s%s", other,
             sgd ? "adamw" : "sgd", cfg->optimizer,
             sgd ? " (its one hyperparameter besides --lr and --weight-decay is --momentum)" : "");
    return -1;
  }
  if (sgd && cfg->nesterov && mu <= 0.0f) {
    snprintf(err, errlen, "--nesterov: needs --momentum above 0 (as torch.optim.SGD)");
    return -1;
  }
  return 0;
}

static int check_optim_flags(cg_config_t *cfg, char *err, size_t errlen) {
  if (check_optimizer(cfg, err, errlen)) return -1;
  if (cfg->cmd == CG_CMD_TRAIN &&
      (check_milestones(cfg, err, errlen) || check_loss_flags(cfg, err, errlen)))
    return -1;
  if (cfg->ema_decay > 0 && !((float)(1.0 - cfg->ema_decay) > 0.0f)) {
    snprintf(err, errlen, "--ema-decay %.17g: the average would never move (1 - D is 0 in "
             "float); 0 < D < 1", cfg->ema_decay);
    return -1;
  }
  if (cfg->clip_grad_norm > 0 && (float)cfg->clip_grad_norm < FLT_MIN) { /* 0 in float: off */
    snprintf(err, errlen, "--clip-grad-norm: %g is below the smallest float (%g); 0 turns it off",
             cfg->clip_grad_norm, (double)FLT_MIN);
    return -1;
  }
  if (!strcmp(cfg->backend, "cpu") &&
      (!strcmp(cfg->precision, "bf16") || !strcmp(cfg->precision, "fp16"))) {
    snprintf(err, errlen,
             "--precision: %s needs --backend cuda (the cpu backend computes in fp32)",
             cfg->precision);
    return -1;
  }
  return 0;
}

int cg_cli_check(cg_config_t *cfg, char *err, size_t errlen) {
  static int (*const checks[])(cg_config_t *, char *, size_t) = {
      check_labels,       check_class_names,  check_train_flags,
      check_data_flags,   check_resume_flags, check_optim_flags};
  for (size_t i = 0; i < sizeof checks / sizeof *checks; i++)
    if (checks[i](cfg, err, errlen)) return -1;
  return 0;
}

int cg_cli_tool_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "cogpu-dist %s: error: ", cmd);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (see cogpu-dist %s --help)\n", cmd);
  va_end(ap);
  return CG_EXIT_USAGE;
}
