//! The `gitplane` command: one binary, one subcommand per component or task.
fn main() {}
