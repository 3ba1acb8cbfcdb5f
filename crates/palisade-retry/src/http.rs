//! HTTP support: replayable request bodies ([`ReplayBody`], [`ReplayBodyLayer`]) and
//! the request policy of [`RetryLayer::http`](crate::RetryLayer::http) ([`HttpReplay`]:
//! idempotent methods, `Idempotency-Key`, an attempt header).
//!
//! An `http::Request` cannot be cloned, and its body can be read only once. To send a
//! request again, the retry layer needs its body in memory. [`ReplayBody`] is a body
//! that is either *buffered* (bytes in memory: cloned for free, replayed byte for
//! byte) or *streaming* (passed through untouched, sent once, never retried). Make one
//! from bytes you already have ([`ReplayBody::from`]), from a body read up to a limit
//! ([`ReplayBody::buffer`]), or let [`ReplayBodyLayer`], placed outside the retry
//! layer, do the reading for every request.
//!
//! A request whose body could not be buffered (no known size within the limit, or larger
//! than it) is still sent; only its retries are skipped (`reason="body"`).

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body::{Body, Frame, SizeHint};
use palisade_core::BoxError;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::policy::{NotReplayable, ReplayPolicy};

/// The header that marks a request safe to retry whatever its method.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

pin_project! {
    /// A request body that can be replayed when it was buffered.
    ///
    /// Its data type is `Bytes` (a streamed body's chunks are turned into `Bytes`,
    /// which is free when they already are).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use palisade_retry::http::ReplayBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body: ReplayBody<Full<Bytes>> = ReplayBody::from("hello");
    /// let copy = body.try_clone().expect("buffered bodies clone");
    /// assert_eq!(copy.collect().await.unwrap().to_bytes(), "hello");
    ///
    /// let streamed = ReplayBody::streaming(Full::new(Bytes::from("once")));
    /// assert!(streamed.try_clone().is_none());
    /// # }
    /// ```
    pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Buffered { data: Option<Bytes>, trailers: Option<HeaderMap> },
        Streaming { prefix: Option<Bytes>, #[pin] body: B },
    }
}

impl<B> ReplayBody<B> {
    /// A buffered body with `data` and no trailers.
    pub fn from_bytes(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        Self::buffered(data, None)
    }

    fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: Kind::Buffered {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    /// An empty, buffered body.
    pub fn empty() -> Self {
        Self::buffered(Bytes::new(), None)
    }

    /// A body passed through as it is: sent once, never replayed.
    pub fn streaming(body: B) -> Self {
        Self {
            kind: Kind::Streaming { prefix: None, body },
        }
    }

    /// Whether the body is in memory and can be sent again.
    pub fn is_replayable(&self) -> bool {
        matches!(self.kind, Kind::Buffered { .. })
    }

    /// The buffered bytes, if the body is buffered.
    pub fn buffered_bytes(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Buffered { data, .. } => Some(data.as_deref().unwrap_or_default()),
            Kind::Streaming { .. } => None,
        }
    }

    /// A copy to send again: `Some` for a buffered body (a reference-count increment,
    /// plus a copy of its trailers if any), `None` for a streaming one.
    pub fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Buffered { data, trailers } => Some(Self {
                kind: Kind::Buffered {
                    data: data.clone(),
                    trailers: trailers.clone(),
                },
            }),
            Kind::Streaming { .. } => None,
        }
    }
}

impl<B: Body + Unpin> ReplayBody<B> {
    /// Reads `body` into memory if it says its size is at most `limit` bytes, giving a
    /// replayable body; otherwise (size unknown or too large) gives a streaming body
    /// without reading anything. A body that lied about its size and grew past `limit`
    /// is passed on as a streaming body too, the part already read first.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use palisade_retry::http::ReplayBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let small = ReplayBody::buffer(Full::new(Bytes::from("abc")), 16).await.unwrap();
    /// assert_eq!(small.buffered_bytes(), Some(&b"abc"[..]));
    /// let big = ReplayBody::buffer(Full::new(Bytes::from("abcdef")), 4).await.unwrap();
    /// assert!(!big.is_replayable());
    /// # }
    /// ```
    pub fn buffer(body: B, limit: usize) -> BufferBody<B> {
        BufferBody::new(body, limit)
    }
}

impl<B> From<Bytes> for ReplayBody<B> {
    fn from(data: Bytes) -> Self {
        Self::from_bytes(data)
    }
}

impl<B> From<&'static str> for ReplayBody<B> {
    fn from(data: &'static str) -> Self {
        Self::from_bytes(data)
    }
}

impl<B> From<&'static [u8]> for ReplayBody<B> {
    fn from(data: &'static [u8]) -> Self {
        Self::from_bytes(data)
    }
}

impl<B> From<String> for ReplayBody<B> {
    fn from(data: String) -> Self {
        Self::from_bytes(data)
    }
}

impl<B> From<Vec<u8>> for ReplayBody<B> {
    fn from(data: Vec<u8>) -> Self {
        Self::from_bytes(data)
    }
}

impl<B> Default for ReplayBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Buffered { data, trailers } => f
                .debug_struct("ReplayBody::Buffered")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .field("trailers", &trailers.is_some())
                .finish(),
            Kind::Streaming { prefix, .. } => f
                .debug_struct("ReplayBody::Streaming")
                .field("prefix_len", &prefix.as_ref().map_or(0, Bytes::len))
                .finish_non_exhaustive(),
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Buffered { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            KindProj::Streaming { prefix, body } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                body.poll_frame(cx).map(|frame| {
                    frame.map(|r| r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining()))))
                })
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Streaming { prefix, body } => prefix.is_none() && body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Streaming { prefix, body } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = body.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(extra));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(extra));
                }
                hint
            }
        }
    }
}

/// The future of [`ReplayBody::buffer`].
#[must_use = "futures do nothing unless polled"]
pub struct BufferBody<B> {
    body: Option<B>,
    limit: usize,
    first: Option<Bytes>,
    rest: BytesMut,
    trailers: Option<HeaderMap>,
}

impl<B: Body + Unpin> BufferBody<B> {
    fn new(body: B, limit: usize) -> Self {
        Self {
            body: Some(body),
            limit,
            first: None,
            rest: BytesMut::new(),
            trailers: None,
        }
    }

    fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.rest.len()
    }

    fn collected(&mut self) -> Bytes {
        match self.first.take() {
            None => Bytes::new(),
            Some(first) if self.rest.is_empty() => first,
            Some(first) => {
                let mut all = BytesMut::with_capacity(first.len() + self.rest.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&self.rest);
                all.freeze()
            }
        }
    }

    fn push(&mut self, mut data: B::Data) {
        let chunk = data.copy_to_bytes(data.remaining());
        if chunk.is_empty() {
            return;
        }
        if self.first.is_none() {
            self.first = Some(chunk);
        } else {
            self.rest.extend_from_slice(&chunk);
        }
    }
}

impl<B: Body + Unpin> Future for BufferBody<B> {
    type Output = Result<ReplayBody<B>, B::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            panic!("BufferBody polled after completion");
        };
        if this.first.is_none() && this.trailers.is_none() {
            let fits = body
                .size_hint()
                .upper()
                .is_some_and(|upper| upper <= this.limit as u64);
            if !fits {
                let body = this.body.take().expect("checked above");
                return Poll::Ready(Ok(ReplayBody::streaming(body)));
            }
        }
        loop {
            let Some(body) = this.body.as_mut() else {
                unreachable!("the body is taken only when returning");
            };
            if body.is_end_stream() {
                let data = this.collected();
                this.body = None;
                return Poll::Ready(Ok(ReplayBody::buffered(data, this.trailers.take())));
            }
            match ready!(Pin::new(body).poll_frame(cx)) {
                None => {
                    let data = this.collected();
                    this.body = None;
                    return Poll::Ready(Ok(ReplayBody::buffered(data, this.trailers.take())));
                }
                Some(Err(e)) => {
                    this.body = None;
                    return Poll::Ready(Err(e));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        this.push(data);
                        if this.len() > this.limit {
                            // The size hint lied. Send what was read, then the rest.
                            let prefix = this.collected();
                            let body = this.body.take().expect("present in the loop");
                            return Poll::Ready(Ok(ReplayBody {
                                kind: Kind::Streaming {
                                    prefix: Some(prefix),
                                    body,
                                },
                            }));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            match &mut this.trailers {
                                Some(t) => t.extend(trailers),
                                None => this.trailers = Some(trailers),
                            }
                        }
                    }
                },
            }
        }
    }
}

impl<B> fmt::Debug for BufferBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferBody")
            .field("limit", &self.limit)
            .field(
                "read",
                &(self.first.as_ref().map_or(0, Bytes::len) + self.rest.len()),
            )
            .finish_non_exhaustive()
    }
}

/// Which HTTP requests may be sent again, and how a re-sent one is marked: the
/// [`ReplayPolicy`] of [`RetryLayer::http`](crate::RetryLayer::http).
///
/// By default only idempotent methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) are
/// retried, plus any request carrying an `Idempotency-Key` header; the body must be a
/// buffered [`ReplayBody`]. The copy keeps the method, URI, version, headers and
/// extensions (a [`Deadline`](palisade_core::Deadline) included).
///
/// ```
/// use http::{HeaderName, Method};
/// use palisade_retry::http::HttpReplay;
///
/// let policy = HttpReplay::new()
///     .retry_method(Method::POST)
///     .attempt_header(HeaderName::from_static("x-retry-attempt"));
/// # let _ = policy;
/// ```
#[derive(Clone, Debug, Default)]
pub struct HttpReplay {
    any_method: bool,
    extra_methods: Vec<Method>,
    attempt_header: Option<HeaderName>,
}

impl HttpReplay {
    /// Idempotent methods or an `Idempotency-Key`; no attempt header.
    pub const fn new() -> Self {
        Self {
            any_method: false,
            extra_methods: Vec::new(),
            attempt_header: None,
        }
    }

    /// Retries every method. Only for backends where a repeated request is harmless.
    #[must_use]
    pub fn retry_any_method(mut self) -> Self {
        self.any_method = true;
        self
    }

    /// Retries `method` too (`POST` to an endpoint you know to be idempotent).
    #[must_use]
    pub fn retry_method(mut self, method: Method) -> Self {
        if !self.extra_methods.contains(&method) {
            self.extra_methods.push(method);
        }
        self
    }

    /// Sets header `name` to the attempt number (`2`, `3`, ...) on every re-sent
    /// request, so the server can tell retries apart. The first attempt is sent as it
    /// came.
    #[must_use]
    pub fn attempt_header(mut self, name: HeaderName) -> Self {
        self.attempt_header = Some(name);
        self
    }

    /// Whether a request with `method` and `headers` may be sent twice.
    pub fn allows(&self, method: &Method, headers: &HeaderMap) -> bool {
        self.any_method
            || method.is_idempotent()
            || self.extra_methods.contains(method)
            || headers.contains_key(IDEMPOTENCY_KEY)
    }
}

impl<B> ReplayPolicy<Request<ReplayBody<B>>> for HttpReplay {
    fn clone_request(
        &self,
        request: &Request<ReplayBody<B>>,
    ) -> Result<Request<ReplayBody<B>>, NotReplayable> {
        if !self.allows(request.method(), request.headers()) {
            return Err(NotReplayable::NotIdempotent);
        }
        let body = request.body().try_clone().ok_or(NotReplayable::Body)?;
        let mut copy = Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Ok(copy)
    }

    fn prepare_retry(&self, request: &mut Request<ReplayBody<B>>, attempt: u32) {
        if let Some(name) = &self.attempt_header {
            request
                .headers_mut()
                .insert(name.clone(), HeaderValue::from(attempt));
        }
    }
}

/// Buffers request bodies up to a limit so that [`RetryLayer::http`](crate::RetryLayer::http)
/// can replay them: `Request<B>` in, `Request<ReplayBody<B>>` to the inner service.
///
/// Place it *outside* the retry layer. A body whose size hint is within `limit` is read
/// into memory before the first attempt; any other body is passed through as a
/// streaming `ReplayBody` without delay, and its request is sent once. Errors of the
/// inner service and of reading the body travel as [`BoxError`].
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use palisade_retry::RetryLayer;
/// use palisade_retry::http::{ReplayBody, ReplayBodyLayer};
/// use palisade_core::BoxError;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let backend = service_fn(|_req: Request<ReplayBody<Full<Bytes>>>| async {
///     Ok::<_, BoxError>(Response::new(()))
/// });
/// let client = ServiceBuilder::new()
///     .layer(ReplayBodyLayer::new(64 * 1024))
///     .layer(RetryLayer::http().name("orders").build()?)
///     .service(backend);
/// let res = client.oneshot(Request::new(Full::new(Bytes::from("{}")))).await?;
/// assert_eq!(res.status(), 200);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ReplayBodyLayer {
    limit: usize,
}

impl ReplayBodyLayer {
    /// Buffers bodies of at most `limit` bytes.
    pub const fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for ReplayBodyLayer {
    type Service = ReplayBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReplayBodyService {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`ReplayBodyLayer`].
#[derive(Clone, Debug)]
pub struct ReplayBodyService<S> {
    inner: S,
    limit: usize,
}

impl<S> ReplayBodyService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for ReplayBodyService<S>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ReplayBodyFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let fits = body
            .size_hint()
            .upper()
            .is_some_and(|upper| upper <= self.limit as u64);
        if !fits {
            let future = self
                .inner
                .call(Request::from_parts(parts, ReplayBody::streaming(body)));
            return ReplayBodyFuture {
                state: BufferState::Calling { future },
            };
        }
        // The readied service waits in the future for the body; a clone stays here.
        let clone = self.inner.clone();
        let service = mem::replace(&mut self.inner, clone);
        ReplayBodyFuture {
            state: BufferState::Buffering {
                buffer: BufferBody::new(body, self.limit),
                parts: Some(parts),
                service: Some(service),
            },
        }
    }
}

pin_project! {
    /// The response future of [`ReplayBodyService`].
    pub struct ReplayBodyFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: BufferState<S, B, S::Future>,
    }
}

pin_project! {
    #[project = BufferStateProj]
    enum BufferState<S, B, F> {
        Buffering { buffer: BufferBody<B>, parts: Option<http::request::Parts>, service: Option<S> },
        Calling { #[pin] future: F },
        Done,
    }
}

impl<S, B> Future for ReplayBodyFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                BufferStateProj::Buffering {
                    buffer,
                    parts,
                    service,
                } => {
                    let body = match ready!(Pin::new(buffer).poll(cx)) {
                        Ok(body) => body,
                        Err(e) => {
                            this.state.set(BufferState::Done);
                            return Poll::Ready(Err(e.into()));
                        }
                    };
                    let (Some(parts), Some(mut service)) = (parts.take(), service.take()) else {
                        unreachable!("taken only here, once");
                    };
                    let future = service.call(Request::from_parts(parts, body));
                    this.state.set(BufferState::Calling { future });
                }
                BufferStateProj::Calling { future } => {
                    let out = ready!(future.poll(cx)).map_err(Into::into);
                    this.state.set(BufferState::Done);
                    return Poll::Ready(out);
                }
                BufferStateProj::Done => panic!("ReplayBodyFuture polled after completion"),
            }
        }
    }
}

impl<S, B> fmt::Debug for ReplayBodyFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            BufferState::Buffering { .. } => "buffering",
            BufferState::Calling { .. } => "calling",
            BufferState::Done => "done",
        };
        f.debug_struct("ReplayBodyFuture")
            .field("state", &state)
            .finish()
    }
}
