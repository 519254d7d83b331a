//! Test certificates, generated at test time with rcgen (no key is ever committed): a CA,
//! server and peer certificates for 127.0.0.1 and localhost, client certificates, and the
//! bad ones (another CA, expired), written as PEM files into a temp dir.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A certificate authority that issues certificates into `dir`.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub cert: PathBuf,
    next_serial: std::cell::Cell<u64>,
}

/// An issued certificate: its files, DER and serial number.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
    pub serial: u64,
}

impl Issued {
    pub fn pair(&self) -> (PathBuf, PathBuf) {
        (self.cert.clone(), self.key.clone())
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "rustcd tests");
    dn.push(DnType::CommonName, cn);
    dn
}

/// Which usages an issued certificate has.
#[derive(Clone, Copy)]
pub enum Usage {
    /// serverAuth + clientAuth (etcd's server and peer certificates).
    ServerAndClient,
    /// clientAuth only (etcdctl's certificate).
    Client,
}

impl Ca {
    /// A new CA named `cn`, its certificate written to `dir/<file>.pem`.
    pub fn new(dir: &Path, cn: &str, file: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(365);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let cert = dir.join(format!("{file}.pem"));
        std::fs::write(&cert, issuer.pem()).expect("write CA");
        Ca {
            issuer,
            cert,
            next_serial: std::cell::Cell::new(1000),
        }
    }

    /// A PEM CRL revoking `serials`, written to `dir/<file>`.
    pub fn revoke(&self, dir: &Path, file: &str, serials: &[u64]) -> PathBuf {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::days(1),
            next_update: now + Duration::days(30),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - Duration::hours(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).expect("CRL");
        let path = dir.join(file);
        std::fs::write(&path, crl.pem().expect("CRL pem")).expect("write CRL");
        path
    }

    /// Issues a certificate for `cn` with `sans`, valid `days_valid` days from a day ago
    /// (negative: already expired); writes `dir/<file>.pem` and `dir/<file>-key.pem`.
    pub fn issue(&self, dir: &Path, file: &str, cn: &str, sans: &[&str], usage: Usage, days_valid: i64) -> Issued {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        let serial = self.next_serial.get();
        self.next_serial.set(serial + 1);
        params.serial_number = Some(SerialNumber::from(serial));
        params.distinguished_name = name(cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = match usage {
            Usage::ServerAndClient => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let now = OffsetDateTime::now_utc();
        if days_valid < 0 {
            params.not_before = now - Duration::days(10);
            params.not_after = now + Duration::days(days_valid);
        } else {
            params.not_before = now - Duration::days(1);
            params.not_after = now + Duration::days(days_valid);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (cert_path, key_path) = (dir.join(format!("{file}.pem")), dir.join(format!("{file}-key.pem")));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        Issued {
            cert: cert_path,
            key: key_path,
            der: cert.der().to_vec(),
            serial,
        }
    }
}

/// The files of the standard secure deployment, plus bad client certificates.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub server: (PathBuf, PathBuf),
    pub peer: (PathBuf, PathBuf),
    pub client: (PathBuf, PathBuf),
    pub other_ca_client: (PathBuf, PathBuf),
    pub expired_client: (PathBuf, PathBuf),
    /// A peer certificate from another CA (a stranger trying to join the Raft group).
    pub other_ca_peer: (PathBuf, PathBuf),
}

fn pair(t: Issued) -> (PathBuf, PathBuf) {
    t.pair()
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ca = Ca::new(d, "rustcd test CA", "ca");
        let other = Ca::new(d, "another CA", "other-ca");
        let sans = ["127.0.0.1", "localhost"];
        let server = pair(ca.issue(d, "server", "server", &sans, Usage::ServerAndClient, 30));
        let peer = pair(ca.issue(d, "peer", "peer", &sans, Usage::ServerAndClient, 30));
        let client = pair(ca.issue(d, "client", "root", &[], Usage::Client, 30));
        let other_ca_client = pair(other.issue(d, "other-client", "root", &[], Usage::Client, 30));
        let expired_client = pair(ca.issue(d, "expired-client", "root", &[], Usage::Client, -1));
        let other_ca_peer = pair(other.issue(d, "other-peer", "peer", &sans, Usage::ServerAndClient, 30));
        Pki {
            dir,
            ca,
            server,
            peer,
            client,
            other_ca_client,
            expired_client,
            other_ca_peer,
        }
    }

    /// The member flags of etcd's standard secure deployment.
    pub fn member_flags(&self) -> Vec<String> {
        let p = |p: &PathBuf| p.display().to_string();
        vec![
            format!("--cert-file={}", p(&self.server.0)),
            format!("--key-file={}", p(&self.server.1)),
            format!("--peer-cert-file={}", p(&self.peer.0)),
            format!("--peer-key-file={}", p(&self.peer.1)),
            format!("--trusted-ca-file={}", p(&self.ca.cert)),
            format!("--peer-trusted-ca-file={}", p(&self.ca.cert)),
            "--peer-client-cert-auth".into(),
            "--client-cert-auth".into(),
        ]
    }

    /// etcdctl's `--cacert --cert --key` for a client pair.
    pub fn ctl_flags(&self, client: &(PathBuf, PathBuf)) -> Vec<String> {
        vec![
            format!("--cacert={}", self.ca.cert.display()),
            format!("--cert={}", client.0.display()),
            format!("--key={}", client.1.display()),
        ]
    }
}
