# emunodes.sh: several cluster "nodes" emulated on one Linux machine, for tests and benches.
#
# Each node is a holder process in its own UTS namespace (its own hostname) and network
# namespace (its own interface and address; loopback of its own). The nodes hang off a private
# bridge in the host's namespace by veth pairs, on a /24 of 10.231.0.0/16 that no one else here
# uses, so ranks on different nodes talk over real TCP through the kernel, never shared memory,
# and nothing leaves the machine. The host's end of the bridge is .1, node K (0-based) is .(10+K).
# Needs root (CI and sessions run as root) and iproute2 + util-linux (unshare, nsenter).
#
# Source it, then:
#   cg_nodes_up N [NAME]   make N nodes called NAME0..NAME(N-1) (NAME default cgnode); returns 1
#                          with the reason in CG_NODES_WHY when namespaces cannot be made here
#   cg_node_exec K CMD...  run CMD inside node K (its hostname, its network)
#   cg_node_pid K          the holder's pid (nsenter -t PID --uts --net enters node K)
#   cg_nodes_mpirun_args   print the Open MPI flags that launch on the nodes: the hostfile, the
#                          rsh agent, TCP for Open MPI's own traffic and the ranks' (shared
#                          memory stays allowed between ranks of the same node, as on a cluster)
#   cg_nodes_down          end every process inside the nodes, remove the bridge and state
# After cg_nodes_up: CG_NODES_DIR (state: hostfile, rsh-agent, per-node pid files),
# CG_NODES_NET (e.g. 10.231.57), CG_NODE_NAMES and CG_NODE_ADDRS (arrays), CG_NODES_HOSTADDR.
# Slots per node in the hostfile: CG_NODES_SLOTS (default 4).
#
# Open MPI's rsh launcher calls the agent as `agent [ssh options] HOST COMMAND...`; the agent
# (written into CG_NODES_DIR) runs COMMAND with /bin/sh inside HOST's namespaces, as ssh runs
# it in the remote user's shell. A killed test leaves its nodes behind: the next cg_nodes_up
# removes nodes whose owner process has gone.

CG_NODES_DIR="" CG_NODES_NET="" CG_NODES_WHY="" CG_NODES_HOSTADDR="" CG_NODES_BR=""
CG_NODE_NAMES=() CG_NODE_ADDRS=()

_cg_nodes_fail() { CG_NODES_WHY=$*; cg_nodes_down; return 1; }

# the pids of every process in the network namespace of holder pid $1 (the holder included);
# nothing unless $1 is still our holder (a sleep) in a namespace that is not the host's: a dead
# holder's pid may belong to any process by now
_cg_nodes_members() {
  local ns p
  ns=$(readlink "/proc/$1/ns/net" 2> /dev/null) || return 0
  [ "$ns" != "$(readlink /proc/1/ns/net)" ] && [ "$ns" != "$(readlink /proc/$$/ns/net)" ] ||
    return 0
  grep -qzx "sleep" "/proc/$1/cmdline" 2> /dev/null || return 0
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/net" 2> /dev/null)" = "$ns" ] && echo "${p#/proc/}"
  done
  return 0
}

# removes the nodes described by state directory $1 (its pid files and bridge name)
_cg_nodes_remove() {
  local d=$1 f pids
  for f in "$d"/node*.pid; do
    [ -f "$f" ] || continue
    pids=$(_cg_nodes_members "$(cat "$f")")
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill -9 $pids 2> /dev/null
  done
  [ -f "$d/bridge" ] && ip link del "$(cat "$d/bridge")" 2> /dev/null
  rm -rf "$d"
}

# leftovers of runs that were killed before cg_nodes_down
_cg_nodes_reap() {
  local d owner
  for d in /tmp/cg-nodes.*; do
    [ -d "$d" ] || continue
    owner=$(cat "$d/owner" 2> /dev/null)
    [ -n "$owner" ] && kill -0 "$owner" 2> /dev/null && continue
    # no owner yet: another cg_nodes_up between its mktemp and writing the owner
    [ -z "$owner" ] && [ -n "$(find "$d" -maxdepth 0 -mmin -1)" ] && continue
    _cg_nodes_remove "$d"
  done
}

# claims a free /24: the bridge name is the lock (ip link add fails when it exists)
_cg_nodes_bridge() {
  local i x
  for i in $(seq 0 199); do
    x=$(( ($$ + i) % 200 + 20 ))
    if ip link add "cgbr$x" type bridge 2> /dev/null; then
      CG_NODES_BR=cgbr$x CG_NODES_NET=10.231.$x CG_NODES_HOSTADDR=10.231.$x.1
      echo "$CG_NODES_BR" > "$CG_NODES_DIR/bridge"
      ip addr add "$CG_NODES_HOSTADDR/24" dev "$CG_NODES_BR" &&
        ip link set "$CG_NODES_BR" up && return 0
      return 1
    fi
  done
  return 1
}

# node K: holder process (unshare without --fork execs in place, so $! is inside), veth, address
_cg_node_make() {
  local k=$1 name=$2 addr=$3 pid host=${CG_NODES_BR}n$1
  unshare --uts --net /bin/sh -c "hostname '$name' && ip link set lo up && exec sleep 1000000" \
    < /dev/null > /dev/null 2>&1 &
  pid=$!
  disown "$pid" # no "Killed" notice from the shell when cg_nodes_down ends it
  echo "$pid" > "$CG_NODES_DIR/node$k.pid"
  for _ in $(seq 50); do # until the holder has named itself
    [ "$(nsenter -t "$pid" --uts hostname 2> /dev/null)" = "$name" ] && break
    sleep 0.05
  done
  [ "$(nsenter -t "$pid" --uts hostname 2> /dev/null)" = "$name" ] || return 1
  ip link add "$host" type veth peer name eth0 netns "$pid" &&
    ip link set "$host" master "$CG_NODES_BR" && ip link set "$host" up &&
    nsenter -t "$pid" --net ip addr add "$addr/24" dev eth0 &&
    nsenter -t "$pid" --net ip link set eth0 up
}

_cg_nodes_agent() {
  local f=$CG_NODES_DIR/rsh-agent k
  {
    echo '#!/bin/sh'
    echo '# rsh agent for Open MPI: agent [ssh options] HOST COMMAND... runs COMMAND in HOST'
    echo 'while [ $# -gt 0 ]; do case $1 in -*) shift ;; *) break ;; esac; done'
    echo 'host=$1; shift'
    echo 'case $host in'
    for k in "${!CG_NODE_NAMES[@]}"; do
      echo "  ${CG_NODE_NAMES[$k]}|${CG_NODE_ADDRS[$k]}) pid=\$(cat '$CG_NODES_DIR/node$k.pid') ;;"
    done
    echo '  *) echo "rsh-agent: no emulated node $host" >&2; exit 255 ;;'
    echo 'esac'
    echo 'exec nsenter -t "$pid" --uts --net /bin/sh -c "$*"'
  } > "$f"
  chmod +x "$f"
}

# TCP from the last node to node 0 across the bridge: a host whose firewall filters bridged
# traffic (br_netfilter with a FORWARD policy of DROP, as Docker sets up) cannot emulate nodes.
# Needs python3 for the listener; without it the check is left out.
_cg_nodes_probe() {
  local n=$1 lpid ok
  [ "$n" -ge 2 ] && command -v python3 > /dev/null || return 0
  cg_node_exec 0 python3 -c 'import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", 47999)); s.listen(1); s.settimeout(10)
c, _ = s.accept(); c.sendall(b"cg-nodes-ok")' > /dev/null 2>&1 &
  lpid=$!
  ok=$(cg_node_exec $((n - 1)) python3 -c 'import socket, sys, time
for _ in range(50):
    try:
        c = socket.create_connection((sys.argv[1], 47999), timeout=2)
        print(c.recv(64).decode())
        break
    except OSError:
        time.sleep(0.1)' "${CG_NODE_ADDRS[0]}" 2> /dev/null)
  kill "$lpid" 2> /dev/null
  wait "$lpid" 2> /dev/null
  [ "$ok" = cg-nodes-ok ]
}

cg_nodes_up() {
  local n=${1:?cg_nodes_up N [NAME]} name=${2:-cgnode} k c
  CG_NODES_WHY="" CG_NODE_NAMES=() CG_NODE_ADDRS=()
  [ "$(id -u)" -eq 0 ] || { CG_NODES_WHY="needs root (network and UTS namespaces)"; return 1; }
  for c in unshare nsenter ip; do
    command -v "$c" > /dev/null || { CG_NODES_WHY="no $c (util-linux, iproute2)"; return 1; }
  done
  _cg_nodes_reap
  CG_NODES_DIR=$(mktemp -d /tmp/cg-nodes.XXXXXX) || { CG_NODES_WHY="mktemp failed"; return 1; }
  echo $$ > "$CG_NODES_DIR/owner"
  _cg_nodes_bridge || _cg_nodes_fail "cannot make a bridge (ip link add type bridge)" || return 1
  for k in $(seq 0 $((n - 1))); do
    CG_NODE_NAMES+=("$name$k") CG_NODE_ADDRS+=("$CG_NODES_NET.$((10 + k))")
    _cg_node_make "$k" "$name$k" "$CG_NODES_NET.$((10 + k))" ||
      _cg_nodes_fail "cannot make node $name$k (unshare --uts --net, veth)" || return 1
    echo "$name$k slots=${CG_NODES_SLOTS:-4}" >> "$CG_NODES_DIR/hostfile"
  done
  _cg_nodes_agent
  _cg_nodes_probe "$n" ||
    _cg_nodes_fail "no TCP between the emulated nodes over the bridge" \
      "(is bridged traffic filtered by iptables/nftables here?)" ||
    return 1
}

cg_node_pid() { cat "$CG_NODES_DIR/node$1.pid"; }

cg_node_exec() {
  local k=$1
  shift
  nsenter -t "$(cg_node_pid "$k")" --uts --net "$@"
}

cg_nodes_mpirun_args() {
  echo "--hostfile $CG_NODES_DIR/hostfile --mca plm_rsh_agent $CG_NODES_DIR/rsh-agent" \
    "--mca oob_tcp_if_include $CG_NODES_NET.0/24 --mca btl_tcp_if_include $CG_NODES_NET.0/24" \
    "--mca btl self,vader,tcp"
}

cg_nodes_down() {
  [ -n "$CG_NODES_DIR" ] && [ -d "$CG_NODES_DIR" ] && _cg_nodes_remove "$CG_NODES_DIR"
  CG_NODES_DIR=""
  return 0
}
