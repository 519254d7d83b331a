//! `--config-file`: etcd's YAML configuration, turned into the equivalent command line so that one
//! parser (clap's, with every flag's validation) reads both.
//!
//! Keys are etcd's: the flag names (`name`, `data-dir`, `listen-client-urls`, `snapshot-count`, ...),
//! lists for list-valued settings (`log-outputs`, `cipher-suites`; a comma-separated string works
//! too), and the two nested sections `client-transport-security` and `peer-transport-security`
//! (`cert-file`, `key-file`, `client-cert-auth`, `trusted-ca-file`, `auto-tls`, `crl-file`,
//! `allowed-cn`, `allowed-hostname`). As in etcd, other command-line flags and `ETCD_*` variables
//! are ignored when a configuration file is given, and unknown keys are ignored (rustcd also logs
//! them); a file that is not YAML, or a value of the wrong type, is an error naming the key.

use std::collections::BTreeSet;

use serde_norway::Value;

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// Not readable.
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, or not a mapping at the top.
    #[error("{path}: {reason}")]
    Yaml { path: String, reason: String },
    /// A value of a kind no flag takes.
    #[error("{path}: {key}: {reason}")]
    Value { path: String, key: String, reason: String },
}

/// The flag a key of a `*-transport-security` section stands for.
fn transport_flag(section: &str, key: &str) -> Option<&'static str> {
    let peer = section == "peer-transport-security";
    Some(match (key, peer) {
        ("cert-file", false) => "cert-file",
        ("cert-file", true) => "peer-cert-file",
        ("key-file", false) => "key-file",
        ("key-file", true) => "peer-key-file",
        ("client-cert-auth", false) => "client-cert-auth",
        ("client-cert-auth", true) => "peer-client-cert-auth",
        ("trusted-ca-file", false) => "trusted-ca-file",
        ("trusted-ca-file", true) => "peer-trusted-ca-file",
        ("auto-tls", false) => "auto-tls",
        ("auto-tls", true) => "peer-auto-tls",
        ("crl-file", false) => "client-crl-file",
        ("crl-file", true) => "peer-crl-file",
        ("allowed-hostname", false) => "client-cert-allowed-hostname",
        ("allowed-hostname", true) => "peer-cert-allowed-hostname",
        ("allowed-cn", true) => "peer-cert-allowed-cn",
        _ => return None,
    })
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The command line a configuration file stands for (`--key=value` for each key a flag of
/// `known` takes), and the keys that were ignored. Pure.
pub fn args_from_yaml(
    path: &str,
    text: &str,
    known: &BTreeSet<String>,
) -> Result<(Vec<String>, Vec<String>), ConfigFileError> {
    let yaml_error = |reason: String| ConfigFileError::Yaml {
        path: path.to_string(),
        reason,
    };
    let doc: Value = serde_norway::from_str(text).map_err(|e| yaml_error(e.to_string()))?;
    let map = match doc {
        Value::Mapping(m) => m,
        Value::Null => Default::default(),
        _ => return Err(yaml_error("the configuration is not a mapping of etcd's keys".into())),
    };
    let mut args = Vec::new();
    let mut ignored = Vec::new();
    let mut push = |flag: &str, key: &str, v: &Value, ignored: &mut Vec<String>| -> Result<(), ConfigFileError> {
        let value = match v {
            Value::Null => return Ok(()),
            Value::Sequence(items) => {
                let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
                parts
                    .ok_or_else(|| ConfigFileError::Value {
                        path: path.to_string(),
                        key: key.to_string(),
                        reason: "a list of scalars was expected".into(),
                    })?
                    .join(",")
            }
            other => scalar(other).ok_or_else(|| ConfigFileError::Value {
                path: path.to_string(),
                key: key.to_string(),
                reason: "a scalar or a list was expected".into(),
            })?,
        };
        if known.contains(flag) {
            args.push(format!("--{flag}={value}"));
        } else {
            ignored.push(key.to_string());
        }
        Ok(())
    };
    for (k, v) in &map {
        let Some(key) = k.as_str() else {
            ignored.push(format!("{k:?}"));
            continue;
        };
        match key {
            "client-transport-security" | "peer-transport-security" => {
                let Value::Mapping(section) = v else {
                    if v.is_null() {
                        continue;
                    }
                    return Err(ConfigFileError::Value {
                        path: path.to_string(),
                        key: key.to_string(),
                        reason: "a mapping was expected".into(),
                    });
                };
                for (sk, sv) in section {
                    let name = sk.as_str().unwrap_or_default();
                    let full = format!("{key}.{name}");
                    match transport_flag(key, name) {
                        Some(flag) => push(flag, &full, sv, &mut ignored)?,
                        None => ignored.push(full),
                    }
                }
            }
            "config-file" => ignored.push(key.to_string()),
            _ => push(key, key, v, &mut ignored)?,
        }
    }
    Ok((args, ignored))
}

/// Reads `path` and returns [`args_from_yaml`] of it.
pub fn load(path: &str, known: &BTreeSet<String>) -> Result<(Vec<String>, Vec<String>), ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_string(),
        source,
    })?;
    args_from_yaml(path, &text, known)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> BTreeSet<String> {
        [
            "name",
            "data-dir",
            "snapshot-count",
            "strict-reconfig-check",
            "log-outputs",
            "cert-file",
            "peer-cert-file",
            "peer-client-cert-auth",
            "peer-cert-allowed-cn",
            "listen-client-urls",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    }

    #[test]
    fn keys_become_flags_and_sections_their_prefixed_flags() {
        let yaml = "name: m1\ndata-dir: /d\nsnapshot-count: 5000\nstrict-reconfig-check: true\n\
                    log-outputs: [stderr, stdout]\nlisten-client-urls: http://a:1,http://b:2\n\
                    client-transport-security:\n  cert-file: /c.pem\n  no-such: 1\n\
                    peer-transport-security:\n  cert-file: /p.pem\n  client-cert-auth: true\n  allowed-cn: peer\n\
                    unknown-key: x\nempty:\n";
        let (args, ignored) = args_from_yaml("f", yaml, &known()).unwrap();
        assert_eq!(
            args,
            [
                "--name=m1",
                "--data-dir=/d",
                "--snapshot-count=5000",
                "--strict-reconfig-check=true",
                "--log-outputs=stderr,stdout",
                "--listen-client-urls=http://a:1,http://b:2",
                "--cert-file=/c.pem",
                "--peer-cert-file=/p.pem",
                "--peer-client-cert-auth=true",
                "--peer-cert-allowed-cn=peer",
            ]
        );
        assert_eq!(ignored, ["client-transport-security.no-such", "unknown-key"]);
    }

    #[test]
    fn bad_files_are_errors_naming_the_problem() {
        let e = args_from_yaml("f.yaml", "name: [unclosed\n", &known()).unwrap_err();
        assert!(e.to_string().starts_with("f.yaml: "), "{e}");
        let e = args_from_yaml("f.yaml", "- a\n- b\n", &known()).unwrap_err();
        assert!(e.to_string().contains("not a mapping"), "{e}");
        let e = args_from_yaml("f.yaml", "name: {a: 1}\n", &known()).unwrap_err();
        assert_eq!(e.to_string(), "f.yaml: name: a scalar or a list was expected");
        assert!(args_from_yaml("f.yaml", "", &known()).unwrap().0.is_empty());
        assert!(load("/nonexistent/rustcd.yaml", &known())
            .unwrap_err()
            .to_string()
            .contains("No such file"));
    }
}
