//! How the operator dials the members' client port: plain, or, with client TLS, presenting its own
//! client certificate and verifying each member's certificate for the member's DNS name (the operator
//! dials pod IPs, which member certificates do not name).
//!
//! The material comes from Secrets, read at every reconcile: the client side's `ca.crt` (the CA that
//! signed the members' certificates) and the operator's `tls.crt`/`tls.key` (see
//! [`super::tls::TlsLayout`] for which Secrets those are). A rotated Secret is therefore picked up by the
//! next reconcile without any restart. A Secret that is missing or incomplete is not an error of the
//! reconcile but a reason to wait ([`Error::TlsNotReady`]): cert-manager may not have issued it yet.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::error::Error;
use super::tls::TlsLayout;
use rustcd_dial::Dialer;

/// How to reach the members this reconcile.
#[derive(Clone, Debug, Default)]
pub struct Dial {
    dialer: Dialer,
    tls: bool,
}

impl Dial {
    /// Plain HTTP/2 (no client TLS).
    pub fn plain() -> Dial {
        Dial::default()
    }

    /// TLS with `dialer`.
    pub fn tls(dialer: Dialer) -> Dial {
        Dial { dialer, tls: true }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The dialer.
    pub fn dialer(&self) -> &Dialer {
        &self.dialer
    }
}

/// Key `key` of Secret `name`, or why it cannot be used yet.
fn key<'a>(secret: &'a Secret, namespace: &str, name: &str, key: &str) -> Result<&'a [u8], Error> {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|bytes| bytes.0.as_slice())
        .filter(|bytes| !bytes.is_empty())
        .ok_or_else(|| Error::TlsNotReady(format!("Secret {namespace}/{name} has no {key}")))
}

async fn secret(api: &Api<Secret>, namespace: &str, name: &str) -> Result<Secret, Error> {
    api.get_opt(name)
        .await?
        .ok_or_else(|| Error::TlsNotReady(format!("Secret {namespace}/{name} does not exist yet")))
}

/// Builds the dial for `layout` from the Secrets in `namespace`.
pub async fn load(client: &Client, namespace: &str, layout: &TlsLayout) -> Result<Dial, Error> {
    let Some((member_secret, operator_secret)) = layout.operator_secrets() else {
        return Ok(Dial::plain());
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let members = secret(&api, namespace, &member_secret).await?;
    // Without an operator certificate of its own, the operator presents the members' (one Secret).
    let operator = if operator_secret == member_secret {
        members.clone()
    } else {
        secret(&api, namespace, &operator_secret).await?
    };
    let ca = key(&members, namespace, &member_secret, "ca.crt")?;
    let cert = key(&operator, namespace, &operator_secret, "tls.crt")?;
    let private_key = key(&operator, namespace, &operator_secret, "tls.key")?;
    let dialer = Dialer::from_pem(ca, cert, private_key).map_err(|e| {
        Error::TlsNotReady(format!(
            "Secrets {namespace}/{member_secret} (ca.crt) and {namespace}/{operator_secret} (tls.crt, tls.key): {e}"
        ))
    })?;
    Ok(Dial::tls(dialer))
}
