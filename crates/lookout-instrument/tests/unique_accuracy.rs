//! HyperLogLog distinct counting: accuracy from 10k to 1M values, windows rolling over, memory
//! bound, and the gauges it exports.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lookout_exposition::{Format, parse_samples};
use lookout_instrument::{ManualClock, Metrics, UniqueCounter, UniqueCounterConfig};

const DAY: Duration = Duration::from_secs(86_400);

fn start() -> SystemTime {
    UNIX_EPOCH + DAY * 19_000
}

fn dau_mau(clock: &Arc<ManualClock>) -> UniqueCounter {
    UniqueCounter::new(
        UniqueCounterConfig::new()
            .daily("dau", "Daily.")
            .monthly("mau", "Monthly.")
            .clock(clock.clone()),
    )
    .expect("config")
}

fn rel_error(estimate: f64, truth: usize) -> f64 {
    (estimate - truth as f64).abs() / truth as f64
}

#[test]
fn error_below_two_percent_from_10k_to_1m() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut worst: f64 = 0.0;
    for (set, n) in [10_000usize, 30_000, 100_000, 300_000, 1_000_000]
        .into_iter()
        .enumerate()
    {
        let c = dau_mau(&clock);
        for i in 0..n {
            let id = format!("set{set}-user-{i}");
            c.observe(id.as_str());
            if i.is_multiple_of(3) {
                c.observe(id.as_str()); // repeat logins do not count
            }
        }
        for (name, est) in c.estimates() {
            let err = rel_error(est, n);
            println!("n={n} {name}: estimate {est} error {:.3}%", err * 100.0);
            worst = worst.max(err);
            assert!(err < 0.02, "n={n} {name} estimate {est}");
        }
        assert!(c.heap_bytes() <= c.max_heap_bytes());
    }
    println!("worst relative error {:.3}%", worst * 100.0);
}

#[test]
fn numeric_ids_are_accurate_too() {
    let clock = Arc::new(ManualClock::new(start()));
    let c = dau_mau(&clock);
    for i in 0..250_000u64 {
        c.observe(&i);
    }
    let est = c.estimate("dau").expect("window");
    assert!(rel_error(est, 250_000) < 0.02, "{est}");
}

#[test]
fn windows_slide_over_a_month_of_traffic() {
    // 40 days; each day 5 000 users of whom 2 000 are regulars seen every day.
    let clock = Arc::new(ManualClock::new(start()));
    let c = dau_mau(&clock);
    for day in 0..40u32 {
        for hour in 0..24u32 {
            clock.set(start() + DAY * day + Duration::from_secs(u64::from(hour) * 3600));
            for u in 0..(5_000 / 24 + 1) {
                let idx = hour * (5_000 / 24 + 1) + u;
                if idx >= 5_000 {
                    break;
                }
                if idx < 2_000 {
                    c.observe(&format!("regular-{idx}"));
                } else {
                    c.observe(&format!("day{day}-visitor-{idx}"));
                }
            }
        }
        // End of day: the 24-hour window holds exactly this day's 5 000 users.
        let dau = c.estimate("dau").expect("dau");
        assert!(rel_error(dau, 5_000) < 0.02, "day {day}: dau {dau}");
        // The 30-day window: regulars plus 3 000 visitors for each of the last min(day+1, 30) days.
        let days = (day + 1).min(30) as usize;
        let truth = 2_000 + 3_000 * days;
        let mau = c.estimate("mau").expect("mau");
        assert!(
            rel_error(mau, truth) < 0.02,
            "day {day}: mau {mau} truth {truth}"
        );
        assert!(c.heap_bytes() <= c.max_heap_bytes());
    }
    // Nobody for a while: both windows empty out and give their memory back.
    clock.set(start() + DAY * 80);
    assert_eq!(c.estimate("dau"), Some(0.0));
    assert_eq!(c.estimate("mau"), Some(0.0));
    assert!(c.heap_bytes() < 4096, "{}", c.heap_bytes());
}

#[test]
fn memory_is_bounded_whatever_the_traffic() {
    let clock = Arc::new(ManualClock::new(start()));
    let c = dau_mau(&clock);
    // 54 slots × 16 KiB dense registers plus slot headers.
    assert!(c.max_heap_bytes() < 1024 * 1024, "{}", c.max_heap_bytes());
    for hour in 0..(24 * 31) {
        clock.set(start() + Duration::from_secs(hour * 3600));
        for i in 0..3_000u64 {
            c.observe(&(hour * 1_000_000 + i));
        }
        assert!(c.heap_bytes() <= c.max_heap_bytes());
    }
}

#[test]
fn exported_as_gauges() {
    let clock = Arc::new(ManualClock::new(start()));
    let mut metrics = Metrics::without_process_metrics();
    let active = metrics
        .unique_counter(
            UniqueCounterConfig::new()
                .daily("users_daily_active", "Distinct users in the last 24 hours.")
                .monthly(
                    "users_monthly_active",
                    "Distinct users in the last 30 days.",
                )
                .clock(clock.clone()),
        )
        .expect("registers");
    let chat = metrics
        .unique_counter(
            UniqueCounterConfig::new()
                .daily(
                    "chat_daily_active_users",
                    "Distinct chat users in the last 24 hours.",
                )
                .clock(clock.clone()),
        )
        .expect("registers");
    assert!(
        metrics
            .unique_counter(UniqueCounterConfig::new().daily("users_daily_active", "again"))
            .is_err()
    );
    let exporter = metrics.exporter();
    for u in ["alice", "bob", "alice", "carol"] {
        active.observe(u);
    }
    chat.observe("alice");
    clock.advance(DAY * 2);
    active.observe("dave");
    let text = exporter.render(Format::PrometheusText).expect("renders");
    let text = String::from_utf8(text).expect("utf-8");
    assert!(
        text.contains("# TYPE users_daily_active gauge\nusers_daily_active 1\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE users_monthly_active gauge\nusers_monthly_active 4\n"),
        "{text}"
    );
    assert!(text.contains("chat_daily_active_users 0\n"), "{text}");
    let om = exporter.render(Format::OpenMetrics).expect("renders");
    let samples = parse_samples(&om, Format::OpenMetrics).expect("strict OpenMetrics");
    assert_eq!(samples.len(), 3);
}
