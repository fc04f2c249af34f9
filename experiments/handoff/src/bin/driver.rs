//! One contender, one shape, for `perf stat`: `driver <contender> <pairs> <items>` hands
//! `items` 16-byte items from `pairs` pushers to `pairs` poppers (pairs = 0: the one-thread
//! pair, push then pop) and prints ns per item. Context switches per item are
//! `perf stat -e context-switches` over this process divided by `items`.

/// Under the loom cfg the contenders are not built.
#[cfg(handoff_loom)]
fn main() {}

#[cfg(not(handoff_loom))]
fn main() {
    use handoff_experiments::contenders;
    use std::time::Instant;

    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("pair-rounds") {
        return pair_rounds(&args);
    }
    let usage = "usage: driver <contender> <pairs> <items> | driver pair-rounds <rounds> <pairs>";
    let name = args.get(1).expect(usage);
    let pairs: u64 = args.get(2).and_then(|a| a.parse().ok()).expect(usage);
    let items: u64 = args.get(3).and_then(|a| a.parse().ok()).expect(usage);
    let (_, c) = contenders()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no contender {name}"));
    let start = Instant::now();
    match items.checked_div(pairs) {
        Some(per) => hand_off(&c, pairs, per),
        None => {
            let template = TEMPLATE.to_vec();
            for _ in 0..items {
                c.push(template.clone());
                std::hint::black_box(c.pop());
            }
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / items as f64;
    println!("{name} {pairs} {items} {ns:.1}");
}

#[cfg(not(handoff_loom))]
const TEMPLATE: [u8; 16] = *b"lifostore-item16";

/// `pairs` pushers hand `per` items each to `pairs` poppers.
#[cfg(not(handoff_loom))]
fn hand_off(c: &std::sync::Arc<dyn handoff_experiments::Contender>, pairs: u64, per: u64) {
    use std::sync::{Arc, Barrier};
    let barrier = Arc::new(Barrier::new(2 * pairs as usize));
    let mut threads = Vec::new();
    for _ in 0..pairs {
        let (s1, b1) = (c.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            let template = TEMPLATE.to_vec();
            b1.wait();
            for _ in 0..per {
                s1.push(template.clone());
            }
        }));
        let (s2, b2) = (c.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            b2.wait();
            for _ in 0..per {
                std::hint::black_box(s2.pop());
            }
        }));
    }
    for t in threads {
        t.join().expect("driver thread");
    }
}

/// `driver pair-rounds R N`: R rounds; in each, N pairs (push then pop, one thread, static
/// calls) of every stack in turn, in one process; prints ns per pair per round.
#[cfg(not(handoff_loom))]
fn pair_rounds(args: &[String]) {
    use handoff_experiments::{CAPACITY, Contender, PublishChannel, PublishLocked};
    use handoff_experiments::{baselines, elimination, locked};
    fn run<C: Contender>(c: &C, n: u64) -> f64 {
        let template = TEMPLATE.to_vec();
        let start = std::time::Instant::now();
        for _ in 0..n {
            c.push(template.clone());
            std::hint::black_box(c.pop());
        }
        start.elapsed().as_nanos() as f64 / n as f64
    }
    let rounds: u32 = args.get(2).and_then(|a| a.parse().ok()).expect("rounds");
    let n: u64 = args.get(3).and_then(|a| a.parse().ok()).expect("pairs");
    let bare = baselines::BareStack::default();
    let lifo = baselines::Lifo::default();
    let model = locked::Locked::<{ locked::ENGINE }>::new(CAPACITY);
    let spinlong = locked::Locked::<{ locked::SPIN_LONG }>::new(CAPACITY);
    let elim = elimination::Elimination::new(CAPACITY);
    let plock = PublishLocked::new(CAPACITY);
    let pchan = PublishChannel::new(CAPACITY);
    println!(
        "round bare_stack lifostore model model_spinlong elimination publish_lock publish_chan"
    );
    for r in 0..rounds {
        println!(
            "{r} {:.1} {:.1} {:.1} {:.1} {:.1} {:.1} {:.1}",
            run(&bare, n),
            run(&lifo, n),
            run(&model, n),
            run(&spinlong, n),
            run(&elim, n),
            run(&plock, n),
            run(&pchan, n)
        );
    }
}
