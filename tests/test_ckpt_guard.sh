#!/usr/bin/env bash
# Hardening of start-up (issue 11), CPU backend, real mpirun:
#  1. a run without --resume into a --checkpoint-dir that holds another run's checkpoints 10 and
#     20 refuses to start (exit 2, naming the directory, its newest checkpoint and the ways out)
#     and leaves them alone (before: rotation deleted them as "later steps");
#  2. --overwrite-checkpoints starts afresh there: the earlier run's files are moved, unchanged,
#     into DIR/previous-<time>/ (nothing deleted or replaced); inspect shows each file's run id;
#     a run resumed from the set-aside files into DIR keeps its lineage's id and rotates its own
#     files only (--keep 1), never the other run's;
#  3. a checkpoint with a valid CRC but an absurd epoch is refused by name and field (exit 2 for
#     --resume FILE; --resume DIR falls back to the next older one) instead of tripping an
#     assertion;
#  4. a start-up error every rank hits (a missing --data) is printed once, "(all 3 ranks)";
#  5. a shape that needs hundreds of GB is refused before allocating, with the estimate (exit 2);
#  6. a second run into a --checkpoint-dir another run is writing to (even with
#     --overwrite-checkpoints or --resume) is refused (exit 2, naming the holder); the first
#     run's checkpoints stay as they are, and after it ends the directory can be resumed; a
#     holder on another host is waited for.
set -uo pipefail
BIN=$1; MPIRUN="$2 --oversubscribe --bind-to none"; BUILD=$3
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
COMMON="train --backend cpu --model-base 4 --model-depth 2 --image-size 32 --train-samples 64
        --val-samples 0 --progress off --threads 1 --seed 7 --report-every 50 --batch 4"
source "$(dirname "${BASH_SOURCE[0]}")/runlib.sh" # run, want
has() { # has FILE...: every file exists
  local f
  for f in "$@"; do [ -f "$f" ] || { echo "FAIL: $f is gone"; ls -la "$(dirname "$f")"; fail=1; }; done
}
CK=$T/ck
P10=$CK/ckpt-0000000010.cgck P20=$CK/ckpt-0000000020.cgck P2=$CK/ckpt-0000000002.cgck

# ---- 1. a forgotten --resume ----
run earlier 0 $MPIRUN -np 2 $BIN $COMMON --steps 20 --checkpoint-every 10 --checkpoint-dir $CK --keep 5
has $P10 $P20
sum_before=$(md5sum $P10 $P20)
run forgot 2 $MPIRUN -np 2 $BIN $COMMON --steps 2 --checkpoint-dir $CK
want forgot "--checkpoint-dir $CK already holds 2 checkpoint(s), the newest $P20 (step 20)"
want forgot "--resume"
want forgot "--overwrite-checkpoints"
has $P10 $P20
[ "$(md5sum $P10 $P20)" = "$sum_before" ] || { echo "FAIL: the earlier checkpoints changed"; fail=1; }
[ "$(grep -c 'error:' $T/forgot.log)" -eq 1 ] || { echo "FAIL forgot: not one error line"; fail=1; }

# ---- 2. a new run there on purpose, lineages, resume ----
run fresh 0 $MPIRUN -np 2 $BIN $COMMON --steps 2 --checkpoint-dir $CK --overwrite-checkpoints --keep 1
want fresh "--overwrite-checkpoints: the earlier run's 3 file(s) in $CK (checkpoints, best, last, history.jsonl) moved to $CK/previous-"
PREV=$(ls -d $CK/previous-* 2> /dev/null | head -1)
has $P2 $PREV/ckpt-0000000010.cgck $PREV/ckpt-0000000020.cgck $PREV/last
[ ! -f $P10 ] && [ ! -f $P20 ] || { echo "FAIL: the earlier run's checkpoints are still in $CK"; ls $CK; fail=1; }
[ "$(cd $PREV && md5sum ckpt-0000000010.cgck ckpt-0000000020.cgck)" = "$(echo "$sum_before" | sed "s|$CK/||")" ] \
  && echo "  ok: set aside unchanged in $PREV" || { echo "FAIL: the set-aside checkpoints changed"; fail=1; }
id20=$($BIN inspect $PREV/ckpt-0000000020.cgck | sed -n 's/^run id: *\([0-9a-f]*\).*/\1/p')
id2=$($BIN inspect $P2 | sed -n 's/^run id: *\([0-9a-f]*\).*/\1/p')
if [ -n "$id20" ] && [ -n "$id2" ] && [ "$id20" != "$id2" ]; then
  echo "ok: inspect shows the run ids: the earlier run $id20, the new one $id2"
else echo "FAIL: run ids '$id20' and '$id2'"; $BIN inspect $P2; fail=1; fi
run resumed 0 $MPIRUN -np 2 $BIN $COMMON --steps 30 --checkpoint-every 5 --checkpoint-dir $CK \
    --resume $PREV/ckpt-0000000020.cgck --keep 1
P30=$CK/ckpt-0000000030.cgck
has $P30 $P2 $PREV/ckpt-0000000020.cgck
[ -f $CK/ckpt-0000000025.cgck ] && { echo "FAIL: the resumed run kept its lineage's older file"; ls $CK; fail=1; }
id30=$($BIN inspect $P30 | sed -n 's/^run id: *\([0-9a-f]*\).*/\1/p')
[ "$id30" = "$id20" ] && echo "ok: the resumed run keeps its lineage's run id $id30" \
  || { echo "FAIL: resumed run id '$id30', want '$id20'"; fail=1; }

# ---- 3. a header with a valid CRC and an absurd epoch ----
C3=$T/ck3
run mk3 0 $MPIRUN -np 2 $BIN $COMMON --steps 4 --checkpoint-every 2 --keep 5 --checkpoint-dir $C3
python3 - "$C3/ckpt-0000000004.cgck" << 'PY'
import struct, sys, zlib
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[56:64] = struct.pack("<q", 1 << 62)                       # epoch
b[252:256] = struct.pack("<I", zlib.crc32(bytes(b[:252])) & 0xffffffff)
open(p, "wb").write(b)
PY
# another global batch (1 x 8): the resume position is computed from the epoch (it overflowed)
run badepoch 2 $MPIRUN -np 1 $BIN $COMMON --batch 8 --steps 8 --checkpoint-dir $T/ck4 \
    --resume $C3/ckpt-0000000004.cgck
want badepoch "header field epoch out of range"
want badepoch "$C3/ckpt-0000000004.cgck"
run fallback 0 $MPIRUN -np 2 $BIN $COMMON --steps 6 --checkpoint-dir $C3 --resume
want fallback "header field epoch out of range"
want fallback "resumed from $C3/ckpt-0000000002.cgck"

# ---- 4. one line for an error every rank has ----
run nodata 2 $MPIRUN -np 3 $BIN $COMMON --steps 2 --data $T/nonexistent
want nodata "(all 3 ranks)"
[ "$(grep -c 'error:' $T/nodata.log)" -eq 1 ] && echo "  ok: one error line for 3 ranks" \
  || { echo "FAIL nodata: $(grep -c 'error:' $T/nodata.log) error lines"; fail=1; }

# ---- 5. a shape that cannot fit ----
run huge 2 $MPIRUN -np 2 $BIN train --backend cpu --model-base 1024 --model-depth 6 \
    --image-size 8192 --batch 65536 --steps 1 --progress off
want huge "not enough host memory: this run needs at least"
want huge "reduce --batch"

# ---- 6. one run at a time in a checkpoint directory ----
# a second run (here --overwrite-checkpoints or --resume, which the first refusal lets through)
# started while another writes there is refused, naming the holder, and changes nothing; the
# first runs until it is told to stop (SIGUSR1 to mpirun: checkpoint, exit 0), so the checks
# do not race its end; then the directory is free again
$MPIRUN -np 2 $BIN $COMMON --steps 1000000 --checkpoint-dir $T/busy --checkpoint-every 25 \
  --keep 1000 --test-slow-rank 0 --test-slow-ms 20 > $T/first.log 2>&1 &
first=$!
for _ in $(seq 300); do [ -s $T/busy/.cogpu-dist.lock ] && break; sleep 0.1; done
[ -s $T/busy/.cogpu-dist.lock ] || { echo "FAIL: the first run took no lock"; cat $T/first.log; fail=1; }
run second 2 $MPIRUN -np 2 $BIN $COMMON --steps 4 --checkpoint-dir $T/busy --overwrite-checkpoints
want second "is in use by another run (pid "
run second_resume 2 $MPIRUN -np 1 $BIN train --resume $T/busy --steps 2000000
want second_resume "is in use by another run"
kill -USR1 $first
( sleep 60; kill -9 $first ) > /dev/null 2>&1 &  # never holds the test's output open
guard=$!
wait $first || { echo "FAIL: the first run (exit $?):"; cat $T/first.log; fail=1; }
kill $guard 2> /dev/null
stop=$(sed -n 's/.*stopped by SIGUSR1 .* after step \([0-9]*\) of.*/\1/p' $T/first.log | tail -1)
[ -n "$stop" ] && [ -f $T/busy/ckpt-$(printf %010d "$stop").cgck ] &&
  echo "  ok: the first run stopped at step $stop, its checkpoint there" ||
  { echo "FAIL: the first run's last checkpoint"; cat $T/first.log; fail=1; }
if grep -q "checkpoint: step" $T/second.log $T/second_resume.log; then
  echo "FAIL: a refused run wrote a checkpoint"; fail=1
fi
run after 0 $MPIRUN -np 2 $BIN train --resume $T/busy --steps $((stop + 2)) --threads 1
want after "checkpoint: step $((stop + 2))"
# a holder on another host (a node that may have died: on NFS its lock outlives it until the
# server's lease ends) is waited for, up to 120 s; here it lets go after ~4 s
mkdir -p $T/remote
printf 'pid 1 on some-other-node since 2026-01-01 00:00:00 UTC\n' > $T/remote/.cogpu-dist.lock
flock $T/remote/.cogpu-dist.lock sleep 4 > /dev/null 2>&1 &
sleep 0.5
run remote 0 $MPIRUN -np 1 $BIN $COMMON --steps 2 --checkpoint-dir $T/remote --threads 1
want remote "is locked by pid 1 on some-other-node since 2026-01-01 00:00:00 UTC, on another host: waiting up to 120 s"
want remote "checkpoint: step 2"

exit $fail
