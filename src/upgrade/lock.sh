# The run lock on one member: a file created atomically, so a second operator's
# run fails at once and learns who holds it.
#
#   lock.sh take FILE TEXT      prints "taken", or "held" and the holder's
#                               file, or "notfile" (a symlink or a device is
#                               in the lock's place: refused, never followed)
#   lock.sh release FILE LINE   removes FILE if its first line is LINE (only
#                               our own lock: another run's is left alone)
#   lock.sh break FILE          prints FILE, then removes it (--break-lock)
#
# Values come as positional arguments, quoted by etcdroll.
F=$2
case $1 in
  take)
    mkdir -p "$(dirname "$F")" || exit 1
    # `set -C` alone writes through a symlink to a non-regular file (a lock that
    # is a link to /dev/null "succeeds" for every run): anything but a regular
    # file in the lock's place is refused. With that excluded, the noclobber
    # create is O_EXCL, which never follows a link.
    if [ -h "$F" ] || { [ -e "$F" ] && [ ! -f "$F" ]; }; then echo notfile; exit 0; fi
    if ( set -C; printf '%s' "$3" > "$F" ) 2>/dev/null; then
      echo taken
    elif [ -h "$F" ] || [ ! -f "$F" ]; then
      echo notfile
    else
      echo held
      cat "$F"
    fi
    ;;
  release)
    [ "$(head -n 1 "$F" 2>/dev/null)" = "$3" ] && rm -f "$F"
    true
    ;;
  break)
    if [ -e "$F" ]; then cat "$F"; rm -f "$F"; fi
    ;;
  *)
    echo "lock.sh: unknown action $1" >&2
    exit 2
    ;;
esac
