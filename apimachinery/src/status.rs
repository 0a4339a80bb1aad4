//! `metav1.Status` errors: the shape every failed API call answers with.
//!
//! Constructors follow the wording of Kubernetes' `apimachinery/pkg/api/errors`, because users and
//! tools read these messages (`deployments.apps "web" not found`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

/// Why a request failed, as `Status.reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// 400: the request is malformed.
    BadRequest,
    /// 401: no valid credentials.
    Unauthorized,
    /// 403: the user may not do this.
    Forbidden,
    /// 404: the object or resource does not exist.
    NotFound,
    /// 405: the verb is not served for this resource.
    MethodNotAllowed,
    /// 406: no acceptable representation.
    NotAcceptable,
    /// 409: the object already exists.
    AlreadyExists,
    /// 409: the object was modified (resourceVersion mismatch).
    Conflict,
    /// 410: the requested resourceVersion is too old.
    Expired,
    /// 413: the body is too large.
    RequestEntityTooLarge,
    /// 415: the content type is not supported.
    UnsupportedMediaType,
    /// 422: the object is invalid.
    Invalid,
    /// 429: too many requests.
    TooManyRequests,
    /// 500: something went wrong inside the server.
    InternalError,
    /// 503: the server cannot serve right now.
    ServiceUnavailable,
    /// 504: the request did not finish in time.
    Timeout,
}

impl Reason {
    /// The reason as Kubernetes spells it, and its HTTP code.
    pub fn as_str_and_code(self) -> (&'static str, u16) {
        match self {
            Reason::BadRequest => ("BadRequest", 400),
            Reason::Unauthorized => ("Unauthorized", 401),
            Reason::Forbidden => ("Forbidden", 403),
            Reason::NotFound => ("NotFound", 404),
            Reason::MethodNotAllowed => ("MethodNotAllowed", 405),
            Reason::NotAcceptable => ("NotAcceptable", 406),
            Reason::AlreadyExists => ("AlreadyExists", 409),
            Reason::Conflict => ("Conflict", 409),
            Reason::Expired => ("Expired", 410),
            Reason::RequestEntityTooLarge => ("RequestEntityTooLarge", 413),
            Reason::UnsupportedMediaType => ("UnsupportedMediaType", 415),
            Reason::Invalid => ("Invalid", 422),
            Reason::TooManyRequests => ("TooManyRequests", 429),
            Reason::InternalError => ("InternalError", 500),
            Reason::ServiceUnavailable => ("ServiceUnavailable", 503),
            Reason::Timeout => ("Timeout", 504),
        }
    }

    /// The HTTP status code.
    pub fn code(self) -> u16 {
        self.as_str_and_code().1
    }
}

/// One problem with one field of an invalid object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Field path such as `metadata.name` or `spec.containers[0].name`.
    pub field: String,
    /// Cause type as Kubernetes names it: `FieldValueRequired`, `FieldValueInvalid`, …
    pub reason: String,
    /// What is wrong, in the words Kubernetes would use (`Required value`, `Invalid value: …`).
    pub message: String,
}

impl FieldError {
    /// A required field is missing.
    pub fn required(field: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
        }
    }

    /// A field has a value that is not allowed.
    pub fn invalid(field: impl Into<String>, value: &str, detail: impl std::fmt::Display) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: \"{value}\": {detail}"),
        }
    }

    /// A field may not be changed or set.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueForbidden".into(),
            message: format!("Forbidden: {}", detail.into()),
        }
    }

    /// A field has a value that is not allowed, the value written as Kubernetes writes it
    /// (strings quoted, numbers and booleans bare).
    pub fn invalid_value(
        field: impl Into<String>,
        value: &serde_json::Value,
        detail: impl std::fmt::Display,
    ) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {}: {detail}", go_value(value)),
        }
    }

    /// A required field is missing, with a hint.
    pub fn required_because(field: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueRequired".into(),
            message: format!("Required value: {detail}"),
        }
    }

    /// A value that must be unique appears twice.
    pub fn duplicate(field: impl Into<String>, value: &serde_json::Value) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueDuplicate".into(),
            message: format!("Duplicate value: {}", go_value(value)),
        }
    }

    /// A value outside an enumeration.
    pub fn not_supported(
        field: impl Into<String>,
        value: &serde_json::Value,
        supported: &[&str],
    ) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        FieldError {
            field: field.into(),
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                go_value(value),
                list.join(", ")
            ),
        }
    }

    /// A reference to something that does not exist.
    pub fn not_found(field: impl Into<String>, value: &serde_json::Value) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueNotFound".into(),
            message: format!("Not found: {}", go_value(value)),
        }
    }

    /// A string longer than allowed.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueTooLong".into(),
            message: format!("Too long: may not be more than {max} bytes"),
        }
    }

    /// A list with more items than allowed.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueTooMany".into(),
            message: format!("Too many: {actual}: must have at most {max} items"),
        }
    }

    fn render(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// A value as Kubernetes' field errors print it: strings quoted, other scalars bare, and
/// objects and lists as JSON.
pub fn go_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => format!("{s:?}"),
        serde_json::Value::Null => "\"null\"".to_string(),
        other => other.to_string(),
    }
}

/// The optional details of a failed call (`Status.details`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    /// Name of the object concerned, if any.
    pub name: Option<String>,
    /// Group of the resource concerned, if any.
    pub group: Option<String>,
    /// Kind (or resource) concerned, if any.
    pub kind: Option<String>,
    /// Field-level causes.
    pub causes: Vec<FieldError>,
    /// Seconds after which to retry (429, 503, 504).
    pub retry_after_seconds: Option<i32>,
}

/// A failed API call: what `metav1.Status` carries.
///
/// Small on purpose (details are boxed): it is the error type of every request handler.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    /// Why it failed.
    pub reason: Reason,
    /// The human-readable message.
    pub message: String,
    /// Details, when there are any.
    pub details: Option<Box<Details>>,
}

impl StatusError {
    /// A bare error with a reason and message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        StatusError {
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// The details, created empty when there were none.
    pub fn details_mut(&mut self) -> &mut Details {
        self.details.get_or_insert_with(Default::default)
    }

    /// Field-level causes (empty when there are none).
    pub fn causes(&self) -> &[FieldError] {
        self.details.as_ref().map_or(&[], |d| &d.causes)
    }

    /// Asks the client to retry after some seconds.
    pub fn retry_after(mut self, seconds: i32) -> Self {
        self.details_mut().retry_after_seconds = Some(seconds);
        self
    }

    fn about(mut self, group: &str, resource: &str, name: &str) -> Self {
        let d = self.details_mut();
        d.group = Some(group.to_string());
        d.kind = Some(resource.to_string());
        d.name = Some(name.to_string());
        self
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Reason::BadRequest, message)
    }

    /// 404 for an object: `deployments.apps "web" not found`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            Reason::NotFound,
            format!("{} \"{name}\" not found", qualified(group, resource)),
        )
        .about(group, resource, name)
    }

    /// 409 for a create of an existing object.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            Reason::AlreadyExists,
            format!("{} \"{name}\" already exists", qualified(group, resource)),
        )
        .about(group, resource, name)
    }

    /// 409 for a write on a stale resourceVersion or failed precondition.
    pub fn conflict(group: &str, resource: &str, name: &str, detail: &str) -> Self {
        Self::new(
            Reason::Conflict,
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {detail}",
                qualified(group, resource)
            ),
        )
        .about(group, resource, name)
    }

    /// 422 for an invalid object: `Deployment.apps "web" is invalid: <causes>`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<FieldError>) -> Self {
        let kind_q = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let rendered: Vec<String> = causes.iter().map(FieldError::render).collect();
        let list = if rendered.len() == 1 {
            rendered[0].clone()
        } else {
            format!("[{}]", rendered.join(", "))
        };
        let mut e = Self::new(
            Reason::Invalid,
            format!("{kind_q} \"{name}\" is invalid: {list}"),
        )
        .about(group, kind, name);
        e.details_mut().causes = causes;
        e
    }

    /// 410 for a resourceVersion older than the oldest one still served.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(Reason::Expired, message)
    }

    /// 500 with a message.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Reason::InternalError, message)
    }

    /// 405 for a verb a resource does not serve.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(Reason::MethodNotAllowed, message)
    }

    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        self.reason.code()
    }

    /// The `metav1.Status` object to send.
    pub fn to_status(&self) -> Status {
        let (reason, code) = self.reason.as_str_and_code();
        Status {
            code: Some(i32::from(code)),
            message: Some(self.message.clone()),
            reason: Some(reason.to_string()),
            status: Some("Failure".to_string()),
            details: self.details.as_ref().map(|d| StatusDetails {
                name: d.name.clone(),
                group: d.group.clone(),
                kind: d.kind.clone(),
                causes: (!d.causes.is_empty()).then(|| {
                    d.causes
                        .iter()
                        .map(|c| StatusCause {
                            field: Some(c.field.clone()),
                            message: Some(c.message.clone()),
                            reason: Some(c.reason.clone()),
                        })
                        .collect()
                }),
                retry_after_seconds: d.retry_after_seconds,
                uid: None,
            }),
            metadata: Default::default(),
        }
    }

    /// The Status as JSON, with `kind` and `apiVersion` set.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self.to_status()).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.insert("kind".into(), "Status".into());
            m.insert("apiVersion".into(), "v1".into());
        }
        v
    }
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_like_kubernetes() {
        let e = StatusError::not_found("apps", "deployments", "web");
        assert_eq!(e.message, "deployments.apps \"web\" not found");
        assert_eq!(e.code(), 404);
        let v = e.to_json();
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["reason"], "NotFound");
        assert_eq!(v["details"]["name"], "web");

        let e = StatusError::invalid(
            "",
            "ConfigMap",
            "Bad",
            vec![FieldError::invalid(
                "metadata.name",
                "Bad",
                "must be lowercase",
            )],
        );
        assert_eq!(
            e.message,
            "ConfigMap \"Bad\" is invalid: metadata.name: Invalid value: \"Bad\": must be lowercase"
        );
        assert_eq!(
            e.to_json()["details"]["causes"][0]["field"],
            "metadata.name"
        );
    }
}
