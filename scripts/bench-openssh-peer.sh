#!/usr/bin/env bash
# A hand-written OpenSSH peer for the benchmark: the same steps as etcdroll
# (stage, then per member: snapshot, stop, copy the data dir, swap, start, wait
# healthy; finally wait for the cluster version), over ssh with ControlMaster.
# Usage: bench-openssh-peer.sh KEY KNOWN_HOSTS NEW_ETCD CLIENT_URL ADDR[:PORT]=HOSTDIR...
# (a port when the host is reached through the lab's delaying relay).
set -euo pipefail
key=$1 kh=$2 new=$3 url=$4
shift 4
ctl=$(mktemp -d)
hosts=() ports=() dirs=()
for hd in "$@"; do
  hp=${hd%%=*}
  dirs+=("${hd#*=}")
  if [[ $hp == *:* ]]; then hosts+=("${hp%%:*}") ports+=("${hp##*:}"); else hosts+=("$hp") ports+=(22); fi
done
# Through a relay every host has the same address: the control socket is per port.
opts=(-i "$key" -o "UserKnownHostsFile=$kh" -o BatchMode=yes -F /dev/null
      -o ControlMaster=auto -o "ControlPath=$ctl/%h-%p" -o ControlPersist=60)
trap 'for i in "${!hosts[@]}"; do ssh "${opts[@]}" -p "${ports[$i]}" -O exit "root@${hosts[$i]}" 2>/dev/null || true; done; rm -rf "$ctl"' EXIT

for i in "${!hosts[@]}"; do
  scp -q "${opts[@]}" -P "${ports[$i]}" "$new" "root@${hosts[$i]}:${dirs[$i]}/bin/etcd.new" &
done
wait

on() { # index, command
  local i=$1
  shift
  ssh "${opts[@]}" -p "${ports[$i]}" "root@${hosts[$i]}" "$@"
}

get() { # index path: an HTTP GET on the member's client port, from the host itself
  on "$1" "bash -c 'exec 3<>/dev/tcp/127.0.0.1/2379 && printf \"GET $2 HTTP/1.0\r\n\r\n\" >&3 && cat <&3'" 2>/dev/null || true
}

for i in "${!hosts[@]}"; do
  d=${dirs[$i]}
  on "$i" "set -e; B=$d/backup/peer-\$\$; mkdir -p \$B;
    ETCDCTL_API=3 $d/bin/etcdctl --endpoints $url snapshot save \$B/snapshot.db >/dev/null;
    $d/etcd-service stop; cp -a $d/data \$B/data; ln -f $d/bin/etcd $d/bin/etcd.old;
    mv -f $d/bin/etcd.new $d/bin/etcd; $d/etcd-service start"
  until get "$i" /health | grep -q '"health":"true"'; do sleep 0.05; done
done
until get 0 /version | grep -q '"etcdcluster":"3.5.0"'; do sleep 0.1; done
