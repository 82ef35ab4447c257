# Helpers shared by the bench scripts (answer-path.sh, forward.sh, callgrind.sh; sourced, not run).
# Expects LOG_TAG (prefix of log lines) to be set by the caller; defines nothing else global.

log() { printf '[%s %s] %s\n' "${LOG_TAG:-bench}" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

install_missing() { # pkg... : apt-get install (after one update) if any are given
  [ $# -gt 0 ] || return 0
  log "installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

stop_pid() { # pid name: TERM, wait up to 5 s, then KILL
  local pid=$1 name=$2 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then log "$name ($pid) did not stop, killing"; kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

port_free() { # true if UDP and TCP 127.0.0.1:$1 can be bound
  python3 - "$1" <<'EOF'
import socket, sys
p = int(sys.argv[1])
for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
EOF
}

pin_threads() { # pid cpu: pin every thread (Knot re-pins its own workers at start)
  local t
  # A thread may end between the listing and its turn (compiles run on short-lived threads).
  for t in /proc/"$1"/task/*; do taskset -p -c "$2" "${t##*/}" >/dev/null 2>&1 || true; done
}
cpu_ticks() { # utime + stime of the whole process (all threads), /proc/PID/stat fields 14 and 15
  awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"
}
cpu_stat() { # cpu: "busy steal total" ticks of one CPU from /proc/stat
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, $9, t }' /proc/stat
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
threads() { ls "/proc/$1/task" | wc -l; }

# Raise net.core.rmem_max/rmem_default to 8 MiB if permitted. Sets SYSCTL_NOTE and appends the
# old values to SYSCTL_RESTORE (the caller's trap restores them with `sysctl -w`).
raise_rmem() {
  local old_max old_def
  old_max=$(sysctl -n net.core.rmem_max 2>/dev/null || echo "?")
  old_def=$(sysctl -n net.core.rmem_default 2>/dev/null || echo "?")
  if sysctl -q -w net.core.rmem_max=8388608 >/dev/null 2>&1 && sysctl -q -w net.core.rmem_default=8388608 >/dev/null 2>&1; then
    SYSCTL_RESTORE+=("net.core.rmem_max=$old_max" "net.core.rmem_default=$old_def")
    SYSCTL_NOTE="net.core.rmem_max and rmem_default set to 8388608 for the run (were $old_max and $old_def; restored on exit)"
  else
    SYSCTL_NOTE="could not set net.core.rmem_max/rmem_default (not permitted here); kernel values rmem_max=$old_max rmem_default=$old_def were used"
  fi
  log "$SYSCTL_NOTE"
}

# Busy time on the server's CPU not spent by the server (%), and steal there (%), from two
# cpu_stat samples and the server's own tick delta.
other_steal() { # "s0" "s1" server_tick_delta
  awk -v a="$1" -v b="$2" -v d="$3" 'BEGIN {
    split(a, x, " "); split(b, y, " "); t = y[3] - x[3]; if (t <= 0) t = 1
    o = (y[1] - x[1] - (y[2] - x[2]) - d) * 100 / t; if (o < 0) o = 0
    printf "%.1f %.1f\n", o, (y[2] - x[2]) * 100 / t }'
}
cpu_busy_pct() { # "c0" "c1": how busy one CPU was between two cpu_stat samples (%)
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[3] - x[3]; if (t <= 0) t = 1; printf "%.0f", (y[1] - x[1]) * 100 / t }'
}
