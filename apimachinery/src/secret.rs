//! Secrets' write-only `stringData`: each key goes into `data` base64-encoded (over a key of the
//! same name there) and `stringData` itself is neither stored nor returned, as Kubernetes
//! converts it on decode. The API server applies it to every write; the syncer applies it to
//! what it predicts, so a repository's `stringData` is not drift against the stored `data`.

use base64::Engine;
use serde_json::{Value, json};

/// Moves `stringData` into `data`. Anything but a map of strings is left for validation to
/// refuse.
pub fn merge_string_data(secret: &mut Value) {
    let Some(secret) = secret.as_object_mut() else {
        return;
    };
    let all_strings = secret
        .get("stringData")
        .and_then(Value::as_object)
        .is_some_and(|m| m.values().all(Value::is_string));
    if !all_strings {
        return;
    }
    let Some(Value::Object(strings)) = secret.remove("stringData") else {
        return;
    };
    let data = secret.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    if let Some(data) = data.as_object_mut() {
        for (k, v) in strings {
            let text = v.as_str().unwrap_or_default();
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            data.insert(k, Value::String(encoded));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_goes_into_data_and_wins() {
        let mut s = json!({"data": {"a": "b2xk", "b": "Yg=="}, "stringData": {"a": "new"}});
        merge_string_data(&mut s);
        assert_eq!(s, json!({"data": {"a": "bmV3", "b": "Yg=="}}));
        let mut only = json!({"stringData": {"user": "admin"}});
        merge_string_data(&mut only);
        assert_eq!(only, json!({"data": {"user": "YWRtaW4="}}));
    }

    #[test]
    fn a_non_string_value_is_left_for_validation() {
        let mut s = json!({"stringData": {"n": 1}});
        merge_string_data(&mut s);
        assert_eq!(s, json!({"stringData": {"n": 1}}));
    }
}
