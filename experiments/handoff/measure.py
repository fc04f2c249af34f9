#!/usr/bin/env python3
"""Interleaved rounds of the hand-off bench, and perf stat of the driver.

    python3 experiments/handoff/measure.py bench ROUNDS [FILTER] > rounds.tsv
    python3 experiments/handoff/measure.py perf ROUNDS PAIRS ITEMS [CONTENDER...] > perf.tsv
    python3 experiments/handoff/measure.py summary rounds.tsv

`bench` runs the criterion binary ROUNDS times (each run measures every contender in turn:
one round) and prints one line per round and benchmark: round, load average, group,
contender, median ns. `perf` runs the driver once per contender per round, in turn, under
`perf stat -e context-switches,task-clock` and the sched_yield and futex syscall
tracepoints; columns: round, load, contender, pairs, items, wall ns/item, context switches,
switches/item, CPU ns/item, sched_yield/item, futex/item. `summary` prints, per group and contender, the
median over rounds and the median of the per-round ratios against crossbeam (speed:
crossbeam's ns / contender's ns) and against the bare stack (time: contender / bare).
`BENCH_EXE=path` runs that criterion binary instead (the real Storage's
`benches/in_memory.rs`, whose groups have the same names). Run from the workspace root after `cargo bench -p handoff-experiments --no-run` and
`cargo build --release -p handoff-experiments --bins`.
"""
import glob, json, os, statistics, subprocess, sys, time

ROOT = os.getcwd()
CRIT = os.path.join(ROOT, "target", "criterion")


def bench_binary():
    if os.environ.get("BENCH_EXE"):
        # Another criterion binary with the same group names (benches/in_memory.rs).
        return os.environ["BENCH_EXE"]
    out = subprocess.run(
        ["cargo", "bench", "-p", "handoff-experiments", "--bench", "handoff", "--no-run",
         "--message-format=json"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "handoff" \
                and m.get("executable"):
            return m["executable"]
    sys.exit("no bench binary")


def load():
    return open("/proc/loadavg").read().split()[0]


def medians():
    res = {}
    for f in glob.glob(os.path.join(CRIT, "*", "*", "new", "estimates.json")):
        parts = f.split(os.sep)
        group, name = parts[-4], parts[-3]
        if not (group.startswith("pair_16B") or group.startswith("handoff_16B")):
            continue
        res[(group, name)] = json.load(open(f))["median"]["point_estimate"]
    return res


def bench(rounds, filt):
    exe = bench_binary()
    for r in range(rounds):
        before = load()
        t0 = time.time()
        for f in glob.glob(os.path.join(CRIT, "*", "*", "new", "estimates.json")):
            os.remove(f)
        subprocess.run([exe, "--bench", filt], capture_output=True, check=True)
        after = load()
        for (group, name), ns in sorted(medians().items()):
            print(f"{r}\t{before}-{after}\t{group}\t{name}\t{ns:.1f}", flush=True)
        print(f"# round {r} took {time.time() - t0:.0f} s, {time.strftime('%H:%M:%S')}",
              flush=True)


def perf(rounds, pairs, items, names):
    exe = os.path.join(ROOT, "target", "release", "driver")
    for r in range(rounds):
        for name in names:
            p = subprocess.run(
                ["perf", "stat", "-x,", "-e",
                 "context-switches,task-clock,syscalls:sys_enter_sched_yield,"
                 "syscalls:sys_enter_futex", exe, name,
                 str(pairs), str(items)], capture_output=True, text=True, check=True)
            ns = float(p.stdout.split()[-1])
            stat = {}
            for line in p.stderr.splitlines():
                f = line.split(",")
                if len(f) > 2 and f[0] and f[0][0].isdigit():
                    stat[f[2]] = float(f[0])
            cs = stat.get("context-switches", float("nan"))
            tc = stat.get("task-clock", float("nan"))
            y = stat.get("syscalls:sys_enter_sched_yield", float("nan"))
            fx = stat.get("syscalls:sys_enter_futex", float("nan"))
            print(f"{r}\t{load()}\t{name}\t{pairs}\t{items}\t{ns:.1f}\t{cs:.0f}\t"
                  f"{cs / items:.5f}\t{tc * 1e6 / items:.1f}\t{y / items:.5f}\t{fx / items:.5f}",
                  flush=True)


def summary(path):
    rows = [l.rstrip("\n").split("\t") for l in open(path) if not l.startswith("#")]
    by = {}
    for r, ld, group, name, ns in rows:
        by.setdefault(group, {}).setdefault(name, {})[r] = float(ns)
    for group in sorted(by):
        g = by[group]
        print(f"\n{group}")
        print("  contender        median ns   per-round ratio          median")
        for name in sorted(g):
            ns = statistics.median(g[name].values())
            base = "crossbeam" if group.startswith("handoff") else "bare_stack"
            if base == "crossbeam" and base not in g:
                base = "crossbeam_channel"  # benches/in_memory.rs's name
            if base in g and name != base:
                ratios = [g[base][r] / g[name][r] if base != "bare_stack" else g[name][r] / g[base][r]
                          for r in g[name] if r in g[base]]
                what = "speed vs cb" if base != "bare_stack" else "time vs bare"
                rs = " ".join(f"{x:.2f}" for x in ratios)
                print(f"  {name:16} {ns:9.1f}   {what}: {rs}   {statistics.median(ratios):.2f}")
            else:
                print(f"  {name:16} {ns:9.1f}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "bench":
        bench(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "")
    elif cmd == "perf":
        perf(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
    elif cmd == "summary":
        summary(sys.argv[2])
