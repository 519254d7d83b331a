//! `--auto-tls` / `--peer-auto-tls`: like etcd's `transport.SelfCert`, a self-signed
//! certificate for the listen URLs' hosts, valid `--self-signed-cert-validity` years, kept
//! in `<data-dir>/fixtures/{client,peer}/{cert,key}.pem` and reused on restart.

use std::path::Path;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use time::OffsetDateTime;
use url::Url;

use super::{TlsError, TlsInfo};

/// The hosts of `urls`, deduplicated, as certificate subject alternative names.
pub fn hosts(urls: &[Url]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in urls {
        if let Some(h) = u.host_str() {
            let h = h.trim_start_matches('[').trim_end_matches(']').to_string();
            if !out.contains(&h) {
                out.push(h);
            }
        }
    }
    out
}

/// A self-signed certificate and key (PEM) for `hosts`, valid from now for `years`.
pub fn generate(hosts: &[String], years: u32, client_auth: bool) -> Result<(String, String), TlsError> {
    let err = |e: rcgen::Error| TlsError::SelfSigned(e.to_string());
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(err)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "etcd");
    let now = OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + time::Duration::days(365 * i64::from(years.max(1)));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if client_auth {
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write(path: &Path, data: &str, mode: u32) -> Result<(), TlsError> {
    let io = |error| TlsError::Write {
        path: path.to_path_buf(),
        error,
    };
    std::fs::write(path, data).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    Ok(())
}

/// With auto TLS and no certificate files, points `info` at a generated (or previously
/// generated) self-signed pair under `data_dir/fixtures/<side>`. Otherwise leaves it alone
/// (etcd ignores `--auto-tls` when files are given).
pub fn ensure(info: &mut TlsInfo, data_dir: &Path, urls: &[Url], years: u32) -> Result<(), TlsError> {
    if !info.auto_tls || info.has_cert() {
        return Ok(());
    }
    let side = if info.prefix.is_empty() { "client" } else { "peer" };
    let dir = data_dir.join("fixtures").join(side);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !(cert.exists() && key.exists()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(|error| TlsError::Write {
            path: dir.clone(),
            error,
        })?;
        let (cert_pem, key_pem) = generate(&hosts(urls), years, side == "peer")?;
        write(&key, &key_pem, 0o600)?;
        write(&cert, &cert_pem, 0o644)?;
        tracing::info!(cert = %cert.display(), "generated a self-signed {side} certificate (--{}auto-tls)", info.prefix);
    }
    info.cert_file = Some(cert);
    info.key_file = Some(key);
    info.self_signed = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_taken_from_the_urls_once() {
        let urls: Vec<Url> = [
            "https://127.0.0.1:2379",
            "https://localhost:2379",
            "https://127.0.0.1:4001",
        ]
        .iter()
        .map(|u| Url::parse(u).unwrap())
        .collect();
        assert_eq!(hosts(&urls), vec!["127.0.0.1", "localhost"]);
    }

    #[test]
    fn auto_tls_generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let urls = vec![Url::parse("https://127.0.0.1:2380").unwrap()];
        let mut info = TlsInfo::peer("", "", "", false, "", true, "");
        ensure(&mut info, dir.path(), &urls, 2).unwrap();
        let cert = info.cert_file.clone().unwrap();
        assert!(cert.ends_with("fixtures/peer/cert.pem"));
        assert!(info.self_signed);
        let first = std::fs::read(&cert).unwrap();
        let mut again = TlsInfo::peer("", "", "", false, "", true, "");
        ensure(&mut again, dir.path(), &urls, 2).unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first);
        // The generated pair loads and belongs together.
        let provider = rustls::crypto::ring::default_provider();
        let key = info.key_file.clone().unwrap();
        assert!(super::super::files::certified_key("c", &cert, "k", &key, &provider).is_ok());
        // Files given explicitly win over --auto-tls.
        let mut given = TlsInfo::client("/c.pem", "/k.pem", "", false, "", true);
        ensure(&mut given, dir.path(), &urls, 1).unwrap();
        assert_eq!(given.cert_file.as_deref(), Some(Path::new("/c.pem")));
        assert!(!given.self_signed);
    }
}
