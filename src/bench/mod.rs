//! `gitplane bench SCENARIO`: benchmarks that print `scenario=… metric=… value=… unit=…` lines.

pub mod render;

/// The benchmark scenarios.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Render a 1,000-object kustomize overlay, against `kubectl kustomize`.
    Render,
}

/// Runs one scenario.
pub fn run(scenario: Scenario) -> anyhow::Result<u8> {
    match scenario {
        Scenario::Render => render::run()?,
    }
    Ok(0)
}
