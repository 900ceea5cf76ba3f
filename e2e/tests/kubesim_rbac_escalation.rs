//! RBAC beyond verbs, as kube-apiserver enforces it: a server-side apply that creates needs
//! `create`; writing a Role that grants more than the writer holds needs `escalate`; binding
//! a role needs `bind` on it or every permission it grants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::kubesim::Cluster;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn forbidden(r: Result<impl std::fmt::Debug, kube::Error>) -> String {
    match r {
        Err(kube::Error::Api(ae)) if ae.code == 403 => ae.message,
        other => panic!("expected 403, got {other:?}"),
    }
}

const NOT_HELD: &str = "is forbidden: user \"system:serviceaccount:team:tenant\" (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:team\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalate_bind_and_create_on_apply() {
    let c = Cluster::start_temp().await.unwrap();
    let admin = c.client().await.unwrap();
    let pp = PostParams::default();
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    ns.create(&pp, &from(json!({"metadata": {"name": "team"}})))
        .await
        .unwrap();
    // The tenant may manage Roles, RoleBindings and ConfigMaps (patch only) in "team".
    Api::<Role>::namespaced(admin.clone(), "team")
        .create(&pp, &from(json!({"metadata": {"name": "tenant"}, "rules": [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "update", "patch", "get"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "patch"]},
        ]})))
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), "team")
        .create(
            &pp,
            &from(json!({"metadata": {"name": "tenant"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
            "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": "team"}]})),
        )
        .await
        .unwrap();
    let token = c.server.tokens.issue_service_account("team", "tenant");
    let tenant = c.client_with_token(&token).await.unwrap();
    let roles: Api<Role> = Api::namespaced(tenant.clone(), "team");
    let bindings: Api<RoleBinding> = Api::namespaced(tenant.clone(), "team");

    // A Role within what the tenant holds is fine; one granting Secrets is an escalation.
    roles
        .create(&pp, &from(json!({"metadata": {"name": "cm-reader"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]})))
        .await
        .unwrap();
    let msg = forbidden(
        roles
            .create(&pp, &from(json!({"metadata": {"name": "secrets"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]})))
            .await,
    );
    assert_eq!(
        msg,
        format!(
            "roles.rbac.authorization.k8s.io \"secrets\" {NOT_HELD}{{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}}\n{{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"list\"]}}"
        )
    );

    // Binding a ClusterRole the tenant does not hold needs `bind` on it.
    Api::<ClusterRole>::all(admin.clone())
        .create(&pp, &from(json!({"metadata": {"name": "secret-reader"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})))
        .await
        .unwrap();
    let binding = json!({"metadata": {"name": "read-secrets"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "secret-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": "team"}]});
    let msg = forbidden(bindings.create(&pp, &from(binding.clone())).await);
    assert_eq!(
        msg,
        format!(
            "rolebindings.rbac.authorization.k8s.io \"read-secrets\" {NOT_HELD}{{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}}"
        )
    );
    // Binding what it holds is fine.
    bindings
        .create(
            &pp,
            &from(json!({"metadata": {"name": "cm"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": "team"}]})),
        )
        .await
        .unwrap();
    // `bind` on exactly that ClusterRole lets it bind it.
    Api::<Role>::namespaced(admin.clone(), "team")
        .create(&pp, &from(json!({"metadata": {"name": "binder"}, "rules": [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["secret-reader"]},
        ]})))
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), "team")
        .create(
            &pp,
            &from(json!({"metadata": {"name": "binder"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "binder"},
            "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": "team"}]})),
        )
        .await
        .unwrap();
    bindings.create(&pp, &from(binding)).await.unwrap();

    // Server-side apply: patching an existing ConfigMap is allowed, creating one is not.
    let cms_admin: Api<ConfigMap> = Api::namespaced(admin.clone(), "team");
    cms_admin
        .create(&pp, &from(json!({"metadata": {"name": "exists"}})))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(tenant.clone(), "team");
    let ssa = PatchParams::apply("tenant");
    cms.patch(
        "exists",
        &ssa,
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}})),
    )
    .await
    .unwrap();
    let msg = forbidden(
        cms.patch(
            "new",
            &ssa,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}})),
        )
        .await,
    );
    assert_eq!(
        msg,
        "configmaps \"new\" is forbidden: User \"system:serviceaccount:team:tenant\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"team\""
    );
}
