#!/usr/bin/env python3
"""compare.py: ratio table of `cogpu-bench train` against bench/peer_torch.py, both measured in
the same run on the same machine.

usage: compare.py OURS.json PEER.json [--json-out FILE]

CPU: our img/s per thread count against PyTorch's cpu_fp32_t<threads>.
GPU: each of our (precision, batch) rows against PyTorch's eager variant of the same precision
and batch, and bf16 also against torch.compile; peak memory ratio; % of the compute floor from
the peer's measured bf16 matmul rate."""
import json
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def main():
    args = sys.argv[1:]
    out_path = None
    if "--json-out" in args:
        i = args.index("--json-out")
        out_path = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        print(__doc__)
        return 2
    ours, peer = load(args[0]), load(args[1])
    peer_rows = [r for r in peer.get("results", []) if r.get("img_s")]
    rows = []
    floor = peer.get("floor_img_s")
    print("# %-24s %-26s %10s %10s %7s %9s %9s %8s" % ("ours", "peer", "ours img/s", "peer img/s",
                                                       "ratio", "ours GiB", "peer GiB", "% floor"))
    for r in ours["results"]:
        if not r.get("ok"):
            continue
        if ours["backend"] == "cpu":
            cands = [p for p in peer_rows if p.get("threads") == r["threads"] and p["batch"] == r["batch"]]
            label = "cpu fp32 t%d b%d" % (r["threads"], r["batch"])
        else:
            prec = r["precision"]
            names = {"fp32": ["eager_fp32"], "bf16": ["eager_bf16", "compile_bf16"],
                     "fp16": ["eager_fp16"]}[prec]
            cands = [p for p in peer_rows if p["batch"] == r["batch"]
                     and any(p["variant"].startswith(n) for n in names)]
            label = "%s b%d graph %s" % (prec, r["batch"], "on" if r.get("cuda_graph") else "off")
        for p in cands:
            ratio = r["img_per_s"] / p["img_s"]
            pf = 100.0 * r["img_per_s"] / floor if floor else None
            print("  %-24s %-26s %10.1f %10.1f %7.2f %9s %9s %8s" % (
                label, p["variant"], r["img_per_s"], p["img_s"], ratio,
                "%.3f" % r["mem_gib"] if r.get("mem_gib", -1) >= 0 else "-",
                "%.3f" % p["peak_gib"] if p.get("peak_gib") else "-",
                "%.1f" % pf if pf else "-"))
            rows.append({"ours": label, "peer": p["variant"], "ours_img_s": r["img_per_s"],
                         "peer_img_s": p["img_s"], "ratio": ratio, "ours_gib": r.get("mem_gib"),
                         "peer_gib": p.get("peak_gib"), "pct_floor": pf})
    js = {"device": peer.get("device"), "floor_img_s": floor, "rows": rows}
    print("JSON " + json.dumps(js))
    if out_path:
        with open(out_path, "w") as f:
            json.dump(js, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
