# The backup of a member's data dir during its turn (commands.rs), made so that
# the member's downtime does not grow with its data. Copying a stopped data dir
# takes seconds per gigabyte; most of it need not be copied at all:
#   - closed WAL segments and .snap files are never rewritten by etcd: hard links;
#   - the newest WAL segment is written in place: copied (sparse: it is
#     preallocated, mostly zeros);
#   - member/snap/db is rewritten in place: its copy is the online snapshot taken
#     just before the stop, prepared while the member still serves. It is older
#     than the stop by the writes in between, which the WAL holds: etcd replays
#     the entries after the db's consistent index when it starts, as after a crash.
# etcd refuses a db older than its newest .snap file, so the snapshot is only used
# when no .snap appeared since before it was taken; else, and when hard links
# cannot be made (another filesystem), the whole data dir is copied.
#
#   data-backup.sh before DATA DEST    (online, before the snapshot) notes the .snap files
#   data-backup.sh prepare DATA DEST   (online, after it) DEST/snapshot.db as a db file
#   data-backup.sh offline DATA DEST   (stopped) DEST/data; prints "@etcdroll backup linked"
#                                      or "@etcdroll backup copied"
#
# Values come as positional arguments, quoted by etcdroll.
D=$2
B=$3

snaps() { ls "$D/member/snap" 2>/dev/null | grep '\.snap$'; }

case $1 in
  before)
    mkdir -p "$B" && { snaps > "$B/.snaps-before" || true; }
    ;;
  prepare)
    # `etcdctl snapshot save` appends the stream's SHA-256 (32 bytes) to the db;
    # etcdutl recognises it by the size (512n + 32). The data dir's db is without it.
    n=$(wc -c < "$B/snapshot.db") || exit 1
    if [ $((n % 512)) -eq 32 ]; then
      head -c $((n - 32)) "$B/snapshot.db" > "$B/.snapshot-db"
    else
      cp "$B/snapshot.db" "$B/.snapshot-db"
    fi
    ;;
  offline)
    mkdir -p "$B" || exit 1
    rm -rf "$B/data" "$B/.data"
    linked=no
    if [ ! -e "$D/member/snap/db" ] ||
      { [ -f "$B/.snapshot-db" ] && [ -f "$B/.snaps-before" ] &&
        [ "$(snaps)" = "$(cat "$B/.snaps-before")" ]; }; then
      # "$D/.": the data dir's contents even when DATA is a symlink.
      if mkdir "$B/.data" && cp -al "$D/." "$B/.data/" 2>/dev/null; then
        linked=yes
      else
        rm -rf "$B/.data"
      fi
    fi
    if [ $linked = yes ]; then
      w="$B/.data/member/wal"
      rm -f "$w"/*.tmp
      last=$(ls "$D/member/wal" 2>/dev/null | grep '\.wal$' | sort | tail -n 1)
      if [ -n "$last" ]; then
        rm -f "$w/$last" &&
          { cp -p --sparse=always "$D/member/wal/$last" "$w/$last" 2>/dev/null ||
            cp -p "$D/member/wal/$last" "$w/$last"; } || exit 1
      fi
      if [ -e "$D/member/snap/db" ]; then
        db="$B/.data/member/snap/db"
        rm -f "$db" && mv "$B/.snapshot-db" "$db" || exit 1
        # As the member's own: a restore by `mv` must leave etcd able to open it.
        chown --reference="$D/member/snap/db" "$db" 2>/dev/null
        chmod --reference="$D/member/snap/db" "$db" 2>/dev/null
      fi
    else
      mkdir "$B/.data" && cp -a "$D/." "$B/.data/" || exit 1
    fi
    chmod --reference="$D" "$B/.data" 2>/dev/null
    mv "$B/.data" "$B/data" || exit 1
    rm -f "$B/.snapshot-db" "$B/.snaps-before"
    if [ $linked = yes ]; then echo '@etcdroll backup linked'; else echo '@etcdroll backup copied'; fi
    ;;
  *)
    echo "data-backup.sh: unknown action $1" >&2
    exit 2
    ;;
esac
