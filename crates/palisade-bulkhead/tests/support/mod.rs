//! Shared helpers for the bulkhead's tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use palisade_bulkhead::{BulkheadFull, BulkheadReason};
use palisade_core::{BoxError, Deadline};
use tokio::task::JoinHandle;
use tower::{Service, ServiceExt};

/// A request that may carry a deadline.
#[derive(Clone, Debug, PartialEq)]
pub struct Req {
    pub id: u32,
    pub deadline: Option<Deadline>,
}

pub fn req(id: u32) -> Req {
    Req { id, deadline: None }
}

pub fn req_due(id: u32, after: Duration) -> Req {
    Req {
        id,
        deadline: Some(Deadline::after(after)),
    }
}

/// Finds a request's deadline.
pub fn deadline_of(r: &Req) -> Option<Deadline> {
    r.deadline
}

pub type Mock = tower_test::mock::Mock<Req, u32>;
pub type MockHandle = tower_test::mock::Handle<Req, u32>;

/// Lets spawned tasks run (the current task stays runnable, so paused time does not
/// auto-advance).
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Spawns one call on a clone of `svc`.
pub fn spawn_call<S>(svc: &S, r: Req) -> JoinHandle<Result<u32, BoxError>>
where
    S: Service<Req, Response = u32, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let svc = svc.clone();
    tokio::spawn(svc.oneshot(r))
}

/// The reason of a bulkhead rejection, or a panic if `err` is something else.
pub fn reason(err: &BoxError) -> BulkheadReason {
    err.downcast_ref::<BulkheadFull>()
        .unwrap_or_else(|| panic!("not a BulkheadFull: {err}"))
        .reason()
}

/// Answers the next request with its id.
pub async fn answer_next(handle: &mut MockHandle) -> u32 {
    let (r, send) = handle.next_request().await.expect("a request");
    send.send_response(r.id);
    r.id
}
