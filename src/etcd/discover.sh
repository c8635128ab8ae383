# What a systemd host says about its etcd member, in one round trip: the unit as
# systemd has it loaded, the running process (its executable, command line and
# etcd environment), the unit's environment files, which package owns the
# binaries, and any other process running the same binary. Prints tagged lines
# (parsed by discover::parse) and changes nothing.
#
# Arguments (all quoted by etcdroll):
#   $1 U  the systemd unit (etcd_service)
#   $2 B  the etcd binary the inventory names, or empty
#
# Values that may hold secrets are never printed: of the environment, only
# ETCD_* / ETCDCTL_* / DAEMON_ARGS lines, less ETCDCTL_USER and ETCDCTL_PASSWORD.
U=$1 B=$2
TAB=$(printf '\t')
command -v systemctl >/dev/null 2>&1 || { echo "no_systemctl=1"; exit 0; }

keep() { grep -a -E '^[[:space:]]*(export[[:space:]]+)?(ETCD_|ETCDCTL_|DAEMON_ARGS=)' | grep -a -v -E 'ETCDCTL_(USER|PASSWORD)='; }

systemctl show "$U" -p Id -p LoadState -p ActiveState -p SubState -p UnitFileState \
  -p NeedDaemonReload -p Type -p Restart -p MainPID -p ExecStart -p FragmentPath \
  -p DropInPaths -p EnvironmentFiles -p Environment -p WorkingDirectory 2>/dev/null | sed 's/^/unit./'

pid=$(systemctl show -p MainPID --value "$U" 2>/dev/null)
exe=
if [ -n "$pid" ] && [ "$pid" != 0 ] && [ -r "/proc/$pid/cmdline" ]; then
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null)
  echo "exe=$exe"
  tr '\0' '\n' < "/proc/$pid/cmdline" | sed 's/^/arg=/'
  tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | keep | sed 's/^/env=/'
fi

# "PATH (ignore_errors=yes)" per line; a leading "-" is systemd's "optional".
systemctl show -p EnvironmentFiles --value "$U" 2>/dev/null | while read -r f _; do
  f=${f#-}
  [ -n "$f" ] && [ -r "$f" ] && keep < "$f" | awk -v f="$f" -v t="$TAB" '{ print "envfile=" f t $0 }'
done

start=$(systemctl show -p ExecStart --value "$U" 2>/dev/null | sed -n 's/^{ path=\([^ ;]*\) ;.*/\1/p' | head -n 1)
exe=${exe% (deleted)}
case $exe in *.old) exe=${exe%.old} ;; esac
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "$B" "$start" "$exe"; do
    [ -n "$p" ] || continue
    o=$(dpkg-query -S "$p" 2>/dev/null | head -n 1)
    [ -n "$o" ] && echo "owner=$p$TAB${o%%:*}"
  done
fi

# Another service running the same binary (kubespray's etcd-events) would pick up
# a swapped binary at its next restart.
real=$(readlink -f "${B:-${exe:-$start}}" 2>/dev/null)
if [ -n "$real" ]; then
  for p in /proc/[0-9]*; do
    q=${p#/proc/}
    [ "$q" = "$pid" ] && continue
    e=$(readlink "$p/exe" 2>/dev/null) || continue
    case $e in
      "$real" | "$real (deleted)" | "$real.old" | "$real.old (deleted)")
        # Its unit: the last part of any hierarchy's path that names one
        # (cgroup v1's name=systemd line may be just "/" inside a container).
        u=$(sed -n 's|^.*/\([^/]*\.service\)$|\1|p' "$p/cgroup" 2>/dev/null | head -n 1)
        echo "shared=$q$TAB$u"
        ;;
    esac
  done
fi
exit 0
