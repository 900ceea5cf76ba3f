//! Prometheus durations (`model.Duration`): `1y2w3d4h5m6s7ms`, units in that order, integers
//! only, or `0`.

use std::time::Duration;

const UNITS: [(&str, u128); 7] = [
    ("y", 365 * 24 * 3600 * 1_000_000_000),
    ("w", 7 * 24 * 3600 * 1_000_000_000),
    ("d", 24 * 3600 * 1_000_000_000),
    ("h", 3600 * 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
];

/// Parses a Prometheus duration; `None` when Prometheus would refuse it.
pub(crate) fn parse(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total: u128 = 0;
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let value: u128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let pos = UNITS.iter().position(|(u, _)| *u == unit)?;
        // Units must go from the biggest to the smallest, each at most once.
        if last_unit.is_some_and(|last| pos <= last) {
            return None;
        }
        last_unit = Some(pos);
        total = total.checked_add(value.checked_mul(UNITS[pos].1)?)?;
        // Go keeps durations in an int64 of nanoseconds.
        if total > i64::MAX as u128 {
            return None;
        }
    }
    let nanos = u64::try_from(total).ok()?;
    Some(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_prometheus_durations() {
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(parse("1w"), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(parse("1y"), Some(Duration::from_secs(365 * 86400)));
        assert_eq!(parse("1s500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("0s"), Some(Duration::ZERO));
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        for bad in [
            "", "1", "1.5m", "-1s", "1m1h", "1s1s", "5 m", "1M", "1sec", "s", "1h ", "9999999y", "1us",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
