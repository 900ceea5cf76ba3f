//! The `app.kubernetes.io/*` labels every child object carries.

use std::collections::BTreeMap;

/// `app.kubernetes.io/name`
pub const NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`
pub const COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/part-of`
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// Value of `part-of` for everything Steward creates.
pub const PART_OF_VALUE: &str = "steward";

/// Standard labels for a child of `instance` (the owning custom resource's name).
pub fn standard(name: &str, instance: &str, component: &str, managed_by: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_string(), name.to_string()),
        (INSTANCE.to_string(), instance.to_string()),
        (COMPONENT.to_string(), component.to_string()),
        (MANAGED_BY.to_string(), managed_by.to_string()),
        (PART_OF.to_string(), PART_OF_VALUE.to_string()),
    ])
}

/// The labels that find every child of one owner regardless of component: used as the
/// list selector when pruning.
pub fn owner_selector(name: &str, instance: &str, managed_by: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_string(), name.to_string()),
        (INSTANCE.to_string(), instance.to_string()),
        (MANAGED_BY.to_string(), managed_by.to_string()),
    ])
}

/// `k1=v1,k2=v2` for a label selector query.
pub fn to_selector(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_labels_and_selector() {
        let l = standard("etcd", "main", "member", "etcd-operator");
        assert_eq!(l.len(), 5);
        assert_eq!(l[PART_OF], "steward");
        let sel = to_selector(&owner_selector("etcd", "main", "etcd-operator"));
        assert_eq!(
            sel,
            "app.kubernetes.io/instance=main,app.kubernetes.io/managed-by=etcd-operator,app.kubernetes.io/name=etcd"
        );
    }
}
