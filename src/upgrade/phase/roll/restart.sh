# A member's whole turn as one remote script, so it costs one round trip and a
# dropped connection cannot leave it half-way: the online backup (while etcd
# serves; a failure stops here with nothing stopped), the turn file, stop, the
# offline backup of the stopped data dir, the binary swap, start.
#
# Arguments (all quoted by etcdroll):
#   $1 TURN      the turn file: written before the stop, removed once started,
#                so a member found stopped with it was left so by this script
#   $2 LINE      its one line: which run stopped the member
#   $3 START     the shell command that starts the service
#   $4 STOP      the shell command that stops it
#   $5 SNAPSHOT  the online backup command, or empty
#   $6 OFFLINE   the offline backup command, or empty
#   $7 SWAP      "in" (NAME.new becomes NAME, NAME kept as NAME.old),
#                "back" (NAME.old becomes NAME, NAME kept as NAME.new), or "none"
#   $8...        the binaries to swap (etcd, and etcdctl when it was staged)
#
# Each step prints a marker line on stdout (TurnStep in turn.rs); the exit code
# says where it stopped (TurnExit): 9 snapshot failed (nothing stopped), 10 stop
# failed, 11 offline backup failed, 12 swap failed (the swaps done are undone),
# each of those three with the old binary started again; 13 start failed.

# A dropped SSH connection must never stop the script with the member down.
trap '' PIPE HUP
TURN=$1 LINE=$2 START=$3 STOP=$4 SNAPSHOT=$5 OFFLINE=$6 SWAP=$7
shift 7

up() { ( eval "$START" ) && rm -f "$TURN"; }

# swap DIRECTION BINARY: both renames keep every name valid throughout (a hard
# link first, then an atomic rename over the binary).
swap() {
  case $1 in
    in) from=$2.new keep=$2.old ;;
    back) from=$2.old keep=$2.new ;;
    *) return 0 ;;
  esac
  [ -e "$from" ] || { echo "binary $from is missing" >&2; return 1; }
  rm -f "$keep" && ln "$2" "$keep" && mv -f "$from" "$2"
}

if [ -n "$SNAPSHOT" ]; then ( eval "$SNAPSHOT" ) || exit 9; fi

# Only a hint for a later run: a turn file that cannot be written stops nothing.
# Removed first and created with noclobber (O_EXCL): never written through a symlink.
{ mkdir -p "$(dirname "$TURN")" && rm -f "$TURN" && ( set -C; printf '%s\n' "$LINE" > "$TURN" ); } 2>/dev/null

echo '@etcdroll stopping'
( eval "$STOP" ) || { up; exit 10; }
echo '@etcdroll stopped'

if [ -n "$OFFLINE" ]; then
  ( eval "$OFFLINE" ) || { up; exit 11; }
  echo '@etcdroll backed_up'
fi

# A failed swap undoes the ones before it, so the old binaries start again.
case $SWAP in in) reverse=back ;; back) reverse=in ;; *) reverse=none ;; esac
swapped=0
for binary in "$@"; do
  if ! swap "$SWAP" "$binary"; then
    undone=0
    for earlier in "$@"; do
      [ "$undone" -lt "$swapped" ] || break
      swap "$reverse" "$earlier"
      undone=$((undone + 1))
    done
    up
    exit 12
  fi
  swapped=$((swapped + 1))
done
[ $# -gt 0 ] && [ "$SWAP" != none ] && echo '@etcdroll swapped'

echo '@etcdroll starting'
up || exit 13
echo '@etcdroll started'
