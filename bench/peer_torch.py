#!/usr/bin/env python3
"""PyTorch peer for cogpu-dist: the same UNet-S, loss and AdamW, trained on synthetic data.

Why it exists: every timing claim about the C trainer is compared with this script run on the
same machine in the same session (STYLE.md rule 8). It times steady-state training steps only;
inputs and masks are generated once, already on the device, so no data pipeline is measured.

Modes
  GPU (default when CUDA is available): variants eager_fp32, eager_bf16 (autocast bf16,
      channels_last, fused AdamW), eager_fp16 (autocast fp16 + GradScaler, channels_last,
      fused AdamW), compile_bf16 (torch.compile of model+loss, bf16, channels_last, fused AdamW,
      one result row per --compile-modes entry, named e.g. compile_bf16[max-autotune]). Every
      variant runs at every --batch-list size. Timed with CUDA events; % of a compute floor from
      a measured bf16 matmul rate.
  --cpu: eager fp32 on the CPU for each --threads count, timed with perf_counter. Works with
      torch 1.13 (Debian); torch.compile, fused AdamW and autocast are not used there.
  --print-cudnn-libdir: print the lib directory of the nvidia-cudnn wheel PyTorch loads (nothing
      if there is none) and exit 0, without importing torch or touching the GPU, so a script can
      run our trainer on the same cuDNN: LD_LIBRARY_PATH=$(python3 bench/peer_torch.py
      --print-cudnn-libdir).

Per variant: model build, then warm-up (outside every timed window), then --windows timed windows.
  warm-up     the first step alone (Dynamo + Inductor compilation and autotuning, cudnn.benchmark
              trials), then the remaining warm-up steps; compile variants get at least 6 more
              (CUDA-graph trees warm up and record in the first ones after compilation; the last 3
              give the step estimate that sizes the windows).
  compile_s   first step's wall time minus one steady step: the compilation (+ autotuning).
  warmup_s    wall time of the whole warm-up, compilation included.
Memory (GPU, caching-allocator counters, GiB = 2^30 bytes):
  peak_gib              max_memory_allocated during the timed windows; the peak is reset after
                        warm-up, so cudnn.benchmark trial workspaces and compile-time autotuning
                        buffers are not in it. The main, fair figure for eager and compile default.
  reserved_gib          max_memory_reserved during the timed windows: what the allocator holds from
                        the device, its cache included (cuDNN trial workspaces stay cached).
  peak_incl_warmup_gib  max_memory_allocated from model build to the end (the old peak_gib).
  peak_after_first_gib  max_memory_allocated from after the first step to the end: the fair figure
                        for the CUDA-graph modes (reduce-overhead, max-autotune; rows with
                        cudagraphs: true). The allocator counts a graph's memory only while it is
                        recorded (in the warm-up) and sees nothing on replay, so their peak_gib
                        misses the graph's working set (reserved_gib holds it, in the graph pool).
  None of them counts the CUDA context or cuDNN/cuBLAS handles outside the allocator.
Time limits: --time-budget for the whole run (windows shrink, then variants are skipped with a
note); a compile variant is skipped up front if less is left than it is expected to need, and its
first step (the compilation) is cut off after min(--compile-timeout, what is left of the budget)
by SIGALRM and recorded as skipped with the elapsed time.

Output: '#' comment lines, a fixed-width table, then one line 'JSON {...}' (also --json-out).
Exit status 1 if a variant failed (error or non-finite loss); skipped variants are not failures.
eager_fp32 keeps PyTorch's default TF32 settings (cuDNN convolutions may use TF32); the JSON
records them, the cuDNN version and the directory its library was loaded from.
"""

import argparse
import contextlib
import datetime
import gc
import glob
import json
import math
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time


def cudnn_libdir():
    """The nvidia-cudnn wheel's lib directory (PyTorch's pip wheels preload libcudnn from it), or
    None: no wheel (a torch built on a system cuDNN, or a CPU torch) or no libcudnn in it."""
    try:
        import nvidia.cudnn as wheel  # noqa: PLC0415 -- optional, only the pip CUDA wheels have it
    except Exception:  # noqa: BLE001
        return None
    f = getattr(wheel, "__file__", None)
    roots = [os.path.dirname(f)] if f else list(getattr(wheel, "__path__", []))  # namespace pkg
    for r in roots:
        d = os.path.join(r, "lib")
        if glob.glob(os.path.join(d, "libcudnn*.so*")):
            return d
    return None


# Before `import torch`: the shell's $(...) must get the directory and nothing else, quickly, and
# it must work where torch is missing; the option is also listed in --help.
if __name__ == "__main__" and "--print-cudnn-libdir" in sys.argv[1:]:
    _d = cudnn_libdir()
    if _d:
        print(_d)
    sys.exit(0)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# Known parameter counts (in_c, b, d) -> params; the model must match them exactly.
KNOWN_PARAMS = {(5, 32, 4): 7_760_673, (5, 8, 3): 120_969}
GPU_VARIANTS = ("eager_fp32", "eager_bf16", "eager_fp16", "compile_bf16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
# Seconds each mode took to compile UNet-S (b32 d4, 256x256) on an H200 with a cold Inductor
# cache (default 18 s, max-autotune 117 s; the others by analogy): a variant is not started with
# less budget than this left, since the compilation would be cut off and waste what is left.
EXPECTED_COMPILE_S = {"default": 20, "reduce-overhead": 25, "max-autotune": 120,
                      "max-autotune-no-cudagraphs": 120}
COMPILE_MIN_AFTER_FIRST = 6
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
    """Timed steps per window so that `windows` windows fit in share_s, clamped to
    [min(min_steps, max_steps), max_steps]: --steps is never exceeded."""
    if step_s <= 0:
        return max_steps
    n = int(share_s / (windows * step_s))
    return max(min(min_steps, max_steps), min(max_steps, n))


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


class CompileTimeout(BaseException):
    """Raised by SIGALRM inside a capped first step. A BaseException, so the `except Exception`
    fallbacks in Dynamo and in Inductor's autotuning cannot swallow it and carry on compiling."""


@contextlib.contextmanager
def time_cap(seconds):
    """Raise CompileTimeout in the main thread after `seconds` (None: no cap). Python runs the
    handler between bytecodes, so a long C call (one kernel compile) finishes first; the caller
    reports the elapsed time it measured, not the cap."""
    if seconds is None or not hasattr(signal, "setitimer") \
            or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise CompileTimeout("cut off after %.0f s" % seconds)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.01, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def warm_up(step, timer, sync, n_after_first, first_cap_s=None, after_first=None):
    """The first step alone (compilation, autotuning, cudnn.benchmark trials; capped at
    first_cap_s), after_first(), then n_after_first more steps, the last 3 of which are timed as
    the step estimate for planning the windows. Nothing here is in a timed window."""
    t0 = time.perf_counter()
    with time_cap(first_cap_s):
        step()
        if sync:
            sync()
    first_s = time.perf_counter() - t0
    if after_first:
        after_first()
    n_est = 3 if n_after_first >= 3 else 0
    for _ in range(n_after_first - n_est):
        step()
    est = timer(lambda: [step() for _ in range(n_est)]) / n_est if n_est else first_s
    if sync:
        sync()
    return {"first_step_s": first_s, "warmup_steps": 1 + n_after_first,
            "warmup_s": time.perf_counter() - t0, "est_step_s": est}


def time_windows(args, step, timer, est_step_s, deadline, runs_left):
    """Plan the steps per window from the estimate and the budget share, then time them."""
    share = max(0.0, (deadline - time.perf_counter()) / max(1, runs_left))
    steps = plan_steps(est_step_s, share, args.windows, args.steps)
    win = run_windows(step, args.windows, steps, timer)
    per_step = [w / steps for w in win]
    return {"steps_per_window": steps, "windows": len(win),
            "window_ms_per_step": [s * 1e3 for s in per_step],
            "ms_step": statistics.median(per_step) * 1e3}


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
    A = args.accum
    rec = {"variant": name, "batch": batch, "accum": A, "clip": args.clip, "ema": args.ema,
           "threads": torch.get_num_threads(),
           "peak_gib": None, "reserved_gib": None, "peak_incl_warmup_gib": None,
           "peak_after_first_gib": None,
           "pct_floor": None, "compile_s": None}
    model, _ = build_model(args, device, args.seed)
    x, y = make_data(args, batch, device, args.seed)
    opt = make_adamw(model.parameters(), fused=False)
    holder = {}
    ema = make_ema(model, args.ema) if args.ema > 0 else None

    def step():  # --accum A: A batches, (loss / A).backward() each, one optimizer step
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(A):
            loss = seg_loss(model(x), y) / A
            loss.backward()
            total += float(loss.detach())
        if args.clip > 0:  # as train --clip-grad-norm X
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        if ema is not None:  # as train --ema-decay D
            ema.update_parameters(model)
        holder["loss"] = torch.tensor(total)

    w = warm_up(step, cpu_timer, None, args.warmup - 1)
    rec.update(w)
    rec.update(time_windows(args, step, cpu_timer, w["est_step_s"], deadline, runs_left))
    rec["loss"] = float(holder["loss"].item())
    finish_record(rec)
    return rec


def make_ema(model, decay):
    """torch.optim.swa_utils.AveragedModel as an EMA of the weights: get_ema_multi_avg_fn where
    the torch has it (2.1+), else the per-parameter torch.lerp that function does."""
    swa = torch.optim.swa_utils
    if hasattr(swa, "get_ema_multi_avg_fn"):
        return swa.AveragedModel(model, multi_avg_fn=swa.get_ema_multi_avg_fn(decay))
    return swa.AveragedModel(model, avg_fn=lambda avg, p, n: torch.lerp(avg, p, 1.0 - decay))


def finish_record(rec):
    """img/s from the median ms/step; a non-finite loss after timing makes the variant fail."""
    ms = rec["ms_step"]
    rec["img_s"] = rec["batch"] * rec.get("accum", 1) / (ms / 1e3) if ms > 0 else None
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


class PeakMemory:
    """The caching allocator keeps one peak counter; each reset first folds it into `overall`,
    so the peak from model build to the end survives the resets that split it into phases."""

    def __init__(self):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.overall = 0

    def cut(self):
        """Peak allocated bytes since the last cut; starts a new phase."""
        torch.cuda.synchronize()
        p = torch.cuda.max_memory_allocated()
        self.overall = max(self.overall, p)
        torch.cuda.reset_peak_memory_stats()
        return p


def build_gpu_variant(args, device, name, batch, compile_mode, holder):
    """Model, data, optimizer (and the compiled module) of one variant; returns its step fn."""
    channels_last = name != "eager_fp32"
    model, _ = build_model(args, device, args.seed)
    x, y = make_data(args, batch, device, args.seed)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = make_adamw(model.parameters(), fused=channels_last)
    scaler = make_grad_scaler() if name == "eager_fp16" else None
    loss_mod, mark_step, kind = None, None, name
    if compile_mode is not None:
        torch.compiler.reset()
        kind = "compile"
        loss_mod = torch.compile(ModelWithLoss(model, torch.bfloat16, device.type),
                                 mode=compile_mode, dynamic=False)
        if compile_mode in CUDAGRAPH_MODES:
            mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)
    holder["scaler"] = scaler
    return gpu_step_fn(kind, model, loss_mod, opt, scaler, x, y, holder, mark_step)


def run_gpu_one(args, device, name, batch, compile_mode, deadline, runs_left):
    """Build, warm up (compilation capped), reset the memory peak, time, read the peaks."""
    compiled = compile_mode is not None
    rec = {"variant": name, "batch": batch, "compile_mode": compile_mode,
           "channels_last": name != "eager_fp32", "fused_adamw": name != "eager_fp32",
           "cudagraphs": compile_mode in CUDAGRAPH_MODES, "compile_s": None}
    gc.collect()
    torch.cuda.empty_cache()
    mem = PeakMemory()
    holder = {}
    step = build_gpu_variant(args, device, name, batch, compile_mode, holder)
    n_after = max(args.warmup - 1, COMPILE_MIN_AFTER_FIRST if compiled else 0)
    cap = None
    if compiled:
        cap = max(1.0, min(args.compile_timeout, deadline - time.perf_counter()))
    w = warm_up(step, cuda_timer, torch.cuda.synchronize, n_after, cap, after_first=mem.cut)
    rec.update(w)
    after_first = mem.cut()  # steps 2..n of the warm-up, CUDA-graph recording included
    rec.update(time_windows(args, step, cuda_timer, w["est_step_s"], deadline, runs_left))
    torch.cuda.synchronize()
    reserved = torch.cuda.max_memory_reserved()
    timed = mem.cut()
    rec["peak_gib"] = timed / GIB
    rec["reserved_gib"] = reserved / GIB
    rec["peak_after_first_gib"] = max(after_first, timed) / GIB
    rec["peak_incl_warmup_gib"] = mem.overall / GIB
    rec["loss"] = float(holder["loss"].item())
    if compiled:
        # The first step holds Dynamo tracing, AOTAutograd and Inductor codegen (+ autotuning);
        # what it took beyond one steady step is reported as the compile time.
        rec["compile_s"] = max(0.0, rec["first_step_s"] - rec["ms_step"] / 1e3)
    if holder["scaler"] is not None:
        rec["loss_scale"] = float(holder["scaler"].get_scale())
    finish_record(rec)
    del step, holder
    return rec


def release_gpu(compiled):
    """Drop compiled code and CUDA-graph pools and give cached blocks back, so the next variant
    starts from an empty allocator and its memory figures are its own."""
    if compiled:
        try:
            torch.compiler.reset()
        except Exception:  # noqa: BLE001 -- best effort after a failure
            pass
    gc.collect()
    torch.cuda.empty_cache()


def gpu_runs(args):
    """(variant, compile mode or None, batch) in command-line order: every batch for every
    variant and every compile mode."""
    runs = []
    for v in args.variants:
        for m in (args.compile_modes if v == "compile_bf16" else [None]):
            for b in args.batches:
                runs.append((v, m, b))
    return runs


def budget_skip_note(mode, remaining, compile_timeout):
    """Why a run is not started (None: start it). A compile needing more than is left would be
    cut off and take the rest of the budget from the runs after it."""
    if remaining <= 0:
        return "over --time-budget"
    if mode is None:
        return None
    need = min(compile_timeout, EXPECTED_COMPILE_S.get(mode, 60))
    if remaining < need:
        return ("%s compiles for ~%d s (UNet-S, H200), %.0f s left of --time-budget: raise it"
                % (mode, EXPECTED_COMPILE_S.get(mode, 60), remaining))
    return None


def run_gpu(args, deadline, results, skipped, info):
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    if not args.no_matmul:
        rate = matmul_rate(args.matmul_n, args.matmul_reps)
        torch.cuda.empty_cache()  # give the matmul buffers back before the variants
        info["matmul_bf16_flops"] = rate
        info["floor_img_s"] = rate / info["train_flop_per_image"]
    runs = gpu_runs(args)
    for i, (v, m, b) in enumerate(runs):
        name = v if m is None else "%s[%s]" % (v, m)
        note = budget_skip_note(m, deadline - time.perf_counter(), args.compile_timeout)
        if note:
            skipped.append({"variant": name, "batch": b, "note": note})
            continue
        t0 = time.perf_counter()
        rec, cut = None, None
        try:
            rec = run_gpu_one(args, device, v, b, m, deadline, len(runs) - i)
        except CompileTimeout as e:
            cut = str(e)
        except Exception as e:  # noqa: BLE001 -- report and go on with the other variants
            oom = "out of memory" in str(e).lower()
            rec = {"variant": v, "batch": b, "compile_mode": m,
                   "error": ("OOM: " if oom else "") + ("%s: %s" % (type(e).__name__, e))[:400]}
        # After the except blocks, so the traceback no longer pins the variant's tensors.
        release_gpu(compiled=m is not None or cut is not None or "error" in rec)
        if cut is not None:
            took = time.perf_counter() - t0
            skipped.append({"variant": name, "batch": b, "elapsed_s": took,
                            "note": "compilation %s (--compile-timeout %.0f s, %.0f s of "
                                    "--time-budget left at start); elapsed %.0f s"
                                    % (cut, args.compile_timeout, deadline - t0, took)})
            continue
        rec["variant"] = name
        floor = info.get("floor_img_s")
        rec["pct_floor"] = (100.0 * rec["img_s"] / floor) if floor and rec.get("img_s") else None
        results.append(rec)
    info["cudnn_loaded_from"] = loaded_lib_dir("libcudnn")


def loaded_lib_dir(prefix):
    """Directory of the first mapped shared object named prefix*.so* (Linux /proc/self/maps):
    where the dynamic loader really found it, whatever the wheel layout; None if not mapped."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)  # address perms offset dev inode [path]
                if len(parts) < 6:
                    continue
                base = os.path.basename(parts[5].strip())
                if base.startswith(prefix) and ".so" in base:
                    return os.path.dirname(parts[5].strip())
    except OSError:
        pass
    return None


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------

def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def cudnn_version_str(v):
    """91900 -> '9.19.0' (cuDNN >= 9: major*10000 + minor*100 + patch; 8.x: major*1000 + ...)."""
    if not v:
        return None
    if v >= 90000:
        return "%d.%d.%d" % (v // 10000, v // 100 % 100, v % 100)
    return "%d.%d.%d" % (v // 1000, v // 100 % 10, v % 100)


def info_line(args, k, v):
    if k.endswith("flop_per_image"):
        return "%.4g GFLOP" % (v / 1e9)
    if k == "matmul_bf16_flops":
        return "%.1f TFLOP/s (%dx%dx%d bf16, median of %d)" % (
            v / 1e12, args.matmul_n, args.matmul_n, args.matmul_n, args.matmul_reps)
    if k == "floor_img_s":
        return "%.0f img/s (matmul rate / train FLOP per image)" % v
    if k == "cudnn" and v:
        return "%d (%s)" % (v, cudnn_version_str(v))
    if k in ("time_s", "time_budget_s", "compile_timeout_s"):
        return "%.1f s" % v
    return v


MEM_LEGEND = ("# GiB: peak = max allocated while timed (reset after warm-up); rsrv = max reserved "
              "while timed (allocator cache incl.); step2+ = max allocated after the first step "
              "(covers CUDA-graph recording: the fair figure where cudagraphs); +wu = max "
              "allocated from model build on")


def print_report(args, info, results, skipped):
    for k in ("device", "torch", "cuda", "cudnn", "cudnn_libdir", "cudnn_loaded_from", "mode",
              "model", "params", "image_size", "fwd_flop_per_image", "train_flop_per_image",
              "matmul_bf16_flops", "floor_img_s", "tf32", "inductor_cache", "time_budget_s",
              "compile_timeout_s", "time_s"):
        if k in info:
            print("# %-20s %s" % (k, info_line(args, k, info[k])))
    print("#")
    print("# %-30s %5s %9s %9s %7s %7s %7s %7s %7s %9s %9s  %s" %
          ("variant", "batch", "img/s", "ms/step", "peak", "rsrv", "step2+", "+wu", "%floor",
           "compile s", "warm-up s", "note"))
    for r in results:
        note = r.get("error", "")
        if not note and "loss" in r:
            note = "loss %.4f, warm-up %d, %dx%d timed steps%s" % (
                r["loss"], r["warmup_steps"], r["windows"], r["steps_per_window"],
                "; cudagraphs: read step2+/rsrv" if r.get("cudagraphs") else "")
        print("  %-30s %5d %9s %9s %7s %7s %7s %7s %7s %9s %9s  %s" % (
            r["variant"], r["batch"], fmt(r.get("img_s"), ".1f"), fmt(r.get("ms_step"), ".3f"),
            fmt(r.get("peak_gib"), ".3f"), fmt(r.get("reserved_gib"), ".3f"),
            fmt(r.get("peak_after_first_gib"), ".3f"), fmt(r.get("peak_incl_warmup_gib"), ".3f"),
            fmt(r.get("pct_floor"), ".1f"), fmt(r.get("compile_s"), ".1f"),
            fmt(r.get("warmup_s"), ".1f"), note))
    for s in skipped:
        print("# skipped %-26s %5d  %s" % (s["variant"], s["batch"], s["note"]))
    if info.get("mode") == "cuda":
        print(MEM_LEGEND)
    doc = dict(info)
    doc["results"] = results
    doc["skipped"] = skipped
    line = json.dumps(doc, sort_keys=True, allow_nan=False)
    print("JSON " + line)
    if args.json_out:
        with open(args.json_out, "w") as f:
            f.write(line + "\n")


def inductor_cache_state():
    """Inductor's on-disk cache (TORCHINDUCTOR_CACHE_DIR or /tmp/torchinductor_<user>) and
    whether it already held files: a warm cache makes compile_s far shorter than a first
    compilation, so the table must say which one it measured."""
    d = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not d:
        try:
            import getpass  # noqa: PLC0415
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 -- no passwd entry in some containers
            user = "unknown"
        d = os.path.join(tempfile.gettempdir(), "torchinductor_" + user)
    warm = os.path.isdir(d) and any(os.scandir(d))
    return "%s (%s at start)" % (d, "warm: had files" if warm else "cold: empty or absent")


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
    p.add_argument("--accum", type=int, default=1,
                   help="CPU mode: gradient accumulation, A batches of --batch a step (each "
                        "(loss / A).backward(), one optimizer.step()); img/s counts A x batch")
    p.add_argument("--clip", type=float, default=0.0,
                   help="CPU mode: torch.nn.utils.clip_grad_norm_(params, X) before each "
                        "optimizer step, as cogpu-bench train --clip-grad-norm X (0 = off)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="CPU mode: an AveragedModel EMA of the weights with decay D updated after "
                        "each optimizer step, as cogpu-bench train --ema-decay D (0 = off)")
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
                        "skips remaining variants with a note; give max-autotune ~150 s per "
                        "batch size")
    p.add_argument("--compile-timeout", type=float, default=300.0,
                   help="GPU: cut a compile variant's first step (compilation + autotuning) "
                        "off after this many seconds, or when the budget runs out if sooner, "
                        "and record it as skipped (default 300)")
    p.add_argument("--print-cudnn-libdir", action="store_true",
                   help="print the nvidia-cudnn wheel's lib directory (nothing if none) and "
                        "exit 0; needs neither torch nor a GPU")
    p.add_argument("--matmul-n", type=int, default=8192,
                   help="GPU: n of the n x n x n bf16 matmul for the floor (default 8192)")
    p.add_argument("--matmul-reps", type=int, default=10,
                   help="GPU: timed matmuls, median taken (default 10)")
    p.add_argument("--no-matmul", action="store_true", help="GPU: skip the matmul floor")
    p.add_argument("--seed", type=int, default=1234,
                   help="seed for weights and synthetic data (default 1234)")
    p.add_argument("--json-out", default=None, help="also write the JSON object to this file")
    args = p.parse_args(argv)
    if args.print_cudnn_libdir:  # main() returns before anything touches CUDA
        return args

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
    if args.compile_timeout <= 0 or args.time_budget <= 0:
        p.error("--compile-timeout and --time-budget must be > 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.print_cudnn_libdir:  # also reached when main() is called with argv
        d = cudnn_libdir()
        if d:
            print(d)
        return 0
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
        info["cudnn_libdir"] = cudnn_libdir()
        info["tf32"] = tf32_settings()
        if "compile_bf16" in args.variants:
            info["compile_modes"] = args.compile_modes
            info["compile_timeout_s"] = args.compile_timeout
            info["inductor_cache"] = inductor_cache_state()
        run_gpu(args, deadline, results, skipped, info)  # sets cudnn_loaded_from
    else:
        info["device"] = "cpu (%s)" % (platform.processor() or platform.machine())
        info["cudnn"] = None
        info["cudnn_libdir"] = cudnn_libdir()
        info["mkldnn"] = bool(torch.backends.mkldnn.is_available())
        run_cpu(args, deadline, results, skipped)
    info["time_s"] = time.perf_counter() - t0
    print_report(args, info, results, skipped)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
