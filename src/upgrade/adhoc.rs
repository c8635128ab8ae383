//! `exec` (an ad-hoc command on every host) and `status` (every member as etcd
//! sees itself). Both fan out over all hosts at once.

use std::time::Duration;

use futures::future::join_all;

use crate::events::{Emitter, Event, HostRecap, MemberRow};
use crate::exit;
use crate::ssh::RemoteCommand;

use super::fleet::HostLink;

/// The command line an operator typed after `--`: one word is a shell command line
/// (pipes and variables work, as with Ansible's shell module); several words are a
/// program and its arguments, each passed through unchanged.
pub fn command_from_args(args: &[String]) -> RemoteCommand {
    match args {
        [one] => RemoteCommand::script(one),
        [prog, rest @ ..] => RemoteCommand::new(prog).args(rest),
        [] => RemoteCommand::script("true"),
    }
}

/// Run `cmd` on every host at once; returns the exit code for the whole run.
pub async fn exec(
    links: &[HostLink],
    cmd: &RemoteCommand,
    limit: Duration,
    privileged: bool,
    emit: &Emitter,
) -> i32 {
    let runs = links.iter().map(|link| async move {
        let Ok(_) = link.session() else {
            return (link.name().to_string(), None);
        };
        let res = if privileged {
            link.run_privileged(cmd, limit).await
        } else {
            link.run(cmd, limit).await
        };
        (link.name().to_string(), Some(res))
    });
    let mut recap = Vec::new();
    for (host, res) in join_all(runs).await {
        match res {
            None => {
                let error = links
                    .iter()
                    .find(|l| l.name() == host)
                    .and_then(|l| l.session().err())
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                emit(Event::HostUnreachable {
                    host: host.clone(),
                    error,
                });
                recap.push(HostRecap {
                    host,
                    ok: false,
                    unreachable: true,
                });
            }
            Some(Err(e)) => {
                emit(Event::ExecResult {
                    host: host.clone(),
                    exit_status: None,
                    stdout: String::new(),
                    stderr: e.to_string(),
                    ok: false,
                });
                recap.push(HostRecap {
                    host,
                    ok: false,
                    unreachable: false,
                });
            }
            Some(Ok(out)) => {
                let ok = out.success();
                emit(Event::ExecResult {
                    host: host.clone(),
                    exit_status: out.exit_status,
                    stdout: out.stdout_text(),
                    stderr: out.stderr_text(),
                    ok,
                });
                recap.push(HostRecap {
                    host,
                    ok,
                    unreachable: false,
                });
            }
        }
    }
    let code = recap_exit_code(&recap);
    emit(Event::Recap { hosts: recap });
    code
}

fn recap_exit_code(recap: &[HostRecap]) -> i32 {
    if recap.iter().any(|r| r.unreachable) {
        exit::UNREACHABLE
    } else if recap.iter().any(|r| !r.ok) {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// Ask every member, through its own tunnel, for its version, health and status.
pub async fn status(links: &[HostLink], limit: Duration, emit: &Emitter) -> i32 {
    let rows = join_all(links.iter().map(|l| member_row(l, limit))).await;
    // Names come from the member list, asked of any member that answers.
    let mut names = std::collections::HashMap::new();
    for link in links {
        if let Ok(mut c) = link.etcd_client(limit).await {
            if let Ok(ms) = c.members().await {
                for m in ms {
                    names.insert(format!("{:x}", m.id), m.name);
                }
                break;
            }
        }
    }
    let mut unreachable = false;
    let mut unhealthy = false;
    let mut out = Vec::new();
    for mut row in rows {
        if let Some(n) = names.get(&row.id) {
            row.name = n.clone();
        }
        if row.error.is_some()
            && links
                .iter()
                .any(|l| l.name() == row.host && l.session().is_err())
        {
            unreachable = true;
        }
        unhealthy |= !row.healthy;
        emit(Event::MemberStatus(row.clone()));
        out.push(row);
    }
    let leader = out.iter().find(|r| r.leader).map(|r| r.host.clone());
    emit(Event::Cluster {
        name: None,
        cluster_version: out
            .iter()
            .find(|r| !r.cluster_version.is_empty())
            .map(|r| r.cluster_version.clone())
            .unwrap_or_default(),
        leader,
        healthy: out.iter().filter(|r| r.healthy).count(),
        members: out.len(),
    });
    emit(Event::Summary { rows: out });
    if unreachable {
        exit::UNREACHABLE
    } else if unhealthy {
        exit::FAILED
    } else {
        exit::OK
    }
}

async fn member_row(link: &HostLink, limit: Duration) -> MemberRow {
    let mut row = MemberRow {
        host: link.name().to_string(),
        name: String::new(),
        id: String::new(),
        server_version: String::new(),
        cluster_version: String::new(),
        healthy: false,
        leader: false,
        raft_index: 0,
        db_size: 0,
        address: format!("{}:{}", link.host.address, link.host.port.unwrap_or(22)),
        client_url: link.host.etcd.client_url.clone(),
        raft_term: 0,
        error: None,
    };
    let mut client = match link.etcd_client(limit).await {
        Ok(c) => c,
        Err(e) => {
            row.error = Some(e);
            return row;
        }
    };
    match client.version().await {
        Ok(v) => {
            row.server_version = v.server;
            row.cluster_version = v.cluster;
        }
        Err(e) => {
            row.error = Some(e.to_string());
            return row;
        }
    }
    match client.health().await {
        Ok(h) => {
            row.healthy = h.healthy;
            if !h.healthy {
                row.error = Some(format!("/health answered {}", h.answer));
            }
        }
        Err(e) => row.error = Some(e.to_string()),
    }
    match client.status().await {
        Ok(s) => {
            row.id = format!("{:x}", s.member_id);
            row.leader = s.leader != 0 && s.leader == s.member_id;
            row.raft_index = s.raft_index;
            row.db_size = s.db_size;
            row.raft_term = s.raft_term;
        }
        Err(e) => {
            row.error.get_or_insert(e.to_string());
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_is_a_shell_line_several_are_argv() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_from_args(&args(&["echo $HOME | wc -c"])).as_str(),
            "echo $HOME | wc -c"
        );
        assert_eq!(
            command_from_args(&args(&["printf", "%s", "a; b"])).as_str(),
            "printf '%s' 'a; b'"
        );
    }
}
