//! [`ErrorBudgetLayer`].

use std::sync::Arc;

use palisade_core::classify::{ErrorClassifier, HttpClassifier};
use tower_layer::Layer;

use crate::budget::ErrorBudget;
use crate::service::Budgeted;

/// What every service and response future of one layer shares: the budget and the
/// classifier, behind one reference count.
#[derive(Debug)]
pub(crate) struct Recorder<C> {
    pub(crate) budget: ErrorBudget,
    pub(crate) classifier: C,
}

/// Records the outcome of every call into an [`ErrorBudget`], without changing the
/// call: same response, same error, same readiness.
///
/// Outcomes are judged by the classifier `C`: [`ErrorClassifier`] by default (errors by
/// type; every response is good), [`HttpClassifier`] for HTTP and gRPC services
/// ([`ErrorBudgetLayer::http`]). `Success` counts as good, `InvalidInput` is not
/// counted, every other category counts as bad
/// ([`Category::counts_against_backend`](palisade_core::Category::counts_against_backend)).
///
/// Several layers (a server's inbound stack, a client's outbound one) may feed the same
/// budget: clone the [`ErrorBudget`] into each.
pub struct ErrorBudgetLayer<C = ErrorClassifier> {
    recorder: Arc<Recorder<C>>,
}

impl<C> Clone for ErrorBudgetLayer<C> {
    fn clone(&self) -> Self {
        Self {
            recorder: self.recorder.clone(),
        }
    }
}

impl<C> std::fmt::Debug for ErrorBudgetLayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorBudgetLayer")
            .field("budget", &self.recorder.budget.name())
            .finish_non_exhaustive()
    }
}

impl ErrorBudgetLayer {
    /// A layer feeding `budget`, classified by [`ErrorClassifier`].
    pub fn new(budget: ErrorBudget) -> Self {
        Self::with_classifier(budget, ErrorClassifier)
    }

    /// A layer feeding `budget`, classified by [`HttpClassifier`].
    pub fn http(budget: ErrorBudget) -> ErrorBudgetLayer<HttpClassifier> {
        ErrorBudgetLayer::with_classifier(budget, HttpClassifier::new())
    }
}

impl<C> ErrorBudgetLayer<C> {
    /// A layer feeding `budget`, classified by `classifier`.
    pub fn with_classifier(budget: ErrorBudget, classifier: C) -> Self {
        Self {
            recorder: Arc::new(Recorder { budget, classifier }),
        }
    }

    /// The same budget, judged by another classifier.
    pub fn classifier<C2>(self, classifier: C2) -> ErrorBudgetLayer<C2> {
        ErrorBudgetLayer::with_classifier(self.budget(), classifier)
    }

    /// The same layer, feeding a [leaked](ErrorBudget::leak) handle on its budget: its
    /// services clone without touching a reference count.
    #[must_use]
    pub fn leak(self) -> Self
    where
        C: Clone,
    {
        Self::with_classifier(self.budget().leak(), self.recorder.classifier.clone())
    }

    /// The budget this layer feeds.
    pub fn budget(&self) -> ErrorBudget {
        self.recorder.budget.clone()
    }
}

impl<S, C: Clone> Layer<S> for ErrorBudgetLayer<C> {
    type Service = Budgeted<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        let r = &self.recorder;
        Budgeted::new(inner, r.budget.clone(), r.classifier.clone())
    }
}
