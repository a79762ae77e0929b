#!/usr/bin/env bash
# Every output file is replaced through atomic_file.h, never written through a planted link
# (issue 11). Symlinks to a victim file are planted at every name a writer has used or might use
# for its temporary — FILE.tmp, FILE.tmp<pid> for the next few thousand pids (covering the
# ranks mpirun is about to start), .FILE.tmp, .FILE.tmp.<x>, .FILE.<x> — for --prom-out,
# --metrics-out, --params-out, --trace-out, the checkpoints of --checkpoint-dir, pack's shard and
# predict's masks (there also at the mask's own name: predict used to open it directly). Then a
# tiny CPU run writes them all: the victim must be unchanged, every output a regular file with
# the right content, and nothing new left in the directories. --stats-out (an append-only log
# the user names) is appended to, never truncated. A FIFO or device node at an output path, a
# missing directory or a directory there is refused (exit 2) by pack, export and train, and left
# as it was; --stats-out (appended to) takes a FIFO and /dev/stdout, read live by cogpu-monitor.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
COMMON="--backend cpu --model-base 4 --model-depth 2 --image-size 32 --progress off --threads 1"

# plant WHAT FILE...: links at every plausible temporary name of each FILE to $T/victim.WHAT,
# a file of its own for each writer, so that a failure names the writer.
plant() {
  printf 'precious: must never change\n' > "$T/victim.$1"
  python3 - "$T/victim.$1" "${@:2}" <<'PY'
import os, sys
victim, files = sys.argv[1], sys.argv[2:]
try:
    last = int(open("/proc/sys/kernel/ns_last_pid").read())
except OSError:
    last = os.getpid()
for f in files:
    d, b = os.path.split(f)
    names = [b + ".tmp", "." + b + ".tmp", "." + b + ".tmp.000000", "." + b + ".000000",
             "." + b + ".XXXXXX"]
    names += [b + ".tmp%d" % p for p in range(last + 1, last + 4000)]
    for n in names:
        p = os.path.join(d, n)
        if not os.path.lexists(p):
            os.symlink(victim, p)
PY
}
# unexpected DIR NAME...: entries of DIR that are neither planted links nor in NAME...
unexpected() {
  local d=$1; shift
  python3 - "$T" "$d" "$@" <<'PY'
import os, sys
t, d, want = sys.argv[1], sys.argv[2], set(sys.argv[3:])
def planted(p):
    return os.path.islink(p) and os.readlink(p).startswith(os.path.join(t, "victim."))
bad = [n for n in sorted(os.listdir(d)) if n not in want and not planted(os.path.join(d, n))]
print(" ".join(bad))
PY
}
check_victim() { # check_victim WHAT DESCRIPTION
  if ! printf 'precious: must never change\n' | cmp -s - "$T/victim.$1"; then
    echo "FAIL $2: its victim was overwritten through a planted symlink; it now holds:"
    head -c 200 "$T/victim.$1" | tr -c '[:print:]\n' '.'; echo
    fail=1
  else
    echo "  ok: $2: victim unchanged"
  fi
}
regular() { # regular FILE...: each a regular file (not a link), non-empty
  for f in "$@"; do
    if [ -L "$f" ] || [ ! -f "$f" ] || [ ! -s "$f" ]; then
      echo "FAIL $f is not a non-empty regular file: $(ls -l "$f" 2>&1)"; fail=1
    fi
  done
}

# ---- training: --prom-out, --metrics-out, --params-out, --trace-out, checkpoints ----
O=$T/out; mkdir -p "$O/ck"
printf '{"earlier": "line"}\n' > "$O/stats.jsonl"
plant prom "$O/cogpu.prom"
plant metrics "$O/metrics.json"
plant params "$O/params.bin"
plant trace "$O/tl.rank0.json" "$O/tl.rank1.json"
plant ckpt "$O/ck/ckpt-0000000001.cgck" "$O/ck/ckpt-0000000002.cgck" "$O/ck/last"
# a link in the lock's place: the run goes on without its lock (a warning), never through it
printf 'precious: must never change\n' > "$T/victim.lock"
ln -s "$T/victim.lock" "$O/ck/.cogpu-dist.lock"
timeout 300 $MPIRUN -np 2 $BIN train $COMMON --batch 2 --steps 2 --report-every 1 \
  --train-samples 16 --val-samples 0 --prom-out "$O/cogpu.prom" --metrics-out "$O/metrics.json" \
  --params-out "$O/params.bin" --trace-out "$O/tl" --trace-steps 1:2 --stats-out "$O/stats.jsonl" \
  --checkpoint-dir "$O/ck" --checkpoint-every 1 --keep 5 > "$T/train.log" 2>&1
rc=$?
[ $rc -eq 0 ] || { echo "FAIL train: exit $rc"; tail -20 "$T/train.log"; fail=1; }
check_victim prom --prom-out
check_victim metrics --metrics-out
check_victim params --params-out
check_victim trace --trace-out
check_victim ckpt "checkpoints (--checkpoint-dir)"
check_victim lock "the checkpoint directory's lock"
grep -q "no lock against a second run" "$T/train.log" || { echo "FAIL no warning about the lock"; fail=1; }
regular "$O/cogpu.prom" "$O/metrics.json" "$O/params.bin" "$O/tl.rank0.json" "$O/tl.rank1.json" \
        "$O/ck/ckpt-0000000001.cgck" "$O/ck/ckpt-0000000002.cgck" "$O/ck/last"
grep -q '^cogpu_finished 1$' "$O/cogpu.prom" 2>/dev/null || { echo "FAIL prom content"; fail=1; }
python3 -c "import json,sys; m=json.load(open(sys.argv[1])); assert m['steps']==2" "$O/metrics.json" 2>/dev/null ||
  { echo "FAIL metrics content"; fail=1; }
[ "$(stat -c %s "$O/params.bin" 2>/dev/null)" = 30164 ] || { echo "FAIL params.bin size"; fail=1; }
$BIN inspect "$O/ck/ckpt-0000000002.cgck" > "$T/inspect.log" 2>&1 && grep -q "verdict:       valid" "$T/inspect.log" ||
  { echo "FAIL checkpoint not valid"; cat "$T/inspect.log"; fail=1; }
# --stats-out: appended to (the earlier line kept, then one line per report)
[ "$(head -1 "$O/stats.jsonl")" = '{"earlier": "line"}' ] && [ "$(wc -l < "$O/stats.jsonl")" -ge 3 ] ||
  { echo "FAIL --stats-out not appended to: $(wc -l < "$O/stats.jsonl") lines"; fail=1; }
left=$(unexpected "$O" cogpu.prom metrics.json params.bin tl.rank0.json tl.rank1.json stats.jsonl ck)
left="$left$(unexpected "$O/ck" ckpt-0000000001.cgck ckpt-0000000002.cgck last)"
[ -z "$left" ] || { echo "FAIL left behind: $left"; fail=1; }
# the mode follows the umask, as fopen would give
for f in cogpu.prom metrics.json params.bin tl.rank0.json ck/ckpt-0000000002.cgck; do
  m=$(stat -c %a "$O/$f" 2>/dev/null)
  [ "$m" = "$(printf '%o' $((0666 & ~0$(umask))))" ] || { echo "FAIL $f mode $m, umask $(umask)"; fail=1; }
done

# ---- pack ----
$BUILD/bench/cogpu-bench make-pngs --out "$T/pngs" --count 6 --image-size 32 --seed 3 > /dev/null
mkdir -p "$T/ds"
plant pack "$T/ds/train.cgds"
timeout 120 $BIN pack --images "$T/pngs/images" --masks "$T/pngs/masks" --out "$T/ds/train.cgds" \
  --image-size 32 > "$T/pack.log" 2>&1
rc=$?
[ $rc -eq 0 ] || { echo "FAIL pack: exit $rc"; cat "$T/pack.log"; fail=1; }
check_victim pack pack
regular "$T/ds/train.cgds"
left=$(unexpected "$T/ds" train.cgds)
[ -z "$left" ] || { echo "FAIL pack left behind: $left"; fail=1; }

# ---- predict: links at the masks' own names too ----
mkdir -p "$T/pred"
masks=()
for f in "$T"/pngs/images/*.png; do masks+=("$T/pred/$(basename "$f")"); done
plant predict "${masks[@]}"
for m in "${masks[@]}"; do ln -s "$T/victim.predict" "$m"; done
timeout 120 $MPIRUN -np 2 $BIN predict --backend cpu --checkpoint "$O/ck/ckpt-0000000002.cgck" \
  --input "$T/pngs/images" --output "$T/pred" > "$T/predict.log" 2>&1
rc=$?
[ $rc -eq 0 ] || { echo "FAIL predict: exit $rc"; cat "$T/predict.log"; fail=1; }
check_victim predict "predict's masks"
regular "${masks[@]}"
left=$(unexpected "$T/pred" $(cd "$T/pngs/images" && ls))
[ -z "$left" ] || { echo "FAIL predict left behind: $left"; fail=1; }

# ---- outputs that are not files: a FIFO or device node is never replaced by a regular file;
# those and a missing directory or a directory are usage errors (exit 2) naming the flag ----
N=$T/nodes; mkdir -p "$N/dir"
mkfifo "$N/fifo"
nodes=("$N/fifo")
if [ "$(id -u)" -eq 0 ] && mknod "$N/dev" c 1 3 2> /dev/null; then nodes+=("$N/dev"); fi # null
refused() { # refused WANT CMD...: exit 2 and one error line holding WANT
  timeout 120 "${@:2}" > "$T/refused.log" 2>&1
  local rc=$?
  if [ $rc -ne 2 ] || ! grep -q -- "$1" "$T/refused.log"; then
    echo "FAIL ${*:2}: exit $rc (want 2), want '$1':"; cat "$T/refused.log"; fail=1
  else
    echo "  ok: $(grep error: "$T/refused.log")"
  fi
}
PACK=($BIN pack --images "$T/pngs/images" --masks "$T/pngs/masks" --image-size 32)
EXPORT=($BIN export --checkpoint "$O/ck")
for n in "${nodes[@]}"; do
  kind="a FIFO"; [ -c "$n" ] && kind="a character device"
  refused "--out: '$n' is $kind: --out writes a regular file by renaming" "${PACK[@]}" --out "$n"
  refused "--out: '$n' is $kind: --out writes a regular file by renaming" "${EXPORT[@]}" --out "$n"
  refused "--metrics-out: '$n' is $kind" $MPIRUN -np 1 $BIN train $COMMON --steps 1 \
    --train-samples 8 --val-samples 0 --metrics-out "$n"
done
# the history a --checkpoint-dir holds by default is checked like --history-out
mkdir -p "$N/hck"; mkfifo "$N/hck/history.jsonl"
refused "'$N/hck/history.jsonl' is a FIFO" $MPIRUN -np 1 $BIN train $COMMON --steps 1 \
  --train-samples 8 --val-samples 0 --checkpoint-dir "$N/hck"
[ -p "$N/hck/history.jsonl" ] || { echo "FAIL the default history's FIFO was replaced"; fail=1; }
rm -rf "$N/hck"
# the timeline is one file per rank: rank 1's is checked by rank 1
mkfifo "$N/tl.rank1.json"
refused "--trace-out: '$N/tl.rank1.json' is a FIFO: --trace-out writes a regular file by \
renaming a temporary over it (rank 1)" $MPIRUN -np 2 $BIN train $COMMON --steps 2 \
  --train-samples 8 --val-samples 0 --trace-out "$N/tl" --trace-steps 1:2
[ -p "$N/tl.rank1.json" ] || { echo "FAIL rank 1's timeline FIFO was replaced"; fail=1; }
rm -f "$N/tl.rank1.json"
[ -p "$N/fifo" ] || { echo "FAIL the FIFO was replaced: $(ls -l "$N/fifo")"; fail=1; }
[ ${#nodes[@]} -lt 2 ] || [ -c "$N/dev" ] || { echo "FAIL the device was replaced"; fail=1; }
refused "--out: directory '$N/nodir' of '$N/nodir/x.cgds' does not exist" "${PACK[@]}" \
  --out "$N/nodir/x.cgds"
refused "--out: directory '$N/nodir' of" "${EXPORT[@]}" --out "$N/nodir/m.safetensors"
refused "--out: '$N/dir' is a directory" "${PACK[@]}" --out "$N/dir"
refused "--out: '$N/dir' is a directory" "${EXPORT[@]}" --out "$N/dir"
# an output never replaces input data: an image, a checkpoint, or (except pack's) a shard
IMG=$(ls "$T/pngs/images"/*.png | head -1); MSK=$(ls "$T/pngs/masks"/*.png | head -1)
CKF=$(ls "$O/ck"/ckpt-*.cgck | head -1)
cp "$IMG" "$T/img.keep"; cp "$MSK" "$T/msk.keep"; cp "$CKF" "$T/ck.keep"
refused "--out: '$IMG' is a PNG image (input data)" "${PACK[@]}" --out "$IMG"
refused "--out: '$CKF' is a cogpu-dist checkpoint (input data)" "${EXPORT[@]}" --out "$CKF"
refused "--metrics-out: '$CKF' is a cogpu-dist checkpoint" $MPIRUN -np 1 $BIN train $COMMON \
  --steps 1 --train-samples 8 --val-samples 0 --metrics-out "$CKF"
refused "--history-csv: '$MSK' is a PNG image" $MPIRUN -np 1 $BIN train $COMMON --steps 1 \
  --train-samples 8 --val-samples 0 --history-csv "$MSK"
refused "--stats-out: '$IMG' is a PNG image" $MPIRUN -np 1 $BIN train $COMMON --steps 1 \
  --train-samples 8 --val-samples 0 --stats-out "$IMG"
cmp -s "$IMG" "$T/img.keep" && cmp -s "$MSK" "$T/msk.keep" && cmp -s "$CKF" "$T/ck.keep" ||
  { echo "FAIL an input was changed by a refused output"; fail=1; }
"${PACK[@]}" --out "$N/s.cgds" > /dev/null && "${PACK[@]}" --out "$N/s.cgds" > /dev/null ||
  { echo "FAIL pack could not replace its own shard"; fail=1; }
refused "--json-out: '$N/s.cgds' is a .cgds shard" $BUILD/bench/cogpu-bench membw --reps 1 \
  --json-out "$N/s.cgds"
rm -f "$N/s.cgds"
left=$(unexpected "$N" fifo dev dir)$(unexpected "$N/dir")
[ -z "$left" ] || { echo "FAIL refused outputs left behind: $left"; fail=1; }

# ---- --stats-out is appended to, so a FIFO or a character device is a fine target: live into
# cogpu-monitor through a FIFO or /dev/stdout; a reader that goes is a warning, not the end ----
TINY=($MPIRUN -np 1 $BIN train $COMMON --batch 2 --train-samples 16 --val-samples 0 --steps 4
      --report-every 2)
(timeout 120 $BUILD/cogpu-monitor --once "$N/fifo" > "$T/mon.log" 2>&1 &)
sleep 1 # the monitor opens the FIFO first: a FIFO nobody reads is refused, never waited for
timeout 120 "${TINY[@]}" --stats-out "$N/fifo" > "$T/fifo.log" 2>&1 ||
  { echo "FAIL --stats-out FIFO: exit $?"; cat "$T/fifo.log"; fail=1; }
for i in $(seq 50); do grep -q "step 4/4" "$T/mon.log" && break; sleep 0.1; done
grep -q "step 4/4 (100%) finished" "$T/mon.log" ||
  { echo "FAIL cogpu-monitor on the --stats-out FIFO:"; cat "$T/mon.log" "$T/fifo.log"; fail=1; }
timeout 120 "${TINY[@]}" --stats-out /dev/stdout 2> /dev/null |
  timeout 60 $BUILD/cogpu-monitor --once /dev/stdin > "$T/mon2.log" 2>&1
grep -q "step 4/4 (100%) finished" "$T/mon2.log" ||
  { echo "FAIL --stats-out /dev/stdout | cogpu-monitor /dev/stdin:"; cat "$T/mon2.log"; fail=1; }
(timeout 120 head -c 1 "$N/fifo" > /dev/null &)
sleep 1
timeout 120 "${TINY[@]}" --steps 30 --report-every 1 --stats-out "$N/fifo" > "$T/gone.log" 2>&1 ||
  { echo "FAIL --stats-out FIFO whose reader goes: exit $?"; cat "$T/gone.log"; fail=1; }
grep -q -- "--stats-out: its reader has gone" "$T/gone.log" ||
  { echo "FAIL no warning for a --stats-out reader that went:"; cat "$T/gone.log"; fail=1; }
[ -p "$N/fifo" ] || { echo "FAIL --stats-out replaced the FIFO"; fail=1; }
refused "--prom-out: '$N/fifo' is a FIFO" "${TINY[@]}" --prom-out "$N/fifo"
# a record that cannot be written (a full disk: /dev/full) is said once; training goes on
if [ -c /dev/full ]; then
  timeout 120 "${TINY[@]}" --report-every 1 --stats-out /dev/full > "$T/full.log" 2>&1 ||
    { echo "FAIL --stats-out /dev/full: exit $?"; cat "$T/full.log"; fail=1; }
  [ "$(grep -c -- "--stats-out: a record could not be written" "$T/full.log")" -eq 1 ] ||
    { echo "FAIL --stats-out /dev/full: not warned exactly once:"; cat "$T/full.log"; fail=1; }
fi

[ $fail -eq 0 ] && echo "test_atomic_outputs: all passed"
exit $fail
