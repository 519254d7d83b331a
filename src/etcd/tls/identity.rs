//! Who is at the other end of a TLS connection: the common name (CN) of the client
//! certificate, attached to every request of the connection as a [`ClientIdentity`]
//! extension. With auth enabled and `--client-cert-auth`, a request without a token is
//! made by the user named by that CN (etcd's `AuthInfoFromTLS`).
//!
//! The CN is read with a small DER walk of the certificate's subject: rustls and webpki
//! verify certificates but do not expose their names, and a full X.509 parser would be a
//! large dependency for one field.

/// The verified client certificate's subject CN, if the connection presented one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientIdentity {
    pub common_name: Option<String>,
}

/// One DER element: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// 2.5.4.3, id-at-commonName.
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

/// Decodes a directory string (UTF8String, PrintableString, IA5String, T61String, BMPString).
fn directory_string(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8(value.to_vec()).ok(),
        0x1e => {
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// The subject CN of a DER certificate (the last one when there are several, as Go's
/// `pkix.Name.CommonName`), or None if it has none or cannot be read.
pub fn common_name(cert_der: &[u8]) -> Option<String> {
    let (tag, cert, _) = element(cert_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // Optional [0] version, then serial, signature algorithm, issuer, validity, subject.
    let (tag, _, after) = element(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (tag, mut rdns, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut found = None;
    while !rdns.is_empty() {
        let (tag, mut set, next) = element(rdns)?;
        rdns = next;
        if tag != SET {
            return None;
        }
        while !set.is_empty() {
            let (_, atv, next) = element(set)?;
            set = next;
            let (tag, oid, value) = element(atv)?;
            if tag == OID && oid == CN_OID {
                let (vtag, v, _) = element(value)?;
                found = directory_string(vtag, v).or(found);
            }
        }
    }
    found
}

/// `--peer-cert-allowed-cn`: a connection is accepted only with that CN.
pub fn check_allowed_cn(allowed: Option<&str>, cn: Option<&str>) -> Result<(), String> {
    match (allowed, cn) {
        (None, _) => Ok(()),
        (Some(a), Some(c)) if a == c => Ok(()),
        (Some(a), c) => Err(format!(
            "client certificate CN {:?} is not the allowed CN {a:?} (--peer-cert-allowed-cn)",
            c.unwrap_or_default()
        )),
    }
}

/// `--client-cert-allowed-hostname` / `--peer-cert-allowed-hostname`: the client
/// certificate must be valid for that host name (its subject alternative names, as Go's
/// `VerifyHostname`).
pub fn check_allowed_hostname(allowed: Option<&str>, leaf: Option<&[u8]>) -> Result<(), String> {
    let Some(host) = allowed else { return Ok(()) };
    let Some(der) = leaf else {
        return Err(format!(
            "no client certificate to check against the allowed hostname {host:?}"
        ));
    };
    let der = rustls::pki_types::CertificateDer::from(der);
    let cert = webpki::EndEntityCert::try_from(&der).map_err(|e| format!("unreadable client certificate: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| format!("allowed hostname {host:?}: {e}"))?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|_| format!("client certificate is not valid for the allowed hostname {host:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, DnValue, KeyPair};

    fn cert_with(dn: &[(DnType, DnValue)]) -> Vec<u8> {
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            p.distinguished_name.push(t.clone(), v.clone());
        }
        let key = KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn common_name_is_read_from_the_subject() {
        let der = cert_with(&[
            (DnType::OrganizationName, DnValue::Utf8String("etcd".into())),
            (DnType::CommonName, DnValue::Utf8String("root".into())),
        ]);
        assert_eq!(common_name(&der).as_deref(), Some("root"));
        let der = cert_with(&[(
            DnType::CommonName,
            DnValue::PrintableString("member-1".try_into().unwrap()),
        )]);
        assert_eq!(common_name(&der).as_deref(), Some("member-1"));
        let der = cert_with(&[(DnType::OrganizationName, DnValue::Utf8String("etcd".into()))]);
        assert_eq!(common_name(&der), None);
        // A long name exercises multi-byte DER lengths.
        let long = "x".repeat(300);
        let der = cert_with(&[(DnType::CommonName, DnValue::Utf8String(long.clone()))]);
        assert_eq!(common_name(&der), Some(long));
    }

    #[test]
    fn garbage_has_no_common_name() {
        assert_eq!(common_name(&[]), None);
        assert_eq!(common_name(&[0x30, 0x82, 0xff]), None);
        let der = cert_with(&[(DnType::CommonName, DnValue::Utf8String("root".into()))]);
        assert_eq!(common_name(&der[..der.len() / 2]), None);
    }

    #[test]
    fn allowed_hostname_checks_the_subject_alternative_names() {
        let der = cert_with(&[(DnType::CommonName, DnValue::Utf8String("m1".into()))]);
        assert!(check_allowed_hostname(None, None).is_ok());
        assert!(check_allowed_hostname(Some("localhost"), Some(&der)).is_ok());
        let e = check_allowed_hostname(Some("m1.example"), Some(&der)).unwrap_err();
        assert!(e.contains("not valid for the allowed hostname \"m1.example\""), "{e}");
        assert!(check_allowed_hostname(Some("localhost"), None).is_err());
        assert!(check_allowed_hostname(Some("localhost"), Some(&der[..10])).is_err());
    }

    #[test]
    fn allowed_cn_is_enforced_only_when_set() {
        assert!(check_allowed_cn(None, None).is_ok());
        assert!(check_allowed_cn(Some("m"), Some("m")).is_ok());
        assert!(check_allowed_cn(Some("m"), Some("x")).unwrap_err().contains("\"x\""));
        assert!(check_allowed_cn(Some("m"), None).is_err());
    }
}
