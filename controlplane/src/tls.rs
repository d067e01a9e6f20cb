//! The appliance's TLS identity, for WSS, HTTPS and SIP over TLS.
//!
//! With `[tls] cert` and `key` set, those PEM files are used. Without them a
//! self-signed certificate is made on first start, kept in
//! `<state_dir>/tls/` (key readable by the owner only) and reused on every
//! later start, so that clients that pinned its fingerprint keep working;
//! the SHA-256 fingerprint is logged at start-up.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use rustls_pki_types::{ServerName, UnixTime};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("{0} holds no PEM private key")]
    NoKey(PathBuf),
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
    #[error("certificate and key do not form a usable TLS identity: {0}")]
    Config(rustls::Error),
}

/// The cryptography of every TLS endpoint of the appliance, server and
/// client: aws-lc-rs, whose X25519 and ECDSA P-256 take about half of
/// ring's time on x86-64 (a client's sign-in is mostly its handshake's key
/// exchange; docs/benchmarks.md, client-bench). Key exchange prefers the
/// hybrid X25519MLKEM768 that current browsers offer, then X25519.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Certificate chain and key, as the TLS listeners need them.
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Where it came from, for the log line.
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Configured,
    Generated,
    Reused,
}

impl TlsIdentity {
    /// SHA-256 of the leaf certificate, as colon-separated hex (what
    /// browsers and `openssl x509 -fingerprint -sha256` show).
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.chain.first().map_or(&[][..], |c| c.as_ref()));
        digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }

    /// SHA-256 of the leaf certificate, as announced to the fleet.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.chain.first().map_or(&[][..], |c| c.as_ref())).into()
    }

    /// A rustls server configuration; `alpn` lists the protocols offered
    /// (e.g. `h2`, `http/1.1`).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(TlsError::Config)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // Resumption for clients that reconnect (a browser's SDK after a
        // network change, a carrier's TLS trunk): stateless tickets, whose
        // key rotates every 6 hours, so that any number of clients can
        // resume, where rustls' default is a cache of 256 sessions and two
        // tickets a handshake. A resumed handshake skips the certificate
        // signature on our side and its verification on the client's.
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(TlsError::Config)?;
        config.send_tls13_tickets = 1;
        Ok(Arc::new(config))
    }
}

/// Loads the configured certificate and key, or the generated ones from
/// `state_dir`, making them on first use. `names` go in the generated
/// certificate's subject alternative names.
pub fn load_or_generate(
    configured: Option<(&Path, &Path)>,
    state_dir: &Path,
    names: &[String],
) -> Result<TlsIdentity, TlsError> {
    if let Some((cert, key)) = configured {
        let mut identity = load(cert, key)?;
        identity.origin = Origin::Configured;
        return Ok(identity);
    }
    let dir = state_dir.join("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        let mut identity = load(&cert, &key)?;
        identity.origin = Origin::Reused;
        return Ok(identity);
    }
    let generated =
        rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| TlsError::Generate(e.to_string()))?;
    std::fs::create_dir_all(&dir).map_err(|e| TlsError::Write(dir.clone(), e))?;
    write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, generated.cert.pem()).map_err(|e| TlsError::Write(cert.clone(), e))?;
    let mut identity = load(&cert, &key)?;
    identity.origin = Origin::Generated;
    Ok(identity)
}

fn load(cert: &Path, key: &Path) -> Result<TlsIdentity, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|e| TlsError::Read(cert.to_path_buf(), e))?;
    let key_pem = std::fs::read(key).map_err(|e| TlsError::Read(key.to_path_buf(), e))?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey(key.to_path_buf()))?;
    Ok(TlsIdentity { chain, key, origin: Origin::Configured })
}

/// Writes a key file that only its owner can read, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| TlsError::Write(path.to_path_buf(), e))
}

/// The certificates (SHA-256 of each leaf) of the fleet's
/// appliances, as their sealed announcements name them; the announcer
/// refreshes it every second.
#[derive(Debug, Clone, Default)]
pub struct FleetCerts(Arc<RwLock<HashSet<[u8; 32]>>>);

impl FleetCerts {
    pub fn replace(&self, certs: impl IntoIterator<Item = [u8; 32]>) {
        let certs: HashSet<[u8; 32]> = certs.into_iter().collect();
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = certs;
    }

    pub fn insert(&self, cert: [u8; 32]) {
        self.0.write().unwrap_or_else(PoisonError::into_inner).insert(cert);
    }

    pub fn contains(&self, cert: &CertificateDer<'_>) -> bool {
        let digest: [u8; 32] = Sha256::digest(cert.as_ref()).into();
        self.0.read().unwrap_or_else(PoisonError::into_inner).contains(&digest)
    }
}

/// Trusts a fleet appliance's certificate by its announced SHA-256 (whatever
/// name or issuer it has: appliances use self-signed ones by default), and
/// every other certificate as `inner` does. The handshake's signature is
/// checked either way, so the peer holds the certificate's key.
#[derive(Debug)]
pub struct FleetVerifier {
    fleet: FleetCerts,
    inner: Arc<dyn ServerCertVerifier>,
}

impl FleetVerifier {
    pub fn new(fleet: FleetCerts, inner: Arc<dyn ServerCertVerifier>) -> FleetVerifier {
        FleetVerifier { fleet, inner }
    }
}

impl ServerCertVerifier for FleetVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.fleet.contains(end_entity) {
            return Ok(ServerCertVerified::assertion());
        }
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bh-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A TLS handshake with `identity` through `fleet` (over the web's
    /// roots otherwise): whether it succeeds.
    async fn handshake(identity: &TlsIdentity, fleet: &FleetCerts) -> bool {
        let server = tokio_rustls::TlsAcceptor::from(identity.server_config(&[]).unwrap());
        let config = crate::instructions::http::sip_tls_config(&Default::default(), fleet.clone()).unwrap();
        let client = tokio_rustls::TlsConnector::from(Arc::new(config));
        let (a, b) = tokio::io::duplex(64 * 1024);
        let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let (accepted, connected) = tokio::join!(server.accept(a), client.connect(name, b));
        accepted.is_ok() && connected.is_ok()
    }

    #[tokio::test]
    async fn a_fleet_certificate_is_trusted_by_its_announced_hash_only() {
        let dir = temp_dir("fleet");
        let peer = load_or_generate(None, &dir, &["127.0.0.1".to_string()]).unwrap();
        let fleet = FleetCerts::default();
        assert!(!handshake(&peer, &fleet).await, "self-signed and not announced: refused");
        fleet.replace([[7u8; 32]]);
        assert!(!handshake(&peer, &fleet).await, "another appliance's hash: refused");
        fleet.replace([peer.sha256()]);
        assert!(handshake(&peer, &fleet).await, "announced: trusted");
        fleet.replace([]);
        assert!(!handshake(&peer, &fleet).await, "no longer live: refused again");
    }

    #[tokio::test]
    async fn a_client_that_comes_back_resumes_its_session() {
        let dir = temp_dir("resume");
        let identity = load_or_generate(None, &dir, &["127.0.0.1".to_string()]).unwrap();
        let server = tokio_rustls::TlsAcceptor::from(identity.server_config(&[]).unwrap());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(identity.chain[0].clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = tokio_rustls::TlsConnector::from(Arc::new(config));
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
            let (accepted, connected) = tokio::join!(server.accept(a), client.connect(name, b));
            let (mut accepted, mut connected) = (accepted.unwrap(), connected.unwrap());
            // The ticket comes after the handshake, with the server's first write.
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            accepted.write_all(b"x").await.unwrap();
            accepted.flush().await.unwrap();
            let mut byte = [0u8; 1];
            connected.read_exact(&mut byte).await.unwrap();
            kinds.push(connected.get_ref().1.handshake_kind());
        }
        assert_eq!(
            kinds,
            [Some(rustls::HandshakeKind::Full), Some(rustls::HandshakeKind::Resumed)],
            "the second connection resumes with the ticket of the first"
        );
    }

    #[test]
    fn generates_once_then_reuses() {
        let dir = temp_dir("gen");
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let first = load_or_generate(None, &dir, &names).unwrap();
        assert_eq!(first.origin, Origin::Generated);
        let second = load_or_generate(None, &dir, &names).unwrap();
        assert_eq!(second.origin, Origin::Reused);
        assert_eq!(first.fingerprint(), second.fingerprint());
        assert_eq!(first.fingerprint().len(), 32 * 3 - 1);
        let mode = std::fs::metadata(dir.join("tls/key.pem")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077, 0, "key readable by owner only");
        first.server_config(&[b"http/1.1"]).unwrap();
    }

    #[test]
    fn configured_files_win_and_bad_ones_are_named() {
        let dir = temp_dir("conf");
        let made = load_or_generate(None, &dir, &["bh.example".to_string()]).unwrap();
        let (cert, key) = (dir.join("tls/cert.pem"), dir.join("tls/key.pem"));
        let other = temp_dir("conf-other");
        let loaded = load_or_generate(Some((&cert, &key)), &other, &[]).unwrap();
        assert_eq!(loaded.origin, Origin::Configured);
        assert_eq!(loaded.fingerprint(), made.fingerprint());
        assert!(!other.join("tls").exists(), "nothing generated when files are configured");

        let missing = dir.join("nope.pem");
        assert!(
            matches!(load_or_generate(Some((&missing, &key)), &other, &[]), Err(TlsError::Read(p, _)) if p == missing)
        );
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not pem").unwrap();
        assert!(matches!(load_or_generate(Some((&garbage, &key)), &other, &[]), Err(TlsError::NoCertificate(_))));
        assert!(matches!(load_or_generate(Some((&cert, &garbage)), &other, &[]), Err(TlsError::NoKey(_))));
    }
}
