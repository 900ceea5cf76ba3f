//! A webhook receiver on the host for Alertmanager notifications: `POST /<path>` records the
//! path, the JSON payload and when it arrived. Pods reach it on kubesim's host address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;

/// One notification: the path it was posted to (without `/`), its payload, its arrival.
#[derive(Clone, Debug)]
pub struct Notification {
    /// The path, e.g. `team-a` for `POST /team-a`.
    pub path: String,
    /// The payload (`Null` when it is not JSON).
    pub body: serde_json::Value,
    /// When it arrived.
    pub at: SystemTime,
}

/// A running receiver; it stops with the test's runtime.
pub struct WebhookServer {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Notification>>>,
}

impl WebhookServer {
    /// Starts a receiver on `host`, on a free port.
    pub async fn start(host: &str) -> anyhow::Result<WebhookServer> {
        let received: Arc<Mutex<Vec<Notification>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/{path}",
                post(
                    |State(r): State<Arc<Mutex<Vec<Notification>>>>,
                     Path(path): Path<String>,
                     body: Bytes| async move {
                        let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                        if let Ok(mut r) = r.lock() {
                            r.push(Notification {
                                path,
                                body,
                                at: SystemTime::now(),
                            });
                        }
                    },
                ),
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind((host, 0)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(WebhookServer { addr, received })
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// Every notification so far, in arrival order.
    pub fn all(&self) -> Vec<Notification> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The payloads posted to `path`.
    pub fn to(&self, path: &str) -> Vec<serde_json::Value> {
        self.all()
            .into_iter()
            .filter(|n| n.path == path)
            .map(|n| n.body)
            .collect()
    }
}
