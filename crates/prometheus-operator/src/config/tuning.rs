//! Storage and memory auto-tuning (pure helpers; upstream prometheus-operator has no such thing).
//!
//! - **Retention size**: with a PVC and no `retentionSize`, Prometheus gets
//!   `--storage.tsdb.retention.size` = [`RETENTION_FRACTION_PERCENT`] (80%) of the PVC size,
//!   so it deletes old blocks before the volume fills up (the WAL and compaction need the
//!   rest). The value is written in Prometheus' base-1024 units (`MB`, `GB`, `TB` mean MiB,
//!   GiB, TiB), rounded down to a whole MB: a `10Gi` PVC gives `8GB`, `1Gi` gives `819MB`.
//! - **GOMEMLIMIT**: with a memory limit, the container gets `GOMEMLIMIT` =
//!   [`GOMEMLIMIT_FRACTION_PERCENT`] (90%) of it, in bytes, so Go's garbage collector works
//!   harder before the kernel's OOM killer steps in.
//!
//! Explicit values always win. Sizes use Kubernetes quantity syntax (`20Gi`, `500M`, `1e9`,
//! `1.5Gi`); a size that does not parse, is negative or rounds down to nothing yields no tuning.

use crate::crd::PrometheusSpec;

/// Share of the PVC size given to `retention.size`, in percent.
pub const RETENTION_FRACTION_PERCENT: u128 = 80;
/// Share of the memory limit given to `GOMEMLIMIT`, in percent.
pub const GOMEMLIMIT_FRACTION_PERCENT: u128 = 90;

const MIB: u128 = 1024 * 1024;

/// Bytes of a Kubernetes quantity, rounded down; `None` if it does not parse or is negative.
///
/// ```
/// use prometheus_operator::config::tuning::quantity_bytes;
/// assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
/// assert_eq!(quantity_bytes("1.5k"), Some(1500));
/// assert_eq!(quantity_bytes("1e3"), Some(1000));
/// assert_eq!(quantity_bytes("-1Gi"), None);
/// ```
pub fn quantity_bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let q = q.strip_prefix('+').unwrap_or(q);
    if q.starts_with('-') {
        return None;
    }
    let num_len = q.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
    let (number, suffix) = q.split_at(num_len);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return None;
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let frac_digits = i32::try_from(frac_part.len()).ok()?;
    // (power of 1024, power of 10)
    let (bin, mut dec): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (1, 0),
        "Mi" => (2, 0),
        "Gi" => (3, 0),
        "Ti" => (4, 0),
        "Pi" => (5, 0),
        "Ei" => (6, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        s if s.starts_with(['e', 'E']) => (0, s[1..].parse::<i32>().ok().filter(|e| e.abs() <= 40)?),
        _ => return None,
    };
    dec -= frac_digits;
    let mut value = mantissa.checked_mul(1024u128.checked_pow(bin)?)?;
    if dec >= 0 {
        value = value.checked_mul(10u128.checked_pow(u32::try_from(dec).ok()?)?)?;
    } else {
        let div = 10u128.checked_pow(u32::try_from(-dec).ok()?);
        value = div.map_or(0, |d| value / d);
    }
    Some(value)
}

/// The `retention.size` to use: `explicit` when set, otherwise 80% of `pvc_size` in
/// Prometheus units, or `None` (no size-based retention).
///
/// ```
/// use prometheus_operator::config::tuning::retention_size;
/// assert_eq!(retention_size(None, Some("10Gi")).as_deref(), Some("8GB"));
/// assert_eq!(retention_size(Some("5GB"), Some("10Gi")).as_deref(), Some("5GB"));
/// ```
pub fn retention_size(explicit: Option<&str>, pvc_size: Option<&str>) -> Option<String> {
    if let Some(e) = explicit.map(str::trim).filter(|e| !e.is_empty()) {
        return Some(e.to_string());
    }
    let bytes = quantity_bytes(pvc_size?)?;
    let mib = bytes.checked_mul(RETENTION_FRACTION_PERCENT)? / 100 / MIB;
    if mib == 0 {
        return None;
    }
    Some(if mib.is_multiple_of(1024 * 1024) {
        format!("{}TB", mib / (1024 * 1024))
    } else if mib.is_multiple_of(1024) {
        format!("{}GB", mib / 1024)
    } else {
        format!("{mib}MB")
    })
}

/// The `GOMEMLIMIT` to set: `explicit` when set, otherwise 90% of `memory_limit` in bytes, or
/// `None`.
///
/// ```
/// use prometheus_operator::config::tuning::gomemlimit;
/// assert_eq!(gomemlimit(None, Some("1Gi")).as_deref(), Some("966367641"));
/// assert_eq!(gomemlimit(Some("500MiB"), Some("1Gi")).as_deref(), Some("500MiB"));
/// ```
pub fn gomemlimit(explicit: Option<&str>, memory_limit: Option<&str>) -> Option<String> {
    if let Some(e) = explicit.map(str::trim).filter(|e| !e.is_empty()) {
        return Some(e.to_string());
    }
    let bytes = quantity_bytes(memory_limit?)?.checked_mul(GOMEMLIMIT_FRACTION_PERCENT)? / 100;
    (bytes > 0).then(|| bytes.to_string())
}

/// [`retention_size`] for a Prometheus: its `retentionSize`, else 80% of its PVC size.
pub fn retention_size_for(spec: &PrometheusSpec) -> Option<String> {
    let pvc = spec
        .storage
        .as_ref()
        .and_then(|s| s.volume_claim_template.as_ref())
        .and_then(|t| t.size.as_deref());
    retention_size(spec.retention_size.as_deref(), pvc)
}

/// [`gomemlimit`] for a Prometheus: its `goMemLimit`, else 90% of its container's memory
/// limit.
pub fn gomemlimit_for(spec: &PrometheusSpec) -> Option<String> {
    let limit = spec
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
        .map(|q| q.0.as_str());
    gomemlimit(spec.go_mem_limit.as_deref(), limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("0"), Some(0));
        assert_eq!(quantity_bytes("20Gi"), Some(20 << 30));
        assert_eq!(quantity_bytes("10G"), Some(10_000_000_000));
        assert_eq!(quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(quantity_bytes("500Mi"), Some(500 << 20));
        assert_eq!(quantity_bytes("1500m"), Some(1));
        assert_eq!(quantity_bytes("1E"), Some(1_000_000_000_000_000_000));
        assert_eq!(quantity_bytes("1e-3"), Some(0));
        assert_eq!(quantity_bytes("+2Ki"), Some(2048));
        assert_eq!(quantity_bytes(".5Ki"), Some(512));
        for bad in [
            "",
            "Gi",
            "1GB",
            "1.2.3",
            "abc",
            "-5",
            "1e999",
            "99999999999999999999999999999999999Ei",
        ] {
            assert_eq!(quantity_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn retention_from_pvc() {
        assert_eq!(retention_size(None, Some("10Gi")).as_deref(), Some("8GB"));
        assert_eq!(retention_size(None, Some("20Gi")).as_deref(), Some("16GB"));
        assert_eq!(retention_size(None, Some("1Gi")).as_deref(), Some("819MB"));
        assert_eq!(retention_size(None, Some("5Ti")).as_deref(), Some("4TB"));
        assert_eq!(retention_size(None, Some("100G")).as_deref(), Some("76293MB"));
        assert_eq!(retention_size(None, Some("1Ki")), None);
        assert_eq!(retention_size(None, Some("junk")), None);
        assert_eq!(retention_size(None, None), None);
        assert_eq!(retention_size(Some("3GB"), Some("10Gi")).as_deref(), Some("3GB"));
        assert_eq!(retention_size(Some(""), Some("10Gi")).as_deref(), Some("8GB"));
    }

    #[test]
    fn gomemlimit_from_memory_limit() {
        assert_eq!(gomemlimit(None, Some("2Gi")).as_deref(), Some("1932735283"));
        assert_eq!(gomemlimit(None, Some("1000M")).as_deref(), Some("900000000"));
        assert_eq!(gomemlimit(None, Some("0")), None);
        assert_eq!(gomemlimit(None, None), None);
        assert_eq!(gomemlimit(Some("1GiB"), Some("2Gi")).as_deref(), Some("1GiB"));
    }

    #[test]
    fn spec_values_win() {
        let mut spec: PrometheusSpec = serde_json::from_value(serde_json::json!({
            "resources": {"limits": {"memory": "2Gi"}},
            "storage": {"volumeClaimTemplate": {"size": "10Gi"}},
        }))
        .unwrap();
        assert_eq!(gomemlimit_for(&spec).as_deref(), Some("1932735283"));
        assert_eq!(retention_size_for(&spec).as_deref(), Some("8GB"));
        spec.go_mem_limit = Some("1500MiB".into());
        spec.retention_size = Some("5GB".into());
        assert_eq!(gomemlimit_for(&spec).as_deref(), Some("1500MiB"));
        assert_eq!(retention_size_for(&spec).as_deref(), Some("5GB"));
    }
}
