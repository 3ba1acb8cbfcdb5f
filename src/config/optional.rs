//! A layer that may be absent: [`OptionalLayer`] and the service it makes, with one
//! error type (`BoxError`) whether the layer is there or not.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tower::Service;
use tower::layer::Layer;

/// Applies `L` when present; otherwise passes calls through. Unlike
/// `tower::util::Either`, the two branches may fail with different error types: both
/// become `BoxError`, as the Palisade layers' errors are.
#[derive(Clone, Debug)]
pub struct OptionalLayer<L> {
    inner: Option<L>,
}

impl<L> OptionalLayer<L> {
    /// `layer`, if any.
    pub const fn new(layer: Option<L>) -> Self {
        Self { inner: layer }
    }
}

impl<S, L: Layer<S>> Layer<S> for OptionalLayer<L> {
    type Service = Optional<L::Service, S>;

    fn layer(&self, service: S) -> Self::Service {
        match &self.inner {
            Some(layer) => Optional::On(layer.layer(service)),
            None => Optional::Off(service),
        }
    }
}

/// The service of an [`OptionalLayer`]: the layered service, or the inner one.
#[derive(Clone)]
pub enum Optional<A, B> {
    /// The layer is there.
    On(A),
    /// No layer: calls go straight to the inner service.
    Off(B),
}

impl<A, B> fmt::Debug for Optional<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Optional::On(_) => f.write_str("Optional::On(..)"),
            Optional::Off(_) => f.write_str("Optional::Off(..)"),
        }
    }
}

impl<A, B, Req> Service<Req> for Optional<A, B>
where
    A: Service<Req>,
    A::Error: Into<BoxError>,
    B: Service<Req, Response = A::Response>,
    B::Error: Into<BoxError>,
{
    type Response = A::Response;
    type Error = BoxError;
    type Future = OptionalFuture<A::Future, B::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match self {
            Optional::On(s) => s.poll_ready(cx).map_err(Into::into),
            Optional::Off(s) => s.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Optional::On(s) => OptionalFuture {
                kind: Kind::On { inner: s.call(req) },
            },
            Optional::Off(s) => OptionalFuture {
                kind: Kind::Off { inner: s.call(req) },
            },
        }
    }
}

pin_project! {
    /// The response future of [`Optional`].
    #[derive(Debug)]
    pub struct OptionalFuture<A, B> {
        #[pin]
        kind: Kind<A, B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<A, B> {
        On { #[pin] inner: A },
        Off { #[pin] inner: B },
    }
}

impl<A, B, T, EA, EB> Future for OptionalFuture<A, B>
where
    A: Future<Output = Result<T, EA>>,
    B: Future<Output = Result<T, EB>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::On { inner } => inner.poll(cx).map_err(Into::into),
            KindProj::Off { inner } => inner.poll(cx).map_err(Into::into),
        }
    }
}
