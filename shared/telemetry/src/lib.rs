//! Logs as JSON lines through `tracing`, the same for the four Lambda functions and the local
//! stack. Handlers log ids and outcomes, never email addresses or phone numbers; the log-privacy
//! tests hold them to it through `json_subscriber`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs JSON logging to `writer`, filtered by `RUST_LOG` (default `info`).
pub fn init_json_logging<W>(writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    // A second call (tests, the local stack after a library already set one up) keeps the first.
    let _ = tracing::subscriber::set_global_default(json_subscriber(writer));
}

/// The subscriber `init_json_logging` installs, for callers that scope it themselves.
pub fn json_subscriber<W>(writer: W) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        // The Lambda runtimes open a span per invocation with its request id: every line carries it.
        .with_current_span(true)
        .with_writer(writer)
        .finish()
}
