#!/usr/bin/env bash
# A private single-node SLURM (with accounting) for tests and for trying the cluster path locally.
#
#   scripts/slurm_local.sh start    # install if missing, write configs, start the daemons, wait for idle
#   scripts/slurm_local.sh status   # daemons and `sinfo`
#   scripts/slurm_local.sh env      # prints `export SLURM_CONF=...` (eval it before sbatch/submitit)
#   scripts/slurm_local.sh stop     # stops ONLY the daemons this script started (pid files)
#
# Needs root and a Debian/Ubuntu machine (apt). Everything lives in $SEQRENDER_SLURM_DIR
# (default /tmp/seqrender-slurm): configs, munge key and socket, MariaDB data, spool, logs, pid files.
# Daemons: munged (as user munge), mariadbd (as user mysql) + slurmdbd (so `sacct` reports real job
# states), slurmctld and slurmd (-N `hostname -s`). No cgroups: proctrack/linuxproc, task/none.
# cred_expire=10 (default 120): a requeued job waits that long before it may start again.
# Ports: $SEQRENDER_SLURM_PORT_BASE (default 16817) .. +3 for slurmctld, slurmd, slurmdbd, MariaDB.
set -euo pipefail

STATE=${SEQRENDER_SLURM_DIR:-/tmp/seqrender-slurm}
PORT_BASE=${SEQRENDER_SLURM_PORT_BASE:-16817}
CTLD_PORT=$PORT_BASE
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))
NODE=$(hostname -s)
CLUSTER=seqrender
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
export SLURM_CONF="$STATE/etc/slurm.conf"

die() { echo "slurm_local: $*" >&2; exit 1; }
log() { echo "slurm_local: $*" >&2; }

require_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (installs packages and starts munged/mariadbd as their users)"
}

install_packages() {
  local missing=0 bin
  for bin in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb-install-db; do
    command -v "$bin" >/dev/null 2>&1 || missing=1
  done
  [ "$missing" -eq 0 ] && return
  command -v apt-get >/dev/null 2>&1 || die "SLURM is not installed and apt-get is unavailable: install ${PACKAGES[*]} by hand"
  log "installing ${PACKAGES[*]} (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
    || die "apt-get update failed (no network or no apt sources?)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null \
    || die "apt-get install ${PACKAGES[*]} failed"
}

real_memory_mb() {
  awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo
}

write_slurm_conf() {
  cat >"$STATE/etc/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=60
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$STATE/munge/munge.socket
JobCompType=jobcomp/none
NodeName=$NODE CPUs=$(nproc) RealMemory=$(real_memory_mb) State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

write_slurmdbd_conf() {
  cat >"$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=seqrender
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$STATE/etc/slurmdbd.conf"
}

prepare_dirs() {
  mkdir -p "$STATE"/{etc,run,log,spool/ctld,spool/d,munge,mysql}
  chmod 755 "$STATE" "$STATE/etc" "$STATE/run"
  chown munge:munge "$STATE/munge" && chmod 700 "$STATE/munge"
  chown mysql:mysql "$STATE/mysql"
  if [ ! -s "$STATE/munge/munge.key" ]; then
    dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
    chown munge:munge "$STATE/munge/munge.key" && chmod 400 "$STATE/munge/munge.key"
  fi
  write_slurm_conf
  write_slurmdbd_conf
}

pid_file() {  # munged and mariadbd write their pid files as their own users, into their own dirs
  case "$1" in
    munged) echo "$STATE/munge/munged.pid" ;;
    mariadbd) echo "$STATE/mysql/mariadbd.pid" ;;
    *) echo "$STATE/run/$1.pid" ;;
  esac
}

alive() {  # alive NAME: the pid file names a running process called NAME (not a recycled pid)
  local file
  file=$(pid_file "$1")
  [ -s "$file" ] && [ "$(cat "/proc/$(cat "$file")/comm" 2>/dev/null)" = "$1" ]
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  while [ "$SECONDS" -lt "$deadline" ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  die "timed out waiting for $what (logs: $STATE/log)"
}

start_munged() {
  alive munged && return
  runuser -u munge -- munged --force --key-file="$STATE/munge/munge.key" \
    --socket="$STATE/munge/munge.socket" --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed" \
    || die "munged failed to start (log: $STATE/munge/munged.log)"
  wait_for 10 munged alive munged
}

mariadb_sql() {
  mariadb --no-defaults --connect-timeout=5 --socket="$STATE/mysql/mysqld.sock" -u root -e "$1"
}

start_mariadb() {
  alive mariadbd && return
  if [ ! -d "$STATE/mysql/data/mysql" ]; then
    mariadb-install-db --no-defaults --user=mysql --datadir="$STATE/mysql/data" \
      --auth-root-authentication-method=socket --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 \
      || die "mariadb-install-db failed (log: $STATE/log/mariadb-install.log)"
  fi
  setsid mariadbd --no-defaults --user=mysql --datadir="$STATE/mysql/data" \
    --socket="$STATE/mysql/mysqld.sock" --pid-file="$(pid_file mariadbd)" \
    --bind-address=127.0.0.1 --port="$DB_PORT" --log-error="$STATE/mysql/mariadbd.log" \
    --innodb-buffer-pool-size=32M --skip-name-resolve </dev/null >/dev/null 2>&1 &
  wait_for 60 "mariadbd (log: $STATE/mysql/mariadbd.log)" mariadb_sql "SELECT 1"
  mariadb_sql "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'seqrender';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
}

start_slurm_daemons() {
  alive slurmdbd || slurmdbd || die "slurmdbd failed to start (log: $STATE/log/slurmdbd.log)"
  wait_for 30 slurmdbd timeout 10 sacctmgr -i show cluster
  sacctmgr -i show cluster -n format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  alive slurmctld || slurmctld -f "$SLURM_CONF" || die "slurmctld failed to start (log: $STATE/log/slurmctld.log)"
  alive slurmd || slurmd -f "$SLURM_CONF" -N "$NODE" || die "slurmd failed to start (log: $STATE/log/slurmd.log)"
  wait_for 60 "node $NODE to be idle in sinfo" node_ready
}

node_ready() {
  timeout 10 sinfo -h -N -n "$NODE" -o %t | grep -Eq '^(idle|mix|alloc)'
}

start() {
  require_root
  install_packages
  prepare_dirs
  start_munged
  start_mariadb
  start_slurm_daemons
  log "up: node $NODE, partition debug. Use it with: export SLURM_CONF=$SLURM_CONF"
}

cancel_jobs() {  # jobs of this private cluster only, so that none outlives its slurmd
  alive slurmctld && alive slurmd || return 0
  local ids
  ids=$(timeout 10 squeue -h -o %A 2>/dev/null || true)
  [ -n "$ids" ] || return 0
  log "cancelling jobs: $(echo $ids)"
  timeout 10 scancel $ids || true
  wait_for 30 "jobs to end" no_jobs
}

no_jobs() {
  [ -z "$(timeout 10 squeue -h -o %A)" ]
}

stop() {
  local name pid i
  cancel_jobs
  for name in slurmd slurmctld slurmdbd mariadbd munged; do
    alive "$name" || continue
    pid=$(cat "$(pid_file "$name")")
    kill "$pid"
    for ((i = 0; i < 120 && $(kill -0 "$pid" 2>/dev/null && echo 1 || echo 0); i++)); do sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    log "stopped $name ($pid)"
  done
}

status() {
  local name rc=0
  for name in munged mariadbd slurmdbd slurmctld slurmd; do
    if alive "$name"; then echo "$name: running ($(cat "$(pid_file "$name")"))"; else echo "$name: stopped"; rc=1; fi
  done
  [ "$rc" -eq 0 ] && sinfo
  return "$rc"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$SLURM_CONF" ;;
  *) die "usage: $0 {start|stop|status|env} (got '${1:-}')" ;;
esac
