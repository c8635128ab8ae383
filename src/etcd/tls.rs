//! TLS to etcd's client port, with the CA and client certificate the member's own
//! clients use (read from the host into memory by the caller, never written here).

use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A connector that verifies the server against `ca_pem` and, when given, presents
/// the client certificate (etcd's `--client-cert-auth`).
pub fn connector(ca_pem: &[u8], client: Option<(&[u8], &[u8])>) -> Result<TlsConnector, String> {
    let mut roots = RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("etcd_cacert: not a PEM certificate: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("etcd_cacert: unusable CA certificate: {e}"))?;
        n += 1;
    }
    if n == 0 {
        return Err("etcd_cacert holds no PEM certificate".into());
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        Some((cert_pem, key_pem)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("etcd_cert: not a PEM certificate: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem)
                .map_err(|e| format!("etcd_key: not a PEM private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("etcd_cert/etcd_key: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The name the server certificate must carry: the client URL's host (an IP
/// address or a DNS name).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))
}
