//! TLS to NATS with a server name other than the URL's host (`nats.tls_server_name`): the
//! server's certificate is verified against the configured CA, and must carry that name.
//! async-nats verifies the URL's host; a server reached by an address its certificate does
//! not name (an IP, a load balancer, a tunnel) needs this. Built on async-nats's own rustls.

use std::sync::Arc;

use async_nats::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::WebPkiServerVerifier,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};

/// Verifies as WebPKI does, for `name` instead of the name connected to.
#[derive(Debug)]
struct Named {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for Named {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _connected_to: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
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

/// Whether `name` can be a TLS server name (a DNS name or an IP address).
pub(crate) fn valid_name(name: &str) -> bool {
    ServerName::try_from(name.to_string()).is_ok()
}

/// A client configuration trusting the CA in `ca` and expecting `name`, with the client
/// certificate `client` (certificate and key files) if given. Errors name the key and file.
pub(crate) fn config(
    ca: &std::path::Path,
    name: &str,
    client: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("nats.tls_ca_file {}: {e}", ca.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("nats.tls_ca_file {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("nats.tls_ca_file {}: {e}", ca.display()))?;
    }
    let name = ServerName::try_from(name.to_string())
        .map_err(|_| format!("nats.tls_server_name {name:?} is not a DNS name or an IP address"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
        .build()
        .map_err(|e| format!("nats.tls_ca_file {}: {e}", ca.display()))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Named { inner, name }));
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|c| c.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("nats.tls_cert_file {}: {e}", cert.display()))?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("nats.tls_key_file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| format!("nats.tls_cert_file and nats.tls_key_file: {e}"))
        }
    }
}
