//! A linearizability checker for lifostore histories: a history is accepted if and only if
//! some order of its operations that respects real time satisfies the sequential rules of the
//! storage (below). The real-time order is the only order used: an operation may take effect
//! at any instant inside its call, `[start, end]`; `a` must come before `b` only when `a`
//! returned before `b` began. Nothing else (thread scheduling, which call "looked" first) is
//! assumed, so a test using this checker does not need the scheduler to be kind.
//!
//! # The sequential model
//!
//! The state is a stack of items (one stack across memory, in-flight batch and Db: promise 1
//! says pop takes the newest item wherever it is) and a set of leases, each `NotTaken`,
//! `Held`, or ended (`Acked`, `Released`, `Expired`).
//!
//! | call (as the test saw it return) | effect, atomically at one instant inside the call |
//! |---|---|
//! | `Push(ids)` (push, push_batch: `Ok`) | the ids go on top in order, the last on top |
//! | `Refused(ids)` (a push that failed) | nothing: these ids must never be seen anywhere |
//! | `Pop(got)` (pop, pop_batch, try_pop, try_pop_batch: items) | the top `got.len()` items are exactly `got`, newest first; they leave |
//! | `Empty` (try_pop, try_pop_batch, try_pop_lease: nothing) | the stack is empty (leased items do not count) |
//! | `Lease { id, lease }` (pop_lease, try_pop_lease) | `id` is the top; it leaves the stack and `lease` is `Held` |
//! | `Ack { lease, Ok }` | `lease` is `Held`: now `Acked`, the item is gone for good |
//! | `Ack { lease, Expired }` (`LeaseExpired`) | `lease` is `Expired` already |
//! | `Ack { lease, Failed }` (the Db failed) | nothing: the lease stays as it is (the Db keeps it until it expires) |
//! | `Release { lease }` (release or drop) | `Held`: `Released`, its item back **on top**; already `Expired`: nothing. With [`Model::releases_may_fail`] also: nothing, the lease stays `Held` (a release the Db failed; the item comes back when the lease expires) |
//! | `Drain { items, leased }` (what the Db holds at the end, after `close`: its stack, newest first, and the items it still holds leased) | the leases still `Held` are exactly those on `leased` (a Db keeps a lease whose release failed until its deadline; every other lease must have ended); the stack is exactly `items`; they leave |
//!
//! plus one step that no call makes: **expiry** of a `Held` lease: `Expired`, its item back on
//! top. Its instant is only known to lie in an interval:
//! * not before `lease call start + ttl - clock_slack` ([`Model`]): every deadline lifostore
//!   sets for a lease is `ttl` after an instant inside the lease call (the engine stamps a
//!   memory lease under its lock, a native Db lease from the instant its Db call began; a Db's
//!   own deadline is later still, stamped in wall-clock milliseconds rounded down, hence the
//!   slack);
//! * and, unless [`Model::releases_may_fail`], before any pop, lease, empty answer or drain
//!   that begins after `lease call end + ttl`: every pop returns the leases past their
//!   deadline before it looks at the stack (the engine's deadline is at most that instant),
//!   so an expired item is on top for any pop that begins after it. A Db that fails the
//!   return keeps the lease until its own later deadline, so with failures there is no upper
//!   bound.
//!
//! Within the interval the checker may place the expiry anywhere, or nowhere if the lease ends
//! otherwise first (an ack, a release; the final `Drain` forces it, since only leases the Db
//! reports as still held may be `Held` at the end). Several expiries are separate steps, so
//! leases coming back together may come back in any order; each lands on top.
//!
//! What the model makes the checker reject, by construction: an item popped twice (it is no
//! longer in the stack), delivered again while its lease is held, or after an `Ok` ack; an ack
//! `Ok` whose lease had expired (the expiry would have to come after a redelivery that needed
//! it); a pop that skipped a newer item, or an `Empty` while an item was there; a released
//! item that does not come out on top; and, through `Drain`, anything lost (every item pushed
//! with `Ok` is popped, acked, or still in the Db at the end, exactly once).
//!
//! # The search
//!
//! Wing and Gong's search with Lowe's refinements, as Porcupine (Go) and Knossos (Clojure)
//! implement it: the calls and returns of every operation, sorted by time, form a doubly
//! linked list; the operations that may take effect next are those whose call comes before
//! the first return still in the list (no pending operation returned before they began), plus
//! the expiries whose bound that first return has passed. The search applies one, lifts it out
//! of the list, and recurses; on a dead end it backtracks (undoing the model step). Every
//! configuration reached (the set of operations done, the stack, every lease's state) is
//! remembered by a 128-bit hash, and a configuration seen before is not explored again
//! (Lowe's memoisation, Porcupine's cache): two orders of commuting operations meet there.
//!
//! Candidates are tried in an order that finds the linearization of a valid history with
//! little backtracking: observers first (a pop, lease, empty answer or ack is valid now or
//! not, by the state alone), then releases, then pushes, deepest first (the push whose items
//! leave the stack last goes first: for two concurrent pushes the history itself says which
//! item ended up below), expiries last (an expiry is only worth making when an observer needs
//! its item). The order changes nothing but the time: the search is complete.
//!
//! **Per-item checks first.** Before the search, each item's own operations are checked alone
//! (never pushed, pushed and refused, removed twice, lost, delivered before its push began,
//! delivered after its removal returned): these are necessary conditions, so they are sound
//! to check one item at a time, and they name the item in plain words. The stack order couples
//! items, so LIFO is left to the search over the whole history.
//!
//! **Sound, complete up to a budget.** The search is exact: it accepts exactly the histories
//! that have a linearization. LIFO histories can still make it exponential in the worst case
//! (linearizability checking is NP-complete in general), so it stops after
//! [`Model::max_steps`] steps and then **rejects** the history as undecided, saying so: it
//! never accepts a history it did not prove (hash collisions could only make it miss a
//! linearization, never invent one). The histories the tests generate take a few steps per
//! operation (the counts are printed); a history that exhausts the budget is reported with
//! its seed for a closer look.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

/// What a call did, as the test saw it return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `push` or `push_batch` returned `Ok`: the ids, oldest first.
    Push(Vec<u64>),
    /// A push that returned an error: none of these ids may be seen anywhere.
    Refused(Vec<u64>),
    /// `pop`, `pop_batch`, `try_pop` or `try_pop_batch` returned these items, newest first.
    Pop(Vec<u64>),
    /// `try_pop`, `try_pop_batch` or `try_pop_lease` returned nothing.
    Empty,
    /// `pop_lease` or `try_pop_lease` leased `id`; `lease` names the lease in later calls.
    Lease {
        /// The item.
        id: u64,
        /// The lease's name, unique in the history.
        lease: u64,
    },
    /// `Lease::ack` on `lease` returned `outcome`.
    Ack {
        /// The lease.
        lease: u64,
        /// What the ack returned.
        outcome: AckOutcome,
    },
    /// `Lease::release`, or a drop of the lease.
    Release {
        /// The lease.
        lease: u64,
    },
    /// What the Db held at the end, after `close`: its items, newest first, and the items it
    /// still holds under a lease (a release it failed; they come back at their deadline).
    Drain {
        /// The Db's stack, newest first.
        items: Vec<u64>,
        /// Items still leased in the Db, in any order.
        leased: Vec<u64>,
    },
}

/// What an ack returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// `Ok`: the item is gone for good.
    Ok,
    /// `Error::LeaseExpired`: the lease had expired.
    Expired,
    /// `Error::Db`: nothing happened; the lease stays held until it expires.
    Failed,
}

/// One call: what it did, when it began and returned, and on which thread (calls of one
/// thread never overlap; the checker keeps them in program order even when the clock gives
/// two of them the same instant).
#[derive(Debug, Clone)]
pub struct Event {
    /// What the call did.
    pub call: Call,
    /// Just before the call.
    pub start: Instant,
    /// Just after it returned.
    pub end: Instant,
    /// The calling thread (any number unique to it).
    pub thread: u64,
}

/// The storage's parameters the model needs.
#[derive(Debug, Clone)]
pub struct Model {
    /// The storage's `lease_ttl`: no lease expires before its call began plus this.
    pub ttl: Duration,
    /// Taken off the ttl bound: a Db stamps lease deadlines in wall-clock milliseconds,
    /// rounded down.
    pub clock_slack: Duration,
    /// A release may have done nothing (the Db failed it; the item comes back when the lease
    /// expires), and a return at the deadline may fail too (no upper bound on expiry). For Dbs
    /// that fail on purpose (`FaultyDb`).
    pub releases_may_fail: bool,
    /// Search steps before the history is rejected as undecided.
    pub max_steps: u64,
}

impl Model {
    /// A model for a storage with lease ttl `ttl` over a Db that does not fail.
    pub fn new(ttl: Duration) -> Self {
        Model {
            ttl,
            clock_slack: Duration::from_millis(1),
            releases_may_fail: false,
            max_steps: 20_000_000,
        }
    }

    /// Releases may fail (see [`Model::releases_may_fail`]).
    pub fn releases_may_fail(mut self) -> Self {
        self.releases_may_fail = true;
        self
    }
}

/// What an accepted history took.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Operations in the history (calls with an effect to place).
    pub ops: usize,
    /// Search steps (model steps applied, expiries included).
    pub steps: u64,
    /// Expiries the linearization found needed.
    pub expiries: usize,
}

/// Checks `events`; `Ok` with the search's figures if some real-time order satisfies the
/// model, else `Err` with a description of the first problem found.
pub fn check(events: &[Event], model: &Model) -> Result<Report, String> {
    let history = History::build(events, model)?;
    history.per_item_checks()?;
    Search::new(&history, model).run()
}

// ---- the history, indexed --------------------------------------------------------------

/// One operation of the search, with items and leases as dense indexes.
#[derive(Debug, Clone)]
enum Op {
    Push(Vec<u32>),
    Pop(Vec<u32>),
    Empty,
    Lease { item: u32, lease: u32 },
    Ack { lease: u32, outcome: AckOutcome },
    Release { lease: u32 },
    Drain { items: Vec<u32>, leased: Vec<u32> },
}

struct History {
    /// Operations (the `Refused` calls left out), with their interval in ns from the origin.
    ops: Vec<(Op, u64, u64)>,
    /// The source event of each op (for messages).
    source: Vec<usize>,
    events: Vec<Event>,
    /// Item index -> id.
    ids: Vec<u64>,
    /// Lease index -> (item index, earliest expiry in ns).
    leases: Vec<(u32, u64)>,
    /// Lease index -> the latest expiry in ns: observers beginning after it find the item back
    /// (`u64::MAX`: no bound).
    latest: Vec<u64>,
    /// Lease index -> lease name.
    lease_names: Vec<u64>,
    refused: HashSet<u64>,
}

impl History {
    fn build(events: &[Event], model: &Model) -> Result<History, String> {
        let origin = events
            .iter()
            .map(|e| e.start)
            .min()
            .unwrap_or_else(Instant::now);
        let ns = |t: Instant| t.saturating_duration_since(origin).as_nanos() as u64;
        // Program order: a thread's calls never overlap, even at the clock's resolution.
        let mut times: Vec<(u64, u64)> = events.iter().map(|e| (ns(e.start), ns(e.end))).collect();
        let mut by_thread: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            by_thread.entry(e.thread).or_default().push(i);
        }
        for list in by_thread.values_mut() {
            list.sort_by_key(|&i| (times[i].0, times[i].1));
            for w in 1..list.len() {
                let (prev, cur) = (list[w - 1], list[w]);
                if times[cur].0 <= times[prev].1 {
                    times[cur].0 = times[prev].1 + 1;
                    times[cur].1 = times[cur].1.max(times[cur].0);
                }
            }
        }
        let mut h = History {
            ops: Vec::new(),
            source: Vec::new(),
            events: events.to_vec(),
            ids: Vec::new(),
            leases: Vec::new(),
            latest: Vec::new(),
            lease_names: Vec::new(),
            refused: HashSet::new(),
        };
        let mut item_of: HashMap<u64, u32> = HashMap::new();
        let mut lease_of: HashMap<u64, u32> = HashMap::new();
        let mut item = |h: &mut History, id: u64| -> u32 {
            *item_of.entry(id).or_insert_with(|| {
                h.ids.push(id);
                (h.ids.len() - 1) as u32
            })
        };
        let bound = model.ttl.saturating_sub(model.clock_slack).as_nanos() as u64;
        // Leases first: acks and releases name them.
        for (i, e) in events.iter().enumerate() {
            if let Call::Lease { id, lease } = e.call {
                if lease_of.contains_key(&lease) {
                    return Err(format!("lease {lease} taken twice in the log"));
                }
                let it = item(&mut h, id);
                lease_of.insert(lease, h.leases.len() as u32);
                h.leases.push((it, times[i].0.saturating_add(bound)));
                let latest = if model.releases_may_fail {
                    u64::MAX
                } else {
                    times[i].1.saturating_add(model.ttl.as_nanos() as u64)
                };
                h.latest.push(latest);
                h.lease_names.push(lease);
            }
        }
        for (i, e) in events.iter().enumerate() {
            let lease = |name: u64| {
                lease_of
                    .get(&name)
                    .copied()
                    .ok_or_else(|| format!("an ack or release of lease {name}, never taken"))
            };
            let op = match &e.call {
                Call::Push(ids) => Op::Push(ids.iter().map(|&id| item(&mut h, id)).collect()),
                Call::Refused(ids) => {
                    h.refused.extend(ids);
                    continue;
                }
                Call::Pop(got) if got.is_empty() => Op::Empty,
                Call::Pop(got) => Op::Pop(got.iter().map(|&id| item(&mut h, id)).collect()),
                Call::Empty => Op::Empty,
                Call::Lease { lease: name, .. } => {
                    let l = lease(*name)?;
                    Op::Lease {
                        item: h.leases[l as usize].0,
                        lease: l,
                    }
                }
                Call::Ack {
                    lease: name,
                    outcome,
                } => Op::Ack {
                    lease: lease(*name)?,
                    outcome: *outcome,
                },
                Call::Release { lease: name } => Op::Release {
                    lease: lease(*name)?,
                },
                Call::Drain { items, leased } => Op::Drain {
                    items: items.iter().map(|&id| item(&mut h, id)).collect(),
                    leased: leased.iter().map(|&id| item(&mut h, id)).collect(),
                },
            };
            h.ops.push((op, times[i].0, times[i].1));
            h.source.push(i);
        }
        Ok(h)
    }

    /// The checks each item's own operations must pass whatever the others did: necessary
    /// conditions of the model, so rejecting on them is sound; their messages name the item.
    fn per_item_checks(&self) -> Result<(), String> {
        let n = self.ids.len();
        let mut pushes: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut deliveries: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut removals: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut left = vec![0usize; n];
        for (o, (op, _, _)) in self.ops.iter().enumerate() {
            match op {
                Op::Push(items) => items.iter().for_each(|&i| pushes[i as usize].push(o)),
                Op::Pop(items) => {
                    for &i in items {
                        deliveries[i as usize].push(o);
                        removals[i as usize].push(o);
                    }
                }
                Op::Lease { item, .. } => deliveries[*item as usize].push(o),
                Op::Ack {
                    lease,
                    outcome: AckOutcome::Ok,
                } => removals[self.leases[*lease as usize].0 as usize].push(o),
                Op::Drain { items, leased } => items
                    .iter()
                    .chain(leased)
                    .for_each(|&i| left[i as usize] += 1),
                _ => {}
            }
        }
        for i in 0..n {
            let id = self.ids[i];
            let name = format!("{id:#x}");
            if self.refused.contains(&id) && (pushes[i].len() + deliveries[i].len() + left[i]) > 0 {
                let what = if left[i] > 0 {
                    "is in the Db"
                } else {
                    "was delivered"
                };
                return Err(format!("{name} {what} but its push returned an error"));
            }
            match pushes[i].len() {
                0 => return Err(format!("{name} delivered, never pushed with Ok")),
                1 => {}
                _ => return Err(format!("{name} pushed twice (a test bug: ids are unique)")),
            }
            let push = pushes[i][0];
            match (removals[i].len(), left[i]) {
                (0, 0) if self.has_drain() => {
                    return Err(format!(
                        "{name} lost: pushed with Ok, never popped nor acked, not in the Db at the end"
                    ));
                }
                (0, 0) | (1, 0) | (0, 1) => {}
                (0, _) => return Err(format!("{name} is in the Db {} times at the end", left[i])),
                (r, 0) => {
                    return Err(format!(
                        "{name} popped twice: removed {r} times (popped or acked with Ok)"
                    ));
                }
                (_, _) => {
                    return Err(format!(
                        "{name} popped (or acked) and still in the Db at the end"
                    ));
                }
            }
            for &d in &deliveries[i] {
                if self.ops[d].2 < self.ops[push].1 {
                    return Err(format!(
                        "{name} delivered by {} before its push began",
                        self.describe(d)
                    ));
                }
                for &r in &removals[i] {
                    if r != d && self.ops[r].2 < self.ops[d].1 {
                        return Err(format!(
                            "{name} popped twice: delivered again by {} after {} removed it",
                            self.describe(d),
                            self.describe(r)
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn has_drain(&self) -> bool {
        self.ops
            .iter()
            .any(|(op, _, _)| matches!(op, Op::Drain { .. }))
    }

    /// `op` in words, with its interval relative to the history's first call.
    fn describe(&self, op: usize) -> String {
        let (_, s, e) = &self.ops[op];
        let ev = &self.events[self.source[op]];
        format!(
            "{} (thread {}, {:.3}-{:.3} ms)",
            call_text(&ev.call),
            ev.thread,
            *s as f64 / 1e6,
            *e as f64 / 1e6
        )
    }
}

fn call_text(call: &Call) -> String {
    let ids = |v: &[u64]| {
        let parts: Vec<String> = v.iter().take(12).map(|id| format!("{id:#x}")).collect();
        let more = if v.len() > 12 { ", ..." } else { "" };
        format!("[{}{more}]", parts.join(", "))
    };
    match call {
        Call::Push(v) => format!("push {}", ids(v)),
        Call::Refused(v) => format!("refused push {}", ids(v)),
        Call::Pop(v) => format!("pop -> {}", ids(v)),
        Call::Empty => "try_pop -> empty".into(),
        Call::Lease { id, lease } => format!("lease #{lease} -> {id:#x}"),
        Call::Ack { lease, outcome } => format!("ack #{lease} -> {outcome:?}"),
        Call::Release { lease } => format!("release #{lease}"),
        Call::Drain { items, leased } => format!(
            "final drain -> {} ({} items; still leased in the Db: {})",
            ids(items),
            items.len(),
            ids(leased)
        ),
    }
}

// ---- the search ------------------------------------------------------------------------

const NOT_TAKEN: u8 = 0;
const HELD: u8 = 1;
const ACKED: u8 = 2;
const RELEASED: u8 = 3;
const EXPIRED: u8 = 4;

/// One thing the search can apply next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cand {
    /// An operation, with the alternative effect to try (only a release that may fail has 2).
    Op(u32, u8),
    /// The expiry of a lease.
    Expire(u32),
}

/// How to undo one applied step.
enum Undo {
    Pushed(usize),
    Popped(Vec<u32>),
    Status { lease: u32, was: u8, pushed: bool },
    Nothing,
}

/// The keys are random already: hash them by their low bits.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64 ^ (v >> 64) as u64;
    }
}

/// One level of the depth-first search.
struct Frame {
    cands: Vec<Cand>,
    next: usize,
    applied: Option<(Cand, Undo)>,
}

struct Search<'h> {
    h: &'h History,
    model: &'h Model,
    // The linked list of call and return entries: node 0 is the head, node `tail` the tail;
    // entry nodes 1..tail, in time order.
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per node: (op, is_return, time).
    node: Vec<(u32, bool, u64)>,
    call_node: Vec<usize>,
    ret_node: Vec<usize>,
    tail: usize,
    // The model state.
    stack: Vec<u32>,
    status: Vec<u8>,
    held: Vec<u32>,
    done: usize,
    // The configuration's hash, kept up to date step by step.
    done_hash: u128,
    lease_hash: u128,
    stack_hash: u128,
    op_rand: Vec<u128>,
    item_rand: Vec<u128>,
    lease_rand: Vec<[u128; 5]>,
    pow: Vec<u128>,
    seen: HashSet<u128, BuildHasherDefault<KeyHasher>>,
    /// Push ops: how deep their items end up (larger: leaves the stack later).
    depth: Vec<u64>,
    /// Per item: the operations that deliver it (pops and leases, with its place in what they
    /// returned), and its place in the final drain (0: the top; `u32::MAX`: not in it).
    delivered_by: Vec<Vec<(u32, u32)>>,
    drain_pos: Vec<u32>,
    op_done: Vec<bool>,
    /// Parallel to `stack`, for the pruning in [`Search::may_push`].
    floor: Vec<Floor>,
    /// How many stack entries have each op as their certain next delivery.
    in_stack: HashMap<u32, u32>,
    /// Per op: for a push, the earliest instant its last item to leave can begin leaving (the
    /// latest first-delivery start of its items; `u64::MAX` if one stays until the drain);
    /// 0 for other ops.
    leaves_from: Vec<u64>,
    steps: u64,
    expiries: usize,
    deepest: (usize, String),
}

/// What the entries of the stack at or below one entry say about what may go above it.
#[derive(Debug, Clone, Copy)]
struct Floor {
    /// Entries that still have a delivery to come.
    unsettled: u32,
    /// The smallest drain place of the settled entries (they stay until the drain).
    min_drain: u32,
    /// The earliest instant by which one of the unsettled entries has certainly left: the
    /// smallest end of their pending deliveries.
    min_end: u64,
    /// This entry's next delivery and its place in it, when certain.
    next: Option<(u32, u32)>,
    /// The first certain next delivery at or below this entry (from the top).
    first_next: Option<(u32, u32)>,
}

/// An item's deliveries still to come: the earliest start and end among them, and the next
/// one (op and place in what it returned) when it is certain.
#[derive(Debug, Clone, Copy)]
struct Pending {
    start: u64,
    end: u64,
    next: Option<(u32, u32)>,
}

/// Whether an item whose next delivery is `upper` (above) is certain to come out of the same
/// pop as one whose next delivery is `lower` (below), at a later place: impossible, since the
/// pop returns the stack's top newest first.
fn later_in_same_pop(upper: Option<(u32, u32)>, lower: Option<(u32, u32)>) -> bool {
    matches!((upper, lower), (Some((a, i)), Some((b, j))) if a == b && i > j)
}

/// A small deterministic generator for the hash tables (splitmix64).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<'h> Search<'h> {
    fn new(h: &'h History, model: &'h Model) -> Self {
        let n = h.ops.len();
        let mut entries: Vec<(u64, bool, u32)> = Vec::with_capacity(2 * n);
        for (i, (_, s, e)) in h.ops.iter().enumerate() {
            entries.push((*s, false, i as u32));
            entries.push((*e, true, i as u32));
        }
        // Ties: calls before returns (operations that touch at one instant may overlap).
        entries.sort_by_key(|&(t, ret, i)| (t, ret, i));
        let tail = entries.len() + 1;
        let mut node = vec![(u32::MAX, true, u64::MAX); tail + 1];
        let (mut call_node, mut ret_node) = (vec![0; n], vec![0; n]);
        for (k, &(t, ret, i)) in entries.iter().enumerate() {
            node[k + 1] = (i, ret, t);
            if ret {
                ret_node[i as usize] = k + 1;
            } else {
                call_node[i as usize] = k + 1;
            }
        }
        let next = (0..=tail).map(|k| (k + 1).min(tail)).collect();
        let prev = (0..=tail).map(|k| k.saturating_sub(1)).collect();
        let mut seed = 0x5EED_1234_ABCD_0001u64;
        let mut r128 = || u128::from(splitmix(&mut seed)) << 64 | u128::from(splitmix(&mut seed));
        let op_rand = (0..n).map(|_| r128()).collect();
        let item_rand = (0..h.ids.len()).map(|_| r128() | 1).collect();
        let lease_rand = (0..h.leases.len())
            .map(|_| [r128(), r128(), r128(), r128(), r128()])
            .collect::<Vec<_>>();
        let base = r128() | 1;
        let mut pow = vec![1u128; h.ids.len() + 2];
        for k in 1..pow.len() {
            pow[k] = pow[k - 1].wrapping_mul(base);
        }
        let lease_hash = lease_rand
            .iter()
            .fold(0, |acc, r| acc ^ r[NOT_TAKEN as usize]);
        let depth = depths(h);
        let mut first_start = vec![u64::MAX; h.ids.len()];
        for (op, s, _) in &h.ops {
            let items: &[u32] = match op {
                Op::Pop(v) => v,
                Op::Lease { item, .. } => std::slice::from_ref(item),
                _ => continue,
            };
            for &i in items {
                first_start[i as usize] = first_start[i as usize].min(*s);
            }
        }
        let leaves_from = h
            .ops
            .iter()
            .map(|(op, _, _)| match op {
                Op::Push(items) => items
                    .iter()
                    .map(|&i| first_start[i as usize])
                    .max()
                    .unwrap_or(0),
                _ => 0,
            })
            .collect();
        let mut delivered_by = vec![Vec::new(); h.ids.len()];
        let mut drain_pos = vec![u32::MAX; h.ids.len()];
        for (o, (op, _, _)) in h.ops.iter().enumerate() {
            match op {
                Op::Pop(v) => {
                    for (k, &i) in v.iter().enumerate() {
                        delivered_by[i as usize].push((o as u32, k as u32));
                    }
                }
                Op::Lease { item, .. } => delivered_by[*item as usize].push((o as u32, 0)),
                Op::Drain { items: v, .. } => {
                    for (k, &i) in v.iter().enumerate() {
                        drain_pos[i as usize] = k as u32;
                    }
                }
                _ => {}
            }
        }
        Search {
            h,
            model,
            next,
            prev,
            node,
            call_node,
            ret_node,
            tail,
            stack: Vec::new(),
            status: vec![NOT_TAKEN; h.leases.len()],
            held: Vec::new(),
            done: 0,
            done_hash: 0,
            lease_hash,
            stack_hash: 0,
            op_rand,
            item_rand,
            lease_rand,
            pow,
            seen: HashSet::default(),
            depth,
            delivered_by,
            drain_pos,
            op_done: vec![false; n],
            floor: Vec::new(),
            in_stack: HashMap::new(),
            leaves_from,
            steps: 0,
            expiries: 0,
            deepest: (0, String::new()),
        }
    }

    fn key(&self) -> u128 {
        self.done_hash ^ self.lease_hash ^ self.stack_hash.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn run(mut self) -> Result<Report, String> {
        let n = self.h.ops.len();
        let mut frames = vec![Frame {
            cands: self.candidates(),
            next: 0,
            applied: None,
        }];
        self.seen.insert(self.key());
        loop {
            if self.done == n {
                return Ok(Report {
                    ops: n,
                    steps: self.steps,
                    expiries: self.expiries,
                });
            }
            let Some(frame) = frames.last_mut() else {
                return Err(self.failure());
            };
            if let Some((cand, undo)) = frame.applied.take() {
                self.undo(cand, undo);
            }
            if frame.next >= frame.cands.len() {
                frames.pop();
                continue;
            }
            let cand = frame.cands[frame.next];
            frame.next += 1;
            let Some(undo) = self.apply(cand) else {
                continue;
            };
            if !self.seen.insert(self.key()) {
                self.undo(cand, undo);
                continue;
            }
            self.steps += 1;
            if self.steps > self.model.max_steps {
                return Err(format!(
                    "undecided: no linearization found within {} search steps (the checker \
                     rejects what it cannot prove); deepest point: {}",
                    self.model.max_steps, self.deepest.1
                ));
            }
            frames.last_mut().expect("a frame").applied = Some((cand, undo));
            if self.done > self.deepest.0 {
                self.deepest = (self.done, self.snapshot());
            }
            frames.push(Frame {
                cands: self.candidates(),
                next: 0,
                applied: None,
            });
        }
    }

    /// What may be applied next, best first (see the module docs for the order).
    fn candidates(&self) -> Vec<Cand> {
        let (mut observers, mut releases, mut pushes) = (Vec::new(), Vec::new(), Vec::new());
        let mut k = self.next[0];
        while k != self.tail && !self.node[k].1 {
            let op = self.node[k].0;
            match &self.h.ops[op as usize].0 {
                Op::Push(_) => pushes.push(op),
                Op::Release { .. } => releases.push(op),
                _ => observers.push(Cand::Op(op, 0)),
            }
            k = self.next[k];
        }
        let first_return = self.node[k].2;
        let mut out = observers;
        for &op in &releases {
            out.push(Cand::Op(op, 0));
        }
        if self.model.releases_may_fail {
            out.extend(releases.iter().map(|&op| Cand::Op(op, 1)));
        }
        pushes.sort_by_key(|&op| std::cmp::Reverse(self.depth[op as usize]));
        out.extend(pushes.into_iter().map(|op| Cand::Op(op, 0)));
        for &l in &self.held {
            if self.h.leases[l as usize].1 <= first_return {
                out.push(Cand::Expire(l));
            }
        }
        out
    }

    fn push_item(&mut self, item: u32) {
        let pos = self.stack.len();
        self.stack_hash = self
            .stack_hash
            .wrapping_add(self.item_rand[item as usize].wrapping_mul(self.pow[pos]));
        let below = self.floor.last().copied().unwrap_or(Floor {
            unsettled: 0,
            min_drain: u32::MAX,
            min_end: u64::MAX,
            next: None,
            first_next: None,
        });
        let floor = match self.pending_deliveries(item) {
            None => Floor {
                min_drain: below.min_drain.min(self.drain_pos[item as usize]),
                next: None,
                ..below
            },
            Some(p) => Floor {
                unsettled: below.unsettled + 1,
                min_end: below.min_end.min(p.end),
                next: p.next,
                first_next: p.next.or(below.first_next),
                ..below
            },
        };
        if let Some((op, _)) = floor.next {
            *self.in_stack.entry(op).or_insert(0) += 1;
        }
        self.floor.push(floor);
        self.stack.push(item);
    }

    /// The earliest start and end of the deliveries of `item` not placed yet; `None` if none
    /// is left.
    fn pending_deliveries(&self, item: u32) -> Option<Pending> {
        let mut out: Option<Pending> = None;
        let mut first: Option<(u64, u64, u32, u32)> = None;
        let mut second_start = u64::MAX;
        for &(o, pos) in &self.delivered_by[item as usize] {
            if self.op_done[o as usize] {
                continue;
            }
            let (_, s, e) = self.h.ops[o as usize];
            out = Some(out.map_or(
                Pending {
                    start: s,
                    end: e,
                    next: None,
                },
                |p| Pending {
                    start: p.start.min(s),
                    end: p.end.min(e),
                    next: None,
                },
            ));
            match first {
                Some((fs, ..)) if fs <= s => second_start = second_start.min(s),
                _ => {
                    if let Some((fs, ..)) = first {
                        second_start = second_start.min(fs);
                    }
                    first = Some((s, e, o, pos));
                }
            }
        }
        let mut out = out?;
        // The next delivery is certain when the earliest one returned before any other began.
        if let Some((_, e, o, pos)) = first.filter(|f| f.1 < second_start) {
            let _ = e;
            out.next = Some((o, pos));
        }
        Some(out)
    }

    /// Whether `item` may go on top now without making the rest impossible. A pruning, sound
    /// for the reasons given (it never rejects a state a linearization passes through), that
    /// finds a wrong order of two pushes when the second goes on, not when the first item
    /// should come out:
    /// * settled (no delivery of it is left, so it stays until the final drain): every entry
    ///   below must be settled too (one that still has to be delivered could never come to the
    ///   top again), and lie below it in the drain's order;
    /// * not settled: it must leave before every entry below it, and an entry leaves at the
    ///   latest when the earliest of its pending deliveries returns, this one at the earliest
    ///   when the earliest of its own begins;
    /// * not settled: every push still to come that returns before this item can leave (before
    ///   its earliest pending delivery begins) puts its items above it, so they must be able
    ///   to leave before it does (`own`, the push placing `item`, aside).
    ///
    /// "Leave before" is checked by times, and, when both items' next delivery is certain and
    /// is the same pop, by their places in what it returned.
    fn may_push(&self, item: u32, own: Option<u32>) -> bool {
        let pending = self.pending_deliveries(item);
        if let Some(below) = self.floor.last() {
            let fits = match pending {
                None => below.unsettled == 0 && self.drain_pos[item as usize] < below.min_drain,
                Some(p) => p.start <= below.min_end && self.runs_stay_contiguous(p.next, below),
            };
            if !fits {
                return false;
            }
        }
        let Some(p) = pending else {
            return true;
        };
        let mut k = self.next[0];
        while k != self.tail && self.node[k].2 < p.start {
            let (op, ret, _) = self.node[k];
            if ret && Some(op) != own && self.above_cannot_leave_first(op, p) {
                return false;
            }
            k = self.next[k];
        }
        true
    }

    /// Reading the stack from the top, each entry leaves no later than the one below it, so
    /// the entries whose next delivery is certain list those deliveries in contiguous runs
    /// (one op, then another, never the first again), in increasing places within a run. An
    /// item on top whose next delivery is `next` must keep it so.
    fn runs_stay_contiguous(&self, next: Option<(u32, u32)>, below: &Floor) -> bool {
        let Some((op, pos)) = next else {
            return true;
        };
        match below.first_next {
            Some((first, first_pos)) if first == op => pos < first_pos,
            _ => self.in_stack.get(&op).is_none_or(|&n| n == 0),
        }
    }

    /// Whether pending operation `op`, a push certain to come while an item whose deliveries
    /// are `below` is still in the stack, puts an item above it that cannot leave first.
    fn above_cannot_leave_first(&self, op: u32, below: Pending) -> bool {
        let Op::Push(items) = &self.h.ops[op as usize].0 else {
            return false;
        };
        if self.leaves_from[op as usize] > below.end {
            return true;
        }
        below.next.is_some()
            && items.iter().any(|&w| {
                let next = self.pending_deliveries(w).and_then(|p| p.next);
                later_in_same_pop(next, below.next)
            })
    }

    fn pop_item(&mut self) -> Option<u32> {
        let item = self.stack.pop()?;
        if let Some(Floor {
            next: Some((op, _)),
            ..
        }) = self.floor.pop()
            && let Some(n) = self.in_stack.get_mut(&op)
        {
            *n -= 1;
        }
        let pos = self.stack.len();
        self.stack_hash = self
            .stack_hash
            .wrapping_sub(self.item_rand[item as usize].wrapping_mul(self.pow[pos]));
        Some(item)
    }

    fn set_status(&mut self, lease: u32, to: u8) {
        let l = lease as usize;
        let r = &self.lease_rand[l];
        self.lease_hash ^= r[self.status[l] as usize] ^ r[to as usize];
        if self.status[l] == HELD {
            self.held.retain(|&x| x != lease);
        }
        if to == HELD {
            self.held.push(lease);
        }
        self.status[l] = to;
    }

    fn lift(&mut self, op: u32) {
        for k in [self.call_node[op as usize], self.ret_node[op as usize]] {
            let (p, n) = (self.prev[k], self.next[k]);
            self.next[p] = n;
            self.prev[n] = p;
        }
        self.done += 1;
        self.done_hash ^= self.op_rand[op as usize];
        self.op_done[op as usize] = true;
    }

    fn unlift(&mut self, op: u32) {
        for k in [self.ret_node[op as usize], self.call_node[op as usize]] {
            let (p, n) = (self.prev[k], self.next[k]);
            self.next[p] = k;
            self.prev[n] = k;
        }
        self.done -= 1;
        self.done_hash ^= self.op_rand[op as usize];
        self.op_done[op as usize] = false;
    }

    /// Applies `cand` if the model allows it; how to undo it.
    fn apply(&mut self, cand: Cand) -> Option<Undo> {
        let op = match cand {
            Cand::Expire(l) => {
                if !self.may_push(self.h.leases[l as usize].0, None) {
                    return None;
                }
                self.set_status(l, EXPIRED);
                self.push_item(self.h.leases[l as usize].0);
                self.expiries += 1;
                return Some(Undo::Status {
                    lease: l,
                    was: HELD,
                    pushed: true,
                });
            }
            Cand::Op(op, alt) => (op, alt),
        };
        let undo = self.effect(op.0, op.1)?;
        self.lift(op.0);
        Some(undo)
    }

    /// The model's effect of operation `op` (alternative `alt`), if allowed now.
    fn effect(&mut self, op: u32, alt: u8) -> Option<Undo> {
        let h = self.h;
        let (call, start, _) = &h.ops[op as usize];
        let observes = matches!(
            call,
            Op::Pop(_) | Op::Empty | Op::Lease { .. } | Op::Drain { .. }
        );
        if observes && self.held.iter().any(|&l| h.latest[l as usize] < *start) {
            return None; // a held lease past its latest expiry must expire first
        }
        match call {
            Op::Push(items) => {
                for (k, &i) in items.iter().enumerate() {
                    if !self.may_push(i, Some(op)) {
                        for _ in 0..k {
                            self.pop_item();
                        }
                        return None;
                    }
                    self.push_item(i);
                }
                Some(Undo::Pushed(items.len()))
            }
            Op::Pop(got) => self.take_top(got),
            Op::Empty => self.stack.is_empty().then_some(Undo::Nothing),
            Op::Lease { item, lease } => {
                (self.stack.last() == Some(item)).then_some(())?;
                self.pop_item();
                self.set_status(*lease, HELD);
                Some(Undo::Status {
                    lease: *lease,
                    was: NOT_TAKEN,
                    pushed: false,
                })
            }
            Op::Ack { lease, outcome } => match (outcome, self.status[*lease as usize]) {
                (AckOutcome::Ok, HELD) => {
                    self.set_status(*lease, ACKED);
                    Some(Undo::Status {
                        lease: *lease,
                        was: HELD,
                        pushed: false,
                    })
                }
                (AckOutcome::Expired, EXPIRED) | (AckOutcome::Failed, _) => Some(Undo::Nothing),
                _ => None,
            },
            Op::Release { lease } => match (alt, self.status[*lease as usize]) {
                (0, HELD) => {
                    if !self.may_push(h.leases[*lease as usize].0, None) {
                        return None;
                    }
                    self.set_status(*lease, RELEASED);
                    self.push_item(h.leases[*lease as usize].0);
                    Some(Undo::Status {
                        lease: *lease,
                        was: HELD,
                        pushed: true,
                    })
                }
                (0, EXPIRED) | (1, HELD) => Some(Undo::Nothing),
                _ => None,
            },
            Op::Drain { items, leased } => {
                let mut held: Vec<u32> =
                    self.held.iter().map(|&l| h.leases[l as usize].0).collect();
                let mut left = leased.clone();
                held.sort_unstable();
                left.sort_unstable();
                if held != left || items.len() != self.stack.len() {
                    return None;
                }
                self.take_top(items)
            }
        }
    }

    /// Takes the top `got.len()` items if they are `got` (newest first).
    fn take_top(&mut self, got: &[u32]) -> Option<Undo> {
        let n = self.stack.len();
        if got.len() > n
            || got
                .iter()
                .enumerate()
                .any(|(k, x)| self.stack[n - 1 - k] != *x)
        {
            return None;
        }
        let mut taken = Vec::with_capacity(got.len());
        for _ in 0..got.len() {
            taken.extend(self.pop_item());
        }
        Some(Undo::Popped(taken))
    }

    fn undo(&mut self, cand: Cand, undo: Undo) {
        if let Cand::Op(op, _) = cand {
            self.unlift(op);
        } else {
            self.expiries -= 1;
        }
        match undo {
            Undo::Pushed(n) => {
                for _ in 0..n {
                    self.pop_item();
                }
            }
            Undo::Popped(taken) => {
                for &item in taken.iter().rev() {
                    self.push_item(item);
                }
            }
            Undo::Status { lease, was, pushed } => {
                if pushed {
                    self.pop_item();
                }
                if was == NOT_TAKEN {
                    let item = self.h.leases[lease as usize].0;
                    self.push_item(item);
                }
                self.set_status(lease, was);
            }
            Undo::Nothing => {}
        }
    }

    /// The state at the deepest point reached, in words.
    fn snapshot(&self) -> String {
        let h = self.h;
        let mut s = String::new();
        let top: Vec<String> = self
            .stack
            .iter()
            .rev()
            .take(8)
            .map(|&i| format!("{:#x}", h.ids[i as usize]))
            .collect();
        let _ = write!(
            s,
            "{} of {} operations placed; stack ({} items, top first): [{}]; leases held: [{}]",
            self.done,
            h.ops.len(),
            self.stack.len(),
            top.join(", "),
            self.held
                .iter()
                .map(|&l| format!(
                    "#{} on {:#x}",
                    h.lease_names[l as usize], h.ids[h.leases[l as usize].0 as usize]
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = write!(s, "; none of these could come next:");
        let mut k = self.next[0];
        let mut shown = 0;
        while k != self.tail && shown < 12 {
            let (op, ret, _) = self.node[k];
            if !ret {
                let _ = write!(s, "\n    {}{}", h.describe(op as usize), self.why_not(op));
                shown += 1;
            } else {
                let _ = write!(
                    s,
                    "\n    (and nothing that began after {} returned)",
                    h.describe(op as usize)
                );
                break;
            }
            k = self.next[k];
        }
        s
    }

    /// Why operation `op` cannot come next, if the state says so.
    fn why_not(&self, op: u32) -> String {
        let h = self.h;
        let id = |i: u32| format!("{:#x}", h.ids[i as usize]);
        let got: &[u32] = match &h.ops[op as usize].0 {
            Op::Pop(v) | Op::Drain { items: v, .. } => v,
            Op::Lease { item, .. } => std::slice::from_ref(item),
            Op::Empty if !self.stack.is_empty() => return " (the stack is not empty)".into(),
            _ => return String::new(),
        };
        let n = self.stack.len();
        let upto = if matches!(h.ops[op as usize].0, Op::Drain { .. }) {
            got.len().max(n)
        } else {
            got.len()
        };
        let wrong = (0..upto).find(|&k| got.get(k) != n.checked_sub(k + 1).map(|p| &self.stack[p]));
        match wrong {
            Some(k) => format!(
                " (position {k} from the top: the call got {}, the stack holds {})",
                got.get(k).map_or("nothing".into(), |&i| id(i)),
                n.checked_sub(k + 1)
                    .map_or("nothing".into(), |p| id(self.stack[p]))
            ),
            None => String::new(),
        }
    }

    fn failure(&self) -> String {
        format!(
            "not linearizable: no order of the operations that respects real time satisfies \
             the model; deepest point: {}",
            self.deepest.1
        )
    }
}

/// For each push op, how long its bottom item stays in the stack: the start of the first
/// operation that delivered it, or past the end for items still in the Db (deeper ones
/// later). A push whose items leave later goes first when two pushes are candidates.
fn depths(h: &History) -> Vec<u64> {
    let mut first_taken = vec![u64::MAX; h.ids.len()];
    for (op, s, _) in &h.ops {
        let items: &[u32] = match op {
            Op::Pop(v) => v,
            Op::Lease { item, .. } => std::slice::from_ref(item),
            Op::Drain { items: v, .. } => {
                for (k, &i) in v.iter().enumerate() {
                    // Deeper in the drain: pushed earlier.
                    let at = u64::MAX / 2 + k as u64;
                    first_taken[i as usize] = first_taken[i as usize].min(at);
                }
                continue;
            }
            _ => continue,
        };
        for &i in items {
            first_taken[i as usize] = first_taken[i as usize].min(*s);
        }
    }
    h.ops
        .iter()
        .map(|(op, _, _)| match op {
            // The top item decides: if it leaves before another push's item, the whole batch
            // is above that one; if after, the whole batch is below.
            Op::Push(items) => items.last().map_or(0, |&i| first_taken[i as usize]),
            _ => 0,
        })
        .collect()
}

// ---- saving a history, to check it again later -----------------------------------------

/// Writes `events` to `path`, one call per line (`thread start_ns end_ns call`, times from the
/// first call), so a failure can be re-checked and studied without re-running the test
/// ([`load`]).
pub fn save(events: &[Event], path: &std::path::Path) -> std::io::Result<()> {
    let origin = events
        .iter()
        .map(|e| e.start)
        .min()
        .unwrap_or_else(Instant::now);
    let ns = |t: Instant| t.saturating_duration_since(origin).as_nanos();
    let list = |v: &[u64]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = String::new();
    for e in events {
        let call = match &e.call {
            Call::Push(v) => format!("push {}", list(v)),
            Call::Refused(v) => format!("refused {}", list(v)),
            Call::Pop(v) => format!("pop {}", list(v)),
            Call::Empty => "empty".to_string(),
            Call::Lease { id, lease } => format!("lease {id} {lease}"),
            Call::Ack { lease, outcome } => format!("ack {lease} {outcome:?}"),
            Call::Release { lease } => format!("release {lease}"),
            Call::Drain { items, leased } => format!("drain {} {}", list(items), list(leased)),
        };
        let _ = writeln!(out, "{} {} {} {call}", e.thread, ns(e.start), ns(e.end));
    }
    std::fs::write(path, out)
}

/// Reads a history [`save`] wrote.
pub fn load(path: &std::path::Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).expect("read the history");
    let origin = Instant::now();
    let list = |s: Option<&str>| -> Vec<u64> {
        s.unwrap_or("")
            .split(',')
            .filter(|x| !x.is_empty())
            .map(|x| x.parse().expect("an id"))
            .collect()
    };
    text.lines()
        .map(|line| {
            let mut f = line.split(' ');
            let mut num = || f.next().expect("a field").parse::<u64>().expect("a number");
            let (thread, start, end) = (num(), num(), num());
            let kind = f.next().expect("a call");
            let call = match kind {
                "push" => Call::Push(list(f.next())),
                "refused" => Call::Refused(list(f.next())),
                "pop" => Call::Pop(list(f.next())),
                "empty" => Call::Empty,
                "lease" => {
                    let id = f.next().expect("id").parse().expect("id");
                    let lease = f.next().expect("lease").parse().expect("lease");
                    Call::Lease { id, lease }
                }
                "ack" => {
                    let lease = f.next().expect("lease").parse().expect("lease");
                    let outcome = match f.next() {
                        Some("Ok") => AckOutcome::Ok,
                        Some("Expired") => AckOutcome::Expired,
                        _ => AckOutcome::Failed,
                    };
                    Call::Ack { lease, outcome }
                }
                "release" => Call::Release {
                    lease: f.next().expect("lease").parse().expect("lease"),
                },
                "drain" => Call::Drain {
                    items: list(f.next()),
                    leased: list(f.next()),
                },
                other => panic!("unknown call {other:?} in the history"),
            };
            Event {
                call,
                start: origin + Duration::from_nanos(start),
                end: origin + Duration::from_nanos(end),
                thread,
            }
        })
        .collect()
}
