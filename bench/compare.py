#!/usr/bin/env python3
"""compare.py: ratio tables of `cogpu-bench train` against bench/peer_torch.py, both measured in
the same run on the same machine.

usage: compare.py OURS.json PEER.json [PEER.json ...] [--json-out FILE]

Several PEER files (e.g. the bf16 variants at batch 32,64 and eager fp16/fp32 at 32, run as
separate peer_torch.py invocations in the same session) are merged: their rows are pooled, the
header comes from the first one, and a warning is printed if they disagree on device, torch or
cuDNN.

Throughput, ratio = ours img/s / peer img/s at the same batch:
  CPU: each of our thread counts against PyTorch's cpu_fp32_t<threads>.
  GPU: our bf16 against eager_bf16 and every compile_bf16[<mode>] row (default, max-autotune, ...);
       fp16 against eager_fp16; fp32 against eager_fp32 (PyTorch's default TF32 convolutions).
       % floor = our img/s against the peer's measured bf16 matmul rate.
Memory (GPU, GiB), each of our rows against the same peer rows:
  ours       mem_gib: what our backend allocates; ours dev: mem_device_gib, a device-level figure,
             shown when our JSON has it.
  peer peak  peak_gib: max allocated while timed, the peak reset after warm-up (the fair figure);
             for CUDA-graph modes (cudagraphs: true) peak_after_first_gib instead, because the
             allocator does not see a graph's memory on replay (marked *).
  peer rsrv  reserved_gib: what PyTorch's allocator holds while timed, its cache included.
  peer +wu   peak_incl_warmup_gib: from model build on, cuDNN trial workspaces and autotuning
             included: the figure older reports quoted, for reference.
  A peer JSON from before these fields has only peak_gib, which then included warm-up: it is
  shown under +wu. ours/peak and ours/rsrv are the ratios.
cuDNN: ours from an optional cudnn_version (top level or in a result row), PyTorch's from its
`cudnn`; the header says when they differ.
Output: '#' lines and fixed-width tables, then one line 'JSON {...}' (also --json-out FILE).
Exit status 0; 1 if no row of ours could be compared; 2 on bad usage."""
import json
import sys

PEER_NAMES = {"fp32": ("eager_fp32",), "bf16": ("eager_bf16", "compile_bf16"),
              "fp16": ("eager_fp16",)}


def load(path):
    with open(path) as f:
        return json.load(f)


def merge_peers(paths):
    """One peer document from several peer_torch.py JSON files of the same session."""
    docs = [load(p) for p in paths]
    merged = dict(docs[0])
    merged["results"] = [r for d in docs for r in d.get("results", [])]
    merged["skipped"] = [s for d in docs for s in d.get("skipped", [])]
    for k in ("floor_img_s", "cudnn_loaded_from", "cudnn_libdir"):
        merged[k] = next((d[k] for d in docs if d.get(k)), None)
    for k in ("device", "torch", "cudnn", "base", "depth", "image_size"):
        vals = sorted({str(d.get(k)) for d in docs})
        if len(vals) > 1:
            print("# WARNING: the peer files disagree on %s: %s" % (k, ", ".join(vals)))
    return merged


def cudnn_str(v):
    """91400 -> '9.14.0 (91400)'; cuDNN >= 9 encodes major*10000 + minor*100 + patch, 8.x
    major*1000 + minor*100 + patch."""
    if not v:
        return "unknown"
    if v >= 90000:
        return "%d.%d.%d (%d)" % (v // 10000, v // 100 % 100, v % 100, v)
    return "%d.%d.%d (%d)" % (v // 1000, v // 100 % 10, v % 100, v)


def our_cudnn(ours):
    v = ours.get("cudnn_version")
    for r in ours.get("results", []):
        v = v or r.get("cudnn_version")
    return v


def f3(v):
    return "-" if v is None else "%.3f" % v


def is_variant(peer_variant, name):
    """compile_bf16 matches compile_bf16[max-autotune] and the like, not a longer name."""
    return peer_variant == name or peer_variant.startswith(name + "[")


def candidates(ours_row, backend, peer_rows):
    if backend == "cpu":
        return [p for p in peer_rows
                if p.get("threads") == ours_row.get("threads") and p["batch"] == ours_row["batch"]]
    names = PEER_NAMES.get(ours_row.get("precision"), ())
    return [p for p in peer_rows if p["batch"] == ours_row["batch"]
            and any(is_variant(p["variant"], n) for n in names)]


def label(r, backend):
    if backend == "cpu":
        return "cpu fp32 t%d b%d" % (r.get("threads", 0), r["batch"])
    prec = r["precision"]
    if prec == "fp32" and "tf32" in r:  # optional field: our fp32 may or may not use TF32
        prec = "fp32 tf32 %s" % ("on" if r["tf32"] else "off")
    return "%s b%d graph %s" % (prec, r["batch"], "on" if r.get("cuda_graph") else "off")


def peer_memory(p):
    """(fair peak, marked as after-step-1, reserved, incl. warm-up) of a peer row."""
    if "reserved_gib" not in p and "peak_incl_warmup_gib" not in p:
        return None, False, None, p.get("peak_gib")  # old peer: its peak included warm-up
    if p.get("cudagraphs") and p.get("peak_after_first_gib") is not None:
        return p["peak_after_first_gib"], True, p.get("reserved_gib"), p.get("peak_incl_warmup_gib")
    return p.get("peak_gib"), False, p.get("reserved_gib"), p.get("peak_incl_warmup_gib")


def has_memory(p):
    """False for CPU rows, which have no allocator figures."""
    pk, _, rsv, wu = peer_memory(p)
    return any(v is not None for v in (pk, rsv, wu))


def ratio(a, b):
    return a / b if a is not None and b else None


def print_header(ours, peer, cud_ours, cud_peer):
    print("# ours: cogpu-bench %s, backend %s, UNet base %s depth %s, %sx%s" % (
        ours.get("bench", "train"), ours.get("backend"), ours.get("model_base"),
        ours.get("model_depth"), ours.get("image_size"), ours.get("image_size")))
    print("# peer: PyTorch %s on %s, %s" % (peer.get("torch"), peer.get("device"),
                                            peer.get("date_utc", "date unknown")))
    same = (ours.get("model_base"), ours.get("model_depth"), ours.get("image_size")) == \
        (peer.get("base"), peer.get("depth"), peer.get("image_size"))
    if not same:
        print("# WARNING: the models differ: ours base %s depth %s %spx, peer base %s depth %s %spx"
              % (ours.get("model_base"), ours.get("model_depth"), ours.get("image_size"),
                 peer.get("base"), peer.get("depth"), peer.get("image_size")))
    if ours.get("backend") != "cpu":
        where = peer.get("cudnn_loaded_from") or peer.get("cudnn_libdir")
        print("# cuDNN: ours %s, PyTorch %s%s" % (cudnn_str(cud_ours), cudnn_str(cud_peer),
                                                  ", loaded from %s" % where if where else ""))
        if cud_ours and cud_peer and cud_ours != cud_peer:
            print("# cuDNN differs: ours %s, PyTorch %s" % (cudnn_str(cud_ours),
                                                            cudnn_str(cud_peer)))
    if peer.get("floor_img_s"):
        print("# floor: %.0f img/s (peer's bf16 matmul rate / train FLOP per image)"
              % peer["floor_img_s"])


def throughput_table(ours, ok_rows, peer_rows, floor):
    backend = ours.get("backend")
    rows, unmatched = [], []
    print("#")
    print("# %-26s %-30s %10s %10s %7s %8s %9s" % ("ours", "peer", "ours img/s", "peer img/s",
                                                   "ratio", "% floor", "compile s"))
    for r in ok_rows:
        cands = candidates(r, backend, peer_rows)
        lab = label(r, backend)
        if not cands:
            unmatched.append(lab)
        for p in cands:
            rt = r["img_per_s"] / p["img_s"]
            pf = 100.0 * r["img_per_s"] / floor if floor else None
            print("  %-26s %-30s %10.1f %10.1f %7.2f %8s %9s" % (
                lab, p["variant"], r["img_per_s"], p["img_s"], rt,
                "-" if pf is None else "%.1f" % pf,
                "-" if p.get("compile_s") is None else "%.1f" % p["compile_s"]))
            pk = peer_memory(p)[0]
            rows.append({"ours": lab, "peer": p["variant"], "precision": r.get("precision"),
                         "batch": r["batch"], "cuda_graph": r.get("cuda_graph"),
                         "ours_img_s": r["img_per_s"], "peer_img_s": p["img_s"], "ratio": rt,
                         "ours_gib": r.get("mem_gib"), "peer_gib": pk, "pct_floor": pf,
                         "peer_compile_s": p.get("compile_s")})
    return rows, unmatched


def memory_table(ours, ok_rows, peer_rows):
    backend = ours.get("backend")
    pairs = [(r, p) for r in ok_rows for p in candidates(r, backend, peer_rows)
             if has_memory(p)]
    if not pairs:
        return []
    dev = any(r.get("mem_device_gib") is not None for r in ok_rows)
    print("#")
    print("# memory, GiB: ours = what our backend allocates%s; peer peak = max allocated while "
          "timed, after warm-up (* after step 1: CUDA graphs); rsrv = allocator holdings; "
          "+wu = incl. warm-up" % (", ours dev = device-level" if dev else ""))
    print("# %-26s %-30s %8s %8s %9s %8s %8s %9s %9s" % (
        "ours", "peer", "ours", "ours dev", "peer peak", "rsrv", "+wu", "ours/peak", "ours/rsrv"))
    out = []
    for r, p in pairs:
        mine = r.get("mem_gib") if (r.get("mem_gib") or -1) >= 0 else None
        mdev = r.get("mem_device_gib")
        pk, after_first, rsv, wu = peer_memory(p)
        print("  %-26s %-30s %8s %8s %9s %8s %8s %9s %9s" % (
            label(r, backend), p["variant"], f3(mine), f3(mdev),
            f3(pk) + ("*" if after_first else " "), f3(rsv), f3(wu),
            f3(ratio(mine, pk)), f3(ratio(mine, rsv))))
        out.append({"ours": label(r, backend), "peer": p["variant"], "batch": r["batch"],
                    "ours_gib": mine, "ours_device_gib": mdev, "peer_peak_gib": pk,
                    "peer_peak_is_after_first_step": after_first, "peer_reserved_gib": rsv,
                    "peer_peak_incl_warmup_gib": wu, "ratio_peak": ratio(mine, pk),
                    "ratio_reserved": ratio(mine, rsv), "ratio_incl_warmup": ratio(mine, wu)})
    return out


def main(argv):
    out_path = None
    if "--json-out" in argv:
        i = argv.index("--json-out")
        if i + 1 >= len(argv):
            print(__doc__)
            return 2
        out_path = argv[i + 1]
        del argv[i:i + 2]
    if len(argv) < 2 or any(a.startswith("-") for a in argv):
        print(__doc__)
        return 2
    ours, peer = load(argv[0]), merge_peers(argv[1:])
    peer_rows = [r for r in peer.get("results", []) if r.get("img_s")]
    ok_rows = [r for r in ours.get("results", []) if r.get("ok")]
    cud_ours, cud_peer = our_cudnn(ours), peer.get("cudnn")
    floor = peer.get("floor_img_s")

    print_header(ours, peer, cud_ours, cud_peer)
    rows, unmatched = throughput_table(ours, ok_rows, peer_rows, floor)
    mem = memory_table(ours, ok_rows, peer_rows)
    for lab in unmatched:
        print("# no peer row for ours %s" % lab)
    for r in ours.get("results", []):
        if not r.get("ok"):
            print("# ours failed: %s" % label(r, ours.get("backend")))
    for s in peer.get("skipped", []):
        print("# peer skipped %s b%d: %s" % (s["variant"], s["batch"], s.get("note", "")))
    failed = [r for r in peer.get("results", []) if r.get("error")]
    for r in failed:
        print("# peer failed %s b%d: %s" % (r["variant"], r["batch"], r["error"][:160]))

    js = {"device": peer.get("device"), "torch": peer.get("torch"), "floor_img_s": floor,
          "cudnn_ours": cud_ours, "cudnn_peer": cud_peer,
          "cudnn_differs": bool(cud_ours and cud_peer and cud_ours != cud_peer),
          "rows": rows, "memory": mem, "unmatched": unmatched,
          "peer_skipped": peer.get("skipped", []),
          "peer_failed": [{"variant": r["variant"], "batch": r["batch"], "error": r["error"]}
                          for r in failed]}
    print("JSON " + json.dumps(js, sort_keys=True))
    if out_path:
        with open(out_path, "w") as f:
            json.dump(js, f, indent=1, sort_keys=True)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
