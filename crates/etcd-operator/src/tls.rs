//! Certificates for `tls.mode: auto`: one CA per cluster, and server, peer and client
//! certificates it signs, reissued before they expire.
//!
//! Everything here is pure: the controller reads the existing Secrets, asks
//! [`desired_secrets`] what they should hold now, and applies the answer. A certificate that
//! is still good is returned unchanged, so reconciles are idempotent.
//!
//! Why the certificates look the way they do:
//! - Server and peer certificates name the members through a wildcard on the headless peer
//!   Service (`*.<name>-peers.<ns>.svc`), so scaling never needs a new certificate.
//! - etcd normally checks that a peer's client certificate names the address the peer connects
//!   from, by resolving the DNS names in it; a wildcard cannot be resolved, so members run
//!   with `--experimental-peer-skip-client-san-verification` and with
//!   `--peer-cert-allowed-cn`, which still limits peers to certificates of this cluster's peer
//!   role, signed by this cluster's own CA.
//! - The client certificate has no SANs: etcd skips the address check for those, and it is
//!   used from anywhere.
//! - etcd reads certificate files on every new connection, and the kubelet swaps Secret files
//!   in place, so a renewed certificate takes effect without restarting a member; since the CA
//!   stays the same, old and new certificates are trusted side by side during the swap.
//! - The CA lives ten years and is not rotated yet.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SerialNumber,
};

use crate::crd::EtcdCluster;
use crate::etcd::ClientTls;

/// Lifetime of a cluster's CA.
pub const CA_VALIDITY_SECS: i64 = 10 * 365 * 24 * 3600;
/// Default lifetime of server, peer and client certificates: 90 days.
pub const DEFAULT_VALIDITY_SECS: i64 = 90 * 24 * 3600;
/// Shortest lifetime accepted for `tls.certificateValidity`.
pub const MIN_VALIDITY_SECS: i64 = 30;
/// Certificates start up to this long before they are issued (a tenth of their lifetime at
/// most), so small clock skews between the operator and members do not reject a fresh one.
const BACKDATE_SECS: i64 = 60;

fn backdate(validity_secs: i64) -> i64 {
    (validity_secs / 10).clamp(0, BACKDATE_SECS)
}

/// Key of the certificate in a `kubernetes.io/tls` Secret.
pub const CERT_KEY: &str = "tls.crt";
/// Key of the private key.
pub const KEY_KEY: &str = "tls.key";
/// Key of the CA bundle that verifies the other side.
pub const CA_KEY: &str = "ca.crt";

/// Failure to issue a certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused.
    #[error("issuing the {what} certificate: {source}")]
    Issue {
        /// Which certificate.
        what: &'static str,
        /// Cause.
        source: rcgen::Error,
    },
    /// A time outside what a certificate can carry.
    #[error("certificate time out of range")]
    Time,
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Serves clients on port 2379.
    Server,
    /// Member-to-member traffic on port 2380, both directions.
    Peer,
    /// Clients: the operator and applications.
    Client,
}

impl Role {
    /// Every role, in Secret order.
    pub const ALL: [Role; 3] = [Role::Server, Role::Peer, Role::Client];

    fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Peer => "peer",
            Role::Client => "client",
        }
    }
}

/// Name of the Secret holding the CA certificate and key.
pub fn ca_secret_name(cluster: &EtcdCluster) -> String {
    format!("{}-ca", cluster.name_any())
}

/// Name of the Secret holding a role's certificate, e.g. `<name>-client-tls`.
pub fn secret_name(cluster: &EtcdCluster, role: Role) -> String {
    format!("{}-{}-tls", cluster.name_any(), role.as_str())
}

/// Common name of a role's certificate; peers must present exactly the peer one.
pub fn common_name(cluster: &EtcdCluster, role: Role) -> String {
    format!("{}-{}", cluster.name_any(), role.as_str())
}

/// The names a role's certificate is valid for.
pub fn sans(cluster: &EtcdCluster, role: Role) -> Vec<String> {
    let name = cluster.name_any();
    let ns = cluster.namespace().unwrap_or_default();
    let members = [
        format!("*.{name}-peers.{ns}.svc"),
        format!("*.{name}-peers.{ns}.svc.cluster.local"),
    ];
    match role {
        Role::Server => {
            let mut v = vec![
                name.clone(),
                format!("{name}.{ns}"),
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}.svc.cluster.local"),
            ];
            v.extend(members);
            // etcd's own gRPC gateway dials the member locally.
            v.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
            v
        }
        Role::Peer => members.to_vec(),
        Role::Client => Vec::new(),
    }
}

/// The validity of certificates and the names they carry, read back from PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Subject alternative names (DNS names and IP addresses as text).
    pub sans: Vec<String>,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Subject distinguished name.
    pub subject: String,
}

/// Reads the first certificate of a PEM text; `None` when it does not parse.
pub fn inspect(pem: &str) -> Option<CertInfo> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let mut names = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push((*d).to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        names.push(std::net::Ipv4Addr::from(a).to_string());
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        names.push(std::net::Ipv6Addr::from(a).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Some(CertInfo {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        sans: names,
        issuer: cert.issuer().to_string(),
        subject: cert.subject().to_string(),
    })
}

/// Whether a certificate should be replaced now: two thirds of its lifetime have passed.
pub fn renewal_due(info: &CertInfo, now: i64) -> bool {
    let life = (info.not_after - info.not_before).max(0);
    now >= info.not_before + life * 2 / 3
}

/// When the next certificate of `secrets` falls due, in Unix seconds.
pub fn next_renewal(secrets: &[Secret]) -> Option<i64> {
    secrets
        .iter()
        .filter_map(|s| inspect(&data(s, CERT_KEY)?))
        .map(|i| i.not_before + (i.not_after - i.not_before).max(0) * 2 / 3)
        .min()
}

/// A certificate and key, PEM encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedCert {
    /// Certificate.
    pub cert: String,
    /// Private key (PKCS#8).
    pub key: String,
}

fn odt(secs: i64) -> Result<time::OffsetDateTime, TlsError> {
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| TlsError::Time)
}

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and non-zero, as RFC 5280 asks.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// A fresh CA for `cluster`, valid for [`CA_VALIDITY_SECS`] from `now`.
pub fn new_ca(cluster: &EtcdCluster, now: i64) -> Result<KeyedCert, TlsError> {
    let err = |source| TlsError::Issue { what: "CA", source };
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(
        DnType::CommonName,
        // A random tag keeps every CA's name unique, so a certificate's issuer name tells
        // which CA signed it.
        format!(
            "{}/{} etcd CA {:08x}",
            cluster.namespace().unwrap_or_default(),
            cluster.name_any(),
            rand::random::<u32>()
        ),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "steward.dev");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = odt(now - BACKDATE_SECS)?;
    params.not_after = odt(now + CA_VALIDITY_SECS)?;
    params.serial_number = Some(serial());
    let ca = CertifiedIssuer::self_signed(params, key).map_err(err)?;
    Ok(KeyedCert {
        cert: ca.pem(),
        key: ca.key().serialize_pem(),
    })
}

/// A certificate for `role`, signed by `ca`, valid for `validity_secs` from `now` (never
/// beyond the CA's own end).
pub fn issue(
    ca: &KeyedCert,
    cluster: &EtcdCluster,
    role: Role,
    now: i64,
    validity_secs: i64,
) -> Result<KeyedCert, TlsError> {
    let what = role.as_str();
    let err = |source| TlsError::Issue { what, source };
    let ca_key = KeyPair::from_pem(&ca.key).map_err(err)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(err)?;
    let ca_end = inspect(&ca.cert).map(|i| i.not_after).unwrap_or(i64::MAX);
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(sans(cluster, role)).map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name(cluster, role));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "steward.dev");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match role {
        // The server certificate is also the identity etcd's gRPC gateway presents to its
        // own client port, so it needs client auth too.
        Role::Server | Role::Peer => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.not_before = odt(now - backdate(validity_secs))?;
    params.not_after = odt((now + validity_secs).min(ca_end))?;
    params.serial_number = Some(serial());
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    Ok(KeyedCert {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn data(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn secret(cluster: &EtcdCluster, name: String, type_: &str, entries: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: cluster.namespace(),
            labels: Some(crate::resources::labels(cluster, "tls")),
            ..Default::default()
        },
        type_: Some(type_.to_string()),
        data: Some(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// What the TLS Secrets of a cluster should hold now.
#[derive(Clone, Debug)]
pub struct TlsSecrets {
    /// The CA Secret and one Secret per role, to apply.
    pub secrets: Vec<Secret>,
    /// Client material for the operator's own connections.
    pub client: ClientTls,
    /// Secrets whose certificate was issued by this call (for Events).
    pub issued: Vec<String>,
}

/// The TLS Secrets `cluster` should have at `now` (Unix seconds), given the `existing` ones by
/// name. Existing certificates are kept while they are signed by the current CA, carry the
/// wanted names and are not yet due for renewal; anything else is issued afresh.
pub fn desired_secrets(
    cluster: &EtcdCluster,
    existing: &BTreeMap<String, Secret>,
    now: i64,
    validity_secs: i64,
) -> Result<TlsSecrets, TlsError> {
    let mut issued = Vec::new();
    let ca_name = ca_secret_name(cluster);
    let current_ca = existing.get(&ca_name).and_then(|s| {
        let cert = data(s, CERT_KEY)?;
        let key = data(s, KEY_KEY)?;
        let info = inspect(&cert)?;
        (now < info.not_after && KeyPair::from_pem(&key).is_ok()).then_some((KeyedCert { cert, key }, info))
    });
    let (ca, ca_info) = match current_ca {
        Some(c) => c,
        None => {
            let ca = new_ca(cluster, now)?;
            let info = inspect(&ca.cert).ok_or(TlsError::Time)?;
            issued.push(ca_name.clone());
            (ca, info)
        }
    };
    let mut secrets = vec![secret(
        cluster,
        ca_name,
        "Opaque",
        &[(CERT_KEY, &ca.cert), (KEY_KEY, &ca.key), (CA_KEY, &ca.cert)],
    )];
    let mut client = None;
    for role in Role::ALL {
        let name = secret_name(cluster, role);
        let mut wanted = sans(cluster, role);
        wanted.sort();
        let keep = existing.get(&name).and_then(|s| {
            let cert = data(s, CERT_KEY)?;
            let key = data(s, KEY_KEY)?;
            let info = inspect(&cert)?;
            let mut have = info.sans.clone();
            have.sort();
            let good = info.issuer == ca_info.subject
                && have == wanted
                && !renewal_due(&info, now)
                && KeyPair::from_pem(&key).is_ok();
            good.then_some(KeyedCert { cert, key })
        });
        let leaf = match keep {
            Some(k) => k,
            None => {
                issued.push(name.clone());
                issue(&ca, cluster, role, now, validity_secs)?
            }
        };
        if role == Role::Client {
            client = Some(ClientTls {
                ca: ca.cert.clone(),
                cert: leaf.cert.clone(),
                key: leaf.key.clone(),
            });
        }
        secrets.push(secret(
            cluster,
            name,
            "kubernetes.io/tls",
            &[(CERT_KEY, &leaf.cert), (KEY_KEY, &leaf.key), (CA_KEY, &ca.cert)],
        ));
    }
    Ok(TlsSecrets {
        secrets,
        client: client.ok_or(TlsError::Time)?,
        issued,
    })
}

/// Client material from a user-provided Secret (mode `secrets`); `None` when a key is
/// missing or not text.
pub fn client_from_secret(secret: &Secret) -> Option<ClientTls> {
    Some(ClientTls {
        ca: data(secret, CA_KEY)?,
        cert: data(secret, CERT_KEY)?,
        key: data(secret, KEY_KEY)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::EtcdClusterSpec;

    fn cluster() -> EtcdCluster {
        let spec: EtcdClusterSpec =
            serde_json::from_value(serde_json::json!({"size": 3, "version": "3.5.16"})).unwrap();
        let mut c = EtcdCluster::new("main", spec);
        c.metadata.namespace = Some("db".into());
        c
    }

    fn by_name(s: &TlsSecrets) -> BTreeMap<String, Secret> {
        s.secrets.iter().map(|s| (s.name_any(), s.clone())).collect()
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn issues_everything_once_then_keeps_it() {
        let c = cluster();
        let first = desired_secrets(&c, &BTreeMap::new(), NOW, 3600).unwrap();
        let names: Vec<_> = first.secrets.iter().map(|s| s.name_any()).collect();
        assert_eq!(
            names,
            ["main-ca", "main-server-tls", "main-peer-tls", "main-client-tls"]
        );
        assert_eq!(first.issued.len(), 4);
        let again = desired_secrets(&c, &by_name(&first), NOW + 60, 3600).unwrap();
        assert!(again.issued.is_empty());
        assert_eq!(again.secrets, first.secrets);
        assert_eq!(again.client, first.client);
    }

    #[test]
    fn certificates_carry_the_right_names_and_chain_to_the_ca() {
        let c = cluster();
        let s = desired_secrets(&c, &BTreeMap::new(), NOW, 3600).unwrap();
        let map = by_name(&s);
        let ca = inspect(&data(&map["main-ca"], CERT_KEY).unwrap()).unwrap();
        let server = inspect(&data(&map["main-server-tls"], CERT_KEY).unwrap()).unwrap();
        let peer = inspect(&data(&map["main-peer-tls"], CERT_KEY).unwrap()).unwrap();
        let client = inspect(&data(&map["main-client-tls"], CERT_KEY).unwrap()).unwrap();
        assert!(server.sans.contains(&"*.main-peers.db.svc".to_string()));
        assert!(server.sans.contains(&"main.db.svc".to_string()));
        assert!(server.sans.contains(&"127.0.0.1".to_string()));
        assert_eq!(
            peer.sans,
            ["*.main-peers.db.svc", "*.main-peers.db.svc.cluster.local"]
        );
        assert!(client.sans.is_empty());
        assert!(peer.subject.contains("CN=main-peer"));
        for leaf in [&server, &peer, &client] {
            assert_eq!(leaf.issuer, ca.subject);
            assert_eq!(leaf.not_after - leaf.not_before, 3600 + 60);
        }
        assert_eq!(ca.not_after - NOW, CA_VALIDITY_SECS);
        for role in ["server", "peer", "client"] {
            let sec = &map[&format!("main-{role}-tls")];
            assert_eq!(sec.type_.as_deref(), Some("kubernetes.io/tls"));
            assert_eq!(data(sec, CA_KEY), data(&map["main-ca"], CERT_KEY));
        }
    }

    #[test]
    fn leaves_renew_after_two_thirds_of_their_life_and_the_ca_stays() {
        let c = cluster();
        let first = desired_secrets(&c, &BTreeMap::new(), NOW, 3000).unwrap();
        // 2/3 of (3000 + 60 backdate) = 2040 s after not_before = NOW - 60.
        assert_eq!(backdate(3000), 60);
        assert_eq!(backdate(45), 4);
        let before = desired_secrets(&c, &by_name(&first), NOW + 1979, 3000).unwrap();
        assert!(before.issued.is_empty());
        let due = desired_secrets(&c, &by_name(&first), NOW + 1981, 3000).unwrap();
        assert_eq!(
            due.issued,
            ["main-server-tls", "main-peer-tls", "main-client-tls"]
        );
        assert_eq!(due.secrets[0], first.secrets[0], "the CA is kept");
        assert_ne!(due.client.cert, first.client.cert);
        assert_eq!(
            next_renewal(&first.secrets[1..]),
            Some(NOW - 60 + (3000 + 60) * 2 / 3)
        );
    }

    #[test]
    fn damaged_or_foreign_material_is_replaced() {
        let c = cluster();
        let first = desired_secrets(&c, &BTreeMap::new(), NOW, 3600).unwrap();
        // A peer certificate from another cluster's CA.
        let other = desired_secrets(&c, &BTreeMap::new(), NOW, 3600).unwrap();
        let mut mixed = by_name(&first);
        mixed.insert("main-peer-tls".into(), by_name(&other)["main-peer-tls"].clone());
        let fixed = desired_secrets(&c, &mixed, NOW, 3600).unwrap();
        assert_eq!(fixed.issued, ["main-peer-tls"]);
        // A CA Secret with garbage: a new CA, and every leaf reissued under it.
        let mut broken = by_name(&first);
        if let Some(d) = broken.get_mut("main-ca").and_then(|s| s.data.as_mut()) {
            d.insert(CERT_KEY.into(), ByteString(b"not a certificate".to_vec()));
        }
        let fresh = desired_secrets(&c, &broken, NOW, 3600).unwrap();
        assert_eq!(fresh.issued.len(), 4);
    }

    #[test]
    fn client_material_reads_back_from_a_secret() {
        let c = cluster();
        let s = desired_secrets(&c, &BTreeMap::new(), NOW, 3600).unwrap();
        assert_eq!(
            client_from_secret(&by_name(&s)["main-client-tls"]),
            Some(s.client.clone())
        );
        assert_eq!(client_from_secret(&Secret::default()), None);
    }
}
