//! The `demo.Quotes` gRPC service shared by the `tonic_server` and `tonic_client`
//! examples, written by hand so that no `protoc` or build script is needed: the
//! messages derive `prost::Message`, and the server is the `NamedService` + `Service`
//! pair tonic's code generator would write.
//!
//! ```proto
//! package demo;
//! service Quotes { rpc Get(QuoteRequest) returns (QuoteReply); }
//! message QuoteRequest { string symbol = 1; uint32 work_ms = 2; }
//! message QuoteReply { string symbol = 1; int64 price_cents = 2; }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade::core::BoxError;
use palisade::core::Deadline;
use palisade::core::layer_error::DeadlineExceeded;
use palisade::deadline::DeadlineLayer;
use palisade::health::grpc::GrpcHealth;
use palisade::health::{Group, HealthRegistry};
use tonic::body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tower::ServiceBuilder;

/// The gRPC service name.
pub(crate) const SERVICE: &str = "demo.Quotes";
/// The path of the `Get` method.
pub(crate) const GET: &str = "/demo.Quotes/Get";

/// Asks for a quote; `work_ms` is how long the server pretends to work on it.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct QuoteRequest {
    /// The ticker symbol.
    #[prost(string, tag = "1")]
    pub(crate) symbol: String,
    /// Simulated work, in milliseconds (at most 10 000).
    #[prost(uint32, tag = "2")]
    pub(crate) work_ms: u32,
}

/// A quote.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct QuoteReply {
    /// The ticker symbol asked for.
    #[prost(string, tag = "1")]
    pub(crate) symbol: String,
    /// The price, in cents.
    #[prost(int64, tag = "2")]
    pub(crate) price_cents: i64,
}

/// The server's state: how many calls it saw, and how many of the first ones answer
/// `UNAVAILABLE` (a restarting dependency, say), so clients can show their retries.
#[derive(Debug)]
pub(crate) struct Quotes {
    calls: AtomicUsize,
    unavailable_first: usize,
}

impl Quotes {
    /// A service whose first `unavailable_first` calls fail with `UNAVAILABLE`.
    pub(crate) fn new(unavailable_first: usize) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            unavailable_first,
        })
    }

    /// Calls seen so far.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn get(&self, req: Request<QuoteRequest>) -> Result<Response<QuoteReply>, Status> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        // The deadline layer put the caller's deadline (from `grpc-timeout`) here.
        let left = req
            .extensions()
            .get::<Deadline>()
            .map(|d| format!("{:?}", d.remaining()))
            .unwrap_or_else(|| "no deadline".to_owned());
        let msg = req.into_inner();
        tracing::info!(call = n + 1, symbol = %msg.symbol, work_ms = msg.work_ms, deadline_left = %left, "Get");
        if n < self.unavailable_first {
            return Err(Status::unavailable("warming up, try again"));
        }
        if msg.symbol.is_empty() || msg.symbol.len() > 12 {
            return Err(Status::invalid_argument("symbol: 1 to 12 characters"));
        }
        if msg.work_ms > 10_000 {
            return Err(Status::invalid_argument("work_ms: at most 10000"));
        }
        // If the deadline passes first, the deadline layer drops this future: the
        // work stops, and the caller gets DEADLINE_EXCEEDED.
        let work = Duration::from_millis(u64::from(msg.work_ms));
        tokio::time::sleep(work).await;
        let price_cents = msg.symbol.bytes().map(i64::from).sum::<i64>() * 7;
        Ok(Response::new(QuoteReply {
            symbol: msg.symbol,
            price_cents,
        }))
    }
}

/// `demo.Quotes` as tonic's router wants it.
#[derive(Clone, Debug)]
pub(crate) struct QuotesServer(pub(crate) Arc<Quotes>);

impl NamedService for QuotesServer {
    const NAME: &'static str = SERVICE;
}

struct GetMethod(Arc<Quotes>);

impl UnaryService<QuoteRequest> for GetMethod {
    type Response = QuoteReply;
    type Future = Pin<Box<dyn Future<Output = Result<Response<QuoteReply>, Status>> + Send>>;

    fn call(&mut self, req: Request<QuoteRequest>) -> Self::Future {
        let quotes = self.0.clone();
        Box::pin(async move { quotes.get(req).await })
    }
}

impl tower::Service<http::Request<Body>> for QuotesServer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let quotes = self.0.clone();
        Box::pin(async move {
            if req.uri().path() != GET {
                return Ok(Status::unimplemented("no such method").into_http());
            }
            let codec = tonic_prost::ProstCodec::<QuoteReply, QuoteRequest>::default();
            Ok(tonic::server::Grpc::new(codec)
                .unary(GetMethod(quotes), req)
                .await)
        })
    }
}

/// A Palisade layer error as the gRPC status a client expects (the deadline layer's
/// `DeadlineExceeded` becomes `DEADLINE_EXCEEDED`); tonic sends a `Status` error as
/// the response.
fn to_status(err: BoxError) -> BoxError {
    if let Some(e) = err.downcast_ref::<DeadlineExceeded>() {
        return Box::new(Status::deadline_exceeded(e.to_string()));
    }
    match err.downcast::<Status>() {
        Ok(status) => status,
        Err(other) => Box::new(Status::internal(other.to_string())),
    }
}

/// Serves `demo.Quotes` and `grpc.health.v1.Health` on `listener` until `shutdown`
/// resolves. Each call gets a deadline: the caller's `grpc-timeout`, at most 5 s.
/// The health service reports `demo.Quotes` (and the server, `""`) from the
/// registry's `ready` group, so it turns `NOT_SERVING` when a shutdown starts.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    quotes: Arc<Quotes>,
    registry: &HealthRegistry,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BoxError> {
    let health = GrpcHealth::new(registry)
        .service(SERVICE, Group::READY)
        .refresh(Duration::from_millis(200))
        .server()?;
    let deadline = DeadlineLayer::builder()
        .name("quotes")
        .budget(Duration::from_secs(5))
        .build()?;
    tonic::transport::Server::builder()
        .layer(
            ServiceBuilder::new()
                .map_err(to_status)
                .layer(deadline)
                .into_inner(),
        )
        .add_service(QuotesServer(quotes))
        .add_service(health)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await?;
    Ok(())
}
