//! Conformance: every kustomize case (shared ones and ours) renders to what `kubectl kustomize`
//! printed for it, document by document and byte for byte.

use std::path::{Path, PathBuf};
use templates::source::DirSource;
use templates::yaml::{self, Dialect};

/// The shared cases: `shared/fixtures/kustomize` beside the repository (or above it).
fn shared_cases() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut tried = Vec::new();
    for dir in manifest.ancestors() {
        let candidate = dir.join("shared/fixtures/kustomize");
        if candidate.is_dir() {
            return candidate;
        }
        tried.push(candidate.display().to_string());
    }
    panic!(
        "shared kustomize fixtures not found; looked in:\n{}",
        tried.join("\n")
    );
}

fn cases(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("input").is_dir())
        .collect();
    out.sort();
    out
}

/// Renders one case; `None` when it matches, else a readable account of the difference.
fn check(case: &Path) -> Option<String> {
    let name = case
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let expected_text = std::fs::read_to_string(case.join("expected.yaml"))
        .unwrap_or_else(|e| panic!("{name}/expected.yaml: {e}"));
    let source = DirSource::new(case);
    let objects = match templates::render(&source, "input", &Default::default()) {
        Ok(r) => r.objects,
        Err(e) => return Some(format!("{name}: render failed: {e}")),
    };
    let values: Vec<_> = objects.into_iter().map(|o| o.value).collect();
    let expected: Vec<_> =
        yaml::parse_documents("expected.yaml", &expected_text, Dialect::Kustomize)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_iter()
            .map(|d| d.value)
            .collect();
    for i in 0..values.len().max(expected.len()) {
        let (got, want) = (values.get(i), expected.get(i));
        if got != want {
            let show = |v: Option<&serde_json::Value>| {
                v.map(yaml::to_yaml).unwrap_or_else(|| "(none)\n".into())
            };
            return Some(format!(
                "{name}: document {i} differs\n--- expected\n{}--- rendered\n{}",
                show(want),
                show(got)
            ));
        }
    }
    let text = yaml::to_yaml_stream(&values);
    if text != expected_text {
        let line = text
            .lines()
            .zip(expected_text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(text.lines().count().min(expected_text.lines().count()));
        return Some(format!(
            "{name}: same documents, different text from line {}:\n  expected {:?}\n  rendered {:?}",
            line + 1,
            expected_text.lines().nth(line),
            text.lines().nth(line)
        ));
    }
    None
}

fn run(root: &Path) {
    let all = cases(root);
    assert!(!all.is_empty(), "no cases under {}", root.display());
    let failures: Vec<String> = all.iter().filter_map(|c| check(c)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_shared_case_renders_like_kubectl_kustomize() {
    run(&shared_cases());
}

#[test]
fn every_own_case_renders_like_kubectl_kustomize() {
    run(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kustomize"));
}

/// The expectations are what the real `kubectl kustomize` prints: a case whose
/// `expected.yaml` no longer matches kubectl (a hand edit, or a new kubectl) fails here.
/// `helmCharts` cases need the real `helm` on PATH (kubectl's kustomize runs it).
#[test]
fn own_expectations_are_what_kubectl_kustomize_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kustomize");
    let mut drift = Vec::new();
    for case in cases(&root) {
        let output = std::process::Command::new("kubectl")
            .arg("kustomize")
            .arg("--enable-helm")
            .arg(case.join("input"))
            .output()
            .unwrap_or_else(|e| {
                panic!("kubectl: {e}; install kubectl v1.32 (see scripts/test.sh)")
            });
        assert!(
            output.status.success(),
            "{}: kubectl kustomize failed: {}",
            case.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let expected = std::fs::read(case.join("expected.yaml")).expect("expected.yaml");
        if output.stdout != expected {
            drift.push(case.display().to_string());
        }
    }
    assert!(
        drift.is_empty(),
        "expected.yaml differs from `kubectl kustomize CASE/input` for:\n{}",
        drift.join("\n")
    );
}
