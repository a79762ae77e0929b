#!/usr/bin/env python3
"""PyTorch peer for cogpu-dist: the same UNet-S, loss and AdamW, trained on synthetic data.

Why it exists: every timing claim about the C trainer is compared with this script run on the
same machine in the same session (STYLE.md rule 8). It times steady-state training steps only;
inputs and masks are generated once, already on the device, so no data pipeline is measured.

Modes
  GPU (default when CUDA is available): variants eager_fp32, eager_bf16 (autocast bf16,
      channels_last, fused AdamW), eager_fp16 (autocast fp16 + GradScaler, channels_last,
      fused AdamW), compile_bf16 (torch.compile of model+loss, bf16, channels_last, fused AdamW,
      one run per --compile-modes entry). Timed with CUDA events; peak memory from the caching
      allocator; % of a compute floor from a measured bf16 matmul rate.
  --cpu: eager fp32 on the CPU for each --threads count, timed with perf_counter. Works with
      torch 1.13 (Debian); torch.compile, fused AdamW and autocast are not used there.

Output: '#' comment lines, a fixed-width table, then one line 'JSON {...}' (also --json-out).
Exit status 1 if a variant failed (error or non-finite loss); skipped variants are not failures.
eager_fp32 keeps PyTorch's default TF32 settings (cuDNN convolutions may use TF32); the JSON
records them.
"""

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# Known parameter counts (in_c, b, d) -> params; the model must match them exactly.
KNOWN_PARAMS = {(5, 32, 4): 7_760_673, (5, 8, 3): 120_969}
GPU_VARIANTS = ("eager_fp32", "eager_bf16", "eager_fp16", "compile_bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
GIB = float(1 << 30)


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------

class Block(nn.Module):
    """Two (3x3 conv pad 1 + bias + ReLU)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=True)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))))


class UNet(nn.Module):
    """UNet-S: widths b*2^l for l = 0..d; level d is the bottleneck (no pool after it)."""

    def __init__(self, in_c=5, base=32, depth=4):
        super().__init__()
        self.depth = depth
        w = [base * (1 << l) for l in range(depth + 1)]
        self.widths = w
        self.enc = nn.ModuleList(Block(in_c if l == 0 else w[l - 1], w[l])
                                 for l in range(depth + 1))
        # up[l] / dec[l] belong to decoder level l (l = 0..d-1), run from l = d-1 down to 0.
        self.up = nn.ModuleList(nn.ConvTranspose2d(w[l + 1], w[l], 2, stride=2, bias=True)
                                for l in range(depth))
        self.dec = nn.ModuleList(Block(2 * w[l], w[l]) for l in range(depth))
        self.head = nn.Conv2d(w[0], 1, 1, bias=True)

    def forward(self, x):
        skips = []
        for l in range(self.depth):
            x = self.enc[l](x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.enc[self.depth](x)
        for l in range(self.depth - 1, -1, -1):
            x = self.up[l](x)
            x = torch.cat([x, skips[l]], dim=1)  # upsampled first, skip second
            x = self.dec[l](x)
        return self.head(x)

    def conv_layers(self, h, w):
        """(module, H_out, W_out) for every conv of one forward pass at input size h x w."""
        out = []
        for l in range(self.depth + 1):
            hl, wl = h >> l, w >> l
            out += [(self.enc[l].conv1, hl, wl), (self.enc[l].conv2, hl, wl)]
        for l in range(self.depth - 1, -1, -1):
            hl, wl = h >> l, w >> l
            out += [(self.up[l], hl, wl), (self.dec[l].conv1, hl, wl), (self.dec[l].conv2, hl, wl)]
        out.append((self.head, h, w))
        return out


def expected_params(in_c, base, depth):
    """Parameter count from the architecture text, independent of the nn.Module code."""
    w = [base * (1 << l) for l in range(depth + 1)]
    n = 0
    for l in range(depth + 1):
        cin = in_c if l == 0 else w[l - 1]
        n += cin * w[l] * 9 + w[l] + w[l] * w[l] * 9 + w[l]
    for l in range(depth):
        n += w[l + 1] * w[l] * 4 + w[l]                        # transposed conv 2x2
        n += 2 * w[l] * w[l] * 9 + w[l] + w[l] * w[l] * 9 + w[l]  # block
    return n + w[0] + 1                                        # head


def forward_flops_per_image(model, h, w):
    """2*H*W*Cout*Cin*k*k per conv; transposed convs 2*Hin*Win*Cin*Cout*k*k (= 2*Hout*Wout*Cout*Cin
    for k = stride = 2). Pooling, bias, ReLU, concat and loss are not counted."""
    total = 0
    for m, ho, wo in model.conv_layers(h, w):
        kh, kw = m.kernel_size
        if isinstance(m, nn.ConvTranspose2d):
            cin, cout = m.weight.shape[0], m.weight.shape[1]
            sh, sw = m.stride
            total += 2 * (ho // sh) * (wo // sw) * cin * cout * kh * kw
        else:
            cout, cin = m.weight.shape[0], m.weight.shape[1]
            total += 2 * ho * wo * cout * cin * kh * kw
    return total


def seg_loss(logits, y):
    """Per sample: mean BCE-with-logits over pixels + soft Dice; batch: mean over samples.
    Computed in fp32 whatever the autocast dtype of the logits."""
    logits = logits.float()
    n = logits.shape[0]
    bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none").reshape(n, -1).mean(1)
    p = torch.sigmoid(logits).reshape(n, -1)
    t = y.reshape(n, -1)
    dice = 1.0 - (2.0 * (p * t).sum(1) + 1.0) / (p.sum(1) + t.sum(1) + 1.0)
    return (bce + dice).mean()


class ModelWithLoss(nn.Module):
    """Lets torch.compile see forward and loss as one graph."""

    def __init__(self, model, amp_dtype, device_type="cuda"):
        super().__init__()
        self.model = model
        self.amp_dtype = amp_dtype
        self.device_type = device_type

    def forward(self, x, y):
        if self.amp_dtype is None:
            return seg_loss(self.model(x), y)
        with torch.autocast(device_type=self.device_type, dtype=self.amp_dtype):
            logits = self.model(x)
        return seg_loss(logits, y)


def build_model(args, device, seed):
    torch.manual_seed(seed)
    model = UNet(args.in_channels, args.base, args.depth)
    n = sum(p.numel() for p in model.parameters())
    exp = expected_params(args.in_channels, args.base, args.depth)
    assert n == exp, "parameter count %d != expected %d" % (n, exp)
    key = (args.in_channels, args.base, args.depth)
    if key in KNOWN_PARAMS:
        assert n == KNOWN_PARAMS[key], \
            "parameter count %d != %d for %s" % (n, KNOWN_PARAMS[key], key)
    return model.to(device), n


def make_data(args, batch, device, seed):
    """Normal inputs (N, in_c, H, W) and 0/1 masks (N, 1, H, W), fp32, fixed for the run."""
    g = torch.Generator(device=device)
    g.manual_seed(seed + 1)
    s = args.image_size
    x = torch.randn(batch, args.in_channels, s, s, generator=g, device=device)
    y = (torch.rand(batch, 1, s, s, generator=g, device=device) < 0.5).float()
    return x, y


def make_adamw(params, fused):
    kw = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4)
    if fused:
        kw["fused"] = True
    return torch.optim.AdamW(params, **kw)


# ----------------------------------------------------------------------------------------------
# Timing helpers
# ----------------------------------------------------------------------------------------------

def plan_steps(step_s, share_s, windows, max_steps, min_steps=3):
    """Timed steps per window so that `windows` windows fit in share_s, clamped to [min, max]."""
    if step_s <= 0:
        return max_steps
    n = int(share_s / (windows * step_s))
    return max(min_steps, min(max_steps, n))


def run_windows(step, windows, steps, timer):
    """Run `windows` windows of `steps` steps; timer(fn) -> seconds for fn. Returns list of s."""
    out = []
    for _ in range(windows):
        def window():
            for _ in range(steps):
                step()
        out.append(timer(window))
    return out


def cpu_timer(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def cuda_timer(fn):
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1000.0


# ----------------------------------------------------------------------------------------------
# CPU mode
# ----------------------------------------------------------------------------------------------

def run_cpu(args, deadline, results, skipped):
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    runs = [(t, b) for t in threads for b in args.batches]
    for i, (nt, batch) in enumerate(runs):
        name = "cpu_fp32_t%d" % nt
        if deadline - time.perf_counter() <= 0:
            skipped.append({"variant": name, "batch": batch, "note": "over --time-budget"})
            continue
        torch.set_num_threads(nt)
        results.append(run_cpu_one(args, name, batch, deadline, len(runs) - i))
        gc.collect()


def run_cpu_one(args, name, batch, deadline, runs_left):
    device = torch.device("cpu")
    rec = {"variant": name, "batch": batch, "threads": torch.get_num_threads(),
           "peak_gib": None, "pct_floor": None, "compile_s": None}
    model, _ = build_model(args, device, args.seed)
    x, y = make_data(args, batch, device, args.seed)
    opt = make_adamw(model.parameters(), fused=False)
    holder = {}

    def step():
        opt.zero_grad(set_to_none=True)
        loss = seg_loss(model(x), y)
        loss.backward()
        opt.step()
        holder["loss"] = loss

    rec.update(time_variant(args, step, cpu_timer, None, deadline, runs_left))
    rec["loss"] = float(holder["loss"].item())
    finish_record(rec)
    return rec


def time_variant(args, step, timer, sync, deadline, runs_left):
    """Warm up (first step timed on its own: it holds compilation/autotuning), plan, time."""
    t = time.perf_counter()
    step()
    if sync:
        sync()
    first_s = time.perf_counter() - t
    for _ in range(max(0, args.warmup - 1 - 3)):
        step()
    # Last 3 warm-up steps give a wall-clock step estimate for planning the timed windows.
    est = timer(lambda: [step() for _ in range(3)]) / 3 if args.warmup >= 4 else first_s
    share = max(0.0, (deadline - time.perf_counter()) / max(1, runs_left))
    steps = plan_steps(est, share, args.windows, args.steps)
    win = run_windows(step, args.windows, steps, timer)
    per_step = [w / steps for w in win]
    med = statistics.median(per_step)
    return {"first_step_s": first_s, "steps_per_window": steps, "windows": len(win),
            "window_ms_per_step": [s * 1e3 for s in per_step],
            "ms_step": med * 1e3}


def finish_record(rec):
    """img/s from the median ms/step; a non-finite loss after timing makes the variant fail."""
    ms = rec["ms_step"]
    rec["img_s"] = rec["batch"] / (ms / 1e3) if ms > 0 else None
    if not math.isfinite(rec["loss"]):
        rec["error"] = "non-finite loss %r" % rec["loss"]
        rec["loss"] = None


# ----------------------------------------------------------------------------------------------
# GPU mode
# ----------------------------------------------------------------------------------------------

def matmul_rate(n, reps, dtype=torch.bfloat16):
    """FLOP/s of an n x n x n matmul: median of `reps` event-timed runs after warm-up."""
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        c = a @ b
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        ts.append(cuda_timer(lambda: torch.matmul(a, b, out=c)))
    return 2.0 * n ** 3 / statistics.median(ts)


def make_grad_scaler():
    try:
        return torch.amp.GradScaler("cuda")
    except (AttributeError, TypeError):
        return torch.cuda.amp.GradScaler()


def gpu_step_fn(kind, model, loss_mod, opt, scaler, x, y, holder, mark_step):
    """One training step for a variant; nothing in it synchronises with the host."""
    dev = x.device.type
    amp = {"eager_fp32": None, "eager_bf16": torch.bfloat16, "eager_fp16": torch.float16}

    if kind == "compile":
        def step():
            if mark_step is not None:
                mark_step()  # cudagraph trees: a new step may reuse last step's output buffers
            opt.zero_grad(set_to_none=True)
            loss = loss_mod(x, y)
            loss.backward()
            opt.step()
            holder["loss"] = loss.detach().clone()
        return step

    dtype = amp[kind]
    if scaler is not None:
        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=dev, dtype=dtype):
                logits = model(x)
            loss = seg_loss(logits, y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            holder["loss"] = loss
        return step

    def step():
        opt.zero_grad(set_to_none=True)
        if dtype is None:
            loss = seg_loss(model(x), y)
        else:
            with torch.autocast(device_type=dev, dtype=dtype):
                logits = model(x)
            loss = seg_loss(logits, y)
        loss.backward()
        opt.step()
        holder["loss"] = loss
    return step


def run_gpu_one(args, device, name, batch, compile_mode, deadline, runs_left):
    channels_last = name != "eager_fp32"
    fused = name != "eager_fp32"
    rec = {"variant": name, "batch": batch, "compile_mode": compile_mode,
           "channels_last": channels_last, "fused_adamw": fused, "compile_s": None}

    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model, _ = build_model(args, device, args.seed)
    x, y = make_data(args, batch, device, args.seed)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = make_adamw(model.parameters(), fused=fused)
    scaler = make_grad_scaler() if name == "eager_fp16" else None
    holder = {}
    loss_mod, mark_step, kind = None, None, name
    if compile_mode is not None:
        torch.compiler.reset()
        kind = "compile"
        loss_mod = torch.compile(ModelWithLoss(model, torch.bfloat16, device.type),
                                 mode=compile_mode, dynamic=False)
        if compile_mode in ("reduce-overhead", "max-autotune"):
            mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)
    step = gpu_step_fn(kind, model, loss_mod, opt, scaler, x, y, holder, mark_step)

    rec.update(time_variant(args, step, cuda_timer, torch.cuda.synchronize, deadline, runs_left))
    torch.cuda.synchronize()
    rec["peak_gib"] = torch.cuda.max_memory_allocated() / GIB
    rec["loss"] = float(holder["loss"].item())
    if compile_mode is not None:
        # The first step holds Dynamo tracing, AOTAutograd and Inductor codegen (+ autotuning);
        # what it took beyond one steady step is reported as the compile time.
        rec["compile_s"] = max(0.0, rec["first_step_s"] - rec["ms_step"] / 1e3)
    if scaler is not None:
        rec["loss_scale"] = float(scaler.get_scale())
    finish_record(rec)
    del step, holder, loss_mod, opt, scaler, model, x, y
    if compile_mode is not None:
        torch.compiler.reset()  # drops compiled code and cudagraph pools
    gc.collect()
    torch.cuda.empty_cache()
    return rec


def run_gpu(args, deadline, results, skipped, info):
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    if not args.no_matmul:
        rate = matmul_rate(args.matmul_n, args.matmul_reps)
        torch.cuda.empty_cache()  # give the matmul buffers back before the variants
        info["matmul_bf16_flops"] = rate
        info["floor_img_s"] = rate / info["train_flop_per_image"]
    runs = []
    for v in args.variants:
        modes = args.compile_modes if v == "compile_bf16" else [None]
        for m in modes:
            for b in args.batches:
                runs.append((v, m, b))
    for i, (v, m, b) in enumerate(runs):
        name = v if m is None else "%s[%s]" % (v, m)
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            skipped.append({"variant": name, "batch": b, "note": "over --time-budget"})
            continue
        if m is not None and m.startswith("max-autotune") and remaining < 150:
            skipped.append({"variant": name, "batch": b,
                            "note": "max-autotune compiles for minutes, %.0f s left: "
                                    "raise --time-budget" % remaining})
            continue
        failed = False
        try:
            rec = run_gpu_one(args, device, v, b, m, deadline, len(runs) - i)
        except Exception as e:  # noqa: BLE001 -- report and go on with the other variants
            oom = "out of memory" in str(e).lower()
            rec = {"variant": v, "batch": b, "compile_mode": m,
                   "error": ("OOM: " if oom else "") + ("%s: %s" % (type(e).__name__, e))[:400]}
            failed = True
        if failed:  # outside the except block, so the traceback no longer pins the tensors
            try:
                torch.compiler.reset()
            except Exception:  # noqa: BLE001
                pass
            gc.collect()
            torch.cuda.empty_cache()
        rec["variant"] = name
        floor = info.get("floor_img_s")
        rec["pct_floor"] = (100.0 * rec["img_s"] / floor) if floor and rec.get("img_s") else None
        results.append(rec)


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------

def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_report(args, info, results, skipped):
    for k in ("device", "torch", "cuda", "cudnn", "mode", "model", "params", "image_size",
              "fwd_flop_per_image", "train_flop_per_image", "matmul_bf16_flops", "floor_img_s",
              "tf32", "time_s"):
        if k not in info:
            continue
        v = info[k]
        if k.endswith("flop_per_image"):
            v = "%.4g GFLOP" % (v / 1e9)
        elif k == "matmul_bf16_flops":
            v = "%.1f TFLOP/s (%dx%dx%d bf16, median of %d)" % (
                v / 1e12, args.matmul_n, args.matmul_n, args.matmul_n, args.matmul_reps)
        elif k == "floor_img_s":
            v = "%.0f img/s (matmul rate / train FLOP per image)" % v
        elif k == "time_s":
            v = "%.1f s" % v
        print("# %-20s %s" % (k, v))
    print("#")
    print("# %-34s %6s %10s %10s %9s %8s %9s  %s" %
          ("variant", "batch", "img/s", "ms/step", "peak GiB", "% floor", "compile s", "note"))
    for r in results:
        note = r.get("error", "")
        if not note and "loss" in r:
            note = "loss %.4f, %dx%d steps" % (r["loss"], r["windows"], r["steps_per_window"])
        print("  %-34s %6d %10s %10s %9s %8s %9s  %s" % (
            r["variant"], r["batch"], fmt(r.get("img_s"), ".1f"), fmt(r.get("ms_step"), ".3f"),
            fmt(r.get("peak_gib"), ".3f"), fmt(r.get("pct_floor"), ".1f"),
            fmt(r.get("compile_s"), ".1f"), note))
    for s in skipped:
        print("# skipped %-26s %6d  %s" % (s["variant"], s["batch"], s["note"]))
    doc = dict(info)
    doc["results"] = results
    doc["skipped"] = skipped
    line = json.dumps(doc, sort_keys=True, allow_nan=False)
    print("JSON " + line)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(line + "\n")


def tf32_settings():
    """Read-only: torch >= 2.9 raises if the legacy (allow_tf32) and new (fp32_precision) TF32
    APIs are mixed, so read the new one where it exists and never set either."""
    try:
        return {"matmul_fp32_precision": str(torch.backends.cuda.matmul.fp32_precision),
                "cudnn_conv_fp32_precision": str(torch.backends.cudnn.conv.fp32_precision)}
    except Exception:  # noqa: BLE001 -- older torch: no fp32_precision attributes
        pass
    try:
        return {"matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
                "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32)}
    except Exception as e:  # noqa: BLE001
        return {"error": str(e)[:200]}


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="PyTorch peer for cogpu-dist: UNet-S training throughput on synthetic data. "
                    "GPU mode when CUDA is available, else (or with --cpu) CPU mode.")
    p.add_argument("--cpu", action="store_true",
                   help="train on the CPU (fp32 eager) even if CUDA is available; "
                        "defaults become --base 8 --depth 3 --image-size 64 --batch 8")
    p.add_argument("--in-channels", type=int, default=5,
                   help="input channels, RGB + features (default 5)")
    p.add_argument("--base", type=int, default=None, help="base width b (GPU 32, CPU 8)")
    p.add_argument("--depth", type=int, default=None, help="depth d (GPU 4, CPU 3)")
    p.add_argument("--image-size", type=int, default=None,
                   help="square image side (GPU 256, CPU 64)")
    p.add_argument("--batch", type=int, default=None, help="batch size (GPU 32, CPU 8)")
    p.add_argument("--batch-list", default=None,
                   help="comma list of batch sizes, e.g. 32,64 (overrides --batch)")
    p.add_argument("--variants", default=",".join(GPU_VARIANTS),
                   help="GPU variants to run, comma list (default: all of %s)"
                        % ",".join(GPU_VARIANTS))
    p.add_argument("--compile-modes", default="default",
                   help="torch.compile modes for compile_bf16, comma list of " +
                        ",".join(COMPILE_MODES) +
                        " (default: default; max-autotune compiles for minutes)")
    p.add_argument("--threads", default="1,2",
                   help="CPU mode: comma list of torch.set_num_threads counts (default 1,2)")
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up steps per variant (GPU 10, CPU 5); the first includes compilation")
    p.add_argument("--steps", type=int, default=None,
                   help="max timed steps per window (GPU 30, CPU 20); fewer if the budget is short")
    p.add_argument("--windows", type=int, default=None,
                   help="timed windows per variant, median reported (GPU 3, CPU 5)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds for the whole run (GPU 150, CPU 50): shortens windows, then "
                        "skips remaining variants with a note")
    p.add_argument("--matmul-n", type=int, default=8192,
                   help="GPU: n of the n x n x n bf16 matmul for the floor (default 8192)")
    p.add_argument("--matmul-reps", type=int, default=10,
                   help="GPU: timed matmuls, median taken (default 10)")
    p.add_argument("--no-matmul", action="store_true", help="GPU: skip the matmul floor")
    p.add_argument("--seed", type=int, default=1234,
                   help="seed for weights and synthetic data (default 1234)")
    p.add_argument("--json-out", default=None, help="also write the JSON object to this file")
    args = p.parse_args(argv)

    args.use_cuda = (not args.cpu) and torch.cuda.is_available()
    g = args.use_cuda
    defaults = dict(base=(32, 8), depth=(4, 3), image_size=(256, 64), batch=(32, 8),
                    warmup=(10, 5), steps=(30, 20), windows=(3, 5), time_budget=(150.0, 50.0))
    for k, (gv, cv) in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, gv if g else cv)
    if args.batch_list:
        args.batches = [int(b) for b in args.batch_list.split(",") if b.strip()]
    else:
        args.batches = [args.batch]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.compile_modes = [m.strip() for m in args.compile_modes.split(",") if m.strip()]
    for v in args.variants:
        if v not in GPU_VARIANTS:
            p.error("unknown variant %r (choose from %s)" % (v, ",".join(GPU_VARIANTS)))
    for m in args.compile_modes:
        if m not in COMPILE_MODES:
            p.error("unknown compile mode %r (choose from %s)" % (m, ",".join(COMPILE_MODES)))
    if args.image_size % (1 << args.depth):
        p.error("--image-size must be divisible by 2^depth = %d" % (1 << args.depth))
    if min(args.batches) < 1 or args.windows < 1 or args.steps < 1 or args.warmup < 1:
        p.error("batch, windows, steps and warm-up must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    t0 = time.perf_counter()
    deadline = t0 + args.time_budget

    probe = UNet(args.in_channels, args.base, args.depth)
    fwd = forward_flops_per_image(probe, args.image_size, args.image_size)
    n_params = sum(p.numel() for p in probe.parameters())
    del probe

    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(), "python": platform.python_version(),
        "torch": torch.__version__, "cpu_count": os.cpu_count(),
        "mode": "cuda" if args.use_cuda else "cpu",
        "model": "UNet in_c=%d b=%d d=%d" % (args.in_channels, args.base, args.depth),
        "in_channels": args.in_channels, "base": args.base, "depth": args.depth,
        "image_size": args.image_size, "params": n_params,
        "fwd_flop_per_image": fwd, "train_flop_per_image": 3 * fwd,
        "warmup": args.warmup, "max_steps_per_window": args.steps, "windows": args.windows,
        "time_budget_s": args.time_budget, "seed": args.seed,
    }
    if not args.cpu and not args.use_cuda:
        info["note"] = "CUDA not available: ran the CPU mode"

    results, skipped = [], []
    if args.use_cuda:
        info["device"] = torch.cuda.get_device_name(0)
        info["device_mem_gib"] = torch.cuda.get_device_properties(0).total_memory / GIB
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["tf32"] = tf32_settings()
        run_gpu(args, deadline, results, skipped, info)
    else:
        info["device"] = "cpu (%s)" % (platform.processor() or platform.machine())
        info["cudnn"] = None
        info["mkldnn"] = bool(torch.backends.mkldnn.is_available())
        run_cpu(args, deadline, results, skipped)
    info["time_s"] = time.perf_counter() - t0
    print_report(args, info, results, skipped)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
