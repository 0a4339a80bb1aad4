//! Property tests with hostile input: selector parsing, patch application (JSON, merge,
//! strategic) and protobuf decoding never panic, whatever they are given; deep nesting, huge
//! numbers and huge strings are refused or handled, never a crash.

use apimachinery::patch::{json_patch, merge_patch, strategic};
use apimachinery::registry::GroupVersionKind;
use apimachinery::selector::{FieldSelector, LabelSelector};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON values, nested a few levels, with keys that patches and selectors care about.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("metadata".to_string()),
        Just("spec".to_string()),
        Just("containers".to_string()),
        Just("name".to_string()),
        Just("$patch".to_string()),
        Just("$retainKeys".to_string()),
        Just("$setElementOrder/containers".to_string()),
        Just("$deleteFromPrimitiveList/finalizers".to_string()),
        "[a-z$/]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("delete")),
        Just(json!("replace")),
        Just(json!("merge")),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON patch operations, often well-formed enough to reach the interesting code.
fn json_patch_doc() -> impl Strategy<Value = Value> {
    let op = prop_oneof![
        Just("add"),
        Just("remove"),
        Just("replace"),
        Just("move"),
        Just("copy"),
        Just("test"),
        Just("bogus"),
    ];
    let path = prop_oneof![
        Just("/spec".to_string()),
        Just("/metadata/name".to_string()),
        Just("/spec/containers/0".to_string()),
        Just("/spec/containers/-".to_string()),
        "(/[a-z0-9~-]{0,4}){0,4}"
    ];
    let one = (op, path.clone(), path, json_value()).prop_map(
        |(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}),
    );
    prop_oneof![
        prop::collection::vec(one, 0..5).prop_map(Value::Array),
        json_value()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn selector_parsing_never_panics(input in ".{0,64}", picky in "[a-z!=(),.\\- ]{0,40}") {
        let _ = LabelSelector::parse(&input);
        let _ = LabelSelector::parse(&picky);
        let _ = FieldSelector::parse(&input);
        let _ = FieldSelector::parse(&picky);
    }

    #[test]
    fn patches_never_panic(original in json_value(), patch in json_value(), ops in json_patch_doc()) {
        let _ = merge_patch(&original, &patch);
        let _ = json_patch(&original, &ops);
        for (av, kind) in [("apps/v1", "Deployment"), ("v1", "Pod"), ("v1", "ConfigMap"), ("example.com/v1", "Widget")] {
            let gvk = GroupVersionKind::from_api_version(av, kind);
            let _ = strategic::apply(&original, &patch, &gvk);
            let _ = strategic::three_way(Some(&original), &patch, &original, &gvk);
        }
    }

    #[test]
    fn schemas_and_kind_validation_never_panic(schema in json_value(), obj in json_value()) {
        let mut pruned = obj.clone();
        let _ = apimachinery::schema::prune(&schema, &mut pruned);
        apimachinery::schema::default(&schema, &mut pruned);
        let _ = apimachinery::schema::validate(&schema, &obj);
        for (av, kind) in [("apps/v1", "Deployment"), ("v1", "Pod"), ("v1", "Service"), ("batch/v1", "Job"), ("v1", "Secret"), ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration")] {
            let gvk = GroupVersionKind::from_api_version(av, kind);
            let _ = apimachinery::kind_validation::validate(&gvk, &obj);
            let _ = apimachinery::kind_validation::validate_update(&gvk, &obj, &schema);
        }
    }

    #[test]
    fn protobuf_decoding_never_panics(body in prop::collection::vec(any::<u8>(), 0..256), tail in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = apimachinery::protobuf::decode(&body);
        // With the magic and a plausible envelope, so the decoder goes past the header.
        let mut framed = b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12".to_vec();
        framed.push(u8::try_from(tail.len().min(127)).unwrap_or(0));
        framed.extend_from_slice(&tail);
        let _ = apimachinery::protobuf::decode(&framed);
    }
}

/// The smallest patch proptest found (2026-12-04) on which json-patch's own undo panicked: an
/// `add` that fails is not applied, yet its undo entry is undone. An error, nothing changed.
#[test]
fn a_failing_json_patch_that_json_patch_could_not_undo_is_an_error() {
    let ops = json!([
        {"op": "add", "path": "/spec", "from": "/spec", "value": null},
        {"op": "move", "path": "/metadata/name", "from": "/spec", "value": null}
    ]);
    let original = json!({});
    assert!(json_patch(&original, &ops).is_err());
    assert_eq!(original, json!({}));
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    assert!(serde_json::from_str::<Value>(&deep).is_err());
    // The deepest document serde_json accepts can still be patched.
    let ok = "[".repeat(120) + &"]".repeat(120);
    let v: Value = serde_json::from_str(&ok).expect("within the recursion limit");
    let _ = merge_patch(&json!({"a": v.clone()}), &json!({"a": v.clone()}));
    let gvk = GroupVersionKind::from_api_version("v1", "ConfigMap");
    let _ = strategic::apply(&json!({"data": v.clone()}), &json!({"data": v}), &gvk);
}

#[test]
fn huge_numbers_and_strings_are_handled() {
    assert!(serde_json::from_str::<Value>("1e400").is_err());
    let big: Value = serde_json::from_str("123456789012345678901234567890").expect("a float");
    assert!(big.is_f64());
    let huge = "x".repeat(4 << 20);
    let _ = LabelSelector::parse(&huge);
    let _ = merge_patch(&json!({"a": huge.clone()}), &json!({"a": null}));
}
