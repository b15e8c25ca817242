//! Logs as JSON lines through `tracing`, the same for the four Lambda functions and the local
//! stack. Handlers log ids and outcomes, never email addresses or phone numbers; the log-privacy
//! tests hold them to it through `json_subscriber`. Business counters go out as EMF lines
//! (`metrics`).

pub mod metrics;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs JSON logging to `writer`, filtered by `RUST_LOG` (default `info`).
pub fn init_json_logging<W>(writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    init_json_logging_defaulting_to(writer, "info");
}

/// Like `init_json_logging`, with another level when `RUST_LOG` is unset: the demo prints its own
/// report on stdout and keeps stderr to warnings unless asked for more.
pub fn init_json_logging_defaulting_to<W>(writer: W, default_filter: &str)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    // A second call (tests, the local stack after a library already set one up) keeps the first.
    let _ = tracing::subscriber::set_global_default(subscriber(writer, default_filter));
}

/// The subscriber `init_json_logging` installs, for callers that scope it themselves.
pub fn json_subscriber<W>(writer: W) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    subscriber(writer, "info")
}

fn subscriber<W>(writer: W, default_filter: &str) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)))
        // The Lambda runtimes open a span per invocation with its request id: every line carries it.
        .with_current_span(true)
        .with_writer(writer)
        .finish()
}
