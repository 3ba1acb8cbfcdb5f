//! The live view (every second) and the summary at the end.
//!
//! On a terminal it is an `indicatif` bar with a few lines of figures under it; when
//! stdout is not a terminal (CI, a pipe) it prints one plain line per second instead.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::backend::Backend;
use crate::load::{LoadStats, Outcome};
use crate::stack::Handles;

/// The window of the burn rate shown.
const BURN_WINDOW: Duration = Duration::from_secs(60);

/// What the view reads.
pub(crate) struct Sources {
    pub(crate) handles: Handles,
    pub(crate) backend: Backend,
    pub(crate) load: Option<Arc<LoadStats>>,
    /// The run's length; `None`: until a signal.
    pub(crate) duration: Option<Duration>,
}

/// Latencies over the whole run, kept by the view from the driver's intervals.
pub(crate) struct Totals {
    pub(crate) latencies: Histogram<u64>,
    pub(crate) elapsed: Duration,
}

enum Out {
    Bar(ProgressBar),
    Plain,
}

/// Refreshes the view every second until `stop` turns true; returns the run's
/// latencies for the summary.
pub(crate) async fn run_view(src: &Sources, mut stop: watch::Receiver<bool>) -> Totals {
    let start = Instant::now();
    let out = if std::io::stdout().is_terminal() {
        let bar = match src.duration {
            Some(d) => ProgressBar::new(d.as_secs().max(1)),
            None => ProgressBar::new_spinner(),
        };
        bar.set_draw_target(ProgressDrawTarget::stdout());
        let template = if src.duration.is_some() {
            "{spinner:.green} {elapsed_precise} [{bar:40.cyan/blue}] {pos}/{len}s\n{msg}"
        } else {
            "{spinner:.green} {elapsed_precise} serving until Ctrl-C\n{msg}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Out::Bar(bar)
    } else {
        Out::Plain
    };
    let mut totals = Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!("valid precision"));
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut prev_ok = 0;
    loop {
        tokio::select! {
            biased;
            r = stop.wait_for(|s| *s) => { let _ = r; break; }
            _ = tick.tick() => {}
        }
        let interval = src.load.as_ref().map(|l| l.take_interval());
        if let Some(h) = &interval {
            let _ = totals.add(h);
        }
        let elapsed = start.elapsed();
        match &out {
            Out::Bar(bar) => {
                bar.set_position(elapsed.as_secs());
                bar.set_message(panel(src, interval.as_ref(), &mut prev_ok));
            }
            Out::Plain => println!("{}", line(src, elapsed, interval.as_ref())),
        }
    }
    if let Some(l) = &src.load {
        let _ = totals.add(l.take_interval());
    }
    if let Out::Bar(bar) = out {
        bar.finish_and_clear();
    }
    Totals {
        latencies: totals,
        elapsed: start.elapsed(),
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

/// The budget left, as text ("87.5 % left", or "exhausted, 3.2x spent"), and the burn rate.
fn budget_figures(h: &Handles) -> (String, f64) {
    let remaining = h.budget.remaining();
    let text = if remaining >= 0.0 {
        format!("{:.1} % left", remaining * 100.0)
    } else {
        format!("exhausted, {:.1}x spent", h.budget.consumed())
    };
    (text, h.budget.burn_rate(BURN_WINDOW))
}

fn rejected(h: &Handles) -> u64 {
    h.breaker.stats().rejected + h.bulkhead.rejections().total()
}

fn breaker_text(h: &Handles) -> String {
    let s = h.breaker.stats();
    match s.open_remaining {
        Some(left) => format!("{} ({:.1}s left)", s.state.as_str(), left.as_secs_f64()),
        None => s.state.as_str().to_owned(),
    }
}

/// The multi-line panel under the bar.
fn panel(src: &Sources, interval: Option<&Histogram<u64>>, prev_ok: &mut u64) -> String {
    let h = &src.handles;
    let lim = h.limiter.stats();
    let (remaining, burn) = budget_figures(h);
    let mut s = String::with_capacity(512);
    let phase = src.backend.phase().map_or("manual", |(name, _)| name);
    let _ = writeln!(
        s,
        "  backend   {phase:<14} breaker {:<22} in flight {:>3}/{}",
        breaker_text(h),
        h.bulkhead.in_flight(),
        h.bulkhead.limit()
    );
    let _ = writeln!(
        s,
        "  server    admitted {:>7}  limited {:>6}  rejected {:>6}  retries {:>6}",
        lim.admitted + lim.waited + lim.fail_open,
        lim.limited + lim.fail_closed,
        rejected(h),
        h.retries.get()
    );
    if let Some(load) = &src.load {
        let o = load.outcomes();
        let mut counts = String::new();
        for (outcome, n) in Outcome::ALL.iter().zip(o) {
            let _ = write!(counts, "{}={n:<7} ", outcome.label());
        }
        let ok_rate = o[0] - *prev_ok;
        *prev_ok = o[0];
        let _ = writeln!(s, "  clients   {counts} ok/s {ok_rate}");
    }
    if let Some(i) = interval.filter(|i| !i.is_empty()) {
        let _ = writeln!(
            s,
            "  latency   p50 {:>8.1} ms   p99 {:>8.1} ms   (last second, all answers)",
            ms(i.value_at_quantile(0.5)),
            ms(i.value_at_quantile(0.99))
        );
    }
    let _ = write!(
        s,
        "  budget    {remaining} (SLO {:.0} %)   burn rate (1 min) {burn:.2}",
        h.budget.target() * 100.0
    );
    s
}

/// One plain line, for logs and pipes.
fn line(src: &Sources, elapsed: Duration, interval: Option<&Histogram<u64>>) -> String {
    let h = &src.handles;
    let lim = h.limiter.stats();
    let (remaining, burn) = budget_figures(h);
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "[{:>4}s] phase={} breaker={} admitted={} limited={} rejected={} retries={}",
        elapsed.as_secs(),
        src.backend.phase().map_or("manual", |(name, _)| name),
        h.breaker.state().as_str(),
        lim.admitted + lim.waited + lim.fail_open,
        lim.limited + lim.fail_closed,
        rejected(h),
        h.retries.get()
    );
    if let Some(load) = &src.load {
        for (outcome, n) in Outcome::ALL.iter().zip(load.outcomes()) {
            let _ = write!(s, " {}={n}", outcome.label());
        }
    }
    if let Some(i) = interval.filter(|i| !i.is_empty()) {
        let _ = write!(
            s,
            " p50={:.1}ms p99={:.1}ms",
            ms(i.value_at_quantile(0.5)),
            ms(i.value_at_quantile(0.99))
        );
    }
    let _ = write!(s, " budget=\"{remaining}\" burn={burn:.2}");
    s
}

/// The summary printed when the demo ends.
pub(crate) fn summary(src: &Sources, totals: &Totals) -> String {
    let h = &src.handles;
    let lim = h.limiter.stats();
    let br = h.breaker.stats();
    let (remaining, burn) = budget_figures(h);
    let (calls, injected) = src.backend.counts();
    let mut s = String::with_capacity(1024);
    let _ = writeln!(s, "summary after {:.1}s:", totals.elapsed.as_secs_f64());
    if let Some(load) = &src.load {
        let o = load.outcomes();
        let sent: u64 = o.iter().sum();
        let _ = write!(s, "  load       {sent} calls:");
        for (outcome, n) in Outcome::ALL.iter().zip(o) {
            let _ = write!(s, " {}={n}", outcome.label());
        }
        let _ = writeln!(s, " (skipped at the in-flight cap: {})", load.skipped());
        let l = &totals.latencies;
        if !l.is_empty() {
            let _ = writeln!(
                s,
                "  latency    p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                ms(l.value_at_quantile(0.5)),
                ms(l.value_at_quantile(0.9)),
                ms(l.value_at_quantile(0.99)),
                ms(l.max())
            );
        }
    } else {
        let _ = writeln!(s, "  load       none (--no-load)");
    }
    let _ = writeln!(
        s,
        "  limiter    admitted {}  limited {}",
        lim.admitted + lim.waited + lim.fail_open,
        lim.limited + lim.fail_closed
    );
    let _ = writeln!(
        s,
        "  breaker    {} now; {} calls, {} failures, {} refused while open",
        br.state.as_str(),
        br.calls,
        br.failures,
        br.rejected
    );
    let _ = writeln!(
        s,
        "  bulkhead   {} refused",
        h.bulkhead.rejections().total()
    );
    let _ = writeln!(
        s,
        "  retries    {}   backend calls {calls}, failed on purpose {injected}",
        h.retries.get()
    );
    let _ = write!(
        s,
        "  budget     {remaining} (SLO {:.0} %); {} good, {} bad; burn rate (1 min) {burn:.2}",
        h.budget.target() * 100.0,
        h.budget.good(),
        h.budget.bad()
    );
    s
}
