//! What the instruction-count harnesses (`examples/callgrind_harness.rs`,
//! `examples/breaker_callgrind.rs`) set up before their calls: the Prometheus recorder,
//! as in a real service, and a current-thread tokio runtime.

use std::process::ExitCode;

/// The recorder's handle and the runtime (enter it for the calls); on failure, the
/// exit code after saying why.
pub(crate) fn setup() -> Result<
    (
        metrics_exporter_prometheus::PrometheusHandle,
        tokio::runtime::Runtime,
    ),
    ExitCode,
> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| {
            eprintln!("installing the Prometheus recorder: {e}");
            ExitCode::FAILURE
        })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("starting a tokio runtime: {e}");
            ExitCode::FAILURE
        })?;
    Ok((prometheus, rt))
}
