//! Scripted services, a classifier for them and metric helpers.
#![allow(dead_code, unreachable_pub)] // each test binary uses a part

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics_util::MetricKind;
use metrics_util::debugging::Snapshotter;
use palisade_core::BoxError;
use palisade_core::Category;
use palisade_core::classify::{Classification, Classify};
use palisade_testkit::metrics::{Row, Val, find_exact};
use tokio::time::Instant;
use tower::Service;
use tower::service_fn;

/// What the scripted backend answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reply {
    Ok,
    Fail(Category),
    After(Category, Duration),
    Forbid,
}

/// Classifies [`Reply`]s; errors are `Unknown`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplyClassifier;

impl<E> Classify<Reply, E> for ReplyClassifier {
    fn classify(&self, outcome: Result<&Reply, &E>) -> Classification {
        match outcome {
            Ok(Reply::Ok) => Classification::success(),
            Ok(Reply::Fail(c)) => Classification::new(*c, "fail"),
            Ok(Reply::After(c, d)) => Classification::new(*c, "after").with_retry_after(Some(*d)),
            Ok(Reply::Forbid) => {
                Classification::new(Category::Transient, "forbid").with_retry_forbidden(true)
            }
            Err(_) => Classification::new(Category::Unknown, "error"),
        }
    }
}

/// A backend that answers from a script (then `Ok` forever) and records when it was
/// called, relative to its creation.
#[derive(Clone, Debug)]
pub struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    calls: Arc<Mutex<Vec<Duration>>>,
    start: Instant,
    repeat_last: bool,
}

impl Script {
    pub fn new(replies: impl IntoIterator<Item = Reply>) -> Self {
        Self {
            replies: Arc::new(Mutex::new(replies.into_iter().collect())),
            calls: Arc::default(),
            start: Instant::now(),
            repeat_last: false,
        }
    }

    /// Answers `reply` to every call.
    pub fn always(reply: Reply) -> Self {
        let mut s = Self::new([reply]);
        s.repeat_last = true;
        s
    }

    pub fn service<Req: Send + 'static>(
        &self,
    ) -> impl Service<Req, Response = Reply, Error = BoxError, Future: Send> + Clone + Send + use<Req>
    {
        let this = self.clone();
        service_fn(move |_req: Req| {
            let reply = this.next();
            async move { Ok::<_, BoxError>(reply) }
        })
    }

    fn next(&self) -> Reply {
        self.calls.lock().unwrap().push(self.start.elapsed());
        let mut replies = self.replies.lock().unwrap();
        if self.repeat_last {
            return *replies.front().unwrap();
        }
        replies.pop_front().unwrap_or(Reply::Ok)
    }

    /// When each call came, from the script's creation.
    pub fn calls(&self) -> Vec<Duration> {
        self.calls.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Every counter of a snapshot (taking a snapshot resets the debugging recorder's
/// counters, so take one and query it).
pub struct Counters(Vec<Row>);

pub fn counters(snapshotter: &Snapshotter) -> Counters {
    Counters(
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, ..)| key.kind() == MetricKind::Counter)
            .collect(),
    )
}

impl Counters {
    /// The value of counter `name` with exactly `labels` (0 when absent).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match find_exact(&self.0, name, labels) {
            Some(Val::Counter(n)) => n,
            None => 0,
            Some(other) => panic!("{name} is not a counter: {other:?}"),
        }
    }

    /// How many counters were registered.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}
