//! Shared helpers for the breaker's tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_breaker::{BreakerLayer, BreakerOpen};
use palisade_core::{BoxError, CategorizedError, Category};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt, service_fn};

/// What the backend should do with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Ok,
    Fail,
    BadInput,
    Slow(Duration),
}

/// A backend that does what each request says and counts the calls it receives.
pub fn backend(
    calls: Arc<AtomicUsize>,
) -> impl Service<Act, Response = (), Error = BoxError, Future: Send> + Clone + Send + Sync {
    service_fn(move |act: Act| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            match act {
                Act::Ok => Ok(()),
                Act::Fail => Err(CategorizedError::new(Category::Transient, "backend").into()),
                Act::BadInput => {
                    Err(CategorizedError::new(Category::InvalidInput, "backend").into())
                }
                Act::Slow(d) => {
                    tokio::time::sleep(d).await;
                    Ok(())
                }
            }
        }
    })
}

pub type Svc = BoxCloneSyncService<Act, (), BoxError>;

/// A breaker around a counting backend.
pub fn guarded(layer: &BreakerLayer) -> (Svc, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = tower::ServiceBuilder::new()
        .layer(layer.clone())
        .service(backend(calls.clone()));
    (BoxCloneSyncService::new(svc), calls)
}

/// Sends one call; `Err(true)` when the breaker refused it, `Err(false)` for a
/// backend failure.
pub async fn send(svc: &Svc, act: Act) -> Result<(), bool> {
    match svc.clone().oneshot(act).await {
        Ok(()) => Ok(()),
        Err(e) => Err(e.is::<BreakerOpen>()),
    }
}

pub fn deterministic() -> palisade_breaker::BreakerBuilder {
    BreakerLayer::builder()
        .name("test")
        .open_jitter(0.0)
        .seed(1)
}
