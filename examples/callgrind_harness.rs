//! Runs `N` calls of one named case from `benches/common/stacks.rs`, for
//! `valgrind --tool=callgrind` to count instructions (see `benches/callgrind.sh`).
//!
//! ```sh
//! cargo build --release --features full --example callgrind_harness
//! valgrind --tool=callgrind target/release/examples/callgrind_harness palisade 10000
//! ```
//!
//! Cases: `bare`, each Palisade layer alone (`ratelimit`, `error_budget`, `deadline`,
//! `bulkhead`, `retry`, `breaker`), the full stack (`palisade`), tower's built-ins
//! (`tower_ratelimit`, `tower_timeout`, `tower_concurrency`, `tower_retry`) and their
//! stack (`tower`). The Prometheus recorder is installed, as in a real service.
//! Run each case at two call counts and take the difference: the set-up cancels out.

#[path = "../benches/common/stacks.rs"]
mod stacks;

#[path = "../benches/common/harness.rs"]
mod harness;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(case), Some(calls)) = (args.next(), args.next()) else {
        eprintln!(
            "usage: callgrind_harness <case> <calls>\ncases: {}",
            stacks::CASES.join(", ")
        );
        return ExitCode::from(2);
    };
    let calls: u64 = match calls.parse() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("calls: {calls:?} is not a count of calls: {e}");
            return ExitCode::from(2);
        }
    };
    let (_prometheus, rt) = match harness::setup() {
        Ok(set) => set,
        Err(code) => return code,
    };
    let _guard = rt.enter();
    let palisade = stacks::Palisade::new();
    let tower = stacks::Tower::new();
    if !stacks::run_case(&case, &palisade, &tower, calls) {
        eprintln!(
            "case: unknown case {case:?}; known: {}",
            stacks::CASES.join(", ")
        );
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
