//! Renderers that turn a source tree into Kubernetes objects: handlebars charts, kustomize
//! overlays and plain YAML.

pub mod source;
pub mod yaml;
