#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the tests and CI (Debian 12, slurm-wlm 22.05,
# run as root, no systemd needed):
#
#     tools/slurm_test_cluster.sh up       # install what is missing, configure, start, wait until ready
#     tools/slurm_test_cluster.sh status   # which daemons run, what sinfo says; exit 0 if up, 1 if not
#     tools/slurm_test_cluster.sh down     # stop the daemons this script started (slurmctld keeps
#                                          # its jobs; a running job's processes go on running)
#
# Daemons: munged -> MariaDB -> slurmdbd -> slurmctld -> slurmd, each started by hand and only
# if it is not already running, so a second `up` takes under a second and changes nothing.
# The config goes to Debian's default /etc/slurm (sinfo/sbatch/sacct work without SLURM_CONF).
#
# Logs, pid files and Slurm's state all live under ONE folder:
#
#     /var/lib/sasa-slurm-test          (override with SASA_SLURM_DIR)
#       log/{munged,mariadbd,slurmdbd,slurmctld,slurmd}.log
#       run/          pid files, and a started.NAME marker for each daemon `up` started
#       ctld/         slurmctld's StateSaveLocation       slurmd/  slurmd's spool
#       lock          taken by `up` and `down`, which may be called concurrently
#
# The cluster: ClusterName=sasa, one node named `hostname -s` (NodeAddr=127.0.0.1) with all CPUs
# and 90% of MemTotal, one partition `debug` (Default=YES, MaxTime=INFINITE), accounting in
# MariaDB through slurmdbd so that sacct reports finished jobs (submitit reads states with sacct).
set -euo pipefail

STATE_DIR=${SASA_SLURM_DIR:-/var/lib/sasa-slurm-test}
LOG_DIR=$STATE_DIR/log
RUN_DIR=$STATE_DIR/run
SLURM_ETC=/etc/slurm
TIMEOUT=${SASA_SLURM_TIMEOUT:-60}      # seconds to wait for each daemon
CLUSTER=sasa
PARTITION=debug
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=sasa-slurm-test                # a local test database reachable only through its socket
MYSQL_SOCKET=/run/mysqld/mysqld.sock
PACKAGES=(munge mariadb-server slurmdbd slurmctld slurmd slurm-client)
NODE=$(hostname -s)

log() { echo "slurm_test_cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# processes: found by their exact command name in /proc (procps may not be installed)
# ---------------------------------------------------------------------------------------------

# alive PID: the process exists and is not a zombie. The daemons end up children of PID 1, and
# a PID 1 that reaps late (here ~2 s) leaves a dead daemon in /proc as a zombie meanwhile.
alive() {
  local state
  state=$(awk '/^State:/ {print $2; exit}' "/proc/$1/status" 2>/dev/null) || return 1
  [[ -n $state && $state != [ZX] ]]
}

# pid_of NAME: the pid of the first live process whose comm is NAME; fails if there is none.
pid_of() {
  local f comm pid
  for f in /proc/[0-9]*/comm; do
    read -r comm 2>/dev/null <"$f" || continue
    [[ $comm == "$1" ]] || continue
    pid=${f#/proc/}; pid=${pid%/comm}
    if alive "$pid"; then echo "$pid"; return 0; fi
  done
  return 1
}
running() { pid_of "$1" >/dev/null; }

# wait_for WHAT DAEMON CMD...: retry CMD every 0.2 s until it succeeds; fail after $TIMEOUT s, or
# as soon as the process DAEMON has gone (after a 2 s grace for its start), with a message naming
# DAEMON's log file and its last lines.
wait_for() {
  local what=$1 daemon=$2; shift 2
  local logfile=$LOG_DIR/$daemon.log start=$SECONDS problem=
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= TIMEOUT)); then
      problem="$what not ready after ${TIMEOUT} s"
    elif ((SECONDS - start >= 2)) && ! running "$daemon"; then
      problem="$daemon exited"
    fi
    if [[ -n $problem ]]; then
      log "ERROR: $problem; see $logfile; its last lines:"
      grep -v pmix "$logfile" 2>/dev/null | tail -n 15 >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

# stop_daemon NAME: SIGTERM (a clean shutdown for all of these daemons), wait, SIGKILL at last.
stop_daemon() {
  local name=$1 pid i
  rm -f "$RUN_DIR/started.$name"
  pid=$(pid_of "$name") || { log "$name: not running"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do           # 30 s
    alive "$pid" || { log "$name: stopped"; return 0; }
    sleep 0.1
  done
  log "$name (pid $pid) ignored SIGTERM for 30 s: killing it"
  kill -KILL "$pid" 2>/dev/null || true
  while alive "$pid"; do sleep 0.1; done
}

# ---------------------------------------------------------------------------------------------
# installation
# ---------------------------------------------------------------------------------------------

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]}"
  local t0=$SECONDS own_policy=0
  # The packages' postinst scripts would start the daemons through init scripts, before there is
  # a config, and might fail; a policy-rc.d answering 101 tells invoke-rc.d not to (Docker-style).
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  local apt=(apt-get install -y -qq --no-install-recommends "${missing[@]}") rc=0
  export DEBIAN_FRONTEND=noninteractive
  if ! "${apt[@]}" >/dev/null; then
    # typically a clean machine without package lists: update them once and retry
    log "apt-get install failed; updating the package lists and retrying"
    { apt-get update -qq && "${apt[@]}" >/dev/null; } || rc=$?
  fi
  if ((own_policy)); then rm -f /usr/sbin/policy-rc.d; fi
  ((rc == 0)) || die "apt-get install ${missing[*]} failed (exit $rc)"
  log "installed in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------

# write_if_changed PATH OWNER MODE < content: replace PATH only if its content differs; returns 0
# if it changed (so the daemon reading it can be restarted), 1 if it was already up to date.
write_if_changed() {
  local path=$1 owner=$2 mode=$3 tmp
  tmp=$(mktemp "$path.XXXXXX")
  cat >"$tmp"
  chown "$owner" "$tmp"; chmod "$mode" "$tmp"
  if [[ -f $path ]] && cmp -s "$tmp" "$path" \
     && [[ $(stat -c '%U:%G %a' "$path") == "$(stat -c '%U:%G %a' "$tmp")" ]]; then
    rm -f "$tmp"; return 1
  fi
  mv -f "$tmp" "$path"
  return 0
}

SLURM_CONF_CHANGED=0
DBD_CONF_CHANGED=0

write_config() {
  getent passwd slurm >/dev/null || useradd --system --user-group --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin slurm
  install -d -m 0755 "$STATE_DIR" "$SLURM_ETC"
  # Slurm's daemons chdir to their log's folder (for core files) and want to write there
  install -d -m 0755 -o slurm -g slurm "$LOG_DIR" "$RUN_DIR" "$STATE_DIR/ctld"
  install -d -m 0755 "$STATE_DIR/slurmd"
  local f
  for f in slurmdbd slurmctld; do       # these run as SlurmUser and must be able to write their log
    touch "$LOG_DIR/$f.log"; chown slurm:slurm "$LOG_DIR/$f.log"
  done

  # CPUs: nproc without OMP_NUM_THREADS/OMP_THREAD_LIMIT, which it would obey. RealMemory: in MB,
  # 90% of MemTotal (slurmd drains a node whose RealMemory exceeds what it finds).
  local cpus mem_mb
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
  mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)

  if write_if_changed "$SLURM_ETC/slurm.conf" root:root 644 <<EOF
# Written by tools/slurm_test_cluster.sh: a one-node test cluster. Edit the script, not this file.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
# a requeued job may start again only when its credential has expired: 120 s by default
AuthInfo=cred_expire=10
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
# no cgroups here: track job processes through /proc, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
# schedule at once: without this every submission waits ~3 s for the scheduler
SchedulerParameters=batch_sched_delay=0,bf_interval=1
SchedulerType=sched/backfill
SelectType=select/cons_tres
# CPUs are the only consumable: jobs without --mem do not take the whole node's memory
SelectTypeParameters=CR_CPU
# reject at submission a job that asks for more than exists (else it pends forever)
EnforcePartLimits=ALL
JobRequeue=1
# a cancelled job's processes are killed 2 s after its SIGTERM (which submitit ignores), so a
# test's cancel stops a training mid-way; finished jobs leave slurmctld's memory after 10 s
# (sacct still has them)
KillWait=2
MinJobAge=10
InactiveLimit=0
Waittime=0
SlurmdTimeout=300
MessageTimeout=10
# accounting through slurmdbd into MariaDB: sacct reports jobs long finished
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  then SLURM_CONF_CHANGED=1; fi

  # slurmdbd refuses a slurmdbd.conf that is not owned by SlurmUser with mode 600
  if write_if_changed "$SLURM_ETC/slurmdbd.conf" slurm:slurm 600 <<EOF
# Written by tools/slurm_test_cluster.sh. Edit the script, not this file.
DbdHost=localhost
SlurmUser=slurm
AuthType=auth/munge
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$RUN_DIR/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=$DB_NAME
StorageUser=$DB_USER
StoragePass=$DB_PASS
EOF
  then DBD_CONF_CHANGED=1; fi
}

# ---------------------------------------------------------------------------------------------
# daemons, in the order they depend on each other
# ---------------------------------------------------------------------------------------------

# launch NAME CMD...: run CMD (whose process is named NAME) detached: from /, stdin from /dev/null,
# output into NAME's log, so that no caller's pipe or directory is held open. Marks NAME as
# started by this script (`down` stops munged and mariadbd only if so).
launch() {
  local name=$1; shift
  log "starting $name"
  (cd / && exec setsid "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 9>&-) &     # 9: the lock
  touch "$RUN_DIR/started.$name"
}

munge_ok() { munge -n </dev/null | unmunge >/dev/null; }

start_munge() {
  if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    install -d -o munge -g munge -m 0700 /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge
  running munged && return 0
  touch "$LOG_DIR/munged.log"; chown munge:munge "$LOG_DIR/munged.log"
  launch munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground --log-file="$LOG_DIR/munged.log"
  wait_for munged munged munge_ok
}

mariadb_ok() { mariadb-admin --socket="$MYSQL_SOCKET" ping; }

start_mariadb() {
  install -d -o mysql -g mysql -m 0755 /run/mysqld
  if [[ ! -d /var/lib/mysql/mysql ]]; then     # the package's postinst normally does this
    log "initialising /var/lib/mysql"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db \
        >>"$LOG_DIR/mariadbd.log" 2>&1
  fi
  if ! running mariadbd; then
    touch "$LOG_DIR/mariadbd.log"; chown mysql:mysql "$LOG_DIR/mariadbd.log"
    # socket only (slurmdbd connects to "localhost" through it); the InnoDB settings are the
    # ones slurmdbd asks for (it logs an error otherwise)
    launch mariadbd mariadbd --user=mysql --socket="$MYSQL_SOCKET" --skip-networking \
        --log-error="$LOG_DIR/mariadbd.log" --innodb-buffer-pool-size=512M \
        --innodb-lock-wait-timeout=900
  fi
  wait_for MariaDB mariadbd mariadb_ok
  # root logs in through the unix socket; all of this is a no-op when done before
  mariadb --socket="$MYSQL_SOCKET" <<EOF
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'localhost';
EOF
}

slurmdbd_ok() { sacctmgr -n -P list cluster format=cluster; }

start_slurmdbd() {
  if running slurmdbd && ((DBD_CONF_CHANGED)); then stop_daemon slurmdbd; fi
  running slurmdbd || launch slurmdbd slurmdbd
  wait_for slurmdbd slurmdbd slurmdbd_ok
  # slurmctld would register the cluster itself; adding it here also creates the root account
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null
  fi
}

slurmctld_ok() { scontrol ping | grep -q 'is UP'; }

start_slurmctld() {
  if running slurmctld && ((SLURM_CONF_CHANGED)); then stop_daemon slurmctld; fi
  running slurmctld || launch slurmctld slurmctld
  wait_for slurmctld slurmctld slurmctld_ok
}

# The node is ready when slurmd answers and sinfo says it takes jobs: idle, or busy with jobs of
# earlier tests. (sinfo alone is not enough: slurmctld notices a dead slurmd only after
# SlurmdTimeout.)
node_state() { sinfo -h -N -n "$NODE" -o %T; }
node_ok() { [[ $(node_state) =~ ^(idle|mixed|allocated|completing)$ ]]; }
slurmd_ok() { running slurmd && timeout 10 scontrol show slurmd && node_ok; }
sacct_ok() { sacct -n -X -a -S now-1minutes -o JobID; }

start_slurmd() {
  if running slurmd && ((SLURM_CONF_CHANGED)); then stop_daemon slurmd; fi
  running slurmd || launch slurmd slurmd
  # a node left down or drained (e.g. by an earlier config) is put back into service once
  local deadline=$((SECONDS + 5))
  until slurmd_ok >/dev/null 2>&1 || ((SECONDS >= deadline)); do sleep 0.2; done
  if [[ $(node_state) =~ ^(down|drain|drained|draining|fail) ]]; then
    log "node $NODE is $(node_state): resuming it"
    scontrol update NodeName="$NODE" State=RESUME || true
  fi
  wait_for "slurmd (node $NODE idle in sinfo)" slurmd slurmd_ok
  wait_for "sacct (slurmdbd)" slurmdbd sacct_ok
}

# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------

DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

cmd_up() {
  [[ $(id -u) == 0 ]] || die "run as root"
  local t0=$SECONDS
  install_packages
  write_config
  start_munge
  start_mariadb
  start_slurmdbd
  start_slurmctld
  start_slurmd
  log "cluster up in $((SECONDS - t0)) s: $(sinfo -h -o '%P %a %D %T %N' | head -n 1)"
}

cmd_down() {
  # reverse order; munged and MariaDB only if `up` started them (they may serve other things)
  stop_daemon slurmd
  stop_daemon slurmctld
  stop_daemon slurmdbd
  if [[ -e $RUN_DIR/started.mariadbd ]]; then stop_daemon mariadbd; fi
  if [[ -e $RUN_DIR/started.munged ]]; then stop_daemon munged; fi
}

cmd_status() {
  local d pid up=1
  for d in "${DAEMONS[@]}"; do
    if pid=$(pid_of "$d"); then
      printf '%-10s running (pid %s)\n' "$d" "$pid"
    else
      printf '%-10s not running\n' "$d"; up=0
    fi
  done
  # without slurmctld sinfo would retry for ~10 s before failing
  if ! running slurmctld; then
    echo "sinfo: not asked (slurmctld is not running)"; up=0
  elif timeout 15 sinfo 2>/dev/null; then
    slurmd_ok >/dev/null 2>&1 || up=0
  else
    echo "sinfo: no answer"; up=0
  fi
  echo "logs: $LOG_DIR"
  ((up)) && { echo "cluster: up"; return 0; }
  echo "cluster: not up"; return 1
}

# One `up` or `down` at a time (tests may call `up` concurrently): an exclusive lock on fd 9.
lock() {
  install -d -m 0755 "$STATE_DIR"
  exec 9>"$STATE_DIR/lock"
  flock -w 300 9 || die "another $0 has held $STATE_DIR/lock for 300 s"
}

case ${1:-} in
  up) lock; cmd_up ;;
  down) lock; cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status   (state and logs in $STATE_DIR)" >&2; exit 2 ;;
esac
