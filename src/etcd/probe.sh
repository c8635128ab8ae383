# The pre-flight's look at one host, in one round trip: prints key=value lines
# (parsed by commands::parse_probe) and changes nothing. ctl_version comes from
# ctl-version.sh, sent with it.
#
# Arguments (all quoted by etcdroll):
#   $1 B       the etcd binary
#   $2 C       the etcdctl binary
#   $3 D       the data dir
#   $4 K       the backup dir (need not exist yet)
#   $5 T       the turn file restart.sh leaves while a member is stopped
#   $6 STATUS  the shell command that exits 0 when the service runs
#   $7 U       the systemd unit, or empty when the service is not systemd's
B=$1 C=$2 D=$3 K=$4 T=$5 STATUS=$6 U=$7

[ -f "$T" ] && echo "unfinished_turn=$(head -n 1 "$T")"
v() { "$1" --version 2>/dev/null | sed -n 's/^etcd Version: *//p' | head -n 1; }
echo "user=$(id -un)"
[ -x "$B" ] && echo "binary_version=$(v "$B")" && echo "binary_stat=$(stat -c '%a %u:%g' "$B")"
[ -x "$B.old" ] && echo "old_binary_version=$(v "$B.old")"
[ -e "$B.new" ] && echo "new_binary_present=1"
[ -x "$C" ] && echo "etcdctl_version=$(ctl_version "$C")"
if ( eval "$STATUS" ) >/dev/null 2>&1; then echo service_active=1; else echo service_active=0; fi
[ -d "$D" ] && echo data_dir_exists=1 && echo "data_kib=$(du -sk "$D" 2>/dev/null | cut -f1)"
[ -f "$D/member/snap/db" ] && echo has_v3_data=1
p="$K"; while [ ! -d "$p" ] && [ "$p" != / ] && [ -n "$p" ]; do p=$(dirname "$p"); done
echo "backup_free_kib=$(df -Pk "$p" 2>/dev/null | awk 'NR==2 {print $4}')"

# The running member's process and the settings the guides' rules ask about,
# read from /proc/PID/cmdline and /proc/PID/environ (what etcd really got,
# whatever unit, env file or wrapper set it). The process is the unit's MainPID
# under systemd, else the one whose executable is the binary (or its saved
# .old, after a swap). Also `etcdutl check v2store` where it exists (3.5.32+).
pid=
[ -n "$U" ] && pid=$(systemctl show -p MainPID --value "$U" 2>/dev/null)
if [ -z "$pid" ] || [ "$pid" = 0 ]; then
  pid=; real=$(readlink -f "$B" 2>/dev/null)
  for p in /proc/[0-9]*; do
    e=$(readlink "$p/exe" 2>/dev/null) || continue
    case "$e" in "$real"|"$real.old"|"$real (deleted)") pid=${p#/proc/}; break;; esac
  done
fi
if [ -n "$pid" ]; then
  echo "pid=$pid"
  tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -a -E '^--?(enable-v2|experimental-)' | sed "s|^|setting=/proc/$pid/cmdline |"
  tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -a -E '^ETCD_(ENABLE_V2|EXPERIMENTAL_)' | sed "s|^|setting=/proc/$pid/environ |"
fi
E="$(dirname "$B")/etcdutl"
if [ -x "$E" ] && "$E" check v2store --help >/dev/null 2>&1; then
  if o=$("$E" check v2store --data-dir "$D" 2>&1); then echo v2store=clean; else echo "v2store=$(printf '%s' "$o" | tail -n 1)"; fi
fi
exit 0
