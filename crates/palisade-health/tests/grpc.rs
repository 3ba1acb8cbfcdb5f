//! gRPC health over real loopback with a tonic client: `Check` and `Watch` follow the
//! registry's groups and draining.

mod support;

use std::time::Duration;

use palisade_core::HealthStatus::{Fail, Pass};
use palisade_health::grpc::GrpcHealth;
use palisade_health::{Group, HealthRegistry, Registration};
use support::*;
use tokio::time::timeout;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BOUND: Duration = Duration::from_secs(10);

async fn check(client: &mut HealthClient<Channel>, service: &str) -> Result<ServingStatus, Code> {
    let req = HealthCheckRequest {
        service: service.to_owned(),
    };
    match client.check(req).await {
        Ok(res) => Ok(ServingStatus::try_from(res.into_inner().status).unwrap()),
        Err(status) => Err(status.code()),
    }
}

async fn eventually(client: &mut HealthClient<Channel>, service: &str, want: ServingStatus) {
    timeout(BOUND, async {
        while check(client, service).await != Ok(want) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{service:?} never became {want:?}"));
}

#[tokio::test]
async fn check_and_watch_follow_the_registry() {
    let r = HealthRegistry::new();
    let db = Toggle::new(Pass);
    r.register(
        Registration::new("db", db.clone())
            .ready()
            .interval(Duration::from_millis(20)),
    )
    .unwrap();
    r.register(Registration::new("jobs", Toggle::new(Pass)).group(Group::custom("batch")))
        .unwrap();
    let health = GrpcHealth::new(&r)
        .service("demo.Greeter", Group::READY)
        .service("demo.Batch", Group::custom("batch"))
        .refresh(Duration::from_millis(50))
        .server()
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        Server::builder()
            .add_service(health)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let channel = timeout(
        BOUND,
        Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .unwrap()
    .unwrap();
    let mut client = HealthClient::new(channel);

    eventually(&mut client, "demo.Greeter", ServingStatus::Serving).await;
    eventually(&mut client, "", ServingStatus::Serving).await;
    eventually(&mut client, "demo.Batch", ServingStatus::Serving).await;
    assert_eq!(
        check(&mut client, "demo.Unknown").await,
        Err(Code::NotFound)
    );

    let mut watch = client
        .watch(HealthCheckRequest {
            service: "demo.Greeter".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut next = async || {
        let msg = timeout(BOUND, watch.message()).await.expect("bounded");
        ServingStatus::try_from(msg.unwrap().unwrap().status).unwrap()
    };
    assert_eq!(next().await, ServingStatus::Serving);

    db.set(Fail);
    assert_eq!(next().await, ServingStatus::NotServing);
    db.set(Pass);
    assert_eq!(next().await, ServingStatus::Serving);

    // Draining: readiness-mapped services stop serving; other groups do not.
    r.set_draining(true);
    assert_eq!(next().await, ServingStatus::NotServing);
    eventually(&mut client, "", ServingStatus::NotServing).await;
    assert_eq!(
        check(&mut client, "demo.Batch").await,
        Ok(ServingStatus::Serving)
    );
    server.abort();
}

#[tokio::test]
async fn bad_settings_are_refused() {
    let r = HealthRegistry::new();
    let err = GrpcHealth::new(&r)
        .refresh(Duration::ZERO)
        .server()
        .err()
        .unwrap();
    assert_eq!(err.field(), "refresh");
    let err = GrpcHealth::new(&r)
        .service("x", Group::custom("bad group"))
        .server()
        .err()
        .unwrap();
    assert_eq!(err.field(), "groups");
}

#[tokio::test(start_paused = true)]
async fn the_sync_task_stops_with_the_registry() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let r = HealthRegistry::new();
    let _server = GrpcHealth::new(&r).server().unwrap();
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 1);
    drop(r);
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), 0);
}
