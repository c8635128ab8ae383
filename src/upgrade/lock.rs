//! The run lock: one file per member, created atomically (`set -C`, O_EXCL) before
//! anything changes, so a second operator's run fails at once and names the first.

use std::time::Duration;

use futures::future::join_all;

use crate::ssh::RemoteCommand;

use super::fleet::HostLink;

/// Who holds a lock: written into the lock file, shown to whoever finds it.
#[derive(Clone, Debug)]
pub struct LockInfo {
    pub run_id: String,
    pub operator: String,
    pub controller: String,
    pub started: String,
    pub command: String,
    /// The controller process, so a lock left by a run that was killed on this
    /// same controller can be recognised as stale.
    pub pid: u32,
}

impl LockInfo {
    pub fn for_this_run(run_id: &str) -> LockInfo {
        let operator = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into());
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most buf.len() bytes into buf.
        let controller = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            "unknown".into()
        };
        LockInfo {
            run_id: run_id.to_string(),
            operator,
            controller,
            started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            pid: std::process::id(),
        }
    }

    fn text(&self) -> String {
        format!(
            "run_id={}\noperator={}\ncontroller={}\nstarted={}\ncommand={}\npid={}\n",
            self.run_id,
            self.operator,
            self.controller,
            self.started,
            self.command.replace('\n', " "),
            self.pid
        )
    }
}

/// The lock's three actions, kept as a script.
const LOCK_SH: &str = include_str!("lock.sh");

/// `lock.sh ACTION FILE [VALUE]`, every value a quoted argument.
fn lock_script(action: &str, file: &str, value: Option<&str>) -> RemoteCommand {
    let c = RemoteCommand::new("sh")
        .arg("-c")
        .arg(LOCK_SH)
        .arg("etcdroll-lock")
        .arg(action)
        .arg(file);
    match value {
        Some(v) => c.arg(v),
        None => c,
    }
}

fn lock_file(link: &HostLink) -> String {
    format!("{}/etcdroll.lock", link.host.lock_dir.trim_end_matches('/'))
}

/// Where a member's restart script records its turn (see
/// `commands::restart_with_swap`), beside the lock.
pub fn turn_file(lock_dir: &str) -> String {
    format!("{}/etcdroll.turn", lock_dir.trim_end_matches('/'))
}

fn field(content: &str, k: &str) -> String {
    content
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{k}=")))
        .unwrap_or("?")
        .to_string()
}

/// A lock taken by a process of this very controller that no longer exists: the
/// run was killed, and nobody else can be running it.
fn is_stale(content: &str, me: &LockInfo) -> bool {
    let pid: i32 = field(content, "pid").parse().unwrap_or(0);
    field(content, "controller") == me.controller && pid > 0 && process_is_gone(pid)
}

/// True only when the process provably does not exist (ESRCH). EPERM means it
/// exists but belongs to someone else (a root run seen by an ordinary user): alive.
fn process_is_gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// One line describing a lock file's content, for messages.
fn describe(content: &str) -> String {
    let get = |k: &str| field(content, k);
    format!(
        "run {} by {} on {} since {} ({})",
        get("run_id"),
        get("operator"),
        get("controller"),
        get("started"),
        get("command")
    )
}

/// Take the lock on every host at once. A lock left by a killed run of this same
/// controller is taken over (with a warning); any other holder is named and the
/// locks taken so far are released.
pub async fn acquire_all(
    links: &[HostLink],
    info: &LockInfo,
    limit: Duration,
) -> Result<Vec<String>, String> {
    let takes = links.iter().map(|l| async move {
        let mut warning = None;
        for _ in 0..2 {
            match take(l, info, limit).await {
                Ok(()) => return Ok(warning),
                // Already ours: each hop of a path takes the run's lock again.
                Err(Held(content)) if field(&content, "run_id") == info.run_id => {
                    return Ok(warning)
                }
                Err(Held(content)) if is_stale(&content, info) && warning.is_none() => {
                    let old = format!("run_id={}", field(&content, "run_id"));
                    let release = lock_script("release", &lock_file(l), Some(&old));
                    let _ = l.run_privileged(&release, limit).await;
                    warning = Some(format!(
                        "{}: took over the stale lock of {} (that process is gone)",
                        l.name(),
                        describe(&content)
                    ));
                }
                Err(Held(content)) => {
                    return Err(format!(
                        "{}: locked by another etcdroll: {}. Wait for it to finish; if it died, run again with --break-lock",
                        l.name(),
                        describe(&content)
                    ))
                }
                Err(Failed(why)) => return Err(format!("{}: cannot take the lock: {why}", l.name())),
            }
        }
        Err(format!("{}: cannot take the lock", l.name()))
    });
    let results = join_all(takes).await;
    let problems: Vec<String> = results.iter().filter_map(|r| r.clone().err()).collect();
    if problems.is_empty() {
        return Ok(results
            .into_iter()
            .filter_map(|r| r.ok().flatten())
            .collect());
    }
    release_all(links, &info.run_id, limit).await;
    Err(problems.join("\n  "))
}

enum TakeError {
    Held(String),
    Failed(String),
}
use TakeError::{Failed, Held};

async fn take(l: &HostLink, info: &LockInfo, limit: Duration) -> Result<(), TakeError> {
    let file = lock_file(l);
    let script = lock_script("take", &file, Some(&info.text()));
    match l.run_privileged(&script, limit).await {
        Ok(o) if o.stdout_text().starts_with("taken") => Ok(()),
        Ok(o) if o.stdout_text().starts_with("held") => Err(Held(o.stdout_text())),
        Ok(o) if o.stdout_text().starts_with("notfile") => Err(Failed(format!(
            "{file} is not a regular file (a symlink or a device?): remove it after checking who made it"
        ))),
        Ok(o) => Err(Failed(format!("{file}: {}", o.last_error_line()))),
        Err(e) => Err(Failed(e.detail())),
    }
}

/// Remove our lock (only ours: a lock of another run is left alone).
pub async fn release_all(links: &[HostLink], run_id: &str, limit: Duration) {
    let frees = links.iter().map(|l| async move {
        let mine = format!("run_id={run_id}");
        let release = lock_script("release", &lock_file(l), Some(&mine));
        let _ = l.run_privileged(&release, limit).await;
    });
    join_all(frees).await;
}

/// `--break-lock`: show each existing lock, then remove it.
pub async fn break_all(links: &[HostLink], limit: Duration) -> Vec<String> {
    let breaks = links.iter().map(|l| async move {
        let script = lock_script("break", &lock_file(l), None);
        match l.run_privileged(&script, limit).await {
            Ok(o) if !o.stdout.is_empty() => Some(format!(
                "{}: removed the lock of {}",
                l.name(),
                describe(&o.stdout_text())
            )),
            _ => None,
        }
    });
    join_all(breaks).await.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::{lock_script, process_is_gone};

    /// `lock.sh` under each shell: take, held, release (only our own), break,
    /// and a symlink in the lock's place refused and never written through.
    #[test]
    fn the_lock_script_takes_holds_releases_and_breaks() {
        for shell in ["sh", "dash", "bash"] {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("run dir/etcdroll.lock");
            let file_s = file.display().to_string();
            let sh = |c: super::RemoteCommand| {
                let line = c.to_string();
                let words = line.strip_prefix("sh ").unwrap();
                let out = std::process::Command::new(shell)
                    .arg("-c")
                    .arg(format!("exec {shell} {words}"))
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{shell}: {out:?}");
                String::from_utf8(out.stdout).unwrap()
            };
            let ours = "run_id=abc\noperator=me $(id)\n";
            assert_eq!(
                sh(lock_script("take", &file_s, Some(ours))),
                "taken\n",
                "{shell}"
            );
            assert_eq!(std::fs::read_to_string(&file).unwrap(), ours);
            let theirs = "run_id=def\n";
            assert_eq!(
                sh(lock_script("take", &file_s, Some(theirs))),
                format!("held\n{ours}"),
                "{shell}: the holder is named"
            );
            sh(lock_script("release", &file_s, Some("run_id=def")));
            assert!(file.exists(), "{shell}: another run's lock is left alone");
            sh(lock_script("release", &file_s, Some("run_id=abc")));
            assert!(!file.exists(), "{shell}: our own lock is released");

            sh(lock_script("take", &file_s, Some(theirs)));
            assert_eq!(sh(lock_script("break", &file_s, None)), theirs, "{shell}");
            assert!(!file.exists(), "{shell}: broken");

            let victim = dir.path().join("victim");
            std::fs::write(&victim, "keep me").unwrap();
            std::os::unix::fs::symlink(&victim, &file).unwrap();
            assert_eq!(
                sh(lock_script("take", &file_s, Some(ours))),
                "notfile\n",
                "{shell}"
            );
            assert_eq!(
                std::fs::read_to_string(&victim).unwrap(),
                "keep me",
                "{shell}"
            );
        }
    }

    #[test]
    fn a_reaped_process_is_gone_and_a_running_one_is_not() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(process_is_gone(pid));
        assert!(!process_is_gone(std::process::id() as i32));
    }

    /// A process of another user answers EPERM: it is alive, and its lock is not
    /// stale. Checked from a forked child that drops to `nobody` (needs root).
    #[test]
    fn another_users_process_is_not_gone() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("ETCDROLL_REQUIRE_LAB").is_none(),
                "scripts/test runs as root: this test must run"
            );
            eprintln!("\n!!!!! another_users_process_is_not_gone needs root: SKIPPED !!!!!\n");
            return;
        }
        let me = std::process::id() as i32;
        // SAFETY: the child calls only async-signal-safe functions, then _exit.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                if libc::setresgid(65534, 65534, 65534) != 0
                    || libc::setresuid(65534, 65534, 65534) != 0
                {
                    libc::_exit(3);
                }
                libc::_exit(if process_is_gone(me) { 1 } else { 0 });
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            assert!(libc::WIFEXITED(status));
            assert_eq!(
                libc::WEXITSTATUS(status),
                0,
                "a process seen only through EPERM was taken for gone"
            );
        }
    }
}
