//! Issue 22's shapes, every contender in the same run (`benches/in_memory.rs`'s shapes):
//! * `pair_16B`: one thread, push then pop of a 16-byte item cloned from a 16-byte template,
//!   direct (monomorphized) calls;
//! * `handoff_16B_NxN`, N = 1, 4, 16: N pusher threads hand 16-byte items to N popper threads
//!   (`iter_custom` + `Barrier`, threads spawned per sample as in `in_memory.rs`); time per item.
//!
//! `cargo bench -p handoff-experiments --bench handoff`; one run is one round.

#[cfg(handoff_loom)]
fn main() {}

#[cfg(not(handoff_loom))]
criterion::criterion_main!(bench::benches);

/// The bench itself (not built under the loom cfg, which has no contenders but the publish
/// design's).
#[cfg(not(handoff_loom))]
mod bench {
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, Instant};

    use criterion::{Criterion, criterion_group};
    use handoff_experiments::{CAPACITY, Contender, baselines, combining, contenders, elimination};
    use handoff_experiments::{PublishChannel, PublishLocked, locked};

    const TEMPLATE: [u8; 16] = *b"lifostore-item16";

    fn pair_one<C: Contender>(
        g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        name: &str,
        c: C,
    ) {
        let template = TEMPLATE.to_vec();
        g.bench_function(name, |b| {
            b.iter(|| {
                c.push(template.clone());
                c.pop()
            })
        });
    }

    fn pair_16b(c: &mut Criterion) {
        let mut g = c.benchmark_group("pair_16B");
        pair_one(&mut g, "bare_stack", baselines::BareStack::default());
        pair_one(&mut g, "lifostore", baselines::Lifo::default());
        pair_one(
            &mut g,
            "model",
            locked::Locked::<{ locked::ENGINE }>::new(CAPACITY),
        );
        pair_one(
            &mut g,
            "model_noyield",
            locked::Locked::<{ locked::NO_YIELD }>::new(CAPACITY),
        );
        pair_one(
            &mut g,
            "model_spinlock",
            locked::Locked::<{ locked::SPIN_LOCK }>::new(CAPACITY),
        );
        pair_one(
            &mut g,
            "model_spinlong",
            locked::Locked::<{ locked::SPIN_LONG }>::new(CAPACITY),
        );
        pair_one(&mut g, "combining", combining::Combining::new(CAPACITY));
        pair_one(
            &mut g,
            "elimination",
            elimination::Elimination::new(CAPACITY),
        );
        pair_one(&mut g, "publish_chan", PublishChannel::new(CAPACITY));
        pair_one(&mut g, "publish_lock", PublishLocked::new(CAPACITY));
        g.finish();
    }

    /// `pairs` pushers and `pairs` poppers hand over `items` (a multiple of `pairs`) 16-byte
    /// items; the time from the start barrier to the last join.
    fn hand_off(s: &Arc<dyn Contender>, pairs: u64, items: u64) -> Duration {
        let per = items / pairs;
        let barrier = Arc::new(Barrier::new(2 * pairs as usize + 1));
        let mut threads = Vec::new();
        for _ in 0..pairs {
            let (s1, b1) = (s.clone(), barrier.clone());
            threads.push(std::thread::spawn(move || {
                let template = TEMPLATE.to_vec();
                b1.wait();
                for _ in 0..per {
                    s1.push(template.clone());
                }
            }));
            let (s2, b2) = (s.clone(), barrier.clone());
            threads.push(std::thread::spawn(move || {
                b2.wait();
                for _ in 0..per {
                    std::hint::black_box(s2.pop());
                }
            }));
        }
        barrier.wait();
        let start = Instant::now();
        for t in threads {
            t.join().expect("bench thread");
        }
        start.elapsed()
    }

    fn hand_offs(c: &mut Criterion) {
        for pairs in [1u64, 4, 16] {
            let mut g = c.benchmark_group(format!("handoff_16B_{pairs}x{pairs}"));
            for (name, s) in contenders() {
                g.bench_function(name, |b| {
                    b.iter_custom(|iters| {
                        let items = iters.max(pairs).div_ceil(pairs) * pairs;
                        hand_off(&s, pairs, items).mul_f64(iters as f64 / items as f64)
                    })
                });
            }
            g.finish();
        }
    }

    criterion_group! {
        name = benches;
        config = Criterion::default()
            .sample_size(30)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        targets = pair_16b, hand_offs
    }
}
