//! Privilege on a host: a command wrapped in sudo as the inventory's `become`
//! asks. With a password it goes to `sudo -S` on stdin (never on a command line,
//! never in output); without one, `sudo -n`, which never waits for a password on
//! a terminal that is not there.

use super::command::RemoteCommand;

/// The command as it must be sent under sudo as `user`, and what to feed its
/// stdin.
pub fn wrap(
    cmd: &RemoteCommand,
    user: &str,
    password: Option<&str>,
) -> (RemoteCommand, Option<Vec<u8>>) {
    let (flags, input): (&[&str], _) = match password {
        Some(p) => (&["-S", "-k", "-p", ""], Some(format!("{p}\n").into_bytes())),
        None => (&["-n"], None),
    };
    // With a password on stdin, the command itself must never read it: sudo
    // leaves it unread when it does not ask (root, NOPASSWD, a cached ticket),
    // so the command's stdin is closed before it runs.
    let inner = match input {
        Some(_) => RemoteCommand::script("exec </dev/null;").raw(cmd.as_str()),
        None => cmd.clone(),
    };
    let wrapped = RemoteCommand::new("sudo")
        .args(flags)
        .arg("-u")
        .arg(user)
        .arg("--")
        .raw(inner.in_sh().as_str());
    (wrapped, input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_goes_to_stdin_and_never_into_the_command() {
        let cmd = RemoteCommand::new("id").arg("-un");
        let (line, input) = wrap(&cmd, "etcd", Some("s3cret'"));
        assert!(!line.as_str().contains("s3cret"), "{line}");
        assert_eq!(input.as_deref(), Some(&b"s3cret'\n"[..]));
        assert!(
            line.as_str()
                .starts_with("sudo -S -k -p '' -u etcd -- sh -c"),
            "{line}"
        );
        let (line, input) = wrap(&cmd, "root", None);
        assert_eq!(line.as_str(), "sudo -n -u root -- sh -c 'id -un'");
        assert!(input.is_none());
    }
}
