# The receiving end of an upload (see upload.rs), run on the host as
#   sh -c "$UPLOAD_SH" etcdroll-upload FILE SIZE
# with the kept shell's stdin. It first says what it can unpack, on one line the
# controller reads together with the command's start (no round trip of its own):
#   etcdroll-upload gzip     or     etcdroll-upload plain
# then reads one header line and the bytes behind it:
#   plain        SIZE bytes of the file as they are
#   gzip LEN     LEN bytes of a gzip stream of the file
# It writes the file to FILE (mode 0600), prints the SHA-256 of what was written
# (the decompressed bytes, hashed as they arrive: no second read of the file),
# and checks FILE's size after, which catches a write that failed half-way (a
# full disk) even though `tee` kept feeding the hash.
# Exit status: 0 when FILE holds SIZE bytes; 1 when it holds any other number
# (the message says how many); 3 when gzip refused the stream (corrupt or cut
# short); 2 for a header it does not know; else that of the tool that failed.
F=$1
N=$2
umask 077 || exit
# openssl uses the CPU's SHA instructions; sha256sum is twice as slow.
if command -v openssl >/dev/null 2>&1; then H='openssl dgst -sha256 -r'; else H=sha256sum; fi
# `[ -x ]` as well: some shells' `command -v` also names files they cannot run.
if g=$(command -v gzip 2>/dev/null) && [ -x "$g" ]; then
	echo 'etcdroll-upload gzip'
else
	echo 'etcdroll-upload plain'
fi
IFS=' ' read -r how len || { echo "no upload header arrived" >&2; exit 2; }
case $how in
plain) len=$N ;;
gzip) ;;
*) how= ;;
esac
case $len in
'' | *[!0-9]*) how= ;;
esac
[ -n "$how" ] || { echo "unknown upload header (etcdroll on this machine and the script differ?)" >&2; exit 2; }
# The hash and gzip's exit status both come out on fd 3, one line each, so a
# stream gzip refuses fails here even when what it wrote has the right size.
r=$({ {
	if [ "$how" = gzip ]; then
		head -c "$len" | gzip -dc
	else
		head -c "$len"
	fi
	echo "unpacked $?" >&3
} | tee -- "$F" | $H >&3; } 3>&1) || exit
case $r in
*"unpacked 0"*) ;;
*)
	if [ "$how" = gzip ]; then
		echo "gzip -dc refused the stream for $F (corrupt or cut short)" >&2
	else
		echo "reading the upload for $F failed" >&2
	fi
	exit 3
	;;
esac
printf '%s\n' "$r" | grep -v '^unpacked '
s=$(wc -c <"$F") &&
	{ [ "$s" -eq "$N" ] || { echo "$F has $s bytes, expected $N" >&2; exit 1; }; }
