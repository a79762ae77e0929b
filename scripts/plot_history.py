#!/usr/bin/env python3
"""plot_history.py: draws a cogpu-dist metrics history (--history-out, CKPT_DIR/history.jsonl).

usage: plot_history.py HISTORY.jsonl OUT.png [--title TEXT]

Three panels over the training step: loss (train over the window since the previous
validation, and validation), validation IoU (mIoU for a multi-class run) and training img/s.
Uses matplotlib with the Agg backend (no display needed; Debian: python3-matplotlib). A torn
last line (a run killed while appending) is skipped, as every reader of the history does.
Exit codes: 0 written, 1 the history cannot be used (missing, empty, no records), 2 usage, 3
matplotlib is missing."""
import json
import sys


def read_history(path):
    """The records of a history file; a line that is not a whole JSON object is skipped."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise SystemExit(f"plot_history.py: error: cannot read '{path}': {e.strerror}") from None
    recs = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn last line
        if isinstance(rec, dict) and isinstance(rec.get("step"), (int, float)):
            recs.append(rec)
    if not recs:
        print(f"plot_history.py: error: '{path}' holds no history records (is it a "
              "--history-out file of a run that validated?)", file=sys.stderr)
        sys.exit(1)
    recs.sort(key=lambda r: r["step"])
    return recs


def series(recs, key):
    xs, ys = [], []
    for r in recs:
        v = r.get(key)
        if isinstance(v, (int, float)):
            xs.append(r["step"])
            ys.append(v)
    return xs, ys


def main(argv):
    args = [a for a in argv[1:]]
    title = None
    if "--title" in args:
        i = args.index("--title")
        if i + 1 >= len(args):
            print("plot_history.py: error: --title needs a value", file=sys.stderr)
            return 2
        title = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2 or args[0] in ("-h", "--help"):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    src, out = args
    recs = read_history(src)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_history.py: error: matplotlib is not installed (Debian: apt-get install "
              "python3-matplotlib)", file=sys.stderr)
        return 3
    multi = any("val_miou" in r for r in recs)
    fig, ax = plt.subplots(1, 3, figsize=(12, 3.4), dpi=80)
    for key, label in (("train_loss", "train (window)"), ("val_loss", "validation")):
        xs, ys = series(recs, key)
        ax[0].plot(xs, ys, marker="o", ms=3, label=label)
    ax[0].set_title("loss")
    ax[0].legend()
    key = "val_miou" if multi else "val_iou"
    xs, ys = series(recs, key)
    ax[1].plot(xs, ys, marker="o", ms=3, color="tab:green")
    ax[1].set_title("validation mIoU" if multi else "validation IoU")
    xs, ys = series(recs, "img_per_s")
    ax[2].plot(xs, ys, marker="o", ms=3, color="tab:purple")
    ax[2].set_title("training img/s")
    ax[2].set_ylim(bottom=0)
    for a in ax:
        a.set_xlabel("step")
        a.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as e:
        print(f"plot_history.py: error: cannot write '{out}': {e.strerror}", file=sys.stderr)
        return 1
    print(f"plot_history.py: {len(recs)} records -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
