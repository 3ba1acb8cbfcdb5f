//! A property test: random sequences of outcomes and pauses, against a plain,
//! obviously-correct model of the state machine.

mod support;

use std::collections::VecDeque;
use std::time::Duration;

use palisade_breaker::{BreakerConfig, State, Window};
use proptest::prelude::*;
use support::{Act, deterministic, guarded, send};

#[derive(Clone, Copy, Debug)]
enum Op {
    Call(Act),
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => Just(Op::Call(Act::Ok)),
        4 => Just(Op::Call(Act::Fail)),
        1 => Just(Op::Call(Act::BadInput)),
        2 => (0u64..3_000).prop_map(Op::Wait),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Params {
    consecutive: Option<u32>,
    rate: Option<f64>,
    window: u32,
    minimum: u32,
    successes: u32,
}

fn params() -> impl Strategy<Value = Params> {
    (
        prop::option::of(1u32..6),
        prop::option::of(prop_oneof![Just(0.25), Just(0.5), Just(1.0)]),
        1u32..12,
        0u32..8,
        1u32..4,
    )
        .prop_map(|(consecutive, rate, window, minimum, successes)| Params {
            consecutive,
            rate,
            window,
            minimum,
            successes,
        })
}

const OPEN_MS: u64 = 1_000;
const MAX_OPEN_MS: u64 = 4_000;

/// The model: the breaker's rules written as directly as possible.
struct Model {
    p: Params,
    state: State,
    consecutive: u32,
    window: VecDeque<bool>,
    now: u64,
    open_until: u64,
    trips: u32,
    probe_successes: u32,
}

impl Model {
    fn new(p: Params) -> Self {
        Self {
            p,
            state: State::Closed,
            consecutive: 0,
            window: VecDeque::new(),
            now: 0,
            open_until: 0,
            trips: 0,
            probe_successes: 0,
        }
    }

    fn open(&mut self) {
        let ms = (OPEN_MS << self.trips.min(10)).min(MAX_OPEN_MS);
        self.trips += 1;
        self.open_until = self.now + ms;
        self.state = State::Open;
    }

    /// Returns whether the call was admitted.
    fn call(&mut self, act: Act) -> bool {
        if self.state == State::Open {
            if self.now < self.open_until {
                return false;
            }
            self.state = State::HalfOpen;
            self.probe_successes = 0;
        }
        if self.state == State::HalfOpen {
            match act {
                Act::Ok => {
                    self.probe_successes += 1;
                    if self.probe_successes >= self.p.successes {
                        self.state = State::Closed;
                        self.trips = 0;
                        self.consecutive = 0;
                        self.window.clear();
                    }
                }
                Act::Fail => self.open(),
                _ => {}
            }
            return true;
        }
        match act {
            Act::Ok => {
                self.consecutive = 0;
                self.push(false);
            }
            Act::Fail => {
                self.consecutive += 1;
                self.push(true);
                let calls = self.window.len() as f64;
                let fails = self.window.iter().filter(|f| **f).count() as f64;
                let by_count = self.p.consecutive.is_some_and(|n| self.consecutive >= n);
                let by_rate = self.window.len() as u32 >= self.p.minimum
                    && self.p.rate.is_some_and(|r| fails / calls >= r);
                if by_count || by_rate {
                    self.open();
                }
            }
            _ => {}
        }
        true
    }

    fn push(&mut self, failed: bool) {
        self.window.push_back(failed);
        if self.window.len() > self.p.window as usize {
            self.window.pop_front();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn breaker_matches_the_model(p in params(), ops in prop::collection::vec(op(), 1..120)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let config = BreakerConfig::new()
                .consecutive_failures(p.consecutive)
                .failure_rate(p.rate)
                .window(Window::Count { calls: p.window })
                .minimum_calls(p.minimum)
                .open_duration(Duration::from_millis(OPEN_MS))
                .open_backoff(2.0)
                .max_open_duration(Duration::from_millis(MAX_OPEN_MS))
                .open_jitter(0.0)
                .half_open_max_calls(1)
                .half_open_successes(p.successes);
            let layer = deterministic().config(config).build().unwrap();
            let h = layer.handle();
            let (svc, _) = guarded(&layer);
            let mut model = Model::new(p);
            for (i, op) in ops.iter().enumerate() {
                match *op {
                    Op::Wait(ms) => {
                        tokio::time::advance(Duration::from_millis(ms)).await;
                        model.now += ms;
                    }
                    Op::Call(act) => {
                        let admitted = model.call(act);
                        let got = send(&svc, act).await;
                        prop_assert_eq!(got != Err(true), admitted, "op {} {:?}", i, op);
                        prop_assert_eq!(h.state(), model.state, "after op {} {:?}", i, op);
                    }
                }
            }
            Ok(())
        })?;
    }
}
