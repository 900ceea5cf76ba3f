//! Certificates for `tls.mode: auto`: a CA per cluster, and server, peer and client
//! certificates it signs, reissued before they expire; the CA itself is rotated too.
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
//!   in place, so a renewed certificate takes effect without restarting a member.
//!
//! CA rotation. etcd (3.4 to 3.6) reads its trusted CA files only when it starts: a CA added
//! to `ca.crt` later is not trusted by a running member. So a new CA cannot simply be added
//! to the bundle shortly before it is used. Instead the CA Secret always holds the CA that
//! takes over next, and every `ca.crt` carries it from the moment the current CA starts
//! signing — a whole period before the next one signs anything:
//! 1. The current CA signs; the bundle is [current, next]. The next CA's validity starts at
//!    the switch (a future `notBefore`, which verifiers accept once it has passed).
//! 2. Two thirds into the current CA's life, the next one becomes current and every leaf is
//!    reissued under it. Each running member started with it in its bundle, so it trusts the
//!    new leaves; a fresh next CA joins the bundle: [previous, current, next].
//! 3. The previous CA leaves the bundles when it expires. Leaves never outlive their CA, so
//!    by then no certificate it signed can be in use; until then members that still present
//!    an old leaf (before their Secret volume is updated) are trusted by everyone.
//!
//! A member therefore survives one switch without a restart; it needs to have been
//! restarted (upgrade, reschedule) at some point during the following CA period to trust
//! the CA after that. With the default ten-year CA the period is about 6.7 years.

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

/// Default lifetime of each CA (`tls.caValidity`): 87600h, ten years.
pub const CA_VALIDITY_SECS: i64 = 10 * 365 * 24 * 3600;
/// Shortest lifetime accepted for `tls.caValidity`.
pub const MIN_CA_VALIDITY_SECS: i64 = 60;
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
/// Key of the CA bundle that verifies the other side: every CA trusted at the moment.
pub const CA_KEY: &str = "ca.crt";
/// In the CA Secret: the CA that signs next, and its key.
pub const NEXT_CERT_KEY: &str = "next.crt";
/// Key of the next CA's private key.
pub const NEXT_KEY_KEY: &str = "next.key";
/// In the CA Secret: the CA that signed before the last switch, while it is still valid.
pub const PREVIOUS_CERT_KEY: &str = "previous.crt";

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
    /// A certificate just issued does not parse back.
    #[error("the new {0} certificate cannot be read back")]
    Unreadable(&'static str),
    /// No client certificate came out of issuing (a bug: every role is issued).
    #[error("no client certificate was issued")]
    NoClient,
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

/// The Secret holding the client certificate clients of `cluster` use (`tls.crt`, `tls.key`,
/// `ca.crt`): ours in `auto` mode, the user's in `secrets` mode, none without TLS.
pub fn client_secret(cluster: &EtcdCluster) -> Option<String> {
    match cluster.spec.tls.mode {
        crate::crd::TlsMode::Disabled => None,
        crate::crd::TlsMode::Auto => Some(secret_name(cluster, Role::Client)),
        crate::crd::TlsMode::Secrets => cluster.spec.tls.secrets.as_ref().map(|s| s.client.clone()),
    }
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
    Some(info_of(&cert))
}

/// Reads every certificate of a PEM bundle such as `ca.crt`, skipping what does not parse.
pub fn inspect_bundle(pem: &str) -> Vec<CertInfo> {
    x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .filter_map(|p| p.parse_x509().ok().map(|c| info_of(&c)))
        .collect()
}

fn info_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> CertInfo {
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
    CertInfo {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        sans: names,
        issuer: cert.issuer().to_string(),
        subject: cert.subject().to_string(),
    }
}

/// When a certificate hands over to its successor: two thirds into its lifetime.
fn turnover(info: &CertInfo) -> i64 {
    let life = (info.not_after - info.not_before).max(0);
    info.not_before + life * 2 / 3
}

/// Whether a certificate should be replaced now: two thirds of its lifetime have passed.
pub fn renewal_due(info: &CertInfo, now: i64) -> bool {
    now >= turnover(info)
}

/// When something in `secrets` next changes, in Unix seconds: a certificate falls due
/// (leaves are renewed, the CA hands over to the next one) or the previous CA expires and
/// leaves the bundles.
pub fn next_renewal(secrets: &[Secret]) -> Option<i64> {
    let due = secrets
        .iter()
        .filter_map(|s| inspect(&data(s, CERT_KEY)?))
        .map(|i| turnover(&i));
    let retired = secrets
        .iter()
        .filter_map(|s| inspect(&data(s, PREVIOUS_CERT_KEY)?))
        .map(|i| i.not_after);
    due.chain(retired).min()
}

/// The CA lifetime `tls.caValidity` asks for, in seconds, or what is wrong with it.
pub fn ca_validity(tls: &crate::crd::EtcdTls) -> Result<i64, String> {
    let Some(v) = tls.ca_validity.as_deref() else {
        return Ok(CA_VALIDITY_SECS);
    };
    let d = steward_core::duration::parse(v).map_err(|e| format!("spec.tls.caValidity: {e}"))?;
    // parse() caps durations at 100 years, so this always fits.
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    if secs < MIN_CA_VALIDITY_SECS {
        return Err(format!(
            "spec.tls.caValidity {v} is too short: at least {MIN_CA_VALIDITY_SECS}s"
        ));
    }
    Ok(secs)
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

/// A fresh CA for `cluster`, valid from `not_before` to `not_after` (Unix seconds).
pub fn new_ca(cluster: &EtcdCluster, not_before: i64, not_after: i64) -> Result<KeyedCert, TlsError> {
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
    params.not_before = odt(not_before)?;
    params.not_after = odt(not_after)?;
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

/// Client certificate material (PEM): what the operator's etcd client presents and trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    /// CA that signed the servers' certificates.
    pub ca: String,
    /// Client certificate.
    pub cert: String,
    /// Client key.
    pub key: String,
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

/// A CA certificate with its key.
struct Ca {
    keyed: KeyedCert,
    info: CertInfo,
}

fn read_ca(secret: Option<&Secret>, cert_key: &str, key_key: &str) -> Option<Ca> {
    let secret = secret?;
    let cert = data(secret, cert_key)?;
    let key = data(secret, key_key)?;
    let info = inspect(&cert)?;
    KeyPair::from_pem(&key).ok()?;
    Some(Ca {
        keyed: KeyedCert { cert, key },
        info,
    })
}

/// PEM certificates one after the other, each on its own lines.
fn bundle<'a>(pems: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for pem in pems {
        out.push_str(pem.trim_end());
        out.push('\n');
    }
    out
}

/// The TLS Secrets `cluster` should have at `now` (Unix seconds), given the `existing` ones by
/// name; leaves live `validity_secs`, CAs `ca_validity_secs`. Existing certificates are kept
/// while they are signed by the current CA, carry the wanted names and are not yet due for
/// renewal; anything else is issued afresh. See the module documentation for how the CA
/// rotates.
pub fn desired_secrets(
    cluster: &EtcdCluster,
    existing: &BTreeMap<String, Secret>,
    now: i64,
    validity_secs: i64,
    ca_validity_secs: i64,
) -> Result<TlsSecrets, TlsError> {
    let mut issued = Vec::new();
    let ca_name = ca_secret_name(cluster);
    let ca_secret = existing.get(&ca_name);
    let mut ca_changed = false;
    let valid_now = |c: &Ca| c.info.not_before <= now && now < c.info.not_after;
    let mut current = read_ca(ca_secret, CERT_KEY, KEY_KEY).filter(|c| now < c.info.not_after);
    let mut next = read_ca(ca_secret, NEXT_CERT_KEY, NEXT_KEY_KEY).filter(|c| now < c.info.not_after);
    let mut previous = ca_secret
        .and_then(|s| data(s, PREVIOUS_CERT_KEY))
        .and_then(|pem| inspect(&pem).map(|info| (pem, info)));

    // Switch: two thirds into the current CA's life (or when it is gone), the next CA,
    // trusted by every member since it started, signs from now on.
    let switch_due = current.as_ref().is_none_or(|c| now >= turnover(&c.info));
    if switch_due && let Some(n) = next.take_if(|n| valid_now(n)) {
        if let Some(old) = current.take() {
            previous = Some((old.keyed.cert, old.info));
        }
        current = Some(n);
        ca_changed = true;
    }
    let current = match current {
        Some(c) => c,
        None => {
            // First CA, or the old one is lost or expired: start over, with a next CA that
            // fits the new one.
            let keyed = new_ca(cluster, now - backdate(ca_validity_secs), now + ca_validity_secs)?;
            let info = inspect(&keyed.cert).ok_or(TlsError::Unreadable("CA"))?;
            next = None;
            ca_changed = true;
            Ca { keyed, info }
        }
    };
    // The next CA joins the bundles a whole CA period before it signs anything, so every
    // member started from now on trusts it when the switch comes. Its validity starts at the
    // switch (never in the past, so a late one is not used before members could see it).
    let next = match next {
        Some(n) => n,
        None => {
            let start = turnover(&current.info).max(now);
            let keyed = new_ca(
                cluster,
                start - backdate(ca_validity_secs),
                start + ca_validity_secs,
            )?;
            let info = inspect(&keyed.cert).ok_or(TlsError::Unreadable("next CA"))?;
            ca_changed = true;
            Ca { keyed, info }
        }
    };
    // The previous CA stays trusted until it expires: leaves never outlive the CA that
    // signed them, so by then nothing it signed can be in use anywhere.
    let previous = previous.filter(|(_, info)| now < info.not_after && info.subject != current.info.subject);
    if ca_changed {
        issued.push(ca_name.clone());
    }
    let trusted = bundle(
        previous
            .iter()
            .map(|(pem, _)| pem.as_str())
            .chain([current.keyed.cert.as_str(), next.keyed.cert.as_str()]),
    );

    let ca = &current.keyed;
    let mut ca_entries = vec![
        (CERT_KEY, ca.cert.as_str()),
        (KEY_KEY, ca.key.as_str()),
        (NEXT_CERT_KEY, next.keyed.cert.as_str()),
        (NEXT_KEY_KEY, next.keyed.key.as_str()),
        (CA_KEY, trusted.as_str()),
    ];
    if let Some((pem, _)) = &previous {
        ca_entries.push((PREVIOUS_CERT_KEY, pem.as_str()));
    }
    let mut secrets = vec![secret(cluster, ca_name, "Opaque", &ca_entries)];
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
            let good = info.issuer == current.info.subject
                && have == wanted
                && !renewal_due(&info, now)
                && KeyPair::from_pem(&key).is_ok();
            good.then_some(KeyedCert { cert, key })
        });
        let leaf = match keep {
            Some(k) => k,
            None => {
                issued.push(name.clone());
                issue(ca, cluster, role, now, validity_secs)?
            }
        };
        if role == Role::Client {
            client = Some(ClientTls {
                ca: trusted.clone(),
                cert: leaf.cert.clone(),
                key: leaf.key.clone(),
            });
        }
        secrets.push(secret(
            cluster,
            name,
            "kubernetes.io/tls",
            &[(CERT_KEY, &leaf.cert), (KEY_KEY, &leaf.key), (CA_KEY, &trusted)],
        ));
    }
    Ok(TlsSecrets {
        secrets,
        client: client.ok_or(TlsError::NoClient)?,
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
mod tests;
