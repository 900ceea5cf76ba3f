//! Fills `kubernetes.io/service-account-token` Secrets with a token, the CA and the namespace.

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Key, Reconciler, is, key_of, opts, rt};
use crate::kubesim::objects::Part;
use crate::kubesim::server::ApiServer;
use crate::kubesim::store::{EventType, WatchEvent};

/// The token controller.
pub struct TokenSecrets;

impl Reconciler for TokenSecrets {
    fn name(&self) -> &'static str {
        "serviceaccount-tokens"
    }
    fn primary(&self) -> (&'static str, &'static str) {
        ("", "secrets")
    }
    fn keys_for(&self, server: &ApiServer, ev: &WatchEvent) -> Vec<Key> {
        if !is(ev, "", "secrets") || ev.object["type"] != "kubernetes.io/service-account-token" {
            return Vec::new();
        }
        if ev.type_ == EventType::Deleted {
            if let Some(token) = ev.object.pointer("/data/token").and_then(Value::as_str) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(token)
                    .unwrap_or_default();
                server.tokens.revoke(&String::from_utf8_lossy(&decoded));
            }
            return Vec::new();
        }
        vec![key_of(&ev.object)]
    }
    fn reconcile(&self, server: &ApiServer, (ns, name): &Key) {
        let Some(secrets) = rt(server, "", "secrets") else {
            return;
        };
        let Ok(secret) = server.get(&secrets, ns, name) else {
            return;
        };
        let Some(sa) = secret
            .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
            .and_then(Value::as_str)
        else {
            return;
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        match secret.pointer("/data/token").and_then(Value::as_str) {
            Some(token) => {
                // Known after a restart of the process holding the table? Re-register.
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(token)
                    .unwrap_or_default();
                let token = String::from_utf8_lossy(&decoded).to_string();
                if server.tokens.authenticate(&token).is_none() {
                    server
                        .tokens
                        .register(&token, crate::kubesim::auth::UserInfo::service_account(ns, sa));
                }
            }
            None => {
                let token = server.tokens.issue_service_account(ns, sa);
                let mut next = (*secret).clone();
                let data = crate::kubesim::objects::ensure_object(
                    crate::kubesim::objects::ensure_object(&mut next)
                        .entry("data")
                        .or_insert(json!({})),
                );
                data.insert("token".into(), json!(b64(&token)));
                data.insert("ca.crt".into(), json!(b64(&server.ca_pem)));
                data.insert("namespace".into(), json!(b64(ns)));
                let _ = server.update(&secrets, ns, name, next, Part::Main, &opts());
            }
        }
    }
}
