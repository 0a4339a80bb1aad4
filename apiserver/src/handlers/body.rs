//! Decoding a request body: reading it (at most [`MAX_BODY`]), JSON or Kubernetes protobuf to
//! JSON, duplicate and unknown fields under the request's [`FieldValidation`], and the check
//! against the kind's type or schema.

use apimachinery::protobuf::{self, ProtobufError};
use apimachinery::status::{Reason, StatusError};
use axum::body::Body;
use axum::http::header;
use bytes::Bytes;

use super::ApiRequest;
use crate::request::Params;

/// The largest request body accepted (Kubernetes' limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// How much of a too-large body is read and dropped before answering 413, so that the client
/// is still listening when the answer comes; beyond it the connection is closed.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// What a write does with unknown and duplicate fields (`?fieldValidation=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    /// A 400 naming the fields (kubectl's default).
    Strict,
    /// Dropped, with a `Warning` header (the server's default, as in Kubernetes).
    Warn,
    /// Dropped silently.
    Ignore,
}

impl FieldValidation {
    /// The mode a request asks for; a 400 for an unsupported one.
    pub fn parse(params: &Params) -> Result<FieldValidation, StatusError> {
        match params.get("fieldValidation").unwrap_or("Warn") {
            "Strict" => Ok(FieldValidation::Strict),
            "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            mode => Err(StatusError::bad_request(format!(
                "fieldValidation parameter unsupported: {mode:?}; supported values: \"Ignore\", \"Warn\", \"Strict\""
            ))),
        }
    }
}

/// Reads a request body of at most [`MAX_BODY`] bytes; 413 beyond.
pub async fn read_body(body: Body) -> Result<Bytes, StatusError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(StatusError::bad_request(
                "the request body could not be read",
            ));
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= MAX_BODY {
            buf.extend_from_slice(&data);
        } else if seen > DRAIN_LIMIT {
            break;
        }
    }
    if seen > MAX_BODY {
        // Read (and drop) what the client sends so that it gets to see the answer.
        return Err(StatusError::new(
            Reason::RequestEntityTooLarge,
            format!("the request body is larger than the limit of {MAX_BODY} bytes"),
        ));
    }
    Ok(buf.freeze())
}

impl ApiRequest {
    /// The body as a JSON value, decoding Kubernetes protobuf bodies to the JSON Kubernetes would
    /// write; 415 for other content types and for protobuf kinds without a field table, 400
    /// naming the problem when the body is malformed.
    pub fn json_body(&self) -> Result<serde_json::Value, StatusError> {
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        let base = ct.split(';').next().unwrap_or("").trim();
        if base == protobuf::MEDIA_TYPE {
            return protobuf::decode(&self.body).map_err(|e| match e {
                ProtobufError::UnknownKind { .. } => {
                    StatusError::new(Reason::UnsupportedMediaType, e.to_string())
                }
                e => StatusError::bad_request(format!("the body of the request was invalid: {e}")),
            });
        }
        if !(base.is_empty() || base == "application/json" || base.ends_with("+json")) {
            return Err(StatusError::new(
                Reason::UnsupportedMediaType,
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/vnd.kubernetes.protobuf (got {ct:?})"
                ),
            ));
        }
        if self.body.is_empty() {
            return Err(StatusError::bad_request("the request body is empty"));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            StatusError::bad_request(format!(
                "the body of the request was in an unknown format: {e}"
            ))
        })
    }

    /// Fields given twice in the JSON body: a 400 under `fieldValidation=Strict`, a warning
    /// under `Warn` (the default), nothing under `Ignore`. The last value wins, as in Kubernetes.
    pub fn check_duplicates(&self) -> Result<(), StatusError> {
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        if ct.starts_with(protobuf::MEDIA_TYPE) {
            return Ok(());
        }
        let duplicates = apimachinery::typed::duplicate_fields(&self.body);
        if duplicates.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = duplicates
            .iter()
            .map(|f| format!("duplicate field \"{f}\""))
            .collect();
        // An unsupported mode is refused by `check_typed`; until then it warns.
        match self.field_validation {
            Ok(FieldValidation::Strict) => Err(StatusError::bad_request(format!(
                "strict decoding error: {}",
                list.join(", ")
            ))),
            Ok(FieldValidation::Ignore) => Ok(()),
            Ok(FieldValidation::Warn) | Err(_) => {
                list.into_iter().for_each(|w| self.warn(w));
                Ok(())
            }
        }
    }

    /// Checks an object against its type (built-in kinds) or its CRD's structural schema
    /// (custom resources) and returns it as stored: a wrong type is a 400 always; unknown fields
    /// are a 400 under `fieldValidation=Strict` (kubectl's default), dropped with a `Warning`
    /// header under `Warn` (the server's default, as in Kubernetes) and dropped silently under
    /// `Ignore`. Custom resources then get their schema's defaults.
    pub fn check_typed(&self, obj: serde_json::Value) -> Result<serde_json::Value, StatusError> {
        self.check_typed_as(obj, self.field_validation.clone()?)
    }

    /// [`ApiRequest::check_typed`] of a patched object of a built-in kind whose patch changed
    /// only the top-level fields `touched` (`status` for a kubelet's status patch): the rest is
    /// the stored object, already checked when it was written, so only those fields are
    /// decoded. A partial object that does not decode (a required top-level field of its kind
    /// left out) is checked whole, so errors are the same as [`ApiRequest::check_typed`]'s.
    pub fn check_typed_touched(
        &self,
        obj: serde_json::Value,
        touched: Option<&[String]>,
    ) -> Result<serde_json::Value, StatusError> {
        let mode = self.field_validation.clone()?;
        let Some(touched) = touched.filter(|_| !self.info.custom) else {
            return self.check_typed_as(obj, mode);
        };
        let Some(map) = obj.as_object() else {
            return self.check_typed_as(obj, mode);
        };
        let mut part = serde_json::Map::new();
        part.insert("apiVersion".into(), self.info.api_version().into());
        part.insert("kind".into(), self.info.kind.clone().into());
        for key in touched {
            if let Some(v) = map.get(key) {
                part.insert(key.clone(), v.clone());
            }
        }
        let part = serde_json::Value::Object(part);
        match apimachinery::typed::check(&self.info.gvk(), &part) {
            Ok(unknown) if unknown.as_ref().is_none_or(Vec::is_empty) => Ok(obj),
            _ => self.check_typed_as(obj, mode),
        }
    }

    /// [`ApiRequest::check_typed`] under a given `fieldValidation` mode.
    pub fn check_typed_as(
        &self,
        obj: serde_json::Value,
        mode: FieldValidation,
    ) -> Result<serde_json::Value, StatusError> {
        let (mut obj, unknown) = if self.info.custom {
            let mut obj = obj;
            let unknown = match &self.info.schema {
                Some(schema) => apimachinery::schema::prune(schema, &mut obj),
                None => Vec::new(),
            };
            (obj, unknown)
        } else {
            let gvk = self.info.gvk();
            // The body may leave apiVersion and kind to the URL (a copy is made only then).
            let checked = if obj.get("apiVersion").is_some() && obj.get("kind").is_some() {
                apimachinery::typed::check(&gvk, &obj)
            } else {
                let mut full = obj.clone();
                if let Some(m) = full.as_object_mut() {
                    m.entry("apiVersion")
                        .or_insert_with(|| self.info.api_version().into());
                    m.entry("kind")
                        .or_insert_with(|| self.info.kind.clone().into());
                }
                apimachinery::typed::check(&gvk, &full)
            };
            match checked {
                Err(e) => return Err(StatusError::bad_request(e.to_string())),
                Ok(Some(unknown)) if !unknown.is_empty() => {
                    let mut obj = obj;
                    apimachinery::typed::prune(&mut obj, &unknown);
                    (obj, unknown.iter().map(ToString::to_string).collect())
                }
                Ok(_) => (obj, Vec::new()),
            }
        };
        if !unknown.is_empty() {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            match mode {
                FieldValidation::Strict => {
                    return Err(StatusError::bad_request(format!(
                        "strict decoding error: {}",
                        list.join(", ")
                    )));
                }
                FieldValidation::Warn => list.into_iter().for_each(|w| self.warn(w)),
                FieldValidation::Ignore => {}
            }
        }
        if let Some(schema) = self.info.schema.as_deref() {
            apimachinery::schema::default(schema, &mut obj);
        }
        Ok(obj)
    }
}

#[cfg(test)]
mod tests {
    use apimachinery::registry::Registry;
    use serde_json::json;

    use axum::http::{HeaderMap, Method};

    use super::*;
    use crate::handlers::delete;
    use crate::request::{Params, Target, parse_path};

    /// A kubectl 1.32 `create configmap c1 --from-literal=a=b` body.
    const CONFIGMAP: &[u8] = b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x1c\x0a\x12\x0a\x02c1\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x06\x0a\x01a\x12\x01b\x1a\x00\x22\x00";

    fn request(content_type: &str, body: &[u8]) -> ApiRequest {
        let Some(Target::Resource(path)) = parse_path("/api/v1/namespaces/default/configmaps")
        else {
            unreachable!("a resource path")
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            content_type.parse().expect("a header value"),
        );
        ApiRequest::new(
            Method::POST,
            path,
            Registry::builtin()
                .by_resource("", "v1", "configmaps")
                .expect("configmaps are built in"),
            Params::parse(None),
            headers,
            Bytes::copy_from_slice(body),
            crate::authn::UserInfo::anonymous(),
        )
    }

    fn check(content_type: &str, body: &[u8], expected: Result<serde_json::Value, (u16, &str)>) {
        let got = request(content_type, body)
            .json_body()
            .map_err(|e| (e.code(), e.message));
        let expected = expected.map_err(|(code, m)| (code, m.to_string()));
        assert_eq!(got, expected, "{content_type}");
    }

    #[test]
    fn protobuf_bodies_are_decoded_to_json_and_their_problems_named() {
        let configmap = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c1", "creationTimestamp": null},
            "data": {"a": "b"},
        });
        check(
            "application/vnd.kubernetes.protobuf",
            CONFIGMAP,
            Ok(configmap.clone()),
        );
        check(
            "application/json",
            br#"{"kind":"ConfigMap"}"#,
            Ok(json!({"kind": "ConfigMap"})),
        );
        check(
            "application/vnd.kubernetes.protobuf",
            &CONFIGMAP[..30],
            Err((
                400,
                "the body of the request was invalid: protobuf message k8s.io.apimachinery.pkg.runtime.Unknown is truncated",
            )),
        );
        check(
            "application/vnd.kubernetes.protobuf",
            b"k8s\0\x0a\x0a\x0a\x02v1\x12\x04Node\x12\x02\x08\x01",
            Err((
                400,
                "the body of the request was invalid: protobuf field 1 (metadata) of k8s.io.api.core.v1.Node has wire type 0, which does not match its type",
            )),
        );
        check(
            "application/vnd.kubernetes.protobuf",
            b"k8s\0\x0a\x0d\x0a\x02v1\x12\x07Unknown",
            Err((
                415,
                "the server cannot decode protobuf for kind \"Unknown\" of \"v1\"; send the object as JSON",
            )),
        );
        check(
            "application/yaml",
            b"kind: ConfigMap",
            Err((
                415,
                "the body of the request was in an unknown format - accepted media types include: application/json, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/vnd.kubernetes.protobuf (got \"application/yaml\")",
            )),
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Hostile bodies of every accepted content type are refused with a 4xx, never a panic.
        #[test]
        fn hostile_bodies_get_a_client_error(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            kind in 0usize..5,
        ) {
            let ct = ["application/json", "application/vnd.kubernetes.protobuf", "application/yaml", "application/merge-patch+json", "text/plain"][kind];
            let req = request(ct, &body);
            match req.json_body() {
                Ok(v) => {
                    let _ = req.check_typed(v);
                }
                Err(e) => proptest::prop_assert!((400..500).contains(&e.code()), "{}", e.message),
            }
        }
    }

    #[test]
    fn deep_nesting_huge_numbers_and_invalid_utf8_are_bad_requests() {
        for body in [
            "[".repeat(200_000).into_bytes(),
            format!("{{\"data\":{}}}", "{\"a\":".repeat(5000)).into_bytes(),
            b"{\"metadata\":{\"name\":1e999}}".to_vec(),
            b"{\"metadata\":{\"name\":\"\xff\xfe\"}}".to_vec(),
        ] {
            let e = request("application/json", &body)
                .json_body()
                .expect_err("refused");
            assert_eq!(e.code(), 400, "{}", e.message);
        }
    }

    #[test]
    fn delete_options_may_come_as_protobuf() {
        let body = b"k8s\0\x0a\x1f\x0a\x0emeta.k8s.io/v1\x12\x0dDeleteOptions\x12\x0e\x08\x00\x22\x0aForeground";
        let req = request("application/vnd.kubernetes.protobuf", body);
        let options = delete::DeleteOptions::from_request(&req).expect("valid options");
        assert_eq!(options.propagation.as_deref(), Some("Foreground"));
        assert_eq!(options.grace_period, Some(0));
    }

    /// A request for `path` (a collection URL) of the built-in `resource`, with `?query`.
    fn request_for(path: &str, group: &str, resource: &str, query: Option<&str>) -> ApiRequest {
        let Some(Target::Resource(target)) = parse_path(path) else {
            unreachable!("a resource path")
        };
        ApiRequest::new(
            Method::PATCH,
            target,
            Registry::builtin()
                .by_resource(group, "v1", resource)
                .expect("a built-in resource"),
            Params::parse(query),
            HeaderMap::new(),
            Bytes::new(),
            crate::authn::UserInfo::anonymous(),
        )
    }

    #[test]
    fn a_patched_object_checked_by_the_fields_its_patch_touched_gets_the_whole_checks_answer() {
        let configmaps = "/api/v1/namespaces/default/configmaps";
        let revisions = "/apis/apps/v1/namespaces/default/controllerrevisions";
        let configmap = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data});
        let mut unknown = configmap(json!({"a": "b"}));
        unknown["extra"] = json!(1);
        // A ControllerRevision without its required `revision`: the whole object does not decode,
        // a partial one of its metadata would.
        let revision = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "r"}});
        let cases = [
            (configmaps, "", configmap(json!({"a": "b"})), vec!["data"]),
            (
                configmaps,
                "",
                configmap(json!({"a": "b"})),
                vec!["metadata"],
            ),
            (configmaps, "", configmap(json!({"a": 5})), vec!["data"]),
            (configmaps, "", unknown.clone(), vec!["extra"]),
            (revisions, "apps", revision, vec!["metadata"]),
        ];
        for query in [
            None,
            Some("fieldValidation=Strict"),
            Some("fieldValidation=Ignore"),
        ] {
            for (path, group, obj, touched) in &cases {
                let resource = path.rsplit('/').next().unwrap_or_default();
                let req = request_for(path, group, resource, query);
                let touched: Vec<String> = touched.iter().map(ToString::to_string).collect();
                let whole = req
                    .check_typed(obj.clone())
                    .map_err(|e| (e.code(), e.message));
                let part = req
                    .check_typed_touched(obj.clone(), Some(&touched))
                    .map_err(|e| (e.code(), e.message));
                assert_eq!(part, whole, "{obj} touched at {touched:?}, {query:?}");
            }
        }
        // The cases differ: a wrong type and an unknown field under Strict are refused.
        let strict = request_for(configmaps, "", "configmaps", Some("fieldValidation=Strict"));
        let touched = ["extra".to_string()];
        assert!(strict.check_typed_touched(unknown, Some(&touched)).is_err());
        let touched = ["data".to_string()];
        assert!(
            strict
                .check_typed_touched(configmap(json!({"a": 5})), Some(&touched))
                .is_err()
        );
    }
}
