//! A tonic gRPC client with Palisade: one deadline for the whole call, written into
//! each attempt's `grpc-timeout` (so the server stops working when the caller has
//! given up), retries on `UNAVAILABLE` within that deadline, and a gRPC health check
//! before calling.
//!
//! Run with:
//!
//! ```text
//! cargo run --example tonic_client --features full                           # standalone
//! cargo run --example tonic_client --features full -- http://127.0.0.1:50051  # a tonic_server
//! ```
//!
//! Without an address it starts the `tonic_server` example's service in-process on
//! `127.0.0.1:0` and calls that. It exits 0 when every call went as expected.
//!
//! Stack, outermost first: retry (message level: `tonic::Status` classified by
//! palisade-core, `UNAVAILABLE` retried after a short backoff, never past the call's
//! deadline) → the unary call → `PropagateDeadlineLayer` (HTTP level: writes the time
//! left into `grpc-timeout`, fails fast when none is left) → the tonic `Channel`.

#[path = "common/quotes.rs"]
mod quotes;

use std::time::Duration;

use http::uri::PathAndQuery;
use palisade::core::{BoxError, Deadline};
use palisade::deadline::PropagateDeadlineLayer;
use palisade::health::HealthRegistry;
use palisade::retry::{Backoff, RetryLayer};
use quotes::{QuoteReply, QuoteRequest};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// Time kept back from each attempt's `grpc-timeout` for the answer to travel back.
const MARGIN: Duration = Duration::from_millis(5);

/// One call: the message and the deadline of the whole call (every attempt shares it).
#[derive(Clone, Debug)]
struct Call {
    request: QuoteRequest,
    deadline: Deadline,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (addr, in_process) = match args.next() {
        Some(addr) => (addr, None),
        None => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = format!("http://{}", listener.local_addr()?);
            let registry = HealthRegistry::new();
            let quotes = quotes::Quotes::new(2);
            let server = tokio::spawn({
                let quotes = quotes.clone();
                async move { quotes::serve(listener, quotes, &registry, std::future::pending()).await }
            });
            println!("started demo.Quotes in-process at {addr}");
            (addr, Some((quotes, AbortOnDrop(server))))
        }
    };
    let endpoint = Endpoint::from_shared(addr.clone())
        .map_err(|e| format!("{addr:?} is not a URI: {e}"))?
        .connect_timeout(Duration::from_secs(2));
    let channel = tokio::time::timeout(Duration::from_secs(5), endpoint.connect())
        .await
        .map_err(|_| format!("{addr}: no connection within 5 s"))??;

    // 1. Is the service serving?
    let mut health = HealthClient::new(channel.clone());
    let status = health
        .check(HealthCheckRequest {
            service: quotes::SERVICE.to_owned(),
        })
        .await?
        .into_inner()
        .status();
    println!("health of {}: {status:?}", quotes::SERVICE);
    if status != ServingStatus::Serving {
        return Err(format!("{} is not serving", quotes::SERVICE).into());
    }

    let client = quotes_client(channel);

    // 2. The server's first calls answer UNAVAILABLE: retries absorb them.
    let call = Call {
        request: QuoteRequest {
            symbol: "PLSD".to_owned(),
            work_ms: 10,
        },
        deadline: Deadline::after(Duration::from_secs(2)),
    };
    let reply = client.clone().oneshot(call).await?;
    match &in_process {
        Some((quotes, _)) => println!(
            "Get PLSD -> {} cents, in {} attempts (UNAVAILABLE answers retried)",
            reply.price_cents,
            quotes.calls()
        ),
        None => println!("Get PLSD -> {} cents", reply.price_cents),
    }

    // 3. The caller allows 200 ms; the work takes 1 s. The server reads the deadline
    //    from grpc-timeout and drops the work when it passes; the client stops
    //    waiting at the same moment and reports DEADLINE_EXCEEDED.
    let call = Call {
        request: QuoteRequest {
            symbol: "SLOW".to_owned(),
            work_ms: 1_000,
        },
        deadline: Deadline::after(Duration::from_millis(200)),
    };
    let started = tokio::time::Instant::now();
    match client.clone().oneshot(call).await {
        Err(status) if status.code() == Code::DeadlineExceeded => println!(
            "Get SLOW -> DEADLINE_EXCEEDED after {:?}: {}",
            started.elapsed(),
            status.message()
        ),
        other => return Err(format!("expected DEADLINE_EXCEEDED, got {other:?}").into()),
    }

    // 4. The caller's mistake is not retried.
    let call = Call {
        request: QuoteRequest {
            symbol: String::new(),
            work_ms: 0,
        },
        deadline: Deadline::after(Duration::from_secs(1)),
    };
    match client.oneshot(call).await {
        Err(status) if status.code() == Code::InvalidArgument => {
            println!(
                "Get \"\" -> INVALID_ARGUMENT, not retried: {}",
                status.message()
            );
        }
        other => return Err(format!("expected INVALID_ARGUMENT, got {other:?}").into()),
    }
    Ok(())
}

/// `demo.Quotes/Get` as a tower service of [`Call`]s, with retries and deadline
/// propagation.
fn quotes_client(
    channel: Channel,
) -> impl Service<Call, Response = QuoteReply, Error = Status, Future: Send> + Clone {
    // HTTP level: the time left goes into grpc-timeout on every attempt.
    let transport = ServiceBuilder::new()
        .layer(
            PropagateDeadlineLayer::builder()
                .name("quotes")
                .margin(MARGIN)
                .build()
                .expect("a valid propagation config"),
        )
        .service(channel);
    let unary = service_fn(move |call: Call| {
        let mut grpc = tonic::client::Grpc::new(transport.clone());
        async move {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
            let mut request = tonic::Request::new(call.request);
            // Carried into the HTTP request's extensions, where the propagation
            // layer reads it.
            request.extensions_mut().insert(call.deadline);
            let codec = tonic_prost::ProstCodec::<QuoteRequest, QuoteReply>::default();
            let res = grpc
                .unary(request, PathAndQuery::from_static(quotes::GET), codec)
                .await
                .map_err(|status| {
                    // tonic's channel also enforces the grpc-timeout it sends, and
                    // reports its own expiry as CANCELLED: that is this call's deadline.
                    if status.code() == Code::Cancelled && call.deadline.remaining() <= MARGIN {
                        Status::deadline_exceeded(format!(
                            "the call's deadline passed ({})",
                            status.message()
                        ))
                    } else {
                        status
                    }
                })?;
            Ok::<_, Status>(res.into_inner())
        }
    });
    ServiceBuilder::new()
        .layer(
            RetryLayer::builder()
                .name("quotes")
                .max_attempts(4)
                .backoff(Backoff::exponential(Duration::from_millis(25)))
                .deadline(|call: &Call| Some(call.deadline))
                .build()
                .expect("a valid retry config"),
        )
        .service(unary)
}

/// Stops the in-process server when `main` returns.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
