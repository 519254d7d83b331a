//! Test certificates, generated at test time with rcgen (no key is ever committed): a CA,
//! server and peer certificates for 127.0.0.1 and localhost, client certificates, and the
//! bad ones (another CA, expired), written as PEM files into a temp dir.
//!
//! [`Authority`] is the same CA in memory only (PEM strings, no files), for issuers that run
//! inside a test such as the operator tests' fake cert-manager.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A certificate authority in memory: signs [`Request`]s into PEM strings.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
    next_serial: AtomicU64,
}

/// What to put into a certificate [`Authority::sign`] issues.
#[derive(Clone, Debug)]
pub struct Request {
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    /// Valid from `not_before` (relative to now; negative is in the past) for `valid_for`.
    pub not_before: Duration,
    pub valid_for: Duration,
}

impl Request {
    /// A certificate for `cn` with `sans` (DNS names or IP addresses) and `usage`, valid `days_valid`
    /// days from a day ago (negative: already expired, valid from ten days ago).
    pub fn new(cn: &str, sans: &[&str], usage: Usage, days_valid: i64) -> Request {
        let (dns, ips): (Vec<&str>, Vec<&str>) = sans.iter().partition(|s| s.parse::<IpAddr>().is_err());
        let not_before = if days_valid < 0 {
            -Duration::days(10)
        } else {
            -Duration::days(1)
        };
        Request {
            common_name: cn.to_string(),
            dns_names: dns.into_iter().map(str::to_string).collect(),
            ip_addresses: ips.into_iter().filter_map(|ip| ip.parse().ok()).collect(),
            key_usages: vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment],
            extended_key_usages: match usage {
                Usage::ServerAndClient => {
                    vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
                }
                Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            },
            not_before,
            valid_for: Duration::days(days_valid) - not_before,
        }
    }
}

/// A certificate issued in memory: PEM certificate and key, DER, serial and expiry.
pub struct IssuedPem {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    pub serial: u64,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Authority {
    /// A new self-signed CA named `cn`, valid for a year.
    pub fn new(cn: &str) -> Authority {
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
        Authority {
            issuer,
            next_serial: AtomicU64::new(1000),
        }
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate (DER).
    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// Signs `request` with a new key and the next serial number.
    pub fn sign(&self, request: &Request) -> IssuedPem {
        let mut sans: Vec<SanType> = Vec::new();
        for dns in &request.dns_names {
            sans.push(SanType::DnsName(dns.as_str().try_into().expect("DNS name")));
        }
        sans.extend(request.ip_addresses.iter().map(|ip| SanType::IpAddress(*ip)));
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        params.serial_number = Some(SerialNumber::from(serial));
        params.distinguished_name = name(&request.common_name);
        params.key_usages = request.key_usages.clone();
        params.extended_key_usages = request.extended_key_usages.clone();
        let now = OffsetDateTime::now_utc();
        params.not_before = now + request.not_before;
        params.not_after = params.not_before + request.valid_for;
        let (not_before, not_after) = (params.not_before, params.not_after);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        IssuedPem {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial,
            not_before,
            not_after,
        }
    }
}

/// A certificate authority that issues certificates into `dir`.
pub struct Ca {
    authority: Authority,
    pub cert: PathBuf,
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
        let authority = Authority::new(cn);
        let cert = dir.join(format!("{file}.pem"));
        std::fs::write(&cert, authority.pem()).expect("write CA");
        Ca { authority, cert }
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
        let crl = params.signed_by(&self.authority.issuer).expect("CRL");
        let path = dir.join(file);
        std::fs::write(&path, crl.pem().expect("CRL pem")).expect("write CRL");
        path
    }

    /// Issues a certificate for `cn` with `sans`, valid `days_valid` days from a day ago
    /// (negative: already expired); writes `dir/<file>.pem` and `dir/<file>-key.pem`.
    pub fn issue(&self, dir: &Path, file: &str, cn: &str, sans: &[&str], usage: Usage, days_valid: i64) -> Issued {
        let issued = self.authority.sign(&Request::new(cn, sans, usage, days_valid));
        let (cert_path, key_path) = (dir.join(format!("{file}.pem")), dir.join(format!("{file}-key.pem")));
        std::fs::write(&cert_path, &issued.cert_pem).expect("write cert");
        std::fs::write(&key_path, &issued.key_pem).expect("write key");
        Issued {
            cert: cert_path,
            key: key_path,
            der: issued.der,
            serial: issued.serial,
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
    #[allow(clippy::new_without_default)] // writes files: not a plain default value
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
