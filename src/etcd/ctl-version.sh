# ctl_version PATH prints an etcdctl's version on every release: 3.x answers
# `version` only with ETCDCTL_API=3 before 3.4 ("etcdctl version: 3.0.16"),
# 2.3 has no `version` command but `--version` ("etcdctl version 2.3.7").
ctl_version() {
  x=$(ETCDCTL_API=3 "$1" version 2>/dev/null | sed -n 's/^etcdctl version:* *//p' | sed -n 1p)
  [ -n "$x" ] || x=$("$1" --version 2>/dev/null | sed -n 's/^etcdctl version:* *//p' | sed -n 1p)
  printf '%s\n' "$x"
}
