//! `gitplane render`: prints exactly what `kubectl kustomize` prints for every shared case, and
//! on bad input prints nothing on stdout, names the file and line, and exits non-zero.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gitplane(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gitplane"))
        .args(args)
        .output()
        .expect("run gitplane")
}

/// `shared/fixtures/kustomize` beside the repository (or above it).
fn shared_cases() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .map(|d| d.join("shared/fixtures/kustomize"))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| panic!("no shared/fixtures/kustomize above {}", root.display()))
}

/// Runs `gitplane render` on `input` and expects stdout to be `expected`.
fn check(input: &Path, expected: &str) {
    let out = gitplane(&["render", &input.to_string_lossy()]);
    assert!(
        out.status.success(),
        "{}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected,
        "{}",
        input.display()
    );
}

#[test]
fn render_prints_what_kubectl_kustomize_prints_for_every_shared_case() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(shared_cases())
        .expect("read cases")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("input").is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    for case in cases {
        let expected = std::fs::read_to_string(case.join("expected.yaml")).expect("expected.yaml");
        check(&case.join("input"), &expected);
    }
}

#[test]
fn render_fails_with_file_and_line_and_prints_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "resources:\n- missing.yaml\n",
    )
    .expect("write");
    let out = gitplane(&["render", &dir.path().to_string_lossy()]);
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kustomization.yaml:2: "), "{stderr}");
    assert!(
        stderr.contains("missing.yaml: no such file or directory"),
        "{stderr}"
    );
}

#[test]
fn render_layers_chart_values_from_flags() {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples-repo/apps/hello");
    let values = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(values.path(), "replicas: 4\nversion: \"2.0.0\"\n").expect("write");
    let out = gitplane(&[
        "render",
        &chart.to_string_lossy(),
        "--values",
        &values.path().to_string_lossy(),
        "--set",
        "replicas=5",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let deployment = list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|o| o["kind"] == "Deployment"))
        .expect("a Deployment");
    assert_eq!(deployment["spec"]["replicas"], 5);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/gitplane/hello:2.0.0"
    );
}

/// A packaged chart (`helm package`'s `.tgz`, subchart archives inside) renders as
/// `helm template` renders the same archive; a missing dependency exits 2 naming Chart.yaml.
#[test]
fn render_takes_a_packaged_chart_as_helm_template_does() {
    let chart = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("templates/tests/fixtures/helm/own-packaged-subcharts/chart");
    let work = tempfile::tempdir().expect("tmp");
    let helm = |args: &[&str]| {
        let out = Command::new("helm")
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("helm: {e}; install helm v3.17.2 (https://github.com/helm/helm/releases/tag/v3.17.2)")
            });
        assert!(
            out.status.success(),
            "helm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dest = work.path().to_string_lossy().into_owned();
    helm(&["package", &chart.to_string_lossy(), "-d", &dest]);
    let archive = work.path().join("shop-1.0.0.tgz");
    let archive = archive.to_string_lossy();
    let flags = ["--include-crds", "-n", "shop", "--set", "sub.replicas=4"];
    let mut args = vec!["template", "rel", archive.as_ref()];
    args.extend(flags);
    let want = helm(&args);
    let mut args = vec!["render", archive.as_ref(), "--release-name", "rel"];
    args.extend(flags);
    let out = gitplane(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);

    let missing = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("templates/tests/fixtures/helm/own-err-missing-dependency/chart");
    let out = gitplane(&["render", &missing.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("own-err-missing-dependency/chart/Chart.yaml:1: An error occurred while checking for chart dependencies")
            && err.contains("missing in charts/ directory: redis"),
        "{err}"
    );
}
