//! Logging in: public key authentication the way OpenSSH goes about it. Key
//! files first (the host's, then the command line's), each with a user
//! certificate beside it if there is one, then ssh-agent's keys and
//! certificates, then the default key files. Encrypted keys are decrypted once
//! per run, whatever number of hosts use them.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::{self, HashAlg, PrivateKey, PrivateKeyWithHashAlg};

use super::host_key::HostKeyCheck;
use super::{Endpoint, SshError, SshOptions};

/// Private keys read (and decrypted) so far in this run, by file.
#[derive(Default)]
pub(super) struct KeyCache {
    keys: tokio::sync::Mutex<HashMap<PathBuf, Arc<PrivateKey>>>,
}

impl KeyCache {
    /// Load (and decrypt once per run) a private key file.
    async fn load(&self, path: &Path) -> Result<Arc<PrivateKey>, String> {
        let mut cache = self.keys.lock().await;
        if let Some(k) = cache.get(path) {
            return Ok(k.clone());
        }
        let key = match keys::load_secret_key(path, None) {
            Ok(k) => k,
            Err(keys::Error::KeyIsEncrypted) => {
                let pass = passphrase_for(path)?;
                keys::load_secret_key(path, Some(&pass))
                    .map_err(|e| format!("cannot decrypt key {}: {e}", path.display()))?
            }
            Err(e) => return Err(format!("cannot read key {}: {e}", path.display())),
        };
        let key = Arc::new(key);
        cache.insert(path.to_path_buf(), key.clone());
        Ok(key)
    }
}

/// Key files first (the host's, then the command line's, then the defaults),
/// with the agent's keys tried before the defaults, as OpenSSH does.
pub(super) async fn authenticate(
    handle: &mut Handle<HostKeyCheck>,
    ep: &Endpoint,
    opts: &SshOptions,
    key_cache: &KeyCache,
) -> Result<(), SshError> {
    let auth_err = |reason: String| SshError::Auth {
        host: ep.label.clone(),
        user: ep.user.clone(),
        reason,
    };
    let rsa_hash: Option<HashAlg> = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| auth_err(e.to_string()))?
        .flatten();
    let mut tried: Vec<String> = Vec::new();

    let explicit: Vec<PathBuf> = ep
        .identity_file
        .iter()
        .chain(opts.identity_files.iter())
        .cloned()
        .collect();
    for path in &explicit {
        tracing::info!(target: "etcdroll::ssh", "{}: trying key file {}", ep.label, path.display());
        let key = key_cache.load(path).await.map_err(&auth_err)?;
        // A user certificate beside the key (`KEY-cert.pub`), as OpenSSH
        // finds it, is offered first.
        if let Some(cert) = user_certificate(path) {
            let ok = handle
                .authenticate_openssh_cert(&ep.user, key.clone(), cert)
                .await
                .map_err(|e| auth_err(e.to_string()))?
                .success();
            if ok {
                return Ok(());
            }
            tried.push(format!("{}-cert.pub", path.display()));
        }
        if try_key(handle, &ep.user, key, rsa_hash)
            .await
            .map_err(|e| auth_err(e.to_string()))?
        {
            return Ok(());
        }
        tried.push(path.display().to_string());
    }

    if opts.use_agent && std::env::var_os("SSH_AUTH_SOCK").is_some() {
        match keys::agent::client::AgentClient::connect_env().await {
            Ok(mut agent) => {
                let ids = agent.request_identities().await.unwrap_or_default();
                tracing::info!(target: "etcdroll::ssh", "{}: trying the {} identities of ssh-agent", ep.label, ids.len());
                for id in ids {
                    match id {
                        keys::agent::AgentIdentity::PublicKey { key, comment } => {
                            let hash = if key.algorithm().is_rsa() {
                                rsa_hash
                            } else {
                                None
                            };
                            match handle
                                .authenticate_publickey_with(&ep.user, key, hash, &mut agent)
                                .await
                            {
                                Ok(r) if r.success() => return Ok(()),
                                _ => tried.push(format!("agent key {comment}")),
                            }
                        }
                        // A user certificate held in the agent with its key.
                        keys::agent::AgentIdentity::Certificate {
                            certificate,
                            comment,
                        } => {
                            let hash = if certificate.algorithm().is_rsa() {
                                rsa_hash
                            } else {
                                None
                            };
                            match handle
                                .authenticate_certificate_with(
                                    &ep.user,
                                    certificate,
                                    hash,
                                    &mut agent,
                                )
                                .await
                            {
                                Ok(r) if r.success() => return Ok(()),
                                _ => tried.push(format!("agent certificate {comment}")),
                            }
                        }
                    }
                }
            }
            Err(e) => tried.push(format!("ssh-agent (unusable: {e})")),
        }
    }

    if explicit.is_empty() {
        if let Some(home) = std::env::var_os("HOME") {
            for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
                let path = Path::new(&home).join(".ssh").join(name);
                if !path.exists() {
                    continue;
                }
                let key = match key_cache.load(&path).await {
                    Ok(k) => k,
                    Err(e) => {
                        tried.push(format!("{} ({e})", path.display()));
                        continue;
                    }
                };
                if try_key(handle, &ep.user, key, rsa_hash)
                    .await
                    .map_err(|e| auth_err(e.to_string()))?
                {
                    return Ok(());
                }
                tried.push(path.display().to_string());
            }
        }
    }
    Err(auth_err(if tried.is_empty() {
        "no key to try: give ansible_ssh_private_key_file, --private-key, or load a key into ssh-agent"
            .to_string()
    } else {
        format!("the server refused every key tried: {}", tried.join(", "))
    }))
}

/// `KEY-cert.pub` beside a key file, if it is there and reads as a certificate.
fn user_certificate(key: &Path) -> Option<keys::Certificate> {
    let mut name = key.as_os_str().to_owned();
    name.push("-cert.pub");
    let text = std::fs::read_to_string(Path::new(&name)).ok()?;
    keys::Certificate::from_openssh(text.trim()).ok()
}

async fn try_key(
    handle: &mut Handle<HostKeyCheck>,
    user: &str,
    key: Arc<PrivateKey>,
    rsa_hash: Option<HashAlg>,
) -> Result<bool, russh::Error> {
    let r = handle
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, rsa_hash))
        .await?;
    Ok(r.success())
}

/// The passphrase of an encrypted key: from `ETCDROLL_KEY_PASSPHRASE` for automation,
/// else asked on the terminal.
fn passphrase_for(path: &Path) -> Result<String, String> {
    if let Some(p) = crate::secret_env::get(crate::secret_env::KEY_PASSPHRASE) {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(format!(
            "key {} is encrypted: set ETCDROLL_KEY_PASSPHRASE, load it into ssh-agent, or run on a terminal",
            path.display()
        ));
    }
    rpassword::prompt_password(format!("Passphrase for {}: ", path.display()))
        .map_err(|e| format!("cannot read passphrase: {e}"))
}
