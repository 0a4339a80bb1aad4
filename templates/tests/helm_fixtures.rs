//! Conformance: every Helm case (the shared ones in `shared/fixtures/helm` and ours in
//! `tests/fixtures/helm`) renders to the bytes `helm template` v3.17.2 printed for it (after
//! trailing white space), and every error case fails naming the file. One test per case.

use std::path::{Path, PathBuf};
use templates::chart::{Options, ValuesFile};
use templates::helm::{self, Settings};
use templates::source::DirSource;

/// `shared/fixtures/helm` beside the repository (or above it).
fn shared(case: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in manifest.ancestors() {
        let candidate = dir.join("shared/fixtures/helm");
        if candidate.is_dir() {
            return candidate.join(case);
        }
    }
    panic!(
        "shared helm fixtures (shared/fixtures/helm) not found above {}",
        manifest.display()
    );
}

fn ours(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/helm")
        .join(case)
}

fn trim(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n").trim_end().to_string()
}

/// Renders a case as its `cmd` says.
fn run(case: &Path) -> Result<String, String> {
    let cmd = std::fs::read_to_string(case.join("cmd")).map_err(|e| format!("cmd: {e}"))?;
    let words: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"template"), "{cmd}");
    let release = words[1].to_string();
    let chart = words[2].trim_start_matches("./").to_string();
    let mut options = Options {
        release_name: Some(release),
        ..Default::default()
    };
    let mut settings = Settings::default();
    let mut i = 3;
    while i < words.len() {
        let value = words.get(i + 1).map(|s| s.to_string()).unwrap_or_default();
        match words[i] {
            "--namespace" | "-n" => options.namespace = Some(value),
            "-f" | "--values" => {
                let text = std::fs::read_to_string(case.join(&value)).map_err(|e| e.to_string())?;
                options.values_files.push(ValuesFile { name: value, text });
            }
            "--kube-version" => settings.kube_version = Some(value),
            "--api-versions" => settings.api_versions.push(value),
            "--set" => options.set.push(value),
            "--set-string" => settings.set_string.push(value),
            "--include-crds" => {
                settings.include_crds = true;
                i += 1;
                continue;
            }
            "--skip-tests" => {
                settings.skip_tests = true;
                i += 1;
                continue;
            }
            other => panic!("unknown flag {other} in {cmd}"),
        }
        i += 2;
    }
    helm::render(&DirSource::new(case), &chart, &options, &settings)
        .map(|o| o.stream())
        .map_err(|e| e.to_string())
}

fn check(case: &Path) {
    let name = case.display();
    if case.join("expected.err").exists() {
        match run(case) {
            Ok(out) => panic!("{name}: rendered but helm failed:\n{out}"),
            Err(e) => {
                eprintln!("{name}: {e}");
                assert!(
                    e.contains("chart/") || e.contains(".yaml") || e.contains(".json"),
                    "{name}: the error names no file: {e}"
                );
            }
        }
        return;
    }
    let want = std::fs::read_to_string(case.join("expected.yaml"))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = run(case).unwrap_or_else(|e| panic!("{name}: render failed: {e}"));
    let (got, want) = (trim(&got), trim(&want));
    if got != want {
        let diff = similar::TextDiff::from_lines(&want, &got);
        let shown = diff
            .unified_diff()
            .context_radius(2)
            .header("helm", "gitplane")
            .to_string();
        panic!("{name}: output differs from helm's (- helm, + gitplane):\n{shown}");
    }
}

macro_rules! cases {
    ($($test:ident => $dir:expr,)*) => {
        $(#[test] fn $test() { check(&$dir); })*
    };
}

cases! {
    shared_01_helm_create_demo => shared("01-helm-create-demo"),
    shared_02_podinfo => shared("02-podinfo"),
    shared_03_metrics_server => shared("03-metrics-server"),
    shared_04_alertmanager => shared("04-alertmanager"),
    shared_05_descheduler => shared("05-descheduler"),
    shared_06_err_demo_range_over_string => shared("06-err-demo-range-over-string"),
    shared_07_err_descheduler_fail => shared("07-err-descheduler-fail"),
    shared_08_err_alertmanager_schema => shared("08-err-alertmanager-schema"),
    own_engine => ours("own-engine"),
    own_packaged_subcharts => ours("own-packaged-subcharts"),
    own_import_values => ours("own-import-values"),
    own_err_missing_dependency => ours("own-err-missing-dependency"),
}
