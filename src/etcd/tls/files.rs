//! Reading certificates, keys, CA bundles and CRLs from PEM files; every error names the
//! flag and the file.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::RootCertStore;

use super::TlsError;

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        flag: flag.to_string(),
        path: path.to_path_buf(),
        error,
    })
}

fn bad(flag: &str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Parse {
        flag: flag.to_string(),
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Every `label` block of PEM `data`; at least one.
fn all_blocks<T: PemObject>(flag: &str, path: &Path, data: &[u8], label: &str) -> Result<Vec<T>, TlsError> {
    let blocks = T::pem_slice_iter(data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(flag, path, format!("invalid PEM: {e}")))?;
    if blocks.is_empty() {
        return Err(bad(flag, path, format!("no {label} block found")));
    }
    Ok(blocks)
}

/// All certificates of a PEM file (a chain, leaf first, or a CA bundle); at least one.
pub fn certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    all_blocks(flag, path, &read(flag, path)?, "CERTIFICATE")
}

/// The private key of a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub fn key(flag: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(flag, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| bad(flag, path, format!("no usable private key: {e}")))
}

/// A trust store made of every certificate of a CA file.
pub fn roots(flag: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs(flag, path)? {
        store
            .add(c)
            .map_err(|e| bad(flag, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(store)
}

/// Certificate revocation lists of a CRL file, PEM (`X509 CRL` blocks) or DER (as Go accepts).
pub fn crls(flag: &str, path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let data = read(flag, path)?;
    // DER starts with a SEQUENCE tag; anything else is read as PEM.
    if data.first() == Some(&0x30) {
        return Ok(vec![CertificateRevocationListDer::from(data)]);
    }
    all_blocks(flag, path, &data, "X509 CRL")
}

/// A certificate chain and its key, checked to belong together.
pub fn certified_key(
    cert_flag: &str,
    cert_path: &Path,
    key_flag: &str,
    key_path: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let chain = certs(cert_flag, cert_path)?;
    let key = key(key_flag, key_path)?;
    rustls::sign::CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| {
            bad(
                key_flag,
                key_path,
                format!("does not match --{cert_flag} {}: {e}", cert_path.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_flag_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = certs("cert-file", &missing).unwrap_err().to_string();
        assert!(e.starts_with("cannot read --cert-file "), "{e}");
        assert!(e.contains("missing.pem"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let e = certs("trusted-ca-file", &junk).unwrap_err().to_string();
        assert!(
            e.contains("--trusted-ca-file") && e.contains("no CERTIFICATE block"),
            "{e}"
        );
        let e = key("key-file", &junk).unwrap_err().to_string();
        assert!(e.contains("--key-file") && e.contains("no usable private key"), "{e}");
        let e = crls("client-crl-file", &junk).unwrap_err().to_string();
        assert!(e.contains("--client-crl-file"), "{e}");
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).unwrap();
        let (cert, key_file) = (dir.path().join("a.pem"), dir.path().join("b-key.pem"));
        std::fs::write(&cert, a.cert.pem()).unwrap();
        std::fs::write(&key_file, b.signing_key.serialize_pem()).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let e = certified_key("cert-file", &cert, "key-file", &key_file, &provider).unwrap_err();
        assert!(e.to_string().contains("does not match --cert-file"), "{e}");
        std::fs::write(&key_file, a.signing_key.serialize_pem()).unwrap();
        assert!(certified_key("cert-file", &cert, "key-file", &key_file, &provider).is_ok());
    }
}
