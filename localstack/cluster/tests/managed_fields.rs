//! Writes to `metadata.managedFields`, as the API server honours them (apimachinery
//! `pkg/util/managedfields/internal/fieldmanager.go` `decodeLiveOrNew`, `managedfields.go`
//! `DecodeManagedFields`, `skipnonapplied.go`, `lastappliedmanager.go`, `lastappliedupdater.go`):
//! kubectl's client-side → server-side apply migration (client-go `util/csaupgrade/upgrade.go`)
//! depends on them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers, like #[test] bodies, may panic.

mod common;

use common::sim;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::Status;
use serde_json::{Value, json};

fn api_error(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn config(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

/// An entry as the API server writes one.
fn entry(manager: &str, operation: &str, time: &str, fields: Value) -> Value {
    json!({"manager": manager, "operation": operation, "apiVersion": "v1", "time": time,
           "fieldsType": "FieldsV1", "fieldsV1": fields})
}

/// The ConfigMap as the server sends it, untouched by typed decoding.
async fn raw(client: &kube::Client, name: &str) -> Value {
    let request = http::Request::get(format!("/api/v1/namespaces/default/configmaps/{name}"))
        .body(Vec::new())
        .unwrap();
    serde_json::from_str(&client.request_text(request).await.unwrap()).unwrap()
}

/// `(manager, operation)` of each entry, in stored order.
fn owners(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_string(),
                e["operation"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn create(cms: &Api<ConfigMap>, name: &str, manager: &str, data: Value) -> ConfigMap {
    let params = PostParams {
        field_manager: Some(manager.into()),
        ..PostParams::default()
    };
    cms.create(
        &params,
        &serde_json::from_value(config(name, data)).unwrap(),
    )
    .await
    .unwrap()
}

fn json_patch(ops: Value) -> Patch<()> {
    Patch::Json(serde_json::from_value(ops).unwrap())
}

#[tokio::test]
async fn a_json_patch_that_replaces_managed_fields_is_stored_as_sent() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    create(&cms, "sent", "creator", json!({"a": "1", "b": "2"})).await;

    let sent = json!([
        entry(
            "owner",
            "Apply",
            "2024-01-02T03:04:05Z",
            json!({"f:data": {"f:a": {}}})
        ),
        entry(
            "other",
            "Update",
            "2024-01-01T00:00:00Z",
            json!({"f:data": {".": {}, "f:b": {}}})
        ),
    ]);
    cms.patch(
        "sent",
        &PatchParams::default(),
        &json_patch(json!([{"op": "replace", "path": "/metadata/managedFields", "value": sent}])),
    )
    .await
    .unwrap();
    let stored = raw(&client, "sent").await;
    assert_eq!(stored["metadata"]["managedFields"], sent, "{stored:#}");
    assert_eq!(stored["data"], json!({"a": "1", "b": "2"}));
}

/// fieldmanager.go `isResetManagedFields` and skipnonapplied.go: `[]` leaves the object untracked,
/// later updates do not track it, and the first apply finds a `before-first-apply` manager owning
/// what the object held.
#[tokio::test]
async fn an_empty_managed_fields_list_resets_field_management_until_the_next_apply() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    create(&cms, "reset", "creator", json!({"a": "1"})).await;

    let merge = |v: Value| Patch::Merge(v);
    cms.patch(
        "reset",
        &PatchParams::default(),
        &merge(json!({"metadata": {"managedFields": []}})),
    )
    .await
    .unwrap();
    assert!(owners(&raw(&client, "reset").await).is_empty());
    cms.patch(
        "reset",
        &PatchParams {
            field_manager: Some("editor".into()),
            ..PatchParams::default()
        },
        &merge(json!({"data": {"b": "2"}})),
    )
    .await
    .unwrap();
    assert!(owners(&raw(&client, "reset").await).is_empty());

    // The first applier shares what it applies unchanged and conflicts on what it changes.
    let err = api_error(
        cms.patch(
            "reset",
            &PatchParams::apply("applier"),
            &Patch::Apply(config("reset", json!({"b": "3"}))),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        err.code == 409 && err.message.contains("conflict with \"before-first-apply\""),
        "{err:?}"
    );
    cms.patch(
        "reset",
        &PatchParams::apply("applier"),
        &Patch::Apply(config("reset", json!({"a": "1"}))),
    )
    .await
    .unwrap();
    let obj = raw(&client, "reset").await;
    assert_eq!(
        owners(&obj),
        [
            ("applier".to_string(), "Apply".to_string()),
            ("before-first-apply".to_string(), "Update".to_string())
        ]
    );
    assert_eq!(
        obj["metadata"]["managedFields"][1]["fieldsV1"],
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    );
}

/// What kubectl's migration does (csaupgrade `UpgradeManagedFieldsPatch`): the client-side apply's
/// fields move into the applier's entry by a JSON patch guarded by the resourceVersion; the next
/// apply that leaves a field out removes it.
#[tokio::test]
async fn a_manager_made_owner_by_a_patch_releases_a_field_it_stops_applying() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    create(&cms, "moved", "client-side", json!({"a": "1", "b": "2"})).await;
    let applied = cms
        .patch(
            "moved",
            &PatchParams::apply("server-side"),
            &Patch::Apply(config("moved", json!({"a": "1"}))),
        )
        .await
        .unwrap();
    let rv = applied.metadata.resource_version.clone().unwrap();

    let upgraded = json!([entry(
        "server-side",
        "Apply",
        "2024-01-01T00:00:00Z",
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    )]);
    let migration = |rv: &str| {
        json_patch(json!([
            {"op": "replace", "path": "/metadata/managedFields", "value": upgraded},
            {"op": "replace", "path": "/metadata/resourceVersion", "value": rv},
        ]))
    };
    // kubectl retries on a Conflict after reading the object again.
    let stale = api_error(
        cms.patch("moved", &PatchParams::default(), &migration("1"))
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    cms.patch("moved", &PatchParams::default(), &migration(&rv))
        .await
        .unwrap();
    assert_eq!(
        owners(&raw(&client, "moved").await),
        [("server-side".to_string(), "Apply".to_string())]
    );

    cms.patch(
        "moved",
        &PatchParams::apply("server-side"),
        &Patch::Apply(config("moved", json!({"a": "1"}))),
    )
    .await
    .unwrap();
    let obj = raw(&client, "moved").await;
    assert_eq!(obj["data"], json!({"a": "1"}), "{obj:#}");
    assert_eq!(
        obj["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );
}

/// A PUT's managedFields are the starting point; the writer then owns what it changed.
#[tokio::test]
async fn an_update_that_sets_managed_fields_starts_from_them() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    create(&cms, "put", "creator", json!({"a": "1", "b": "2"})).await;
    let mut obj = raw(&client, "put").await;
    obj["metadata"]["managedFields"] = json!([entry(
        "owner",
        "Apply",
        "2024-01-01T00:00:00Z",
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    )]);
    obj["data"]["b"] = json!("changed");
    let params = PostParams {
        field_manager: Some("writer".into()),
        ..PostParams::default()
    };
    cms.replace("put", &params, &serde_json::from_value(obj).unwrap())
        .await
        .unwrap();
    let stored = raw(&client, "put").await;
    let entries = stored["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(
        owners(&stored)[0],
        ("owner".to_string(), "Apply".to_string())
    );
    assert_eq!(entries[0]["fieldsV1"], json!({"f:data": {"f:a": {}}}));
    assert_eq!(
        owners(&stored)[1],
        ("writer".to_string(), "Update".to_string())
    );
    assert_eq!(entries[1]["fieldsV1"], json!({"f:data": {"f:b": {}}}));
}

/// managedfields.go `DecodeManagedFields` failing makes fieldmanager.go keep the live entries; a
/// body that does not decode into the type at all is refused.
#[tokio::test]
async fn managed_fields_the_server_cannot_decode_are_ignored_and_a_malformed_list_is_refused() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    create(&cms, "bad", "creator", json!({"a": "1"})).await;
    let before = raw(&client, "bad").await["metadata"]["managedFields"].clone();

    let replace = |value: Value| {
        json_patch(json!([{"op": "replace", "path": "/metadata/managedFields", "value": value}]))
    };
    for undecodable in [
        json!([entry(
            "x",
            "Bogus",
            "2024-01-01T00:00:00Z",
            json!({"f:data": {}})
        )]),
        json!([{"manager": "x", "operation": "Apply", "apiVersion": "v1"}]),
        json!([entry(
            "x",
            "Apply",
            "2024-01-01T00:00:00Z",
            json!({"k:not-json": {}})
        )]),
    ] {
        cms.patch(
            "bad",
            &PatchParams::default(),
            &replace(undecodable.clone()),
        )
        .await
        .unwrap();
        assert_eq!(
            raw(&client, "bad").await["metadata"]["managedFields"],
            before,
            "{undecodable}"
        );
    }

    let err = api_error(
        cms.patch(
            "bad",
            &PatchParams::default(),
            &replace(json!("not a list")),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"), "{err:?}");

    // structuredmerge.go: an apply configuration cannot claim ownership itself.
    let mut with_owners = config("bad", json!({"a": "1"}));
    with_owners["metadata"]["managedFields"] = before.clone();
    let err = api_error(
        cms.patch(
            "bad",
            &PatchParams::apply("applier"),
            &Patch::Apply(with_owners),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        err.code == 400 && err.message.contains("metadata.managedFields must be nil"),
        "{err:?}"
    );
}

/// lastappliedmanager.go: kubectl's server-side apply takes over, without `--force-conflicts`,
/// fields its client-side apply set and nobody changed; lastappliedupdater.go then rewrites the
/// annotation to the applied configuration. Another manager still conflicts.
#[tokio::test]
async fn kubectl_server_side_apply_takes_over_what_its_client_side_apply_set() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let last_applied = "kubectl.kubernetes.io/last-applied-configuration";
    let mut object = config("csa", json!({"a": "1"}));
    object["metadata"]["annotations"] =
        json!({last_applied: config("csa", json!({"a": "1"})).to_string()});
    let params = PostParams {
        field_manager: Some("kubectl-client-side-apply".into()),
        ..PostParams::default()
    };
    cms.create(&params, &serde_json::from_value(object).unwrap())
        .await
        .unwrap();

    let changed = Patch::Apply(config("csa", json!({"a": "2"})));
    let err = api_error(
        cms.patch("csa", &PatchParams::apply("someone-else"), &changed)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409, "{err:?}");
    let applied = cms
        .patch("csa", &PatchParams::apply("kubectl"), &changed)
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["a"], "2");
    let annotation = &applied.metadata.annotations.unwrap()[last_applied];
    assert_eq!(
        annotation,
        "{\"apiVersion\":\"v1\",\"data\":{\"a\":\"2\"},\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"csa\"}}\n"
    );
}
