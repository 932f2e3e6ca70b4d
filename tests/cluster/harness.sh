#!/usr/bin/env bash
# Cluster test harness: munge, a one-node SLURM, PostgreSQL and an MLflow server (PostgreSQL
# backend, served artifacts) on 127.0.0.1, the tests marked `cluster`, then everything stopped.
# Needs root (it installs Debian packages and runs the daemons as their users). Usage:
#   tests/cluster/harness.sh [pytest args...]     (PYTHON=path/to/python, default .venv/bin/python)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
if [ "$(id -u)" -ne 0 ]; then
  echo "cluster harness: skipped, it needs root to install and start munge, SLURM and PostgreSQL"
  exit 0
fi
started=$(date +%s%N)
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null ||
  ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq slurm-wlm munge postgresql >/dev/null ||
    { echo "cluster harness: apt-get install slurm-wlm munge postgresql failed"; exit 1; }
fi
"$PY" -c "import psycopg2" 2>/dev/null || "$PY" -m pip install -q psycopg2-binary ||
  { echo "cluster harness: pip install psycopg2-binary failed"; exit 1; }
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

WORK=$(mktemp -d /tmp/segexp-cluster.XXXXXX)
chmod 755 "$WORK"
PIDS=()   # started daemons, stopped in reverse order; negative = a whole process group
cleanup() {
  local i pid
  # SLURM jobs first, while slurmctld still runs (their slurmstepd outlive slurmd otherwise).
  if [ -n "${SLURM_CONF:-}" ] && scontrol ping >/dev/null 2>&1; then
    scancel --quiet --user=root 2>/dev/null
    for _ in $(seq 1 60); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    kill -TERM -- "$pid" 2>/dev/null
  done
  for _ in $(seq 1 40); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 -- "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.5
  done
  for pid in "${PIDS[@]}"; do kill -KILL -- "$pid" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "cluster harness: $1"; for f in "$WORK"/*.log; do echo "== $f"; tail -20 "$f"; done; exit 1; }
wait_for() { # description, seconds, command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  fail "$what did not come up within ${secs}s"
}

# munge: its own key, socket and files under $WORK (leaves any system munged alone).
mkdir -p "$WORK/munge" "$WORK/munge-private" && chmod 755 "$WORK/munge" && chmod 700 "$WORK/munge-private"
KEY=$WORK/munge-private/munge.key
dd if=/dev/urandom of="$KEY" bs=1024 count=1 status=none
chmod 400 "$KEY" && chown -R munge:munge "$WORK/munge" "$WORK/munge-private"
MUNGE_SOCKET=$WORK/munge/munge.socket
setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F --socket="$MUNGE_SOCKET" \
  --key-file="$KEY" --pid-file="$WORK/munge-private/munged.pid" \
  --seed-file="$WORK/munge-private/munge.seed" --log-file="$WORK/munge-private/munged.log" \
  >"$WORK/munged.log" 2>&1 &
PIDS+=($!)
wait_for munged 20 test -S "$MUNGE_SOCKET"

# SLURM: one node on loopback; jobs stay known to scontrol for an hour (the sacct stand-in).
NODE=$(hostname -s)
mkdir -p "$WORK/slurm/state" "$WORK/slurm/spool"
cat >"$WORK/slurm/slurm.conf" <<CONF
ClusterName=segexp
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$WORK/slurm/state
SlurmdSpoolDir=$WORK/slurm/spool
SlurmctldPidFile=$WORK/slurm/slurmctld.pid
SlurmdPidFile=$WORK/slurm/slurmd.pid
SlurmctldLogFile=$WORK/slurm/slurmctld.log
SlurmdLogFile=$WORK/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=3600
KillWait=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
export SLURM_CONF=$WORK/slurm/slurm.conf
/usr/sbin/slurmctld -D -i -f "$SLURM_CONF" >"$WORK/slurmctld.log" 2>&1 &
PIDS+=($!)
wait_for slurmctld 30 scontrol ping
/usr/sbin/slurmd -D -N "$NODE" -f "$SLURM_CONF" >"$WORK/slurmd.log" 2>&1 &
PIDS+=($!)
wait_for "slurmd (node idle)" 30 bash -c "sinfo -h -o %T | grep -qx idle"

# PostgreSQL: a throwaway cluster, trust authentication on 127.0.0.1 only.
PGPORT=$(free_port)
mkdir -p "$WORK/pg" && chown postgres:postgres "$WORK/pg"
setpriv --reuid=postgres --regid=postgres --init-groups "$PGBIN/initdb" -D "$WORK/pg/data" \
  -U postgres --auth=trust >"$WORK/initdb.log" 2>&1 || fail "initdb failed"
setpriv --reuid=postgres --regid=postgres --init-groups "$PGBIN/postgres" -D "$WORK/pg/data" \
  -p "$PGPORT" -k "$WORK/pg" -c listen_addresses=127.0.0.1 -c max_connections=200 \
  >"$WORK/postgres.log" 2>&1 &
PIDS+=($!)
wait_for postgres 30 "$PGBIN/pg_isready" -h 127.0.0.1 -p "$PGPORT"
psql -q -h 127.0.0.1 -p "$PGPORT" -U postgres -c "CREATE DATABASE mlflow" || fail "createdb failed"
DB_URI=postgresql+psycopg2://postgres@127.0.0.1:$PGPORT/mlflow

# MLflow server in its own process group (it forks workers), stopped as a group.
MLPORT=$(free_port)
setsid "$PY" -m mlflow server --host 127.0.0.1 --port "$MLPORT" --workers 2 \
  --backend-store-uri "$DB_URI" --serve-artifacts --artifacts-destination "$WORK/artifacts" \
  >"$WORK/mlflow.log" 2>&1 &
PIDS+=(-$!)
wait_for "mlflow server" 120 "$PY" -c \
  "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
  "http://127.0.0.1:$MLPORT/health"
up_ms=$((($(date +%s%N) - started) / 1000000))
echo "cluster harness: up in $((up_ms / 1000)).$(printf %03d $((up_ms % 1000))) s (SLURM node $NODE," \
  "PostgreSQL :$PGPORT, MLflow http://127.0.0.1:$MLPORT, state in $WORK)"

export PATH=$ROOT/tests/cluster/bin:$PATH  # the sacct stand-in
export SEGEXP_CLUSTER_DIR=$WORK SEGEXP_CLUSTER_MLFLOW_URI=http://127.0.0.1:$MLPORT
export SEGEXP_CLUSTER_DB_URI=$DB_URI SEGEXP_CLUSTER_PGBIN=$PGBIN
# pytest in its own session (stopped with the daemons if the harness is interrupted); `wait`
# lets the traps run while it is going.
cd "$ROOT"
setsid "$PY" -m pytest -m cluster tests/cluster -p no:cacheprovider "$@" &
PYTEST=$!
PIDS+=(-$PYTEST)
wait "$PYTEST"
status=$?
[ -f "$WORK/figures.txt" ] && { echo "cluster harness: figures"; cat "$WORK/figures.txt"; }

# Jobs, then the daemons (as on any exit), then look for leftovers.
cleanup
trap - EXIT
left=$(ps -eo pid=,args= | grep -F -e "$WORK" -e slurmstepd | grep -v grep)
for pid in "${PIDS[@]}"; do
  kill -0 -- "$pid" 2>/dev/null && left+=$'\n'"pid $pid still alive"
  # anything still in a daemon's session or process group (the MLflow server's workers)
  left+=$(ps -eo pid=,sid=,pgid=,args= | awk -v p="${pid#-}" '$2 == p || $3 == p {print "\n" $0}')
done
if [ -n "$left" ]; then
  echo "cluster harness: processes left behind:"$'\n'"$left"
  exit 1
fi
echo "cluster harness: all daemons stopped, no process left"
rm -rf "$WORK"
exit "$status"
