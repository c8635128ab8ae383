#!/bin/sh
# etcd-service: the lab's service manager for one host's etcd (etcdroll's
# "command" service manager).  Usage: etcd-service start|stop|status|logs [N]
# Kept to shell builtins where it matters: it sits on the measured restart path.
D=$(dirname "$0")
PIDF="$D/etcd.pid"

# True when the recorded etcd runs. A zombie counts as gone: PID 1 on these
# machines reaps orphans late, and waiting for the reaper is not waiting for etcd.
running() {
  [ -f "$PIDF" ] || return 1
  read -r p < "$PIDF" || return 1
  [ -n "$p" ] && [ -r "/proc/$p/stat" ] || return 1
  read -r st < "/proc/$p/stat" 2>/dev/null || return 1
  st=${st##*) }
  st=${st%% *}
  [ "$st" != Z ]
}

case "$1" in
  start)
    running && exit 0
    read -r FLAGS < "$D/etcd.flags"
    eval "set -- $FLAGS"
    # ETCD_* settings, as a unit's EnvironmentFile would give them.
    if [ -s "$D/etcd.env" ]; then set -a; . "$D/etcd.env"; set +a; fi
    setsid "$D/bin/etcd" "$@" >>"$D/etcd.log" 2>&1 </dev/null &
    echo $! > "$PIDF"
    ;;
  stop)
    running || exit 0
    kill -TERM "$p" 2>/dev/null
    i=0
    while running; do
      sleep 0.01
      i=$((i + 1))
      [ "$i" -eq 1500 ] && kill -KILL "$p" 2>/dev/null
    done
    rm -f "$PIDF"
    ;;
  status)
    if running; then echo active; exit 0; fi
    echo inactive
    exit 3
    ;;
  logs)
    tail -n "${2:-50}" "$D/etcd.log"
    ;;
  *)
    echo "usage: $0 start|stop|status|logs [N]" >&2
    exit 2
    ;;
esac
