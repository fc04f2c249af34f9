#!/usr/bin/env python3
"""Applies each mutant of the publish design to src/publish.rs, runs the loom models, restores
the file, and says which model killed it (as loom-tests/mutants.py does for the engine).

    python3 experiments/handoff/mutants.py [P1 P2 ...]     # from the workspace root
"""
import os, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "src", "publish.rs")

MUTANTS = {
    "P1": ("a publish never wakes a sleeping popper",
           "        if self.waiting.load(Relaxed) != 0 {",
           "        if false && self.waiting.load(Relaxed) != 0 {"),
    "P2": ("the popper's fence after its announcement removed",
           "        self.waiting.fetch_add(1, Relaxed);\n        fence(SeqCst);",
           "        self.waiting.fetch_add(1, Relaxed);"),
    "P3": ("the publisher's fence before it reads `waiting` removed",
           "        fence(SeqCst);\n        if self.waiting.load(Relaxed) != 0 {",
           "        if self.waiting.load(Relaxed) != 0 {"),
    "P4": ("a direct push ignores publications not yet applied",
           "            if self.pending.load(SeqCst) == 0 && g.accepts(data.len()) {",
           "            if g.accepts(data.len()) {"),
    "P5": ("close applies the inbox once instead of waiting for admitted publishers",
           "        while self.pending.load(SeqCst) & !CLOSED != 0 {",
           "        for _ in 0..1 {"),
    "P6": ("admission ignores CLOSED",
           "        if before & CLOSED != 0 || held >= self.capacity",
           "        if held >= self.capacity"),
    "P7": ("a release does not look for publications made while the lock was held",
           "        if !self.inbox.is_empty() {\n            self.apply_after_unlock();",
           "        if false && !self.inbox.is_empty() {\n            self.apply_after_unlock();"),
    "P8": ("a publisher that finds the lock free after publishing leaves the item in the inbox",
           "        } else if let Some(mut g) = self.state.try_lock() {",
           "        } else if let Some(mut g) = None::<MutexGuard<'_, Buffer>> {"),
}


def run():
    env = dict(os.environ, RUSTFLAGS="--cfg handoff_loom", LOOM_MAX_PREEMPTIONS="3")
    p = subprocess.run(
        ["cargo", "test", "-p", "handoff-experiments", "--release", "--test", "loom",
         "--target-dir", "target/loom-handoff", "--", "--test-threads", "1"],
        env=env, capture_output=True, text=True, timeout=1800)
    out = p.stdout + p.stderr
    failed = [l.split()[1] for l in out.splitlines()
              if l.startswith("test ") and (l.endswith("FAILED") or "panicked" in l)]
    if p.returncode != 0 and not failed:
        # An abort (a panic while unwinding a loom deadlock) stops the harness mid-test.
        last = [l for l in out.splitlines() if l.startswith("test ")]
        why = "loom deadlock" if "deadlock" in out else "aborted"
        failed = [f"{last[-1].split()[1]} ({why})"] if last else ["(build failed)"]
    return p.returncode, failed, out


def main():
    names = sys.argv[1:] or list(MUTANTS)
    original = open(SRC).read()
    try:
        for name in names:
            what, old, new = MUTANTS[name]
            assert original.count(old) == 1, f"{name}: snippet not found once"
            open(SRC, "w").write(original.replace(old, new))
            code, failed, out = run()
            verdict = "KILLED by " + ", ".join(failed) if code != 0 else "SURVIVED"
            print(f"{name} ({what}): {verdict}", flush=True)
    finally:
        open(SRC, "w").write(original)


if __name__ == "__main__":
    main()
