//! The sample chart in examples-repo renders with layered values, fails on missing or invalid
//! values with the file and line, and can be post-rendered by a kustomize overlay.

use serde_json::{Value, json};
use std::path::Path;
use templates::chart::{Options, ValuesFile};
use templates::source::DirSource;

const CHART: &str = "examples-repo/apps/hello";

fn workspace() -> DirSource {
    DirSource::new(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// What a case expects: pointers into the rendered Deployment, or an error's text.
enum Expect<'a> {
    Deployment(&'a [(&'a str, Value)]),
    Error(&'a str),
}

fn check(path: &str, options: Options, expected: Expect) {
    let result = templates::render(&workspace(), path, &options);
    match expected {
        Expect::Deployment(fields) => {
            let objects = result.unwrap_or_else(|e| panic!("{path}: {e}")).objects;
            let deployment = objects
                .iter()
                .find(|o| o.value["kind"] == "Deployment")
                .unwrap_or_else(|| panic!("{path}: no Deployment"));
            for (pointer, want) in fields {
                assert_eq!(
                    deployment.value.pointer(pointer),
                    Some(want),
                    "{path} {pointer}"
                );
            }
        }
        Expect::Error(text) => match result {
            Ok(_) => panic!("{path}: expected an error containing {text:?}"),
            Err(e) => assert!(
                e.to_string().contains(text),
                "{path}: {e} should contain {text:?}"
            ),
        },
    }
}

fn values_file(name: &str, text: &str) -> ValuesFile {
    ValuesFile {
        name: name.into(),
        text: text.into(),
    }
}

#[test]
fn the_chart_renders_with_its_defaults() {
    check(
        CHART,
        Options::default(),
        Expect::Deployment(&[
            ("/metadata/name", json!("hello")),
            ("/spec/replicas", json!(2)),
            (
                "/spec/template/spec/containers/0/image",
                json!("ghcr.io/gitplane/hello:1.0.0"),
            ),
            (
                "/metadata/labels/app.kubernetes.io~1version",
                json!("1.0.0"),
            ),
            ("/spec/template/spec/containers/0/resources", json!({})),
        ]),
    );
}

#[test]
fn values_layer_defaults_then_files_then_inline_then_set() {
    let options = Options {
        release_name: Some("web".into()),
        namespace: Some("shop".into()),
        values_files: vec![
            values_file("prod.yaml", "replicas: 3\nversion: \"1.1.0\"\nport: 9000\n"),
            values_file(
                "more.yaml",
                "replicas: 4\nresources:\n  limits:\n    memory: 64Mi\n",
            ),
        ],
        values: vec![json!({"replicas": 5, "port": 9100})],
        set: vec!["replicas=6".into()],
    };
    check(
        CHART,
        options,
        Expect::Deployment(&[
            ("/metadata/name", json!("web")),
            ("/spec/replicas", json!(6)),
            (
                "/spec/template/spec/containers/0/image",
                json!("ghcr.io/gitplane/hello:1.1.0"),
            ),
            (
                "/spec/template/spec/containers/0/ports/0/containerPort",
                json!(9100),
            ),
            (
                "/spec/template/spec/containers/0/resources/limits/memory",
                json!("64Mi"),
            ),
        ]),
    );
}

#[test]
fn a_missing_value_names_the_template_line_and_value() {
    let options = Options {
        values_files: vec![values_file("drop.yaml", "service: null\n")],
        ..Options::default()
    };
    check(
        CHART,
        options,
        Expect::Error(
            "examples-repo/apps/hello/templates/service.yaml:7: missing value values.service.type",
        ),
    );
}

#[test]
fn a_value_missing_inside_a_partial_names_the_partial() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |path: &str, text: &str| {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    };
    write("c/Chart.yaml", "name: c\nversion: 1.0.0\n");
    write("c/values.yaml", "name: x\n");
    write(
        "c/templates/_labels.hbs",
        "app: {{values.name}}\nteam: {{values.team}}\n",
    );
    write(
        "c/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels:{{nindent 4 (include \"labels\" this)}}\n",
    );
    let source = DirSource::new(dir.path());
    let err = templates::render(&source, "c", &Options::default()).expect_err("team is missing");
    assert_eq!(
        err.to_string(),
        "c/templates/_labels.hbs:2: missing value values.team"
    );
}

#[test]
fn values_that_break_the_schema_name_where_they_were_set() {
    check(
        CHART,
        Options {
            values_files: vec![values_file("prod.yaml", "image: web\nreplicas: many\n")],
            ..Options::default()
        },
        Expect::Error("prod.yaml:2: replicas: expected integer, found string"),
    );
    check(
        CHART,
        Options {
            set: vec!["replicas=100".into()],
            ..Options::default()
        },
        Expect::Error("--set: replicas: must be at most 50"),
    );
    check(
        CHART,
        Options {
            set: vec!["a[=1".into()],
            ..Options::default()
        },
        Expect::Error("--set a[=1: unclosed ["),
    );
}

#[test]
fn a_kustomize_overlay_post_renders_the_chart() {
    check(
        "examples-repo/apps/hello-prod",
        Options::default(),
        Expect::Deployment(&[
            ("/metadata/namespace", json!("prod")),
            ("/spec/replicas", json!(3)),
            ("/spec/selector/matchLabels/env", json!("prod")),
            ("/spec/template/metadata/labels/env", json!("prod")),
        ]),
    );
}
