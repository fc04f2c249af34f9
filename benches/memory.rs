//! Memory: bytes of overhead per buffered item, from the process's resident memory
//! (/proc/self/statm) before and after buffering. Prints one line; `--test` runs it on fewer
//! items. (No counting allocator: that would need `unsafe`, which this project does not use.)

use std::time::Duration;

use lifostore::{CancelToken, MemDb, Storage};

fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    let items: usize = if std::env::args().any(|a| a == "--test") {
        1_000
    } else {
        1_000_000
    };
    let storage = Storage::builder()
        .max_unflushed_age(Duration::from_secs(3600))
        // The flusher writes early from half full, woken by the push that gets there: keep
        // the items below a quarter of the capacity so none of them is written meanwhile.
        .max_buffered_items(4 * items)
        .build(MemDb::new())
        .unwrap();
    let token = CancelToken::new();
    // One flushed item teaches the storage the Db's speed, lifting the slow-start capacity, so
    // nothing below is written early.
    storage.push(&token, vec![0u8]).expect("push");
    storage.flush(&token).expect("flush");
    // Payloads are allocated (and touched) before the first reading: what grows after it is
    // the stack's own bookkeeping per item.
    let mut payloads: Vec<Vec<u8>> = (0..items).map(|_| vec![7u8; 100]).collect();
    let before = resident_bytes();
    // `drain` keeps the payload vector's own buffer allocated, so freeing it cannot hide
    // part of the growth.
    for p in payloads.drain(..) {
        storage.push(&token, p).expect("push");
    }
    let after = resident_bytes();
    assert_eq!(storage.stats().buffered_items, items);
    match (before, after) {
        (Some(b), Some(a)) => println!(
            "memory: {items} buffered 100-byte items: {:.1} bytes of overhead per item \
             (resident growth, payload excluded; an Entry is {} bytes)",
            (a - b) as f64 / items as f64,
            std::mem::size_of::<(u64, std::time::Instant, Vec<u8>)>()
        ),
        _ => println!("memory: /proc/self/statm not readable here"),
    }
}
