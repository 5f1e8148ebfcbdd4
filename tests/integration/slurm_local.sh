#!/usr/bin/env bash
# Proves the SLURM path for real on one machine: starts munge, slurmctld and slurmd on localhost
# (Debian's slurm-wlm + munge: `apt-get install -y slurm-wlm munge`, as root), submits a 2-job sweep
# through hydra/launcher=slurm, waits, checks both summary.json files, and stops what it started.
# Usage (from the repo root, venv active):  bash tests/integration/slurm_local.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/imbal-slurm.XXXXXX)
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
for tool in munged slurmctld slurmd sbatch; do
  command -v "$tool" >/dev/null || { echo "slurm_local: $tool not found; install Debian's slurm-wlm and munge" >&2; exit 2; }
done

mkdir -p "$work"/{state,spool,log,run}
cat > "$work/slurm.conf" <<CONF
ClusterName=imbal-local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$work/slurm.conf"

pids=()
cleanup() {
  scancel --user="$(id -un)" >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" >/dev/null 2>&1 || true; done
  [ -f "$work/run/slurmctld.pid" ] && kill "$(cat "$work/run/slurmctld.pid")" >/dev/null 2>&1 || true
  [ -f "$work/run/slurmd.pid" ] && kill "$(cat "$work/run/slurmd.pid")" >/dev/null 2>&1 || true
  pkill -f "$work/slurm.conf" >/dev/null 2>&1 || true   # daemons started with -f <this conf>
  pkill -9 -f "slurmstepd" >/dev/null 2>&1 || true
  [ -f "$work/run/munged.pid" ] && kill "$(cat "$work/run/munged.pid")" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# munge: a key of its own, a socket of its own
mkdir -p "$work/munge"
dd if=/dev/urandom bs=1 count=1024 of="$work/munge/munge.key" 2>/dev/null
chmod 400 "$work/munge/munge.key"
munged --force --key-file="$work/munge/munge.key" --socket="$work/munge/munge.socket" \
  --pid-file="$work/run/munged.pid" --log-file="$work/log/munged.log" --seed-file="$work/munge/seed"
export MUNGE_SOCKET="$work/munge/munge.socket"
# slurm reads the socket path from its AuthInfo
sed -i "s|^AuthType=auth/munge|AuthType=auth/munge\nAuthInfo=socket=$work/munge/munge.socket|" "$work/slurm.conf"

slurmctld -f "$work/slurm.conf"
slurmd -f "$work/slurm.conf"
for i in $(seq 60); do
  sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed)' && break
  sleep 1
done
sinfo

sweep="$work/sweep"
cd "$repo"
python train.py -m hydra/launcher=slurm hydra.launcher.partition=debug hydra.launcher.gpus_per_node=null \
  hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=4 hydra.launcher.timeout_min=20 \
  trainer=cpu loss=ce,focal trainer.max_epochs=2 "hydra.sweep.dir=$sweep"

n=$(ls "$sweep"/*/summary.json 2>/dev/null | wc -l)
echo "slurm_local: $n summary.json files under $sweep"
for f in "$sweep"/*/summary.json; do
  python -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[1], s['loss'], round(s['test']['balanced_accuracy'],4))" "$f"
done
[ "$n" -eq 2 ] || { echo "slurm_local: expected 2 summaries" >&2; tail -30 "$work/log/slurmctld.log" "$work/log/slurmd.log" >&2; exit 1; }
echo "slurm_local: OK"
