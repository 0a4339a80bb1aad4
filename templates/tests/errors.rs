//! Bad input fails with the file and line at fault.

use templates::source::DirSource;

/// Writes `files` (path, text) into a fresh directory, renders `path`, and expects an error
/// whose text is `expected`.
fn check(files: &[(&str, &str)], path: &str, expected: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        let full = dir.path().join(name);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
    let source = DirSource::new(dir.path());
    match templates::render(&source, path, &Default::default()) {
        Ok(objects) => panic!(
            "{path}: expected {expected:?}, rendered {} objects",
            objects.objects.len()
        ),
        Err(e) => assert_eq!(e.to_string(), expected),
    }
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n";

#[test]
fn a_yaml_syntax_error_names_its_file_and_line() {
    check(
        &[
            ("app/kustomization.yaml", "resources:\n- cm.yaml\n"),
            ("app/cm.yaml", "a: 1\n---\nb: [1,\nc: 2\n"),
        ],
        "app",
        "app/cm.yaml:3: unclosed bracket '['",
    );
    check(
        &[("plain/x.yaml", "a: 1\na: 2\n")],
        "plain",
        "plain/x.yaml:2: duplicate mapping key: a",
    );
}

#[test]
fn a_resource_path_that_does_not_exist_is_named() {
    check(
        &[
            (
                "app/kustomization.yaml",
                "namespace: x\nresources:\n- cm.yaml\n- missing.yaml\n",
            ),
            ("app/cm.yaml", CM),
        ],
        "app",
        "app/kustomization.yaml:4: app/missing.yaml: no such file or directory",
    );
}

#[test]
fn a_patch_whose_target_matches_nothing_is_an_error() {
    check(
        &[
            (
                "app/kustomization.yaml",
                "resources:\n- cm.yaml\npatches:\n- target:\n    kind: Secret\n  patch: |-\n    - op: remove\n      path: /data\n",
            ),
            ("app/cm.yaml", CM),
        ],
        "app",
        "app/kustomization.yaml:4: patch target matches no resource: kind=Secret",
    );
    check(
        &[
            (
                "app/kustomization.yaml",
                "resources:\n- cm.yaml\npatches:\n- path: p.yaml\n",
            ),
            ("app/cm.yaml", CM),
            (
                "app/p.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\ndata:\n  a: b\n",
            ),
        ],
        "app",
        "app/kustomization.yaml:4: patch target matches no resource: ConfigMap.v1./other.default",
    );
}

#[test]
fn a_cycle_between_kustomizations_is_an_error() {
    check(
        &[
            ("a/kustomization.yaml", "resources:\n- ../b\n"),
            ("b/kustomization.yaml", "resources:\n- ../a\n"),
        ],
        "a",
        "b/kustomization.yaml:2: kustomization cycle: a -> b -> a",
    );
}

#[test]
fn unknown_and_unsupported_fields_are_errors() {
    check(
        &[("a/kustomization.yaml", "resources: []\nresourcez:\n- x\n")],
        "a",
        "a/kustomization.yaml:2: resourcez: unknown field",
    );
    check(
        &[("a/kustomization.yaml", "transformers:\n- plugin.yaml\n")],
        "a",
        "a/kustomization.yaml:1: transformers: not supported by gitplane's kustomize renderer",
    );
    check(
        &[(
            "a/kustomization.yaml",
            "resources:\n- https://example.com/x.yaml\n",
        )],
        "a",
        "a/kustomization.yaml:2: https://example.com/x.yaml: remote resources are not supported (rendering never uses the network)",
    );
}

#[test]
fn replacements_name_what_they_cannot_find() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: x\n";
    let kust = |body: &str| format!("resources:\n- cm.yaml\nreplacements:\n{body}");
    check(
        &[
            (
                "a/kustomization.yaml",
                &kust(
                    "- source: {kind: ConfigMap, name: nope}\n  targets:\n  - select: {kind: ConfigMap}\n",
                ),
            ),
            ("a/cm.yaml", cm),
        ],
        "a",
        "a/kustomization.yaml:4: replacements[0]: nothing selected by ConfigMap.[noVer].[noGrp]/nope.[noNs]",
    );
    check(
        &[
            (
                "a/kustomization.yaml",
                &kust(
                    "- source: {kind: ConfigMap, fieldPath: data.b}\n  targets:\n  - select: {kind: ConfigMap}\n",
                ),
            ),
            ("a/cm.yaml", cm),
        ],
        "a",
        "a/kustomization.yaml:4: replacements[0]: fieldPath `data.b` is missing for replacement source ConfigMap.[noVer].[noGrp]/[noName].[noNs]",
    );
    check(
        &[
            (
                "a/kustomization.yaml",
                &kust(
                    "- source: {kind: ConfigMap, fieldPath: data.a}\n  targets:\n  - select: {kind: ConfigMap}\n    fieldPaths: [data.q]\n",
                ),
            ),
            ("a/cm.yaml", cm),
        ],
        "a",
        "a/kustomization.yaml:4: replacements[0]: targets[0]: ConfigMap.v1/cm.[noNs]: unable to find field \"data.q\" in replacement target",
    );
    check(
        &[
            (
                "a/kustomization.yaml",
                "resources:\n- cm.yaml\n- cm2.yaml\nreplacements:\n- source: {kind: ConfigMap}\n  targets:\n  - select: {kind: ConfigMap}\n",
            ),
            ("a/cm.yaml", cm),
            (
                "a/cm2.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm2\n",
            ),
        ],
        "a",
        "a/kustomization.yaml:5: replacements[0]: multiple matches for selector ConfigMap.[noVer].[noGrp]/[noName].[noNs]",
    );
}

#[test]
fn unknown_build_metadata_options_and_bad_schemas_are_errors() {
    check(
        &[(
            "a/kustomization.yaml",
            "resources: []\nbuildMetadata: [originAnnotation]\n",
        )],
        "a",
        "a/kustomization.yaml:2: buildMetadata: unknown option \"originAnnotation\" (known: originAnnotations, transformerAnnotations, managedByLabel)",
    );
    check(
        &[
            ("a/kustomization.yaml", "openapi:\n  path: schema.json\n"),
            ("a/schema.json", "{\"swagger\": \"2.0\"}\n"),
        ],
        "a",
        "a/schema.json:1: the schema has no definitions map",
    );
    check(
        &[("a/kustomization.yaml", "crds:\n- missing.json\n")],
        "a",
        "a/kustomization.yaml:2: a/missing.json: no such file or directory",
    );
}

#[test]
fn vars_that_match_nothing_are_errors() {
    check(
        &[
            (
                "a/kustomization.yaml",
                "resources:\n- cm.yaml\nvars:\n- name: X\n  objref: {kind: ConfigMap, name: other, apiVersion: v1}\n",
            ),
            ("a/cm.yaml", CM),
        ],
        "a",
        "a/kustomization.yaml:3: var 'X' cannot be mapped to a field in the set of known resources",
    );
}

#[test]
fn generators_refuse_duplicate_names_and_bad_literals() {
    check(
        &[
            (
                "a/kustomization.yaml",
                "resources:\n- cm.yaml\nconfigMapGenerator:\n- name: c\n  literals:\n  - novalue\n",
            ),
            ("a/cm.yaml", CM),
        ],
        "a",
        "a/kustomization.yaml:6: novalue: expected KEY=VALUE",
    );
    check(
        &[
            (
                "a/kustomization.yaml",
                "resources:\n- cm.yaml\nconfigMapGenerator:\n- name: c\n  literals:\n  - a=b\n",
            ),
            ("a/cm.yaml", CM),
        ],
        "a",
        "a/kustomization.yaml:4: ConfigMap.v1/c.[noNs]: already exists; use behavior merge or replace",
    );
}

#[test]
fn deprecated_fields_render_with_a_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("a")).expect("mkdir");
    std::fs::write(
        dir.path().join("a/kustomization.yaml"),
        "resources:\n- cm.yaml\ncommonLabels:\n  a: b\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("a/cm.yaml"), CM).expect("write");
    let rendered =
        templates::render(&DirSource::new(dir.path()), "a", &Default::default()).expect("renders");
    let warnings: Vec<String> = rendered
        .diagnostics
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        warnings,
        vec!["a/kustomization.yaml:3: commonLabels is deprecated; use labels"]
    );
}

#[test]
fn helm_charts_that_are_not_vendored_or_fail_are_errors_naming_the_entry() {
    check(
        &[(
            "a/kustomization.yaml",
            "resources: []\nhelmCharts:\n- name: redis\n  repo: https://charts.example.com\n  version: 18.1.0\n  releaseName: r\n",
        )],
        "a",
        "a/kustomization.yaml:3: helmCharts[0] (redis): no Helm chart at a/charts/redis-18.1.0/redis; gitplane never downloads a chart a repository names: vendor it with `helm pull --untar --untardir a/charts/redis-18.1.0 --repo https://charts.example.com redis --version 18.1.0`",
    );
    check(
        &[(
            "a/kustomization.yaml",
            "helmCharts:\n- name: web\n  nameTemplates: x\n",
        )],
        "a",
        "a/kustomization.yaml:1: unknown field `nameTemplates`, expected one of `name`, `version`, `repo`, `releaseName`, `nameTemplate`, `namespace`, `valuesFile`, `additionalValuesFiles`, `valuesInline`, `valuesMerge`, `includeCRDs`, `skipTests`, `skipHooks`, `apiVersions`, `kubeVersion`",
    );
    let chart = "apiVersion: v2\nname: web\nversion: 1.0.0\n";
    // nameTemplate fails where helm's --name-template fails.
    check(
        &[
            (
                "a/kustomization.yaml",
                "helmCharts:\n- name: web\n  releaseName: r\n  nameTemplate: x\n",
            ),
            ("a/charts/web/Chart.yaml", chart),
        ],
        "a",
        "a/kustomization.yaml:2: helmCharts[0] (web): nameTemplate: cannot set --name-template and also specify a name (releaseName)",
    );
    check(
        &[
            (
                "a/kustomization.yaml",
                "helmCharts:\n- name: web\n  nameTemplate: Bad_Name\n",
            ),
            ("a/charts/web/Chart.yaml", chart),
        ],
        "a",
        "a/kustomization.yaml:2: helmCharts[0] (web): nameTemplate: release name \"Bad_Name\": invalid release name, must match regex ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ and the length must not be longer than 53",
    );
    check(
        &[
            (
                "a/kustomization.yaml",
                "helmCharts:\n- name: web\n  releaseName: r\n  valuesMerge: mix\n  valuesInline: {a: 1}\n",
            ),
            ("a/charts/web/Chart.yaml", chart),
        ],
        "a",
        "a/kustomization.yaml:2: helmCharts[0] (web): valuesMerge: \"mix\" is none of override, merge, replace",
    );
    check(
        &[
            ("a/kustomization.yaml", "helmCharts:\n- name: web\n"),
            ("a/charts/web/Chart.yaml", chart),
            (
                "a/charts/web/templates/x.yaml",
                "{{ required \"a value is needed\" .Values.x }}\n",
            ),
        ],
        "a",
        "a/charts/web/templates/x.yaml:1: execution error at (a/charts/web/templates/x.yaml:1:3): a value is needed",
    );
}

#[test]
fn a_kustomization_climbing_out_of_the_repository_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("app")).expect("mkdir");
    std::fs::write(
        root.join("app/kustomization.yaml"),
        "resources:\n- ../../..\n",
    )
    .expect("write");
    let source = DirSource::new(&root);
    let err = templates::render(&source, "app", &Default::default())
        .expect_err("a resource above the root");
    assert_eq!(
        err.to_string(),
        "app/kustomization.yaml:2: app/../../..: path leaves the source root"
    );
}

#[test]
fn a_chart_reading_a_file_outside_itself_gets_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("repo");
    let files = [
        (
            "chart/Chart.yaml",
            "apiVersion: v2\nname: c\nversion: 0.1.0\n",
        ),
        (
            "chart/templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  passwd: {{ .Files.Get \"../../etc/passwd\" | quote }}\n  up: {{ .Files.Get \"../secret.txt\" | quote }}\n",
        ),
        ("secret.txt", "outside the chart\n"),
    ];
    for (name, text) in files {
        let full = root.join(name);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
    let source = DirSource::new(&root);
    let rendered = templates::render(&source, "chart", &Default::default()).expect("rendered");
    let data = &rendered.objects[0].value["data"];
    assert_eq!(data["passwd"], "", "{data}");
    assert_eq!(data["up"], "", "{data}");
}
