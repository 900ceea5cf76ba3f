//! Status conditions the Kubernetes way: `lastTransitionTime` changes only when `status`
//! changes; `observedGeneration` says which spec the condition describes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// `True`, `False` or `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The controller cannot tell.
    Unknown,
}

impl Status {
    /// The API string.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(b: bool) -> Self {
        if b { Status::True } else { Status::False }
    }
}

/// A condition to record, without timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCondition<'a> {
    /// Condition type in CamelCase, e.g. `Available`.
    pub type_: &'a str,
    /// Its status.
    pub status: Status,
    /// CamelCase machine-readable reason.
    pub reason: &'a str,
    /// Human-readable message.
    pub message: String,
    /// Generation of the object the controller acted on.
    pub observed_generation: Option<i64>,
}

/// The current time as an API timestamp.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// Sets `new` in `conditions` and returns whether anything changed. The transition time is
/// `now` when the condition is new or its status changed, and kept otherwise.
pub fn set(conditions: &mut Vec<Condition>, new: NewCondition<'_>, now: Time) -> bool {
    let status = new.status.as_str();
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let transition = existing.status != status;
            let changed = transition
                || existing.reason != new.reason
                || existing.message != new.message
                || existing.observed_generation != new.observed_generation;
            if transition {
                existing.last_transition_time = now;
            }
            existing.status = status.to_string();
            existing.reason = new.reason.to_string();
            existing.message = new.message;
            existing.observed_generation = new.observed_generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: new.type_.to_string(),
                status: status.to_string(),
                reason: new.reason.to_string(),
                message: new.message,
                observed_generation: new.observed_generation,
                last_transition_time: now,
            });
            true
        }
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn ready(status: Status, reason: &str, generation: i64) -> NewCondition<'_> {
        NewCondition {
            type_: "Ready",
            status,
            reason,
            message: format!("{reason} message"),
            observed_generation: Some(generation),
        }
    }

    #[test]
    fn new_condition_gets_transition_time() {
        let mut c = vec![];
        assert!(set(&mut c, ready(Status::True, "Ok", 1), t(100)));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, t(100));
        assert_eq!(c[0].observed_generation, Some(1));
        assert!(is_true(&c, "Ready"));
    }

    #[test]
    fn transition_time_kept_when_status_unchanged() {
        let mut c = vec![];
        set(&mut c, ready(Status::True, "Ok", 1), t(100));
        assert!(
            !set(&mut c, ready(Status::True, "Ok", 1), t(200)),
            "identical: no change"
        );
        assert!(
            set(&mut c, ready(Status::True, "StillOk", 2), t(300)),
            "reason/generation changed"
        );
        assert_eq!(c[0].last_transition_time, t(100));
        assert_eq!(c[0].reason, "StillOk");
        assert_eq!(c[0].observed_generation, Some(2));
    }

    #[test]
    fn transition_time_moves_when_status_changes() {
        let mut c = vec![];
        set(&mut c, ready(Status::True, "Ok", 1), t(100));
        assert!(set(&mut c, ready(Status::False, "Broken", 1), t(200)));
        assert_eq!(c[0].last_transition_time, t(200));
        assert!(!is_true(&c, "Ready"));
        assert_eq!(find(&c, "Ready").unwrap().status, "False");
    }

    #[test]
    fn other_types_untouched() {
        let mut c = vec![];
        set(&mut c, ready(Status::True, "Ok", 1), t(100));
        set(
            &mut c,
            NewCondition {
                type_: "Degraded",
                status: Status::Unknown,
                reason: "Checking",
                message: String::new(),
                observed_generation: None,
            },
            t(150),
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].last_transition_time, t(100));
        assert_eq!(find(&c, "Degraded").unwrap().status, "Unknown");
    }
}
