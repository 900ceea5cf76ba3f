//! etcd versions: parsing and ordering, a domain type shared by the pure planner and the
//! controller (so the planner imports nothing from the controller).

/// A `major.minor.patch` etcd version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl Version {
    /// Parses `3.5.16` (a leading `v` is tolerated).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.strip_prefix('v').unwrap_or(s).split('.');
        let v = Version {
            major: parts.next()?.parse().ok()?,
            minor: parts.next()?.parse().ok()?,
            patch: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(v)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let v = Version::parse("v3.5.16");
        assert_eq!(v.map(|v| v.to_string()).as_deref(), Some("3.5.16"));
        assert_eq!(
            Version::parse("v3.4.23"),
            Some(Version {
                major: 3,
                minor: 4,
                patch: 23
            })
        );
        assert_eq!(Version::parse("3.5"), None);
        assert_eq!(Version::parse("3.5.16.1"), None);
        assert!(Version::parse("3.4.23") < Version::parse("3.5.0"));
    }
}
