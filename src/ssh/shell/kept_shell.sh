# The kept shell's side of the framing (see mod.rs). Read once by the long-lived
# /bin/sh of a session, on its stdin, followed by the line that sets
# etcdroll_nonce (a shell variable, never exported and never in an argv, so no
# command's output nor `ps` can forge or show a marker). Each command then comes
# as one line:
#   etcdroll_run COUNT COMMAND    run COMMAND with no stdin
#   etcdroll_fed COUNT COMMAND    run COMMAND with the shell's stdin (an upload)
# Each is framed on stdout and stderr by the markers of its COUNT; the end
# marker on stdout carries COMMAND's exit status.

# The begin markers of command $1.
etcdroll_begin() {
	printf '\n%s\n' "etcdroll-begin-$etcdroll_nonce-$1"
	printf '\n%s\n' "etcdroll-begin-$etcdroll_nonce-$1" >&2
}

# The end markers of command $1, which exited with $2.
etcdroll_end() {
	printf '\n%s %s\n' "etcdroll-end-$etcdroll_nonce-$1" "$2"
	printf '\n%s\n' "etcdroll-end-$etcdroll_nonce-$1" >&2
}

# Command $1 is $2, run in a shell of its own (a syntax error, an `exit` or a
# `cd` never reaches the next command) with no stdin.
etcdroll_run() {
	etcdroll_begin "$1"
	sh -c "$2" </dev/null
	etcdroll_end "$1" "$?"
}

# Command $1 is $2, which reads bytes from the shell's stdin. It first prints
# its ready marker (handed over in its environment, not its argv), the cue to
# send the bytes; after it, the shell reads a line that must be its fed
# token, and exits when it is not: the command took fewer or more bytes than
# were sent, and what the shell would read next is not a command.
etcdroll_fed() {
	etcdroll_begin "$1"
	etcdroll_ready="etcdroll-ready-$etcdroll_nonce-$1" \
		sh -c 'printf "%s\n" "$etcdroll_ready"; unset etcdroll_ready; '"$2"
	etcdroll_end "$1" "$?"
	IFS= read -r etcdroll_token
	[ "$etcdroll_token" = "etcdroll-fed-$etcdroll_nonce-$1" ] || exit 1
	printf '%s\n' "etcdroll-ack-$etcdroll_nonce-$1"
}
