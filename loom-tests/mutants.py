#!/usr/bin/env python3
"""Applies each mutant of loom-tests/README.md to the source, runs the loom models, reports
which models failed, and restores the file. Run from anywhere:

    python3 loom-tests/mutants.py          # all mutants
    python3 loom-tests/mutants.py M1 M4    # the ones whose names start so
    python3 loom-tests/mutants.py --check  # only check that every snippet is in the source

A mutant whose snippet is no longer in the source stops the run: update the snippet with the
code it mutates. Uses CARGO_TARGET_DIR if set (loom builds go to its loom/ subdirectory).
MUTANT_TIMEOUT (seconds, default 600) bounds each mutant's build and run.
A mutant with a fourth element runs that command instead of the models, without the loom cfg:
the H mutants run the history tests, whose checker must reject what they do; those tests are
randomized, so a survivor is worth a second run.
"""
import subprocess, sys, os, re
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
HISTORY = ['cargo', 'test', '--test', 'reliability_history']
M = {
 # One take walk serves pop, pop_batch and pop_lease (and their try_ forms): M1 and M14 are
 # now the same mutation, kept under both names.
 'M1 pop skips the wait for an in-flight batch': ('src/engine/ops/take.rs',
   '''        if state.is_writing() {
            // The newest items are in flight. Taking one from memory would let the Db keep
            // a copy; skipping them would break LIFO. Wait for the batch to land.
            state = waiter.wait(state, None);
            continue;
        }
''', ''),
 'M2 lost wakeup: wake notifies without taking the state lock': ('src/engine/core.rs',
   '''        let mut state = self.state.lock();
        self.wake_up(&mut state, Wakeups::EVERY_CALL);''',
   '''        self.poppers.notify_all();
        self.pushers.notify_all();
        self.landed.notify_all();
        let mut state = self.state.lock();
        state.wake_durable(crate::engine::wakeups::Durable::All);'''),
 'M3 push does not notify a waiting popper': ('src/engine/state/mod.rs',
   '''            poppers: Notify::One,
            flusher: clock_idle || self.wants_early_write(cfg),''',
   '''            poppers: Notify::None,
            flusher: clock_idle || self.wants_early_write(cfg),'''),
 'M4 a landed batch does not bump db_epoch': ('src/engine/state/db_view.rs',
   '''        if stored > 0 {
            self.epoch += 1;
''', '''        if stored > 0 {
'''),
 'M5 flushed_through ignores the batch in flight': ('src/engine/state/stack.rs',
   'let in_flight_old = self.in_flight.as_ref().is_some_and(|f| f.first_seq <= seq);',
   'let in_flight_old = false;'),
 'M6 close does not wait for a batch in flight': ('src/engine/ops/write.rs',
   '''        if state.is_writing() {
            state = core.sleep(Signal::Landed, state, None);
            continue;
        }
''', ''),
 'M7 waiter skips the token re-check after registering': ('src/engine/waiter.rs',
   '''            if token.reason().is_some() {
                return false;
            }
''', ''),
 'M8 a registration is never removed': ('src/token.rs',
   'st.waiters.swap_remove(pos);', 'let _ = pos;'),
 # The stack's one take_newest serves pops and memory leases: M9 and M20 are now the same
 # mutation, kept under both names.
 'M9 pop takes the oldest buffered item': ('src/engine/state/stack.rs',
   'let entry = self.items.pop_back()?;', 'let entry = self.items.pop_front()?;'),
 'M10 a landed batch wakes nobody': ('src/engine/ops/write.rs',
   '    core.wake_up(&mut state, whom);\n    (state, outcome, after, poison)', '    (state, outcome, after, poison)'),
 'M12 a poison item is retried like a transient failure': ('src/engine/db_call.rs',
   'Err(e) if !e.source.is_permanent() => {', 'Err(e) if e.stored == 0 || !e.source.is_permanent() => {'),
 'M13 poison kept aside without a hook is dropped': ('src/engine/ops/write.rs',
   '        state.set_aside(&core.cfg, poison);\n        return state;', '        return state;'),
 'M14 pop_batch skips the wait for an in-flight batch': ('src/engine/ops/take.rs',
   '''        if state.is_writing() {
            // The newest items are in flight. Taking one from memory would let the Db keep
            // a copy; skipping them would break LIFO. Wait for the batch to land.
            state = waiter.wait(state, None);
            continue;
        }
''', ''),
 'M15 a memory batch comes out oldest first': ('src/engine/state/stack.rs',
   'self.items.drain(from..).rev()', 'self.items.drain(from..)'),
 'M16 push_durable returns once its item left the buffer, before its batch landed': ('src/engine/state/mod.rs',
   'let gone = self.stack.flushed_through(seq);',
   'let gone = self.stack.count_through(seq, usize::MAX) == 0;'),
 # M17 survives the models (speed, not safety; nearly equivalent since the wake-up slots: see
 # the README).
 'M17 a durable writer writes only its own item, not the newer durable ones': ('src/engine/ops/durable.rs',
   'let target = state.newest_durable().unwrap_or(seq).max(seq);', 'let target = seq;'),
 # M18 (group commit never gathers the released callers) is retired with the gathering.
 'M19 a popper spins without bound instead of parking': ('src/engine/ops/take.rs',
   'DbPopStep::Wait { .. } if spins < SPIN_ROUNDS => {', 'DbPopStep::Wait { .. } if spins < u32::MAX => {'),
 'M20 a memory lease takes the oldest buffered item': ('src/engine/state/stack.rs',
   'let entry = self.items.pop_back()?;', 'let entry = self.items.pop_front()?;'),
 'M21 a released item goes to the bottom of memory': ('src/engine/state/stack.rs',
   '''        self.items.push_back(Entry {
            seq,
            pushed_at,
            data,
        });''', '''        self.items.push_front(Entry {
            seq,
            pushed_at,
            data,
        });'''),
 'M22 an ack succeeds for a lease that already expired': ('src/engine/ops/lease.rs',
   'LeaseEnd::Gone if ack => Err(Error::LeaseExpired),', 'LeaseEnd::Gone if ack => Ok(()),'),
 'M23 a memory lease leaves a copy on the stack': ('src/engine/state/leases.rs',
   '''        let entry = self.stack.take_newest()?;
        let mut whom = Wakeups {''', '''        let entry = self.stack.take_newest()?;
        self.stack.put_back_on_top(entry.data.clone(), entry.pushed_at);
        let mut whom = Wakeups {'''),
 'M30 a push that wrote a batch parks instead of re-checking for room': ('src/engine/ops/admit.rs',
   '''                waiter.time_passed(); // a write takes time: re-check the token
                continue;''', '''                waiter.time_passed(); // a write takes time: re-check the token'''),
 'M40 a landing does not wake the next durable writer': ('src/engine/durable_waiters.rs',
   '''        if let Some(next) = self.waiting.values().next_back() {
            self.to_wake.push(Arc::clone(next));
        }
''', ''),
 'M41 a durable writer does not wake the callers its write settled': ('src/engine/ops/durable.rs',
   '    wake_as_tree(settled);', '    drop(settled);'),
 'M42 close does not wake the parked durable callers': ('src/engine/state/mod.rs',
   '''        Wakeups {
            durable: Durable::All,
            ..Wakeups::EVERYONE
        }''', '''        Wakeups::EVERYONE'''),
 'M43 a durable caller leaving on its token wakes no next writer': ('src/engine/durable_waiters.rs',
   '''        if let Some(next) = self.waiting.values().next_back() {
            next.wake();
        }''', ''),
 # M44 and M45 are killed by the unit test engine::durable_waiters::tests (not by loom):
 # cargo test --lib durable_waiters
 'M44 a call that already took its outcome does not hand its children back': ('src/engine/durable_waiters.rs',
   '''            for child in children {
                child.wake();
            }''', '''            drop(children);'''),
 'M45 a woken call does not wake its children': ('src/engine/durable_waiters.rs',
   '''        for slot in onward {
            slot.wake();
        }''', '''        drop(onward);'''),
 # Killed by tests/contract/p13_leases.rs a_durable_push_whose_item_is_leased_returns_ok_before_the_write_in_flight_lands.
 'M46 a memory lease does not settle the durable call waiting for its item': ('src/engine/state/leases.rs',
   '''            // A durable push whose item is leased returns `Ok`, as when a pop takes it.
            whom = whom.and(self.settle_taken(&[entry.seq]));''',
   '''            // A durable push whose item is leased returns `Ok`, as when a pop takes it.'''),
 # Killed by tests/contract/p04_little_io.rs durable_callers_pushing_again_keep_sharing_writes (256 Db writes for 256 durable
 # pushes instead of ~8).
 'M47 a durable writer takes only the oldest buffered item': ('src/engine/ops/durable.rs',
   'let n = state.count_through(target, &core.cfg);',
   'let n = state.count_through(target, &core.cfg).min(1);'),
 'M60 a native lease goes back to the Db without the buffered items written first': ('src/engine/ops/lease_return.rs',
   'let n = state.buffered();', 'let n = 0;'),
 'M61 a write does not wait for the Db pops under way': ('src/engine/ops/write.rs',
   '''    while state.db_pops_under_way() {
        state = core.sleep(Signal::Landed, state, None);
    }
''', ''),
 # Survives the models; killed by a storage-level test (loom-tests/README.md).
 'M62 an ack of a native lease past its deadline acks it in the Db instead of returning it': ('src/engine/lease_table.rs',
   '            Some(held) if held.deadline <= now => NativeState::Due,\n', '',
   ['cargo', 'test', '--test', 'contract', 'p13_leases::a_late_ack_of_a_db_lease_fails_even_before_the_storage_returned_it']),
 'M63 a Db wake-up wakes no waiting pop (a dropped notification)': ('src/engine/state/mod.rs',
   '''            // and would swallow the wake-up; only the ones whose step says "call" do.
            poppers: Notify::All,''',
   '''            // and would swallow the wake-up; only the ones whose step says "call" do.
            poppers: Notify::None,'''),
 'M64 a Db wake-up does not move the Db epoch': ('src/engine/state/mod.rs',
   '''    pub(crate) fn db_changed(&mut self) -> Wakeups {
        self.db.may_have_grown();''',
   '''    pub(crate) fn db_changed(&mut self) -> Wakeups {'''),
 # Issue 23 part 3: a memory lease outlasting the window goes to the Db still leased.
 'M70 an ack racing the write of its leased item to the Db does not wait for the landing': ('src/engine/ops/lease.rs',
   '            ItemState::Writing => state = core.sleep(Signal::Landed, state, None),',
   '            ItemState::Writing => break,'),
 'M71 a leased item written to the Db stays a memory lease in the table': ('src/engine/ops/lease_to_db.rs',
   '        Ok([id]) => Ok((*id, began + ttl)),',
   '        Ok([_]) => Err(None),'),
 'M72 expiry takes a lease whose item is being written to the Db': ('src/engine/lease_table.rs',
   '''            What::Native {
                returning: true,
                ..
            } | What::Item {
                to_db: ToDb::Writing,
                ..
            }''', '''            What::Native {
                returning: true,
                ..
            }'''),
 'M73 a taking call does not wait for the write of a lease past its deadline': ('src/engine/ops/take.rs',
   '''        if state.lease_writing_past_deadline() {''',
   '''        if false && state.lease_writing_past_deadline() {'''),
 'M74 the flusher sleeps after letting the lock go for a leased item\'s write': ('src/engine/ops/flusher.rs',
   '            if released {',
   '            if false && released {'),
 'M75 close does not write the leases that outlast the window': ('src/engine/storage.rs',
   '''        lease_to_db::write_all_now(&self.core);
        write::drain(&self.core)''',
   '''        write::drain(&self.core)'''),
 'M76 a taking call skips the clock when only the write of a leased item is pending': ('src/engine/lease_table.rs',
   '''        self.next_deadline.is_some() || self.writing.is_some()''',
   '''        self.next_deadline.is_some()'''),
 # Engine bugs the history checker must catch: these run the history tests
 # (tests/reliability_history.rs), not the loom models.
 'H1 a pop leaves its item in the Db': ('src/engine/ops/take.rs',
   '''    fn take_from_db(&self, core: &Core) -> Result<Option<Vec<u8>>, DbError> {
        core.db.pop()
    }''', '''    fn take_from_db(&self, core: &Core) -> Result<Option<Vec<u8>>, DbError> {
        let item = core.db.pop()?;
        if let Some(item) = &item {
            core.db.push(item)?;
        }
        Ok(item)
    }''', HISTORY),
 'H2 an expired lease whose item never comes back': ('src/engine/state/leases.rs',
   '''                What::Item {
                    data, pushed_at, ..
                } => self
                    .stack
                    .put_back_on_top(Arc::unwrap_or_clone(data), pushed_at),''',
   '''                What::Item { .. } => {}''', HISTORY),
 'H3 an ack returns Ok after the item was delivered again': ('src/engine/ops/lease.rs',
   '        LeaseEnd::Gone if ack => Err(Error::LeaseExpired),\n',
   '        LeaseEnd::Gone if ack => Ok(()),\n', HISTORY),
 'H4 a release puts the item back twice': ('src/engine/state/leases.rs',
   'let whom = self.put_back(vec![(Arc::unwrap_or_clone(data), pushed_at)]);',
   'let whom = self.put_back(vec![(data.to_vec(), pushed_at), (Arc::unwrap_or_clone(data), pushed_at)]);', HISTORY),
 'H5 a pop skips a newer item certainly present': ('src/engine/state/stack.rs',
   '''        let entry = self.items.pop_back()?;
        self.bytes -= entry.data.len();
        Some(entry)''', '''        let skip = usize::from(self.items.len() >= 2);
        let entry = self.items.remove(self.items.len().checked_sub(1 + skip)?)?;
        self.bytes -= entry.data.len();
        Some(entry)''', HISTORY),
 # Survives the models (see the README); killed by tests/token.rs.
 'M11 a later end overwrites the latched one': ('src/token.rs',
   '''        if let Some(end) = st.end {
            return Some(end);
        }''', ''),
}
check_only = '--check' in sys.argv
only = [a + ' ' for a in sys.argv[1:] if a != '--check']
env = dict(os.environ, RUSTFLAGS='--cfg lifostore_loom', LOOM_MAX_PREEMPTIONS='3')
target = os.path.join(os.environ.get('CARGO_TARGET_DIR', 'target'), 'loom')
for name, spec in M.items():
    path, old, new = spec[:3]
    if only and not any(name.startswith(o) for o in only):
        continue
    src = open(path).read()
    assert src.count(old) == 1, (name, src.count(old))
    if check_only:
        print(f'{name}: applies ({path})')
        continue
    open(path,'w').write(src.replace(old,new))
    try:
        limit = ['timeout', os.environ.get('MUTANT_TIMEOUT', '600')]
        if len(spec) > 3:  # a command of its own (the H mutants: the history tests)
            r = subprocess.run(limit + spec[3], capture_output=True, text=True)
        else:
            r = subprocess.run(limit + ['cargo','test','-p','loom-tests','--release','--target-dir',target,'--','--test-threads=2'],
                               capture_output=True, text=True, env=env)
        out = r.stdout + r.stderr
        # A model that deadlocks may abort the binary before libtest prints FAILED; its
        # panic line still names it.
        failed = set(re.findall(r'^test ([\w:]+) \.\.\. FAILED', out, re.M))
        failed |= set(re.findall(r"^thread '([\w:]+)' \(\d+\) panicked", out, re.M))
        failed = sorted(failed - {'main'})
        status = 'KILLED by ' + ', '.join(failed) if failed else ('SURVIVED' if r.returncode == 0 else 'ERROR rc=%d' % r.returncode)
        if r.returncode == 124: status = 'TIMEOUT (hang) ' + status
        print(f'{name}: {status}', flush=True)
        if not failed and r.returncode != 0:
            print(out[-3000:])
        if 'deadlock' in out:
            print('    (loom reported a deadlock)', flush=True)
    finally:
        open(path,'w').write(src)
