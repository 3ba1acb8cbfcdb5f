//! [`Category`]: the one word every layer uses for what happened to a call.

use std::fmt;

/// What happened to a call, in the terms every Palisade layer agrees on.
///
/// The breaker counts failures by category, retry decides by category, and the metrics
/// label outcomes by [`Category::as_str`]. The table in the crate docs says what each
/// category means for each layer.
///
/// ```
/// use palisade_core::Category;
///
/// assert!(Category::Transient.is_failure());
/// assert!(Category::Transient.is_retryable());
/// assert!(!Category::InvalidInput.counts_against_backend());
/// assert_eq!(Category::Retriable.to_string(), "retriable");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Category {
    /// The call did its job.
    Success,
    /// Failed before doing anything; safe to try again at once (connection refused,
    /// not leader, a stream refused before it was sent).
    Retriable,
    /// Temporary; worth another try after a pause (timeouts, 503, 429, `RESOURCE_EXHAUSTED`).
    Transient,
    /// Cannot succeed however often it is tried (corruption, 501, `DATA_LOSS`, `UNIMPLEMENTED`).
    Fatal,
    /// The caller's fault (most 4xx, `INVALID_ARGUMENT`, `NOT_FOUND`): says nothing about
    /// the health of the backend.
    InvalidInput,
    /// An error nobody classified.
    Unknown,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 6] = [
        Category::Success,
        Category::Retriable,
        Category::Transient,
        Category::Fatal,
        Category::InvalidInput,
        Category::Unknown,
    ];

    /// A stable lowercase label, used as a metric label value and in logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::Success => "success",
            Category::Retriable => "retriable",
            Category::Transient => "transient",
            Category::Fatal => "fatal",
            Category::InvalidInput => "invalid_input",
            Category::Unknown => "unknown",
        }
    }

    /// `true` only for [`Category::Success`].
    pub const fn is_success(self) -> bool {
        matches!(self, Category::Success)
    }

    /// `true` for every category but [`Category::Success`].
    pub const fn is_failure(self) -> bool {
        !self.is_success()
    }

    /// Whether the default retry policy tries again: `Retriable`, `Transient` and
    /// `Unknown`. `Fatal` and `InvalidInput` never succeed on a second try.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            Category::Retriable | Category::Transient | Category::Unknown
        )
    }

    /// Whether the default retry policy waits (backoff) before trying again:
    /// `Transient` and `Unknown`.
    pub const fn needs_backoff(self) -> bool {
        matches!(self, Category::Transient | Category::Unknown)
    }

    /// Whether the outcome says the backend is unhealthy: every failure but
    /// `InvalidInput`. This is what a breaker counts and an error budget spends by default.
    pub const fn counts_against_backend(self) -> bool {
        !matches!(self, Category::Success | Category::InvalidInput)
    }

    /// The less retryable of two categories, for an outcome made of several parts
    /// (a batch): `Fatal` > `InvalidInput` > `Unknown` > `Transient` > `Retriable` >
    /// `Success`. A batch is only as retryable as its least retryable part.
    ///
    /// ```
    /// use palisade_core::Category;
    /// assert_eq!(Category::Transient.worst(Category::Fatal), Category::Fatal);
    /// assert_eq!(Category::Success.worst(Category::Retriable), Category::Retriable);
    /// ```
    pub const fn worst(self, other: Category) -> Category {
        if self.severity() >= other.severity() {
            self
        } else {
            other
        }
    }

    const fn severity(self) -> u8 {
        match self {
            Category::Success => 0,
            Category::Retriable => 1,
            Category::Transient => 2,
            Category::Unknown => 3,
            Category::InvalidInput => 4,
            Category::Fatal => 5,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string names no [`Category`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseCategoryError {
    input: String,
}

impl fmt::Display for ParseCategoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown category {:?}: expected one of success, retriable, transient, fatal, invalid_input, unknown",
            self.input
        )
    }
}

impl std::error::Error for ParseCategoryError {}

impl std::str::FromStr for Category {
    type Err = ParseCategoryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseCategoryError {
                input: s.chars().take(64).collect(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable_and_parse_back() {
        let labels: Vec<_> = Category::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            labels,
            [
                "success",
                "retriable",
                "transient",
                "fatal",
                "invalid_input",
                "unknown"
            ]
        );
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>().unwrap(), c);
            assert_eq!(c.to_string(), c.as_str());
        }
        let err = "sometimes".parse::<Category>().unwrap_err();
        assert!(err.to_string().contains("\"sometimes\""), "{err}");
    }

    #[test]
    fn helper_table() {
        // (category, failure, retryable, backoff, counts against backend)
        let table = [
            (Category::Success, false, false, false, false),
            (Category::Retriable, true, true, false, true),
            (Category::Transient, true, true, true, true),
            (Category::Fatal, true, false, false, true),
            (Category::InvalidInput, true, false, false, false),
            (Category::Unknown, true, true, true, true),
        ];
        for (c, failure, retry, backoff, counts) in table {
            assert_eq!(c.is_failure(), failure, "{c}");
            assert_eq!(c.is_success(), !failure, "{c}");
            assert_eq!(c.is_retryable(), retry, "{c}");
            assert_eq!(c.needs_backoff(), backoff, "{c}");
            assert_eq!(c.counts_against_backend(), counts, "{c}");
        }
    }

    #[test]
    fn worst_is_commutative_and_ordered() {
        for a in Category::ALL {
            for b in Category::ALL {
                assert_eq!(a.worst(b), b.worst(a));
                let w = a.worst(b);
                assert!(w == a || w == b);
            }
            assert_eq!(a.worst(Category::Fatal), Category::Fatal);
            assert_eq!(a.worst(Category::Success), a);
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_uses_the_labels() {
        let json = serde_json::to_string(&Category::InvalidInput).unwrap();
        assert_eq!(json, "\"invalid_input\"");
        let back: Category = serde_json::from_str("\"transient\"").unwrap();
        assert_eq!(back, Category::Transient);
        assert!(serde_json::from_str::<Category>("\"maybe\"").is_err());
    }
}
