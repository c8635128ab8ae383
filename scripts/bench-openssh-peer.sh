#!/usr/bin/env bash
# A hand-written OpenSSH peer for the benchmark: the same steps as etcdroll
# (stage, then per member: snapshot, stop, copy the data dir, swap, start, wait
# healthy; finally wait for the cluster version), over ssh with ControlMaster.
# Usage: bench-openssh-peer.sh KEY KNOWN_HOSTS NEW_ETCD CLIENT_URL ADDR=HOSTDIR...
set -euo pipefail
key=$1 kh=$2 new=$3 url=$4
shift 4
ctl=$(mktemp -d)
trap 'for h in "${hosts[@]}"; do ssh "${opts[@]}" -O exit "root@$h" 2>/dev/null || true; done; rm -rf "$ctl"' EXIT
opts=(-i "$key" -o "UserKnownHostsFile=$kh" -o BatchMode=yes -F /dev/null
      -o ControlMaster=auto -o "ControlPath=$ctl/%h" -o ControlPersist=60)
hosts=() dirs=()
for hd in "$@"; do hosts+=("${hd%%=*}"); dirs+=("${hd#*=}"); done

for i in "${!hosts[@]}"; do
  scp -q "${opts[@]}" "$new" "root@${hosts[$i]}:${dirs[$i]}/bin/etcd.new" &
done
wait

get() { # host path: an HTTP GET on the member's client port, from the host itself
  ssh "${opts[@]}" "root@$1" "bash -c 'exec 3<>/dev/tcp/127.0.0.1/2379 && printf \"GET $2 HTTP/1.0\r\n\r\n\" >&3 && cat <&3'" 2>/dev/null || true
}

for i in "${!hosts[@]}"; do
  h=${hosts[$i]} d=${dirs[$i]}
  ssh "${opts[@]}" "root@$h" "set -e; B=$d/backup/peer-\$\$; mkdir -p \$B;
    ETCDCTL_API=3 $d/bin/etcdctl --endpoints $url snapshot save \$B/snapshot.db >/dev/null;
    $d/etcd-service stop; cp -a $d/data \$B/data; ln -f $d/bin/etcd $d/bin/etcd.old;
    mv -f $d/bin/etcd.new $d/bin/etcd; $d/etcd-service start"
  until get "$h" /health | grep -q '"health":"true"'; do sleep 0.05; done
done
until get "${hosts[0]}" /version | grep -q '"etcdcluster":"3.5.0"'; do sleep 0.1; done
