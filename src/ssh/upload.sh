# The receiving end of an upload (see upload.rs), run on the host as
#   sh -c "$UPLOAD_SH" etcdroll-upload FILE SIZE
# with the kept shell's stdin, which carries exactly SIZE bytes of the file.
# It writes them to FILE (mode 0600), prints their SHA-256 as they arrive (no
# second read of the file) and checks FILE's size after, which catches a write
# that failed half-way (a full disk) even though `tee` kept feeding the hash.
# Exit status: 0 when FILE holds SIZE bytes; 1 when it holds any other number
# (the message says how many); else that of the tool that failed.
F=$1
N=$2
umask 077 &&
	# openssl uses the CPU's SHA instructions; sha256sum is twice as slow.
	if command -v openssl >/dev/null 2>&1; then H='openssl dgst -sha256 -r'; else H=sha256sum; fi &&
	head -c "$N" | tee -- "$F" | $H &&
	s=$(wc -c <"$F") &&
	{ [ "$s" -eq "$N" ] || { echo "$F has $s bytes, expected $N" >&2; exit 1; }; }
