//! Issuing, keeping, renewing and rotating certificates, checked on the certificates themselves.

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
    let first = desired_secrets(&c, &BTreeMap::new(), NOW, 3600, CA_VALIDITY_SECS).unwrap();
    let names: Vec<_> = first.secrets.iter().map(|s| s.name_any()).collect();
    assert_eq!(
        names,
        ["main-ca", "main-server-tls", "main-peer-tls", "main-client-tls"]
    );
    assert_eq!(first.issued.len(), 4);
    let again = desired_secrets(&c, &by_name(&first), NOW + 60, 3600, CA_VALIDITY_SECS).unwrap();
    assert!(again.issued.is_empty());
    assert_eq!(again.secrets, first.secrets);
    assert_eq!(again.client, first.client);
}

#[test]
fn certificates_carry_the_right_names_and_chain_to_the_ca() {
    let c = cluster();
    let s = desired_secrets(&c, &BTreeMap::new(), NOW, 3600, CA_VALIDITY_SECS).unwrap();
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
    // The bundle: the signing CA, then the one that takes over two thirds into its life.
    let next = inspect(&data(&map["main-ca"], NEXT_CERT_KEY).unwrap()).unwrap();
    assert_eq!(
        bundle_subjects(&data(&map["main-ca"], CA_KEY).unwrap()),
        [ca.subject.clone(), next.subject.clone()]
    );
    assert_eq!(next.not_before + 60, turnover(&ca));
    assert_eq!(next.not_after, turnover(&ca) + CA_VALIDITY_SECS);
    for role in ["server", "peer", "client"] {
        let sec = &map[&format!("main-{role}-tls")];
        assert_eq!(sec.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(data(sec, CA_KEY), data(&map["main-ca"], CA_KEY));
    }
}

#[test]
fn leaves_renew_after_two_thirds_of_their_life_and_the_ca_stays() {
    let c = cluster();
    let first = desired_secrets(&c, &BTreeMap::new(), NOW, 3000, CA_VALIDITY_SECS).unwrap();
    // 2/3 of (3000 + 60 backdate) = 2040 s after not_before = NOW - 60.
    assert_eq!(backdate(3000), 60);
    assert_eq!(backdate(45), 4);
    let before = desired_secrets(&c, &by_name(&first), NOW + 1979, 3000, CA_VALIDITY_SECS).unwrap();
    assert!(before.issued.is_empty());
    let due = desired_secrets(&c, &by_name(&first), NOW + 1981, 3000, CA_VALIDITY_SECS).unwrap();
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
    let first = desired_secrets(&c, &BTreeMap::new(), NOW, 3600, CA_VALIDITY_SECS).unwrap();
    // A peer certificate from another cluster's CA.
    let other = desired_secrets(&c, &BTreeMap::new(), NOW, 3600, CA_VALIDITY_SECS).unwrap();
    let mut mixed = by_name(&first);
    mixed.insert("main-peer-tls".into(), by_name(&other)["main-peer-tls"].clone());
    let fixed = desired_secrets(&c, &mixed, NOW, 3600, CA_VALIDITY_SECS).unwrap();
    assert_eq!(fixed.issued, ["main-peer-tls"]);
    // A CA Secret with garbage: a new CA, and every leaf reissued under it.
    let mut broken = by_name(&first);
    if let Some(d) = broken.get_mut("main-ca").and_then(|s| s.data.as_mut()) {
        d.insert(CERT_KEY.into(), ByteString(b"not a certificate".to_vec()));
    }
    let fresh = desired_secrets(&c, &broken, NOW, 3600, CA_VALIDITY_SECS).unwrap();
    assert_eq!(fresh.issued.len(), 4);
}

fn bundle_subjects(pem: &str) -> Vec<String> {
    inspect_bundle(pem).into_iter().map(|i| i.subject).collect()
}

fn cert_of(s: &TlsSecrets, name: &str, key: &str) -> CertInfo {
    inspect(&data(&by_name(s)[name], key).unwrap()).unwrap()
}

fn trusted(s: &TlsSecrets) -> Vec<String> {
    bundle_subjects(&data(&s.secrets[0], CA_KEY).unwrap())
}

const LEAVES: [&str; 3] = ["main-server-tls", "main-peer-tls", "main-client-tls"];

// CA lifetime in the rotation tests: 900 s, switch at 2/3 of (900 + 60 backdate).
const CA: i64 = 900;

#[test]
fn phase_one_the_next_ca_is_in_every_bundle_from_the_start() {
    let c = cluster();
    let s = desired_secrets(&c, &BTreeMap::new(), NOW, 300, CA).unwrap();
    let current = cert_of(&s, "main-ca", CERT_KEY);
    let next = cert_of(&s, "main-ca", NEXT_CERT_KEY);
    assert_eq!(trusted(&s), [current.subject.clone(), next.subject.clone()]);
    assert_ne!(current.subject, next.subject);
    // The next CA is valid from the switch on, for a whole CA lifetime.
    assert_eq!(turnover(&current), NOW - 60 + 960 * 2 / 3);
    assert_eq!(next.not_before, turnover(&current) - 60);
    assert_eq!(next.not_after, turnover(&current) + CA);
    assert!(data(&s.secrets[0], PREVIOUS_CERT_KEY).is_none());
    for leaf in LEAVES {
        assert_eq!(cert_of(&s, leaf, CERT_KEY).issuer, current.subject);
        assert_eq!(data(&by_name(&s)[leaf], CA_KEY), data(&s.secrets[0], CA_KEY));
    }
    assert_eq!(Some(s.client.ca.clone()), data(&s.secrets[0], CA_KEY));
    // Just before the switch nothing about the CAs changes.
    let leaves_renewed = desired_secrets(&c, &by_name(&s), turnover(&current) - 1, 300, CA).unwrap();
    assert_eq!(leaves_renewed.secrets[0], s.secrets[0]);
    assert!(!leaves_renewed.issued.contains(&"main-ca".to_string()));
}

#[test]
fn phase_two_the_next_ca_signs_after_the_switch_and_a_new_next_joins() {
    let c = cluster();
    let first = desired_secrets(&c, &BTreeMap::new(), NOW, 3000, CA).unwrap();
    let ca1 = cert_of(&first, "main-ca", CERT_KEY);
    let ca2 = cert_of(&first, "main-ca", NEXT_CERT_KEY);
    let at = turnover(&ca1);
    assert_eq!(
        next_renewal(&first.secrets),
        Some(at),
        "the switch is the first change"
    );
    let switched = desired_secrets(&c, &by_name(&first), at, 3000, CA).unwrap();
    assert_eq!(
        switched.issued,
        ["main-ca", "main-server-tls", "main-peer-tls", "main-client-tls"]
    );
    let current = cert_of(&switched, "main-ca", CERT_KEY);
    let ca3 = cert_of(&switched, "main-ca", NEXT_CERT_KEY);
    assert_eq!(current, ca2, "the published next CA signs now");
    assert!(data(&switched.secrets[0], NEXT_KEY_KEY).is_some());
    assert_eq!(cert_of(&switched, "main-ca", PREVIOUS_CERT_KEY), ca1);
    assert_eq!(
        trusted(&switched),
        [ca1.subject.clone(), ca2.subject.clone(), ca3.subject.clone()]
    );
    assert_eq!(ca3.not_before, turnover(&ca2) - 60);
    for leaf in LEAVES {
        let info = cert_of(&switched, leaf, CERT_KEY);
        assert_eq!(info.issuer, ca2.subject);
        assert!(info.not_after <= ca2.not_after);
    }
    // Stable until the old CA expires.
    let again = desired_secrets(&c, &by_name(&switched), at + 10, 3000, CA).unwrap();
    assert!(again.issued.is_empty());
    assert_eq!(again.secrets, switched.secrets);
    assert_eq!(
        next_renewal(&switched.secrets),
        Some(ca1.not_after),
        "the old CA's expiry comes next"
    );
}

#[test]
fn phase_three_the_old_ca_leaves_the_bundles_when_it_expires() {
    let c = cluster();
    let first = desired_secrets(&c, &BTreeMap::new(), NOW, 3000, CA).unwrap();
    let ca1 = cert_of(&first, "main-ca", CERT_KEY);
    let switched = desired_secrets(&c, &by_name(&first), turnover(&ca1), 3000, CA).unwrap();
    let before = desired_secrets(&c, &by_name(&switched), ca1.not_after - 1, 3000, CA).unwrap();
    assert_eq!(before.secrets, switched.secrets, "kept while it is valid");
    let after = desired_secrets(&c, &by_name(&switched), ca1.not_after, 3000, CA).unwrap();
    assert!(after.issued.is_empty(), "nothing is reissued: {:?}", after.issued);
    assert!(data(&after.secrets[0], PREVIOUS_CERT_KEY).is_none());
    let ca2 = cert_of(&after, "main-ca", CERT_KEY);
    let ca3 = cert_of(&after, "main-ca", NEXT_CERT_KEY);
    assert!(!trusted(&after).contains(&ca1.subject));
    assert_eq!(trusted(&after), [ca2.subject, ca3.subject]);
    for leaf in LEAVES {
        assert_eq!(
            cert_of(&after, leaf, CERT_KEY),
            cert_of(&switched, leaf, CERT_KEY)
        );
        assert_eq!(
            data(&by_name(&after)[leaf], CA_KEY),
            data(&after.secrets[0], CA_KEY)
        );
    }
}

/// Reconciles every 7 s for three CA lifetimes, with members that each started at some
/// point and trust only the bundle they started with (as etcd does).
#[test]
fn rotation_never_uses_an_untrusted_ca_and_retires_only_dead_ones() {
    let c = cluster();
    let mut state = BTreeMap::new();
    // (started at, subjects trusted); a member restarts once per CA period at most.
    let mut members: Vec<(i64, Vec<String>)> = Vec::new();
    // Every leaf ever issued: (issuer, not_after).
    let mut leaves: Vec<(String, i64)> = Vec::new();
    let mut last_trusted: Vec<String> = Vec::new();
    let mut switches = 0;
    let mut t = NOW;
    while t < NOW + 3 * CA {
        let s = desired_secrets(&c, &state, t, 300, CA).unwrap();
        let bundle = trusted(&s);
        let signer = cert_of(&s, "main-ca", CERT_KEY);
        if s.issued.contains(&"main-ca".to_string()) && t > NOW {
            switches += 1;
        }
        for leaf in LEAVES {
            let info = cert_of(&s, leaf, CERT_KEY);
            assert_eq!(info.issuer, signer.subject);
            assert!(bundle.contains(&info.issuer));
            if !leaves.contains(&(info.issuer.clone(), info.not_after)) {
                leaves.push((info.issuer.clone(), info.not_after));
            }
        }
        // A member that started before the previous switch trusts the signer already.
        if let Some((since, trust)) = members.last()
            && t - since < 2 * CA / 3
        {
            assert!(
                trust.contains(&signer.subject),
                "t={t}: member started at {since} lacks the signer"
            );
        }
        if members.last().is_none_or(|(since, _)| t - since >= CA / 2) {
            members.push((t, bundle.clone()));
        }
        // A CA that left the bundle signed nothing still valid.
        for gone in last_trusted.iter().filter(|x| !bundle.contains(x)) {
            for (issuer, end) in &leaves {
                assert!(
                    issuer != gone || *end <= t,
                    "t={t}: {gone} left while its leaf lives until {end}"
                );
            }
        }
        last_trusted = bundle;
        state = by_name(&s);
        t += 7;
    }
    assert!(switches >= 3, "{switches} switches");
}

#[test]
fn a_ca_secret_without_a_next_ca_gains_one_and_leaves_are_kept() {
    let c = cluster();
    let first = desired_secrets(&c, &BTreeMap::new(), NOW, 3000, CA).unwrap();
    let mut legacy = by_name(&first);
    let ca_pem = data(&first.secrets[0], CERT_KEY).unwrap();
    if let Some(d) = legacy.get_mut("main-ca").and_then(|s| s.data.as_mut()) {
        d.remove(NEXT_CERT_KEY);
        d.remove(NEXT_KEY_KEY);
        d.insert(CA_KEY.into(), ByteString(ca_pem.clone().into_bytes()));
    }
    let upgraded = desired_secrets(&c, &legacy, NOW + 10, 3000, CA).unwrap();
    assert_eq!(upgraded.issued, ["main-ca"]);
    assert_eq!(data(&upgraded.secrets[0], CERT_KEY), Some(ca_pem));
    assert_eq!(trusted(&upgraded).len(), 2);
    for leaf in LEAVES {
        assert_eq!(
            cert_of(&upgraded, leaf, CERT_KEY),
            cert_of(&first, leaf, CERT_KEY)
        );
    }
    // Found only after the switch point: the new next CA starts now and is not used in
    // the call that publishes it.
    let ca1 = cert_of(&first, "main-ca", CERT_KEY);
    let late = desired_secrets(&c, &legacy, turnover(&ca1) + 5, 3000, CA).unwrap();
    assert_eq!(cert_of(&late, "main-ca", CERT_KEY), ca1);
    assert_eq!(
        cert_of(&late, "main-ca", NEXT_CERT_KEY).not_before,
        turnover(&ca1) + 5 - 60
    );
    let switched = desired_secrets(&c, &by_name(&late), turnover(&ca1) + 10, 3000, CA).unwrap();
    assert_eq!(
        cert_of(&switched, "main-ca", CERT_KEY),
        cert_of(&late, "main-ca", NEXT_CERT_KEY)
    );
}

#[test]
fn an_expired_ca_hands_over_to_a_valid_next_one() {
    // The operator was away past the switch and past the CA's end.
    let c = cluster();
    let first = desired_secrets(&c, &BTreeMap::new(), NOW, 300, CA).unwrap();
    let ca1 = cert_of(&first, "main-ca", CERT_KEY);
    let ca2 = cert_of(&first, "main-ca", NEXT_CERT_KEY);
    let late = desired_secrets(&c, &by_name(&first), ca1.not_after + 1, 300, CA).unwrap();
    assert_eq!(cert_of(&late, "main-ca", CERT_KEY), ca2);
    assert!(data(&late.secrets[0], PREVIOUS_CERT_KEY).is_none());
    // Past both: start over.
    let lost = desired_secrets(&c, &by_name(&first), ca2.not_after + 1, 300, CA).unwrap();
    let fresh = cert_of(&lost, "main-ca", CERT_KEY);
    assert!(fresh.subject != ca1.subject && fresh.subject != ca2.subject);
}

#[test]
fn ca_validity_is_parsed_and_bounded() {
    let mut tls = crate::crd::EtcdTls::default();
    assert_eq!(ca_validity(&tls), Ok(CA_VALIDITY_SECS));
    assert_eq!(CA_VALIDITY_SECS, 87_600 * 3600);
    tls.ca_validity = Some("2m".into());
    assert_eq!(ca_validity(&tls), Ok(120));
    tls.ca_validity = Some("59s".into());
    assert_eq!(
        ca_validity(&tls),
        Err("spec.tls.caValidity 59s is too short: at least 60s".to_string())
    );
    tls.ca_validity = Some("9999999h9999999h".into());
    assert!(ca_validity(&tls).is_err_and(|e| e.contains("longer than 100 years")));
}

#[test]
fn client_material_reads_back_from_a_secret() {
    let c = cluster();
    let s = desired_secrets(&c, &BTreeMap::new(), NOW, 3600, CA_VALIDITY_SECS).unwrap();
    assert_eq!(
        client_from_secret(&by_name(&s)["main-client-tls"]),
        Some(s.client.clone())
    );
    assert_eq!(client_from_secret(&Secret::default()), None);
}
