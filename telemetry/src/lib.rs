//! Logs and traces for dsops's three binaries (`dsops`, `dsops-server`, `dsops-agent`).
//!
//! [`init`] installs the process's `tracing` subscriber: log lines on stderr as before, and, only
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, an OpenTelemetry layer that exports spans over OTLP
//! (gRPC) in batches from a thread of its own. Without the variable there is no exporter, no
//! propagator and no trace context on the wire: nothing to pay.
//!
//! One rotation is one trace across processes:
//!
//! ```text
//!  dsops rotate ──(gRPC metadata: traceparent)──▶ admin.rpc ─▶ raft.write
//!                                                    │ the run keeps the context
//!                                                    ▼
//!                                                 dispatch ──(Job.traceparent)──▶ agent.step ─▶ adapter
//! ```
//!
//! Spans carry names, ids, steps and outcomes — never a value: the fields dsops records are the
//! ones its log lines already had, and those hold no secret (`tests/tests/t61_canary.rs`,
//! `cli/tests/t62_traces.rs`).

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithTonicConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The variable that turns trace export on (the OpenTelemetry SDKs' standard one).
pub const ENDPOINT_VARIABLE: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The variable naming a PEM file with the CA that an `https://` collector's certificate chains
/// to (the OpenTelemetry SDKs' standard one).
pub const CERTIFICATE_VARIABLE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";

/// The process's telemetry; [`Telemetry::shutdown`] sends the spans still buffered.
#[derive(Debug)]
#[must_use = "shut it down before the process exits, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    // The exporter's gRPC channel lives on this runtime, independent of the program's own (the
    // CLI starts and drops one per command).
    runtime: Option<tokio::runtime::Runtime>,
}

/// What a binary logs when `RUST_LOG` says nothing, and whether it logs at all.
#[derive(Debug, Clone, Copy)]
pub struct Logs {
    /// The default filter (`info`, `info,openraft=warn`).
    pub default_filter: &'static str,
    /// Log lines on stderr (the CLI prints its own output and logs only when `RUST_LOG` is set).
    pub stderr: bool,
}

/// Installs the subscriber for `service` (`dsops`, `dsops-server`, `dsops-agent`). An exporter
/// that cannot be built is reported on stderr and the program goes on without traces.
pub fn init(service: &'static str, logs: Logs) -> Telemetry {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| logs.default_filter.into());
    let fmt = logs.stderr.then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    let (provider, runtime) = match std::env::var(ENDPOINT_VARIABLE) {
        Ok(endpoint) if !endpoint.trim().is_empty() => {
            match exporter(service, endpoint.trim().to_ascii_lowercase().starts_with("https://")) {
                Ok((provider, runtime)) => (Some(provider), Some(runtime)),
                Err(error) => {
                    eprintln!("warning: {ENDPOINT_VARIABLE}={endpoint}: no traces: {error}");
                    (None, None)
                }
            }
        }
        _ => (None, None),
    };
    let otel = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer(service)));
    let installed = tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init();
    EXPORTING.store(installed.is_ok() && provider.is_some(), std::sync::atomic::Ordering::Relaxed);
    Telemetry { provider, runtime }
}

fn exporter(
    service: &'static str,
    https: bool,
) -> Result<(SdkTracerProvider, tokio::runtime::Runtime), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otel-export")
        .enable_all()
        .build()
        .map_err(|e| format!("starting the export thread: {e}"))?;
    let _inside = runtime.enter();
    // The builder reads the endpoint, headers and timeout from the standard OTEL_EXPORTER_OTLP_*
    // variables; TLS (an `https://` endpoint) trusts OTEL_EXPORTER_OTLP_CERTIFICATE's CA when it
    // is set and the public web roots otherwise.
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    let tls = tonic::transport::ClientTlsConfig::new();
    builder = match std::env::var_os(CERTIFICATE_VARIABLE) {
        _ if !https => builder,
        Some(path) => {
            let pem = std::fs::read(&path).map_err(|e| {
                format!("{CERTIFICATE_VARIABLE}={}: {e}", std::path::Path::new(&path).display())
            })?;
            builder
                .with_tls_config(tls.ca_certificate(tonic::transport::Certificate::from_pem(pem)))
        }
        None => builder.with_tls_config(tls.with_webpki_roots()),
    };
    let exporter = builder.build().map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
    let exporter = OnRuntime { inner: exporter, runtime: runtime.handle().clone() };
    let provider =
        SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok((provider, runtime))
}

/// The OTLP exporter, run on the export runtime: the SDK's batch processor calls exporters from a
/// plain thread of its own, where tonic (which needs a Tokio reactor for its timers and sockets)
/// would panic.
#[derive(Debug)]
struct OnRuntime {
    inner: opentelemetry_otlp::SpanExporter,
    runtime: tokio::runtime::Handle,
}

impl opentelemetry_sdk::trace::SpanExporter for OnRuntime {
    async fn export(
        &self,
        batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.runtime.block_on(self.inner.export(batch))
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still buffered and stops the exporter. Blocks (briefly) on the exporter's
    /// own thread, never on the caller's runtime.
    pub fn shutdown(mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("warning: sending the last spans: {error}");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Whether this process exports spans (set once by [`init`]).
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The span `make` builds when spans are exported, [`tracing::Span::none`] otherwise: without an
/// exporter dsops creates no span at all, and its log lines stay as they were.
pub fn span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if EXPORTING.load(std::sync::atomic::Ordering::Relaxed) {
        make()
    } else {
        tracing::Span::none()
    }
}

/// The current span's trace context as a `traceparent`, or `None` when nothing is traced.
pub fn traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    carrier.remove("traceparent").filter(|t| dsops_proto::trace::is_traceparent(t))
}

/// Makes `span` a child of `traceparent` (a run's or a job's), if it is one.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|t| dsops_proto::trace::is_traceparent(t)) else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(parent);
}

/// Makes `span` a child of the trace context in the headers of an incoming gRPC request.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    let _ = span.set_parent(parent);
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct Metadata<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// A gRPC client interceptor that sends the current span's trace context (`traceparent`) with
/// every request; it adds nothing when nothing is traced.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendTraceContext;

impl tonic::service::Interceptor for SendTraceContext {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let context = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut Metadata(request.metadata_mut()))
        });
        Ok(request)
    }
}

/// A channel whose requests carry the trace context.
pub type TracedChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, SendTraceContext>;

/// `channel` with [`SendTraceContext`].
pub fn traced(channel: tonic::transport::Channel) -> TracedChannel {
    tonic::service::interceptor::InterceptedService::new(channel, SendTraceContext)
}

/// The span of one incoming gRPC request on a node: admin calls only (raft traffic and agent
/// sessions, which are long-lived streams, get none: steps join their run's trace through the
/// job instead). Its parent is the caller's trace context, when it sent one.
pub fn server_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path();
    let Some(method) = path.strip_prefix("/dsops.admin.v1.Admin/") else {
        return tracing::Span::none();
    };
    let span = span(|| tracing::info_span!("admin.rpc", rpc.method = %method));
    set_parent_from_headers(&span, request.headers());
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_carried_when_nothing_is_traced() {
        // No exporter installed in this test: no context to send, and a foreign one is ignored.
        assert_eq!(traceparent(), None);
        let request =
            tonic::service::Interceptor::call(&mut SendTraceContext, tonic::Request::new(()))
                .expect("the interceptor never refuses");
        assert!(request.metadata().get("traceparent").is_none());
        set_parent(&tracing::Span::none(), Some("garbage"));
    }
}
