//! Golden tests: protobuf bodies the real kubectl 1.32 sent decode to the JSON kubectl prints.
//!
//! `tests/protobuf/NAME.bin` is the body of a kubectl request, recorded by
//! `tests/protobuf/capture/capture.sh` (which lists the commands); `NAME.json` is what the same
//! command prints with `--dry-run=client -o json`: Go's encoding/json of the very object kubectl
//! encodes to protobuf, so it is the JSON Kubernetes would produce for it. `pod-debug` (`kubectl
//! debug --copy-to`) and `token` (`kubectl create token`) have no dry-run; their JSON was written
//! from the decoded body and reviewed by hand.
//!
//! One normalisation: a `null` in the expected JSON whose key the decoded object lacks is
//! dropped. Go marshals a nil slice or map without `omitempty` as `null` (`"rules": null` for an
//! aggregated ClusterRole), and protobuf has no encoding for nil, so such a field cannot be on
//! the wire. Nothing else is normalised: `creationTimestamp: null`, `status: {}` and
//! `resources: {}` are on the wire (an empty Time, empty messages) and decode as kubectl prints
//! them.

use std::path::Path;

use apimachinery::protobuf::decode;
use serde_json::Value;

/// The recorded bodies; each must be present.
const CAPTURED: &[&str] = &[
    "namespace",
    "configmap",
    "secret-generic",
    "secret-tls",
    "secret-docker-registry",
    "deployment",
    "deployment-zero-replicas",
    "service-clusterip",
    "service-nodeport",
    "service-loadbalancer",
    "service-externalname",
    "serviceaccount",
    "job",
    "cronjob",
    "job-from-cronjob",
    "role",
    "rolebinding",
    "clusterrole",
    "clusterrole-aggregate",
    "clusterrolebinding",
    "priorityclass",
    "quota",
    "poddisruptionbudget",
    "ingress",
    "pod-debug",
    "token",
];

/// Drops the `null`s of `expected` whose keys `decoded` lacks, recursively.
fn normalise(expected: &mut Value, decoded: &Value) {
    match (expected, decoded) {
        (Value::Object(e), Value::Object(d)) => {
            e.retain(|k, v| !v.is_null() || d.contains_key(k));
            for (k, v) in e.iter_mut() {
                if let Some(dv) = d.get(k) {
                    normalise(v, dv);
                }
            }
        }
        (Value::Array(e), Value::Array(d)) => {
            for (ev, dv) in e.iter_mut().zip(d) {
                normalise(ev, dv);
            }
        }
        _ => {}
    }
}

fn check(dir: &Path, name: &str) -> Result<(), String> {
    let read = |ext: &str| {
        std::fs::read(dir.join(format!("{name}.{ext}"))).map_err(|e| format!("{name}.{ext}: {e}"))
    };
    let decoded = decode(&read("bin")?).map_err(|e| format!("{name}: {e}"))?;
    let mut expected: Value =
        serde_json::from_slice(&read("json")?).map_err(|e| format!("{name}.json: {e}"))?;
    normalise(&mut expected, &decoded);
    if decoded != expected {
        return Err(format!(
            "{name}: decoded\n{}\nexpected\n{}",
            serde_json::to_string_pretty(&decoded).unwrap_or_default(),
            serde_json::to_string_pretty(&expected).unwrap_or_default()
        ));
    }
    Ok(())
}

#[test]
fn every_recorded_kubectl_body_decodes_to_the_json_kubectl_prints() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/protobuf");
    let failures: Vec<String> = CAPTURED
        .iter()
        .filter_map(|name| check(&dir, name).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_normalisation_only_drops_nulls_the_decoded_object_lacks() {
    let decoded = serde_json::json!({"a": null, "b": {"c": 1}});
    let mut expected = serde_json::json!({"a": null, "b": {"c": 1, "d": null}, "rules": null});
    normalise(&mut expected, &decoded);
    assert_eq!(expected, decoded);
    let mut kept = serde_json::json!({"b": {"c": null}});
    normalise(&mut kept, &decoded);
    assert_eq!(kept, serde_json::json!({"b": {"c": null}}));
}
