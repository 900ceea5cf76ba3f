//! CustomResourceDefinition semantics: served on creation, structural pruning, defaults,
//! OpenAPI and CEL validation with the real apiserver's messages, strict field validation,
//! status/spec separation and generation rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::kubesim::Cluster;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wd"]},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["name"],
                            "x-kubernetes-validations": [{"rule": "self.replicas <= 5 || self.size == 'large'", "message": "more than 5 replicas need size large"}],
                            "properties": {
                                "replicas": {"type": "integer", "minimum": 0, "maximum": 9, "default": 1},
                                "size": {"type": "string", "enum": ["small", "large"], "default": "small"},
                                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 10},
                                "tags": {"type": "array", "maxItems": 3, "items": {"type": "string"}},
                                "mode": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "mode is immutable"}]},
                                "nested": {"type": "object", "default": {}, "properties": {"a": {"type": "integer", "default": 5}}},
                                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            },
                        },
                        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}, "phase": {"type": "string"}}},
                    },
                }},
            }],
        },
    })
}

async fn setup() -> (Cluster, Api<DynamicObject>) {
    let c = Cluster::start_temp().await.unwrap();
    let client = c.client().await.unwrap();
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(widget_crd()).unwrap(),
    )
    .await
    .unwrap();
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Widget"), "widgets");
    let widgets = Api::namespaced_with(client, "default", &ar);
    (c, widgets)
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap()
}

async fn rejected(api: &Api<DynamicObject>, spec: Value) -> kube::core::Status {
    match api.create(&PostParams::default(), &widget("w", spec)).await {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn pruning_and_defaults() {
    let (_c, widgets) = setup().await;
    let created = widgets
        .create(
            &PostParams::default(),
            &widget(
                "w",
                json!({"name": "abc", "unknown": 1, "free": {"anything": {"goes": true}}}),
            ),
        )
        .await
        .unwrap();
    let spec = &created.data["spec"];
    assert!(spec.get("unknown").is_none(), "unknown field pruned: {spec}");
    assert_eq!(
        spec["free"]["anything"]["goes"], true,
        "preserve-unknown-fields kept"
    );
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["size"], "small");
    assert_eq!(spec["nested"]["a"], 5, "defaults apply inside defaulted objects");
}

#[tokio::test]
async fn schema_errors_match_the_apiserver() {
    let (_c, widgets) = setup().await;
    // Errors that make the object unfit for CEL (type, enum, required, too many) skip the
    // CEL rules, and the apiserver says so in a second error.
    let skipped = |first: &str| {
        format!(
            "Widget.example.com \"w\" is invalid: [{first}, <nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]"
        )
    };
    let cases = [
        (json!({"name": "abc", "replicas": 12, "size": "large"}), "Widget.example.com \"w\" is invalid: spec.replicas: Invalid value: 12: spec.replicas in body should be less than or equal to 9".to_string()),
        (json!({"name": "abc", "replicas": "x"}), skipped("spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"")),
        (json!({"name": "abc", "size": "medium"}), skipped("spec.size: Unsupported value: \"medium\": supported values: \"small\", \"large\"")),
        (json!({"replicas": 1}), skipped("spec.name: Required value")),
        (json!({"name": "ABC"}), "Widget.example.com \"w\" is invalid: spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'".to_string()),
        (json!({"name": "abc", "tags": ["a", "b", "c", "d"]}), skipped("spec.tags: Too many: 4: must have at most 3 items")),
    ];
    for (spec, message) in cases {
        let s = rejected(&widgets, spec.clone()).await;
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{spec}");
        assert_eq!(s.message, message, "{spec}");
        let cause = &s.details.as_ref().unwrap().causes[0];
        assert!(!cause.field.is_empty() && !cause.reason.is_empty(), "{cause:?}");
    }
}

#[tokio::test]
async fn cel_rules_and_transition_rules() {
    let (_c, widgets) = setup().await;
    let s = rejected(&widgets, json!({"name": "abc", "replicas": 7})).await;
    assert_eq!(s.code, 422);
    assert_eq!(
        s.message,
        "Widget.example.com \"w\" is invalid: spec: Invalid value: \"object\": more than 5 replicas need size large"
    );
    widgets
        .create(
            &PostParams::default(),
            &widget(
                "w",
                json!({"name": "abc", "replicas": 7, "size": "large", "mode": "a"}),
            ),
        )
        .await
        .unwrap();
    let err = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "b"}})),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(
            s.message,
            "Widget.example.com \"w\" is invalid: spec.mode: Invalid value: \"string\": mode is immutable"
        ),
        other => panic!("{other:?}"),
    }
    // Unchanged: fine.
    widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"tags": ["x"]}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn status_spec_separation_and_generation() {
    let (_c, widgets) = setup().await;
    let w = widgets
        .create(&PostParams::default(), &widget("w", json!({"name": "abc"})))
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    // Status in a main-resource write is ignored.
    let w = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Hacked"}, "metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert!(
        w.data.get("status").is_none_or(|s| s.get("phase").is_none()),
        "{:?}",
        w.data
    );
    assert_eq!(
        w.metadata.generation,
        Some(1),
        "metadata changes keep the generation"
    );
    // /status writes only status, and keep the generation.
    let w = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(w.data["status"]["phase"], "Ready");
    assert_eq!(w.data["spec"]["replicas"], 1, "spec untouched by /status");
    assert_eq!(w.metadata.generation, Some(1));
    // Spec changes bump the generation.
    let w = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(2));
    assert_eq!(w.data["status"]["phase"], "Ready", "status kept by spec writes");
}

#[tokio::test]
async fn deleting_the_crd_stops_serving_it() {
    let (c, widgets) = setup().await;
    widgets
        .create(&PostParams::default(), &widget("w", json!({"name": "abc"})))
        .await
        .unwrap();
    let client = c.client().await.unwrap();
    let crds: Api<DynamicObject> = Api::all_with(
        client,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    crds.delete("widgets.example.com", &Default::default())
        .await
        .unwrap();
    match widgets.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404),
        other => panic!("still served: {other:?}"),
    }
}

#[tokio::test]
async fn field_validation_modes() {
    let (c, widgets) = setup().await;
    let client = c.client().await.unwrap();
    let post = |query: &str, body: &str| {
        http::Request::post(format!("/apis/example.com/v1/namespaces/default/widgets?{query}"))
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .unwrap()
    };
    let unknown = r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"s"},"spec":{"name":"abc","x":1,"y":{"z":2}}}"#;
    // Strict: 400 naming every unknown field.
    match client
        .request::<serde_json::Value>(post("fieldValidation=Strict", unknown))
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"));
            assert_eq!(
                s.message,
                "Widget in version \"v1\" cannot be handled as a Widget: strict decoding error: unknown field \"spec.x\", unknown field \"spec.y\""
            );
        }
        other => panic!("{other:?}"),
    }
    // Duplicate fields are refused too under Strict.
    let dup = r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"d"},"spec":{"name":"abc","name":"def"}}"#;
    match client
        .request::<serde_json::Value>(post("fieldValidation=Strict", dup))
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!(
            (s.code, s.message.as_str()),
            (400, "strict decoding error: duplicate field \"spec.name\"")
        ),
        other => panic!("{other:?}"),
    }
    // Warn: stored pruned, with a Warning header; Ignore: pruned silently.
    let resp = reqwest_client(&c)
        .post(format!(
            "{}/apis/example.com/v1/namespaces/default/widgets?fieldValidation=Warn",
            c.url()
        ))
        .bearer_auth(admin_token(&c))
        .header("content-type", "application/json")
        .body(unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let warnings: Vec<String> = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        warnings,
        [
            r#"299 - "unknown field \"spec.x\"""#,
            r#"299 - "unknown field \"spec.y\"""#
        ]
    );
    assert!(widgets.get("s").await.unwrap().data["spec"].get("x").is_none());
    let ignore = unknown.replace("\"s\"", "\"i\"");
    client
        .request::<serde_json::Value>(post("fieldValidation=Ignore", &ignore))
        .await
        .unwrap();
    assert!(widgets.get("i").await.unwrap().data["spec"].get("y").is_none());
}

fn admin_token(c: &Cluster) -> String {
    let text = std::fs::read_to_string(c.kubeconfig()).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap()
        .to_string()
}

fn reqwest_client(c: &Cluster) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(c.server.ca_pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap()
}
