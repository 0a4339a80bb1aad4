//! The report of a pull-request review (`gitplane diff`): what a change would do to each object,
//! what the API server said on a dry run, as colored text or as markdown for a PR comment.

use std::fmt::Write as _;

/// What a change does to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Created.
    Added,
    /// Modified.
    Changed,
    /// Deleted because it is rendered no more.
    Removed,
}

impl Change {
    /// `added`, `changed` or `removed`, as the report writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Changed => "changed",
            Change::Removed => "removed",
        }
    }
}

/// One object in the review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `Kind/namespace/name`.
    pub object: String,
    /// What happens to it.
    pub change: Change,
    /// Unified diff (`live` → `desired`).
    pub diff: String,
    /// The refusal of the dry run, if any.
    pub error: Option<String>,
}

/// A whole review.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Review {
    /// What was compared (`web-prod: abc1234 against the live cluster`).
    pub title: String,
    /// Objects, in apply order.
    pub entries: Vec<Entry>,
    /// Problems not tied to one object (rendering, unknown kinds).
    pub errors: Vec<String>,
    /// Whether objects were dry-run through the API server.
    pub dry_run: bool,
}

impl Review {
    /// Exit code: 0 no change, 1 changes, 2 errors.
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() || self.entries.iter().any(|e| e.error.is_some()) {
            2
        } else if self.entries.is_empty() {
            0
        } else {
            1
        }
    }

    /// Plain text, with ANSI colors when `color`.
    pub fn text(&self, color: bool) -> String {
        let paint = |code: &str, s: &str| {
            if color {
                format!("\x1b[{code}m{s}\x1b[0m")
            } else {
                s.to_string()
            }
        };
        let mut out = String::new();
        let _ = writeln!(out, "{}", paint("1", &self.title));
        for e in &self.errors {
            let _ = writeln!(out, "{} {e}", paint("31", "error:"));
        }
        if self.entries.is_empty() && self.errors.is_empty() {
            let _ = writeln!(out, "no changes");
        }
        for e in &self.entries {
            let _ = writeln!(
                out,
                "\n{} {} ({})",
                paint("1", "==="),
                paint("1", &e.object),
                e.change.as_str()
            );
            if let Some(err) = &e.error {
                let _ = writeln!(out, "{} {err}", paint("31", "refused by the API server:"));
            }
            for line in e.diff.lines() {
                let colored = match line.chars().next() {
                    Some('+') if !line.starts_with("+++") => paint("32", line),
                    Some('-') if !line.starts_with("---") => paint("31", line),
                    Some('@') => paint("36", line),
                    _ => line.to_string(),
                };
                let _ = writeln!(out, "{colored}");
            }
        }
        out
    }

    /// Markdown for a pull-request comment: a summary table, then one collapsible diff per object.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "### gitplane diff: {}\n", self.title);
        for e in &self.errors {
            let _ = writeln!(out, "> **Error:** {}\n", e.replace('\n', " "));
        }
        if self.entries.is_empty() {
            let _ = writeln!(out, "No changes.");
            return out;
        }
        let check = if self.dry_run { "Dry run" } else { "Checked" };
        let _ = writeln!(out, "| Object | Change | {check} |");
        let _ = writeln!(out, "|---|---|---|");
        for e in &self.entries {
            let result = match (&e.error, self.dry_run) {
                (Some(err), _) => format!(":x: {}", err.replace('|', "\\|").replace('\n', " ")),
                (None, true) => ":white_check_mark: passed".to_string(),
                (None, false) => "—".to_string(),
            };
            let _ = writeln!(out, "| `{}` | {} | {result} |", e.object, e.change.as_str());
        }
        for e in &self.entries {
            if e.diff.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "\n<details><summary><code>{}</code> ({})</summary>\n",
                e.object,
                e.change.as_str()
            );
            let _ = writeln!(out, "```diff\n{}```\n</details>", e.diff);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Review {
        Review {
            title: "web: 1234567 against the live cluster".into(),
            entries: vec![
                Entry {
                    object: "Deployment/web/web".into(),
                    change: Change::Changed,
                    diff: "--- live\n+++ desired\n@@ -1 +1 @@\n-replicas: 1\n+replicas: 3\n".into(),
                    error: None,
                },
                Entry {
                    object: "ConfigMap/web/bad".into(),
                    change: Change::Added,
                    diff: "--- live\n+++ desired\n@@ -0,0 +1 @@\n+name: Bad\n".into(),
                    error: Some("ConfigMap \"Bad\" is invalid: metadata.name".into()),
                },
            ],
            errors: vec![],
            dry_run: true,
        }
    }

    #[test]
    fn markdown_has_a_summary_table_and_collapsible_diffs() {
        let expected = "### gitplane diff: web: 1234567 against the live cluster

| Object | Change | Dry run |
|---|---|---|
| `Deployment/web/web` | changed | :white_check_mark: passed |
| `ConfigMap/web/bad` | added | :x: ConfigMap \"Bad\" is invalid: metadata.name |

<details><summary><code>Deployment/web/web</code> (changed)</summary>

```diff
--- live
+++ desired
@@ -1 +1 @@
-replicas: 1
+replicas: 3
```
</details>

<details><summary><code>ConfigMap/web/bad</code> (added)</summary>

```diff
--- live
+++ desired
@@ -0,0 +1 @@
+name: Bad
```
</details>
";
        assert_eq!(sample().markdown(), expected);
        assert_eq!(sample().exit_code(), 2);
    }

    #[test]
    fn text_marks_refusals_and_colors_only_when_asked() {
        let text = sample().text(false);
        assert!(text.starts_with(
            "web: 1234567 against the live cluster\n\n=== Deployment/web/web (changed)\n--- live\n"
        ));
        assert!(text.contains("refused by the API server: ConfigMap \"Bad\" is invalid"));
        assert!(!text.contains('\x1b'));
        assert!(sample().text(true).contains("\x1b[32m+replicas: 3\x1b[0m"));
        assert_eq!(Review::default().exit_code(), 0);
    }
}
