//! Secret and ConfigMap values the generator may read, and the credential blocks built from
//! them.
//!
//! Credentials are written inline into `prometheus.yaml` (`basic_auth.password`,
//! `authorization.credentials`, `tls_config.ca`/`cert`/`key`, EC2 keys). The controller stores
//! that file in a Secret, so nothing extra has to be mounted and a rotated Secret reaches
//! Prometheus through the normal config reload. Inline `ca`, `cert` and `key` are accepted by
//! Prometheus 2.53 and 3.x (checked with both `promtool`s). No secret value ever appears in a
//! rejection message, a rule file or the `Debug` output of any type here.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapKeySelector, Secret, SecretKeySelector};
use kube::ResourceExt;

use super::yaml::Node;
use super::{Problem, Reason};
use crate::crd::common::{BasicAuth, SafeAuthorization, SafeTlsConfig, SecretOrConfigMap};

type Keys<V> = BTreeMap<String, BTreeMap<String, BTreeMap<String, V>>>;

/// Values of Secrets and ConfigMaps, by namespace, object name and key.
///
/// `Debug` prints only how many values it holds.
#[derive(Clone, Default)]
pub struct Store {
    secrets: Keys<Vec<u8>>,
    config_maps: Keys<String>,
}

fn count<V>(keys: &Keys<V>) -> usize {
    keys.values().flat_map(|n| n.values()).map(BTreeMap::len).sum()
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("secret_keys", &count(&self.secrets))
            .field("config_map_keys", &count(&self.config_maps))
            .finish()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store::default()
    }

    /// Adds one key of a Secret.
    pub fn insert_secret(&mut self, namespace: &str, name: &str, key: &str, value: impl Into<Vec<u8>>) {
        self.secrets
            .entry(namespace.to_string())
            .or_default()
            .entry(name.to_string())
            .or_default()
            .insert(key.to_string(), value.into());
    }

    /// Adds one key of a ConfigMap.
    pub fn insert_config_map(&mut self, namespace: &str, name: &str, key: &str, value: impl Into<String>) {
        self.config_maps
            .entry(namespace.to_string())
            .or_default()
            .entry(name.to_string())
            .or_default()
            .insert(key.to_string(), value.into());
    }

    /// A store holding every key of these Secrets (`data` and `stringData`, the latter winning as
    /// in the API server) and ConfigMaps (`data`).
    pub fn from_objects(secrets: &[Secret], config_maps: &[ConfigMap]) -> Store {
        let mut store = Store::new();
        for s in secrets {
            let (ns, name) = (s.namespace().unwrap_or_default(), s.name_any());
            for (k, v) in s.data.iter().flatten() {
                store.insert_secret(&ns, &name, k, v.0.clone());
            }
            for (k, v) in s.string_data.iter().flatten() {
                store.insert_secret(&ns, &name, k, v.as_bytes());
            }
        }
        for c in config_maps {
            let (ns, name) = (c.namespace().unwrap_or_default(), c.name_any());
            for (k, v) in c.data.iter().flatten() {
                store.insert_config_map(&ns, &name, k, v.as_str());
            }
        }
        store
    }

    fn secret_bytes(&self, namespace: &str, name: &str, key: &str) -> Option<&[u8]> {
        self.secrets
            .get(namespace)?
            .get(name)?
            .get(key)
            .map(Vec::as_slice)
    }

    fn config_map_value(&self, namespace: &str, name: &str, key: &str) -> Option<&str> {
        self.config_maps
            .get(namespace)?
            .get(name)?
            .get(key)
            .map(String::as_str)
    }

    /// The text of a Secret key in `namespace`. A missing key is [`Reason::SecretNotFound`]
    /// unless the selector is optional (then it reads as empty); a value that is not UTF-8 is
    /// [`Reason::InvalidSecret`].
    pub(crate) fn secret(
        &self,
        namespace: &str,
        sel: &SecretKeySelector,
        field: &str,
    ) -> Result<String, Problem> {
        if sel.name.is_empty() || sel.key.is_empty() {
            return Err(Problem::new(
                Reason::SecretNotFound,
                format!("{field}: secret name and key must be set"),
            ));
        }
        match self.secret_bytes(namespace, &sel.name, &sel.key) {
            Some(bytes) => String::from_utf8(bytes.to_vec()).map_err(|_| {
                Problem::new(
                    Reason::InvalidSecret,
                    format!(
                        "{field}: key {:?} of Secret {namespace}/{} is not UTF-8 text",
                        sel.key, sel.name
                    ),
                )
            }),
            None if sel.optional == Some(true) => Ok(String::new()),
            None => Err(Problem::new(
                Reason::SecretNotFound,
                format!(
                    "{field}: key {:?} of Secret {namespace}/{} not found",
                    sel.key, sel.name
                ),
            )),
        }
    }

    fn config_map(
        &self,
        namespace: &str,
        sel: &ConfigMapKeySelector,
        field: &str,
    ) -> Result<String, Problem> {
        match self.config_map_value(namespace, &sel.name, &sel.key) {
            Some(v) => Ok(v.to_string()),
            None if sel.optional == Some(true) => Ok(String::new()),
            None => Err(Problem::new(
                Reason::SecretNotFound,
                format!(
                    "{field}: key {:?} of ConfigMap {namespace}/{} not found",
                    sel.key, sel.name
                ),
            )),
        }
    }

    fn secret_or_config_map(
        &self,
        namespace: &str,
        s: &SecretOrConfigMap,
        field: &str,
    ) -> Result<String, Problem> {
        match (&s.secret, &s.config_map) {
            (Some(sec), None) => self.secret(namespace, sec, field),
            (None, Some(cm)) => self.config_map(namespace, cm, field),
            _ => Err(Problem::new(
                Reason::InvalidTLSConfig,
                format!("{field}: exactly one of secret and configMap must be set"),
            )),
        }
    }

    /// `basic_auth` from Secrets in `namespace`.
    pub(crate) fn basic_auth(&self, namespace: &str, auth: &BasicAuth, field: &str) -> Result<Node, Problem> {
        let Some(user) = &auth.username else {
            return Err(Problem::new(
                Reason::InvalidAuth,
                format!("{field}.username must be set"),
            ));
        };
        let mut node = Node::map().with(
            "username",
            self.secret(namespace, user, &format!("{field}.username"))?,
        );
        if let Some(pass) = &auth.password {
            node.push(
                "password",
                self.secret(namespace, pass, &format!("{field}.password"))?,
            );
        }
        Ok(node)
    }

    /// `authorization` (type and credentials) from a Secret in `namespace`.
    pub(crate) fn authorization(
        &self,
        namespace: &str,
        auth: &SafeAuthorization,
        field: &str,
    ) -> Result<Node, Problem> {
        let ty = auth
            .type_
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("Bearer");
        if ty.eq_ignore_ascii_case("basic") {
            return Err(Problem::new(
                Reason::InvalidAuth,
                format!("{field}.type cannot be Basic; use basicAuth"),
            ));
        }
        if !ty.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Problem::new(
                Reason::InvalidAuth,
                format!("{field}.type must be a single word of visible ASCII characters"),
            ));
        }
        let mut node = Node::map().with("type", ty.to_string());
        if let Some(cred) = &auth.credentials {
            node.push(
                "credentials",
                self.secret(namespace, cred, &format!("{field}.credentials"))?,
            );
        }
        Ok(node)
    }

    /// `tls_config` with the CA, certificate and key inline.
    pub(crate) fn tls_config(
        &self,
        namespace: &str,
        tls: &SafeTlsConfig,
        field: &str,
    ) -> Result<Node, Problem> {
        let mut node = Node::map();
        if let Some(ca) = &tls.ca {
            let pem = self.secret_or_config_map(namespace, ca, &format!("{field}.ca"))?;
            check_certificates(&pem, &format!("{field}.ca"))?;
            node.push("ca", pem);
        }
        match (&tls.cert, &tls.key_secret) {
            (Some(cert), Some(key)) => {
                let cert_pem = self.secret_or_config_map(namespace, cert, &format!("{field}.cert"))?;
                check_certificates(&cert_pem, &format!("{field}.cert"))?;
                let key_pem = self.secret(namespace, key, &format!("{field}.keySecret"))?;
                check_private_key(&key_pem, &format!("{field}.keySecret"))?;
                node.push("cert", cert_pem);
                node.push("key", key_pem);
            }
            (None, None) => {}
            _ => {
                return Err(Problem::new(
                    Reason::InvalidTLSConfig,
                    format!("{field}: cert and keySecret must be set together"),
                ));
            }
        }
        if let Some(name) = tls.server_name.as_deref().filter(|s| !s.is_empty()) {
            node.push("server_name", name.to_string());
        }
        if let Some(skip) = tls.insecure_skip_verify {
            node.push("insecure_skip_verify", skip);
        }
        Ok(node)
    }
}

/// Prometheus refuses a client whose CA or certificate holds no parseable certificate, and that
/// fails the whole configuration reload when the job already existed; so check here.
fn check_certificates(pem: &str, field: &str) -> Result<(), Problem> {
    // The parser is not ours; a panic in it must not take the generator down.
    let found = std::panic::catch_unwind(|| {
        x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
            .map_while(Result::ok)
            .any(|block| block.label == "CERTIFICATE" && block.parse_x509().is_ok())
    })
    .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(Problem::new(
            Reason::InvalidTLSConfig,
            format!("{field}: no valid PEM certificate found"),
        ))
    }
}

/// The key must be a PEM private key block; whether it matches the certificate is left to
/// Prometheus.
fn check_private_key(pem: &str, field: &str) -> Result<(), Problem> {
    let found = std::panic::catch_unwind(|| {
        x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
            .map_while(Result::ok)
            .any(|b| {
                (b.label == "PRIVATE KEY" || b.label.ends_with(" PRIVATE KEY")) && !b.contents.is_empty()
            })
    })
    .unwrap_or(false);
    if found {
        return Ok(());
    }
    Err(Problem::new(
        Reason::InvalidTLSConfig,
        format!("{field}: no PEM private key found"),
    ))
}
