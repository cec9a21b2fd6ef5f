//! TLS on the PB port: the `[master] pb_tls` files made into an acceptor, and the
//! handshake of one connection, bounded like a login.

use crate::config::PbTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Reads the certificate chain and its key; an error names the setting's line and
/// the file. Workers do not present certificates: they log in with a password.
pub fn acceptor(tls: &PbTls) -> Result<TlsAcceptor, String> {
    let fail = |e: String| format!("pb_tls (line {}): {e}", tls.line);
    let certs = certificates(&tls.cert_file).map_err(fail)?;
    let key = private_key(&tls.key_file).map_err(fail)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            fail(format!(
                "{} with {}: {e}",
                tls.cert_file.display(),
                tls.key_file.display()
            ))
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            format!("{}: no PEM private key in it", path.display())
        }
        e => format!("{}: {e}", path.display()),
    })
}

/// The server side of the handshake, given up at `deadline` (the connection's login
/// deadline) or on shutdown: a peer that stalls it holds its admission slot no
/// longer than one that never logs in. Failures are logged, not returned.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Option<TlsStream<TcpStream>> {
    let done = tokio::select! {
        done = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => done,
        _ = shutdown.cancelled() => return None,
    };
    match done {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            info!(peer = %peer, "TLS handshake failed: {}", shortened(&e.to_string()));
            None
        }
        Err(_) => {
            info!(peer = %peer, "TLS handshake not done by the login deadline");
            None
        }
    }
}

/// An error as it may appear in a log: bounded, control characters escaped.
fn shortened(s: &str) -> String {
    const MAX: usize = 160;
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_debug).collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &str, key: &str) -> PbTls {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join("cert.pem"), cert).expect("cert");
        std::fs::write(dir.join("key.pem"), key).expect("key");
        PbTls {
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
            line: 7,
        }
    }

    fn refused(tls: &PbTls) -> String {
        match acceptor(tls) {
            Ok(_) => panic!("accepted {tls:?}"),
            Err(e) => e,
        }
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pbmaster-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_missing_file_names_the_line_and_the_file() {
        let tls = PbTls {
            cert_file: "/nonexistent/cert.pem".into(),
            key_file: "/nonexistent/key.pem".into(),
            line: 3,
        };
        let e = refused(&tls);
        assert!(
            e.starts_with("pb_tls (line 3): /nonexistent/cert.pem: "),
            "{e}"
        );
    }

    #[test]
    fn files_without_pem_items_are_refused() {
        let dir = scratch("empty");
        let e = refused(&files(&dir, "not a certificate\n", ""));
        assert!(e.contains("no PEM certificate"), "{e}");
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = refused(&files(&dir, cert, "nothing\n"));
        assert!(e.contains("no PEM private key"), "{e}");
        let e = refused(&files(&dir, cert, "-----BEGIN PRIVATE KEY-----\n!!\n"));
        assert!(e.contains("key.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_text_is_bounded_and_escaped() {
        let long = "x\n".repeat(500);
        let s = shortened(&long);
        assert!(!s.contains('\n'));
        assert!(s.ends_with('…'));
        assert!(s.chars().count() <= 2 * 160 + 1);
        assert_eq!(shortened("short"), "short");
    }
}
