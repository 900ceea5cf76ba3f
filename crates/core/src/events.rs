//! Recording Kubernetes Events (`events.k8s.io/v1`) about the objects we manage.
//!
//! Publishing an Event is best effort: a failure is logged and never fails a reconcile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

/// How many distinct notes keep their own series before the oldest series are forgotten
/// (a forgotten series only means the next repeat starts a new Event).
const MAX_SERIES: usize = 512;

/// Records Events as one operator.
///
/// kube's `Recorder` folds every Event with the same type, reason, action and objects into
/// one series and keeps the first note, so "added member a" followed by "added member b"
/// would show only "added member a (x2)". One `Recorder` per distinct note keeps different
/// notes as separate Events while exact repeats still become a series.
#[derive(Clone)]
pub struct EventRecorder {
    client: kube::Client,
    reporter: Reporter,
    by_note: Arc<Mutex<HashMap<String, Recorder>>>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder").finish_non_exhaustive()
    }
}

impl EventRecorder {
    /// A recorder reporting as `controller` (e.g. `steward.dev/etcd-operator`) from `instance`
    /// (the pod name).
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: controller.to_string(),
            instance,
        };
        Self {
            client,
            reporter,
            by_note: Arc::default(),
        }
    }

    /// A `Normal` Event on `obj`.
    pub async fn normal<K>(&self, obj: &K, reason: &str, action: &str, note: impl Into<String>)
    where
        K: Resource<DynamicType = ()>,
    {
        self.publish(obj, None, EventType::Normal, reason, action, note.into())
            .await;
    }

    /// A `Normal` Event on `obj` that also names `related` (e.g. the member pod a change was
    /// about).
    pub async fn normal_related<K>(
        &self,
        obj: &K,
        related: ObjectReference,
        reason: &str,
        action: &str,
        note: impl Into<String>,
    ) where
        K: Resource<DynamicType = ()>,
    {
        self.publish(obj, Some(related), EventType::Normal, reason, action, note.into())
            .await;
    }

    /// A `Warning` Event on `obj`.
    pub async fn warning<K>(&self, obj: &K, reason: &str, action: &str, note: impl Into<String>)
    where
        K: Resource<DynamicType = ()>,
    {
        self.publish(obj, None, EventType::Warning, reason, action, note.into())
            .await;
    }

    async fn publish<K>(
        &self,
        obj: &K,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let reference = obj.object_ref(&());
        // The API limits notes to 1 kB.
        let note = truncate(note, 1000);
        let recorder = self.recorder_for(&note);
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: related,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            warn!(object = ?reference.name, reason, error = %e, "could not publish event");
        }
    }
}

impl EventRecorder {
    fn recorder_for(&self, note: &str) -> Recorder {
        let Ok(mut map) = self.by_note.lock() else {
            return Recorder::new(self.client.clone(), self.reporter.clone());
        };
        if let Some(r) = map.get(note) {
            return r.clone();
        }
        if map.len() >= MAX_SERIES {
            map.clear();
        }
        let r = Recorder::new(self.client.clone(), self.reporter.clone());
        map.insert(note.to_string(), r.clone());
        r
    }
}

/// `s` cut to at most `max` bytes on a character boundary, with `...` appended when cut.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max.saturating_sub(3);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(truncate("abc".into(), 10), "abc");
        assert_eq!(truncate("abcdefgh".into(), 6), "abc...");
        assert_eq!(truncate("abcdef".into(), 2), "...");
        // "é" is two bytes: cutting inside it steps back to the boundary before it.
        assert_eq!(truncate("abé12345".into(), 6), "ab...");
        assert!(truncate("x".repeat(2000), 1000).len() <= 1000);
    }
}
