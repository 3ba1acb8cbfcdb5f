use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use crate::config::{Budgets, ConfigError};
use crate::layer::Shared;

/// Reads and changes the budgets of a [`DeadlineLayer`](crate::DeadlineLayer) (and of
/// every clone of it and every service it made) while it runs.
///
/// A change takes effect for calls that start after it; calls already running keep the
/// deadline they started with. Changes are atomic: a call sees the old table or the new
/// one, never a mix. Readers on the hot path never lock (the table sits in an
/// [`arc_swap::ArcSwap`]).
///
/// ```
/// use std::time::Duration;
/// use http::Method;
/// use palisade_deadline::DeadlineLayer;
///
/// let layer = DeadlineLayer::new(Duration::from_secs(2));
/// let handle = layer.handle();
/// handle.set_default_budget(Duration::from_secs(5))?;
/// handle.update(|b| b.route_prefix("/reports", Duration::from_secs(30)))?;
/// assert_eq!(handle.budget_for(&Method::GET, "/reports/1"), Duration::from_secs(30));
/// assert_eq!(handle.budget_for(&Method::GET, "/"), Duration::from_secs(5));
/// assert!(handle.set_default_budget(Duration::ZERO).is_err()); // refused; nothing changed
/// # Ok::<(), palisade_deadline::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct DeadlineHandle {
    shared: Arc<Shared>,
}

impl DeadlineHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        self.shared.name
    }

    /// The budget table in force.
    pub fn budgets(&self) -> Arc<Budgets> {
        self.shared.budgets.load_full()
    }

    /// The budget a request with `method` and `path` gets from the table now.
    pub fn budget_for(&self, method: &Method, path: &str) -> Duration {
        self.shared.budgets.load().budget_for(method, path)
    }

    /// Replaces the whole table, after validating it.
    pub fn set_budgets(&self, budgets: Budgets) -> Result<(), ConfigError> {
        budgets.validate()?;
        self.shared.budgets.store(Arc::new(budgets));
        self.changed();
        Ok(())
    }

    /// Changes the default budget only.
    pub fn set_default_budget(&self, budget: Duration) -> Result<(), ConfigError> {
        self.update(|b| b.default_budget(budget))
    }

    /// Changes the table with `f`, which gets a copy of the table in force and returns
    /// the new one. The result is validated; on error nothing changes. If another
    /// change lands meanwhile, `f` runs again on the newer table, so no change is lost.
    pub fn update<F>(&self, mut f: F) -> Result<(), ConfigError>
    where
        F: FnMut(Budgets) -> Budgets,
    {
        let mut current = self.shared.budgets.load_full();
        loop {
            let next = f(Budgets::clone(&current));
            next.validate()?;
            let previous = self
                .shared
                .budgets
                .compare_and_swap(&current, Arc::new(next));
            if Arc::ptr_eq(&previous, &current) {
                self.changed();
                return Ok(());
            }
            current = arc_swap::Guard::into_inner(previous);
        }
    }

    fn changed(&self) {
        self.shared.refresh_flat();
        let budgets = self.shared.budgets.load();
        tracing::info!(
            name = %self.shared.name,
            budget = ?budgets.default_value(),
            routes = budgets.routes().count(),
            methods = budgets.methods().count(),
            grpc_methods = budgets.grpc_methods().count(),
            "deadline budgets changed"
        );
    }
}

impl fmt::Debug for DeadlineHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineHandle")
            .field("name", &self.shared.name)
            .field("budgets", &self.shared.budgets.load())
            .finish()
    }
}
