//! The lock-free budget against a plain reference model: a list of timestamped events.

use std::time::Duration;

use palisade_retry::{BudgetConfig, RetryBudget};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Deposit,
    Withdraw,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Deposit),
        3 => Just(Op::Withdraw),
        1 => (0u64..3_000).prop_map(Op::Advance),
    ]
}

/// Deposits and successful withdrawals with the time they happened; an event counts
/// while it lies in the last ten slots of `ttl / 10`.
struct Model {
    slot_ms: u64,
    reserve: i64,
    deposit: i64,
    events: Vec<(u64, bool)>,
}

impl Model {
    fn balance(&self, now_ms: u64) -> i64 {
        let now = now_ms / self.slot_ms;
        self.events
            .iter()
            .filter(|(t, _)| now - t / self.slot_ms < 10)
            .map(|(_, is_deposit)| if *is_deposit { self.deposit } else { -1000 })
            .sum::<i64>()
            + self.reserve
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn budget_matches_the_model(
        ttl_s in 1u64..=5,
        min_per_sec in 0u32..3,
        ratio_pct in 0u32..=100,
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let ratio = f64::from(ratio_pct) / 100.0;
            let budget = RetryBudget::new(BudgetConfig {
                ttl: Duration::from_secs(ttl_s),
                min_per_sec,
                ratio,
            })
            .unwrap();
            let mut model = Model {
                slot_ms: ttl_s * 100,
                reserve: i64::from(min_per_sec) * ttl_s as i64 * 1000,
                deposit: i64::from(ratio_pct) * 10,
                events: Vec::new(),
            };
            let mut now_ms = 0;
            for op in ops {
                match op {
                    Op::Deposit => {
                        budget.deposit();
                        model.events.push((now_ms, true));
                    }
                    Op::Withdraw => {
                        let expected = model.balance(now_ms) >= 1000;
                        prop_assert_eq!(budget.withdraw(), expected, "at {} ms", now_ms);
                        if expected {
                            model.events.push((now_ms, false));
                        }
                    }
                    Op::Advance(ms) => {
                        tokio::time::advance(Duration::from_millis(ms)).await;
                        now_ms += ms;
                    }
                }
                prop_assert_eq!(
                    budget.remaining() as i64,
                    model.balance(now_ms).max(0) / 1000
                );
            }
            Ok(())
        })?;
    }
}
