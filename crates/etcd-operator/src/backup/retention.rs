//! Retention of scheduled backups, restic-style. Pure.
//!
//! Every rule names successful backups to keep, and a backup is kept when any rule keeps it
//! (the union of the keep sets):
//! - `maxBackups: n`: the newest `n`;
//! - `maxAge: d`: every one completed within `d` of now;
//! - `keepHourly` / `keepDaily` / `keepWeekly: n`: walking from the newest backup back, the
//!   newest backup of each of the first `n` distinct UTC hours / UTC days / ISO weeks that
//!   have one (as restic's `--keep-hourly` and friends: periods without a backup do not
//!   count).
//!
//! Whatever the rules say, the newest successful backup is kept, pending and running backups
//! are kept, and the [`FAILED_KEPT`] newest failed backups are kept (for their messages);
//! older failed backups are pruned. A policy without any rule prunes nothing.

use std::collections::BTreeSet;

use crate::crd::{BackupPhase, BackupRetention};

/// Failed backups kept for diagnosis; older failed ones are pruned.
pub const FAILED_KEPT: usize = 3;

/// One backup as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// EtcdBackup name.
    pub name: String,
    /// Its phase.
    pub phase: BackupPhase,
    /// Seconds since the epoch: completion time, or creation time when not completed.
    pub time: i64,
}

/// The rules of a [`BackupRetention`], parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Keep the newest this many.
    pub max_backups: Option<usize>,
    /// Keep those younger than this many seconds.
    pub max_age: Option<i64>,
    /// Newest of each of the last this many hours with a backup.
    pub hourly: usize,
    /// Newest of each of the last this many days with a backup.
    pub daily: usize,
    /// Newest of each of the last this many ISO weeks with a backup.
    pub weekly: usize,
}

impl Policy {
    /// The policy of `r`; a `maxAge` that does not parse is an error.
    pub fn from_spec(r: &BackupRetention) -> Result<Policy, String> {
        let count = |v: Option<i32>| v.map_or(0, |n| n.max(0) as usize);
        let max_age = match &r.max_age {
            None => None,
            Some(a) => Some(
                steward_core::duration::parse(a)
                    .map_err(|e| format!("retention.maxAge: {e}"))?
                    .as_secs() as i64,
            ),
        };
        Ok(Policy {
            max_backups: r.max_backups.map(|n| n.max(1) as usize),
            max_age,
            hourly: count(r.keep_hourly),
            daily: count(r.keep_daily),
            weekly: count(r.keep_weekly),
        })
    }

    /// Whether any rule is set (without one nothing is pruned).
    pub fn has_rules(&self) -> bool {
        self.max_backups.is_some()
            || self.max_age.is_some()
            || self.hourly > 0
            || self.daily > 0
            || self.weekly > 0
    }
}

/// The UTC hour of `t`.
fn hour(t: i64) -> i64 {
    t.div_euclid(3600)
}

/// The UTC day of `t`.
fn day(t: i64) -> i64 {
    t.div_euclid(86_400)
}

/// The ISO week of `t` (weeks start on Monday, UTC): 1970-01-01 was a Thursday, the fourth
/// day of its week, so shifting by three days makes every Monday start a new number.
fn iso_week(t: i64) -> i64 {
    (day(t) + 3).div_euclid(7)
}

/// Names of the backups to prune from `entries` under `policy` at `now`, oldest first.
pub fn prune(policy: &Policy, entries: &[Entry], now: i64) -> Vec<String> {
    if !policy.has_rules() {
        return Vec::new();
    }
    let newest_first = |phase: BackupPhase| {
        let mut v: Vec<&Entry> = entries.iter().filter(|e| e.phase == phase).collect();
        v.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
        v
    };
    let succeeded = newest_first(BackupPhase::Succeeded);
    let mut keep: BTreeSet<&str> = BTreeSet::new();
    keep.extend(succeeded.first().map(|e| e.name.as_str()));
    if let Some(n) = policy.max_backups {
        keep.extend(succeeded.iter().take(n).map(|e| e.name.as_str()));
    }
    if let Some(age) = policy.max_age {
        keep.extend(
            succeeded
                .iter()
                .filter(|e| now - e.time <= age)
                .map(|e| e.name.as_str()),
        );
    }
    for (n, period) in [
        (policy.hourly, hour as fn(i64) -> i64),
        (policy.daily, day),
        (policy.weekly, iso_week),
    ] {
        let mut seen = BTreeSet::new();
        for e in &succeeded {
            if seen.len() >= n {
                break;
            }
            if seen.insert(period(e.time)) {
                keep.insert(e.name.as_str());
            }
        }
    }
    let mut pruned: Vec<&Entry> = succeeded
        .iter()
        .filter(|e| !keep.contains(e.name.as_str()))
        .copied()
        .chain(newest_first(BackupPhase::Failed).into_iter().skip(FAILED_KEPT))
        .collect();
    pruned.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.name.cmp(&b.name)));
    pruned.into_iter().map(|e| e.name.clone()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const H: i64 = 3600;
    const D: i64 = 24 * H;
    /// 2026-01-05T00:00:00Z, a Monday.
    const MONDAY: i64 = 1_767_571_200;

    fn ok(name: &str, time: i64) -> Entry {
        Entry {
            name: name.into(),
            phase: BackupPhase::Succeeded,
            time,
        }
    }

    fn with(phase: BackupPhase, name: &str, time: i64) -> Entry {
        Entry {
            name: name.into(),
            phase,
            time,
        }
    }

    /// One successful backup every `step` seconds, `n` of them, the newest at `newest`;
    /// named `b<i>` with `b0` the oldest.
    fn series(n: usize, step: i64, newest: i64) -> Vec<Entry> {
        (0..n)
            .map(|i| ok(&format!("b{i}"), newest - (n - 1 - i) as i64 * step))
            .collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn monday_is_the_start_of_an_iso_week() {
        assert_eq!(iso_week(MONDAY), iso_week(MONDAY + 7 * D - 1));
        assert_eq!(iso_week(MONDAY) - 1, iso_week(MONDAY - 1));
        // 1970-01-01 (Thursday) and 1969-12-29 (Monday) are in the same ISO week.
        assert_eq!(iso_week(0), iso_week(-3 * D));
        assert_ne!(iso_week(0), iso_week(-3 * D - 1));
    }

    #[test]
    fn no_rule_prunes_nothing() {
        let entries = series(10, H, MONDAY);
        assert!(prune(&Policy::default(), &entries, MONDAY).is_empty());
    }

    #[test]
    fn max_backups_keeps_the_newest_n_and_prunes_oldest_first() {
        let entries = series(5, H, MONDAY);
        let p = Policy {
            max_backups: Some(2),
            ..Default::default()
        };
        assert_eq!(prune(&p, &entries, MONDAY), names(&["b0", "b1", "b2"]));
    }

    #[test]
    fn max_age_keeps_what_is_younger() {
        let entries = series(5, H, MONDAY);
        let p = Policy {
            max_age: Some(2 * H),
            ..Default::default()
        };
        // b4 is 0h old, b3 1h, b2 2h (kept, inclusive), b1 3h, b0 4h.
        assert_eq!(prune(&p, &entries, MONDAY), names(&["b0", "b1"]));
    }

    #[test]
    fn the_newest_success_survives_every_rule() {
        let entries = series(3, D, MONDAY - 30 * D);
        let p = Policy {
            max_age: Some(H),
            ..Default::default()
        };
        assert_eq!(prune(&p, &entries, MONDAY), names(&["b0", "b1"]));
    }

    #[test]
    fn keep_hourly_keeps_the_newest_of_each_hour_with_a_backup() {
        // Four backups per hour (every 15 min) over 5 hours, the newest at 04:45.
        let entries = series(20, 15 * 60, MONDAY + 4 * H + 45 * 60);
        let p = Policy {
            hourly: 3,
            ..Default::default()
        };
        let pruned = prune(&p, &entries, MONDAY + 5 * H);
        // Kept: the newest of hours 04, 03 and 02: b19 (04:45), b15 (03:45), b11 (02:45).
        let kept: Vec<&str> = entries
            .iter()
            .map(|e| e.name.as_str())
            .filter(|n| !pruned.iter().any(|p| p == n))
            .collect();
        assert_eq!(kept, vec!["b11", "b15", "b19"]);
    }

    #[test]
    fn periods_without_backups_do_not_count() {
        // Daily backups with a gap from Wednesday to Thursday: keepDaily 3 keeps Friday's
        // newest, Tuesday's and Monday's (a calendar "last three days" would keep Friday only).
        let entries = vec![
            ok("mon", MONDAY),
            ok("tue", MONDAY + D),
            ok("fri", MONDAY + 4 * D),
            ok("fri-late", MONDAY + 4 * D + 10 * H),
        ];
        let p = Policy {
            daily: 3,
            ..Default::default()
        };
        assert_eq!(prune(&p, &entries, MONDAY + 5 * D), names(&["fri"]));
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        // Sunday of the week before, Monday and Sunday of this week.
        let entries = vec![
            ok("prev-sun", MONDAY - H),
            ok("mon", MONDAY + H),
            ok("sun", MONDAY + 6 * D + 23 * H),
        ];
        let p = Policy {
            weekly: 2,
            ..Default::default()
        };
        // This week's newest is `sun`, last week's is `prev-sun`; `mon` shares a week with `sun`.
        assert_eq!(prune(&p, &entries, MONDAY + 7 * D), names(&["mon"]));
    }

    #[test]
    fn rules_keep_the_union() {
        // Hourly backups over three days, the newest at Wednesday 23:00.
        let newest = MONDAY + 2 * D + 23 * H;
        let entries = series(72, H, newest);
        let p = Policy {
            max_backups: Some(2),
            daily: 3,
            ..Default::default()
        };
        let pruned = prune(&p, &entries, newest);
        let kept: Vec<&str> = entries
            .iter()
            .map(|e| e.name.as_str())
            .filter(|n| !pruned.iter().any(|p| p == n))
            .collect();
        // Newest two (b70, b71) and the newest of each day: b23 (Mon 23:00), b47, b71.
        assert_eq!(kept, vec!["b23", "b47", "b70", "b71"]);
    }

    #[test]
    fn failed_backups_beyond_the_newest_few_are_pruned_and_pending_ones_never() {
        let mut entries = series(2, H, MONDAY);
        for i in 0..5 {
            entries.push(with(
                BackupPhase::Failed,
                &format!("f{i}"),
                MONDAY - 10 * H + i * H,
            ));
        }
        entries.push(with(BackupPhase::Pending, "p", MONDAY - 100 * D));
        entries.push(with(BackupPhase::Running, "r", MONDAY - 100 * D));
        let p = Policy {
            max_backups: Some(5),
            ..Default::default()
        };
        assert_eq!(prune(&p, &entries, MONDAY), names(&["f0", "f1"]));
    }

    #[test]
    fn without_a_success_nothing_successful_is_pruned() {
        let entries = vec![with(BackupPhase::Failed, "f", MONDAY)];
        let p = Policy {
            max_backups: Some(1),
            ..Default::default()
        };
        assert!(prune(&p, &entries, MONDAY).is_empty());
    }

    #[test]
    fn policy_from_spec() {
        let p = Policy::from_spec(&BackupRetention {
            max_backups: Some(3),
            max_age: Some("72h".into()),
            keep_hourly: Some(24),
            keep_daily: None,
            keep_weekly: Some(4),
        })
        .unwrap();
        assert_eq!(
            p,
            Policy {
                max_backups: Some(3),
                max_age: Some(72 * H),
                hourly: 24,
                daily: 0,
                weekly: 4,
            }
        );
        assert!(
            Policy::from_spec(&BackupRetention {
                max_age: Some("forever".into()),
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            !Policy::from_spec(&BackupRetention::default())
                .unwrap()
                .has_rules()
        );
    }
}
