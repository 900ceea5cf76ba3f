//! Go-style durations as Kubernetes APIs write them: `90s`, `2m`, `1h30m`, `500ms`.

use std::time::Duration;

/// The longest duration accepted: 100 years. Anything longer is a typo, and would overflow
/// the clock arithmetic it is used in (deadlines, certificate expiry).
pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses a duration such as `1h30m` or `250ms`; at most [`MAX`].
pub fn parse(s: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            "d" => value * 86_400.0,
            u => return Err(format!("invalid unit {u:?} in duration {s:?}")),
        };
        let too_long = || format!("duration {s:?} is longer than 100 years");
        let part = Duration::try_from_secs_f64(secs).map_err(|_| too_long())?;
        total = total
            .checked_add(part)
            .filter(|t| *t <= MAX)
            .ok_or_else(too_long)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse("").is_err() && parse("5x").is_err() && parse("m").is_err());
    }

    #[test]
    fn huge_durations_are_errors_not_panics() {
        assert_eq!(
            parse("99999999999999999999h"),
            Err("duration \"99999999999999999999h\" is longer than 100 years".to_string())
        );
        assert!(parse("876000h").is_ok());
        assert!(parse("876000h1s").is_err());
        assert!(parse("1e400s").is_err());
    }
}
