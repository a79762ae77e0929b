#!/usr/bin/env bash
# --prom-out: the file is valid Prometheus text exposition (promtool check metrics when
# Debian's prometheus package is installed — scripts/common.sh installs it — and always the
# strict parser below), labelled by rank/host/gpu with the cogpu_ prefix and units in the names,
# rewritten atomically (no temporary left behind).
set -euo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
$MPIRUN -np 2 $BIN train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --batch 2 \
  --steps 20 --report-every 10 --train-samples 64 --val-samples 0 --progress off --threads 1 \
  --prom-out "$T/cogpu.prom" > /dev/null
ls "$T"
[ "$(ls "$T" | wc -l)" -eq 1 ] || { echo "FAIL: temporary files left"; exit 1; }
if command -v promtool > /dev/null; then
  promtool check metrics < "$T/cogpu.prom"
  echo "PASS promtool check metrics"
else
  echo "promtool not installed: the strict parser alone decides"
fi
python3 - "$T/cogpu.prom" <<'PY'
import math, re, sys
# The text exposition format, strictly: HELP/TYPE before the samples of a family, names
# [a-zA-Z_:][a-zA-Z0-9_:]*, labels name="escaped value" separated by commas, a float value,
# no duplicate series, every family declared, our naming rules (cogpu_ prefix, unit suffix).
name_re = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
sample_re = re.compile(r"^(%s)(\{(.*)\})? ([^ ]+)$" % name_re)
label_re = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')
help_, type_, seen = {}, {}, set()
units = ("_seconds", "_ratio", "_bytes_per_second", "_images_per_second", "_rank", "_step",
         "_steps_planned", "_loss", "_finished", "_ranks")
for n, line in enumerate(open(sys.argv[1]).read().split("\n")[:-1], 1):
    if line.startswith("# HELP "):
        name = line.split()[2]
        assert name not in help_, "line %d: second HELP for %s" % (n, name)
        help_[name] = n
    elif line.startswith("# TYPE "):
        _, _, name, kind = line.split()
        assert kind in ("gauge", "counter", "untyped", "histogram", "summary"), line
        assert name not in type_, "line %d: second TYPE for %s" % (n, name)
        type_[name] = n
    elif line.startswith("#") or not line:
        raise AssertionError("line %d: stray line %r" % (n, line))
    else:
        m = sample_re.match(line)
        assert m, "line %d: not a sample: %r" % (n, line)
        name, labels, value = m.group(1), m.group(3) or "", m.group(4)
        assert name in type_ and type_[name] < n, "line %d: %s has no TYPE before it" % (n, name)
        assert name.startswith("cogpu_"), name
        assert name.endswith(units), "line %d: %s has no unit suffix" % (n, name)
        float(value)
        pos, keys = 0, []
        while pos < len(labels):
            lm = label_re.match(labels, pos)
            assert lm, "line %d: bad labels %r" % (n, labels)
            keys.append(lm.group(1))
            pos = lm.end()
        assert len(keys) == len(set(keys)), "line %d: repeated label" % n
        series = (name, labels)
        assert series not in seen, "line %d: duplicate series" % n
        seen.add(series)
        if keys:
            assert keys == ["rank", "host", "gpu"], "line %d: labels %r" % (n, keys)
ranks = {s[1].split(",")[0] for s in seen if s[0] == "cogpu_step_seconds"}
assert ranks == {'rank="0"', 'rank="1"'}, ranks
assert "cogpu_gpu_busy_ratio" not in type_, "gpu_busy must be absent on the cpu backend"
print("PASS strict exposition-format check: %d series in %d families" % (len(seen), len(type_)))
PY
