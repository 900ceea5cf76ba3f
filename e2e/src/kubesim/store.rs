//! In-memory object storage with a global resourceVersion, a bounded event history for
//! watch resumption, and a broadcast of every change.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

use super::registry::StorageKey;

/// Kind of change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// Watch event type string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to one object.
#[derive(Debug)]
pub struct WatchEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Which resource.
    pub key: StorageKey,
    /// Namespace of the object ("" for cluster-scoped).
    pub namespace: String,
    /// What happened.
    pub type_: EventType,
    /// The object after the change (before it, for deletions).
    pub object: Arc<Value>,
    /// The object before a modification, so selector-filtered watches can turn it into
    /// ADDED/DELETED like the real apiserver.
    pub previous: Option<Arc<Value>>,
}

/// Why a store operation failed.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    /// Create of an existing object.
    AlreadyExists,
    /// Update or delete of a missing object.
    NotFound,
    /// resourceVersion precondition failed.
    Conflict,
    /// Watch from a resourceVersion older than the kept history.
    Gone(u64),
}

type ObjKey = (String, String);

/// Events still in history after a version, and a receiver for later ones.
pub type Subscription = (Vec<Arc<WatchEvent>>, broadcast::Receiver<Arc<WatchEvent>>);

struct Inner {
    rv: u64,
    objects: HashMap<StorageKey, BTreeMap<ObjKey, Arc<Value>>>,
    log: VecDeque<Arc<WatchEvent>>,
    /// Events up to and including this rv are no longer in `log`.
    compacted: u64,
}

/// The object store.
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    history: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// The resourceVersion of a stored object.
pub fn rv_of(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn key_of(obj: &Value) -> ObjKey {
    let m = &obj["metadata"];
    (
        m["namespace"].as_str().unwrap_or_default().to_string(),
        m["name"].as_str().unwrap_or_default().to_string(),
    )
}

fn set_rv(obj: &mut Value, rv: u64) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

impl Store {
    /// A store keeping `history` events for watch resumption.
    pub fn new(history: usize) -> Self {
        let (tx, _) = broadcast::channel(65_536);
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: HashMap::new(),
                log: VecDeque::new(),
                compacted: 1,
            }),
            tx,
            history,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every write is a single
        // insert/remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// One object.
    pub fn get(&self, key: &StorageKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.lock()
            .objects
            .get(key)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a resource, optionally in one namespace, sorted by namespace and name,
    /// with the resourceVersion the list reflects.
    pub fn list(&self, key: &StorageKey, ns: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        let items = match inner.objects.get(key) {
            None => Vec::new(),
            Some(m) => match ns {
                None => m.values().cloned().collect(),
                Some(ns) => m
                    .range((ns.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, v)| v.clone())
                    .collect(),
            },
        };
        (items, inner.rv)
    }

    /// Number of objects of a resource.
    pub fn count(&self, key: &StorageKey) -> usize {
        self.lock().objects.get(key).map_or(0, BTreeMap::len)
    }

    fn emit(&self, inner: &mut Inner, ev: WatchEvent) {
        let ev = Arc::new(ev);
        inner.log.push_back(ev.clone());
        while inner.log.len() > self.history {
            if let Some(old) = inner.log.pop_front() {
                inner.compacted = old.rv;
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(ev);
    }

    /// Stores a new object, assigning its resourceVersion.
    pub fn create(&self, key: &StorageKey, obj: Value) -> Result<Arc<Value>, StoreError> {
        let mut inner = self.lock();
        let k = key_of(&obj);
        if inner.objects.get(key).is_some_and(|m| m.contains_key(&k)) {
            return Err(StoreError::AlreadyExists);
        }
        Ok(self.commit(&mut inner, key, k, obj, EventType::Added, None))
    }

    /// Replaces an object if its stored resourceVersion is `expected_rv`.
    pub fn update(&self, key: &StorageKey, obj: Value, expected_rv: u64) -> Result<Arc<Value>, StoreError> {
        let mut inner = self.lock();
        let k = key_of(&obj);
        let previous = inner
            .objects
            .get(key)
            .and_then(|m| m.get(&k))
            .cloned()
            .ok_or(StoreError::NotFound)?;
        if rv_of(&previous) != expected_rv {
            return Err(StoreError::Conflict);
        }
        Ok(self.commit(&mut inner, key, k, obj, EventType::Modified, Some(previous)))
    }

    /// Removes an object if its stored resourceVersion is `expected_rv` (any when `None`).
    pub fn delete(
        &self,
        key: &StorageKey,
        ns: &str,
        name: &str,
        expected_rv: Option<u64>,
    ) -> Result<Arc<Value>, StoreError> {
        let mut inner = self.lock();
        let k = (ns.to_string(), name.to_string());
        let current = inner
            .objects
            .get(key)
            .and_then(|m| m.get(&k))
            .cloned()
            .ok_or(StoreError::NotFound)?;
        if expected_rv.is_some_and(|rv| rv != rv_of(&current)) {
            return Err(StoreError::Conflict);
        }
        if let Some(m) = inner.objects.get_mut(key) {
            m.remove(&k);
        }
        // Deleted objects are reported with the deletion's resourceVersion.
        Ok(self.commit(&mut inner, key, k, (*current).clone(), EventType::Deleted, None))
    }

    /// Gives `obj` the next resourceVersion, keeps it (unless it is being deleted) and tells
    /// the watchers.
    fn commit(
        &self,
        inner: &mut Inner,
        key: &StorageKey,
        k: ObjKey,
        mut obj: Value,
        type_: EventType,
        previous: Option<Arc<Value>>,
    ) -> Arc<Value> {
        inner.rv += 1;
        let rv = inner.rv;
        set_rv(&mut obj, rv);
        let obj = Arc::new(obj);
        if type_ != EventType::Deleted {
            inner
                .objects
                .entry(key.clone())
                .or_default()
                .insert(k.clone(), obj.clone());
        }
        let ev = WatchEvent {
            rv,
            key: key.clone(),
            namespace: k.0,
            type_,
            object: obj.clone(),
            previous,
        };
        self.emit(inner, ev);
        obj
    }

    /// Events after `since` still in history, plus a receiver for later ones; `Gone` when
    /// `since` is older than the history.
    pub fn watch_from(&self, since: u64) -> Result<Subscription, StoreError> {
        let inner = self.lock();
        if since < inner.compacted {
            return Err(StoreError::Gone(inner.compacted));
        }
        let backlog = inner.log.iter().filter(|e| e.rv > since).cloned().collect();
        Ok((backlog, self.tx.subscribe()))
    }

    /// A receiver of every change from now on (for in-process controllers).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.tx.subscribe()
    }

    /// Forgets the event history, so watches resuming from any earlier resourceVersion get
    /// `410 Gone`. For tests of watch recovery.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.log.clear();
        inner.compacted = inner.rv;
    }

    /// Every stored resource key (for the garbage collector and namespace deletion).
    pub fn keys(&self) -> Vec<StorageKey> {
        self.lock().objects.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> StorageKey {
        StorageKey {
            group: String::new(),
            plural: "configmaps".into(),
        }
    }

    #[test]
    fn versions_conflicts_and_history() {
        let s = Store::new(3);
        let a = s
            .create(&key(), json!({"metadata": {"name": "a", "namespace": "n"}}))
            .unwrap();
        let rv = rv_of(&a);
        assert_eq!(
            s.create(&key(), json!({"metadata": {"name": "a", "namespace": "n"}}))
                .unwrap_err(),
            StoreError::AlreadyExists
        );
        let b = s
            .update(
                &key(),
                json!({"metadata": {"name": "a", "namespace": "n"}, "data": {}}),
                rv,
            )
            .unwrap();
        assert!(rv_of(&b) > rv);
        assert_eq!(
            s.update(&key(), json!({"metadata": {"name": "a", "namespace": "n"}}), rv)
                .unwrap_err(),
            StoreError::Conflict
        );
        let (backlog, _) = s.watch_from(rv).unwrap();
        assert_eq!(backlog.len(), 1);
        for i in 0..5 {
            s.create(
                &key(),
                json!({"metadata": {"name": format!("x{i}"), "namespace": "n"}}),
            )
            .unwrap();
        }
        assert!(matches!(s.watch_from(rv), Err(StoreError::Gone(_))));
        assert_eq!(s.list(&key(), Some("n")).0.len(), 6);
        assert_eq!(s.list(&key(), Some("m")).0.len(), 0);
        s.delete(&key(), "n", "a", None).unwrap();
        assert!(s.get(&key(), "n", "a").is_none());
        s.compact();
        assert!(s.watch_from(s.current_rv() - 1).is_err());
        assert!(s.watch_from(s.current_rv()).is_ok());
    }
}
