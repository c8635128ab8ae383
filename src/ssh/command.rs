//! Building remote shell commands. Every value that reaches the remote shell goes
//! through here, so callers never quote by hand.

use std::fmt;

/// One shell word, quoted for a POSIX shell (the login shell sshd runs commands with).
pub fn quote(word: &str) -> String {
    // shlex refuses only NUL bytes, which can never be passed through a shell anyway.
    match shlex::try_quote(word) {
        Ok(q) => q.into_owned(),
        Err(_) => quote(&word.replace('\0', "")),
    }
}

/// A remote command line: a program and its arguments, each quoted as it is added,
/// plus optional shell fragments written by etcdroll itself (never from user data).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RemoteCommand {
    line: String,
}

impl RemoteCommand {
    /// A command starting with `program`, quoted.
    pub fn new(program: &str) -> Self {
        RemoteCommand {
            line: quote(program),
        }
    }

    /// A trusted shell fragment written by etcdroll or given by the operator as a
    /// command (for example an `etcd_start_cmd` from the inventory): used as is.
    pub fn script(fragment: &str) -> Self {
        RemoteCommand {
            line: fragment.to_string(),
        }
    }

    /// Append one argument, quoted.
    pub fn arg(mut self, arg: impl AsRef<str>) -> Self {
        if !self.line.is_empty() {
            self.line.push(' ');
        }
        self.line.push_str(&quote(arg.as_ref()));
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// Append a trusted fragment (an operator such as `&&`, `2>&1`, `>`), unquoted.
    pub fn raw(mut self, fragment: &str) -> Self {
        if !self.line.is_empty() {
            self.line.push(' ');
        }
        self.line.push_str(fragment);
        self
    }

    /// Join another command with `&&`.
    pub fn and(self, other: RemoteCommand) -> Self {
        let line = format!("{} && {}", self.line, other.line);
        RemoteCommand { line }
    }

    /// Wrap the whole command line so it runs under `sh -c`, for example under sudo.
    pub fn in_sh(&self) -> RemoteCommand {
        RemoteCommand::new("sh").arg("-c").arg(&self.line)
    }

    pub fn as_str(&self) -> &str {
        &self.line
    }
}

impl fmt::Display for RemoteCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

impl fmt::Debug for RemoteCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteCommand({:?})", self.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The quoted line, run by a real local shell, must hand every argument over unchanged.
    #[test]
    fn hostile_arguments_arrive_unchanged() {
        let hostile = [
            "plain",
            "with space",
            "it's",
            "\"double\"",
            "$(touch /tmp/etcdroll-pwned)",
            "`id`",
            "a; rm -rf /",
            "new\nline",
            "*",
            "",
            "-n",
            "back\\slash",
            "$HOME",
            "ünïcødé",
        ];
        let cmd = RemoteCommand::new("printf").arg("%s\\0").args(hostile);
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd.as_str())
            .output()
            .unwrap();
        assert!(out.status.success());
        let got: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .split('\0')
            .map(str::to_string)
            .collect();
        let mut want: Vec<String> = hostile.iter().map(|s| s.to_string()).collect();
        want.push(String::new()); // the trailing separator
        assert_eq!(got, want);
        assert!(!std::path::Path::new("/tmp/etcdroll-pwned").exists());
    }

    /// A small deterministic generator: the property tests need no extra crate.
    pub(crate) struct XorShift(pub u64);
    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Property: for random words over the characters a shell treats specially
    /// (and some UTF-8), `quote` hands each word to the program unchanged.
    #[test]
    fn random_words_survive_quoting() {
        let alphabet: Vec<char> = "abc xyz'\"\\$`;|&<>(){}[]*?!#~=%^\t\n\r-éü€"
            .chars()
            .collect();
        let mut rng = XorShift(0x9e3779b97f4a7c15);
        for _round in 0..20 {
            let words: Vec<String> = (0..50)
                .map(|_| {
                    let len = (rng.next() % 12) as usize;
                    (0..len)
                        .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
                        .collect()
                })
                .collect();
            let cmd = RemoteCommand::new("printf").arg("%s\\0").args(&words);
            let out = Command::new("sh")
                .arg("-c")
                .arg(cmd.as_str())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", cmd);
            let got: Vec<String> = String::from_utf8(out.stdout)
                .unwrap()
                .split('\0')
                .map(str::to_string)
                .collect();
            assert_eq!(&got[..got.len() - 1], &words[..], "{cmd}");
        }
    }

    #[test]
    fn nested_sh_keeps_quoting() {
        let inner = RemoteCommand::new("printf")
            .arg("%s|")
            .arg("a b")
            .arg("$(x)");
        let out = Command::new("sh")
            .arg("-c")
            .arg(inner.in_sh().as_str())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|$(x)|");
    }
}
