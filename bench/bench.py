#!/usr/bin/env python3
"""The benchmark harness of notary-purge: every goal of BENCHMARKS.md in one command.

    python3 bench/bench.py                  # release build, every scenario, 3 runs each
    python3 bench/bench.py --only T1,T6 --runs 5
    python3 bench/bench.py --smoke          # tiny CI version: debug build, a few seconds

Each measurement starts a fresh simulator (`notary-purge sim`) on 127.0.0.1 and uses a
fresh database in a temporary folder. Wall time and peak RSS come from the OS for each
child process (os.wait4). Variants that a goal compares run interleaved, side by side,
in every repetition; ratios are medians of the per-repetition ratios. The results go to
stdout and to bench/out/results.md.
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
TOKEN = os.environ.get("NOTARY_TOKEN", "sim-token")
GENERATED_PREFIX = "00000000-0000-4000-8000-"
SUMMARY = re.compile(r"deleted (\d+), already gone (\d+), rejected (\d+), failed (\d+)")
MIB = 1024


@dataclass
class Sizes:
    """How big each scenario is."""

    t1_ids: int
    s0_ids: int
    t2_ids: int
    t2_latency_ms: int
    t3_small: int
    t3_big: int
    t4_lines: int
    t5_certs: int
    t6_rate: int
    t6_requests: int


FULL = Sizes(
    t1_ids=200_000,
    s0_ids=1_000_000,
    t2_ids=20_000,
    t2_latency_ms=50,
    t3_small=10_000,
    t3_big=1_000_000,
    t4_lines=1_000_000,
    t5_certs=1_000_000,
    t6_rate=50,
    t6_requests=1_500,
)
SMOKE = Sizes(
    t1_ids=2_000,
    s0_ids=5_000,
    t2_ids=500,
    t2_latency_ms=5,
    t3_small=500,
    t3_big=5_000,
    t4_lines=5_000,
    t5_certs=5_000,
    t6_rate=50,
    t6_requests=50,
)


class BenchError(Exception):
    """A scenario did not do what it should; the harness exits non-zero."""


@dataclass
class Proc:
    """One finished child process, as the OS saw it."""

    wall: float
    rss_kib: int
    cpu: float
    stdout: str


@dataclass
class Sample:
    """One measurement of one variant."""

    wall: float
    rss_kib: int
    n_ids: int = 0
    sim_cpu: float = 0.0
    sim_requests: int = 0
    stamps: list = field(default_factory=list)

    @property
    def ids_per_second(self):
        return self.n_ids / self.wall

    @property
    def request_phase_rate(self):
        """IDs/s between the first and the last request the simulator saw."""
        return self.n_ids / (self.stamps[-1] - self.stamps[0])


@dataclass
class Report:
    """Everything the run found, rendered as Markdown at the end."""

    goals: list = field(default_factory=list)
    variants: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    plans: list = field(default_factory=list)
    failed: bool = False
    judged: bool = True

    def goal(self, scenario, goal, measured, met):
        if not self.judged:
            verdict = "not judged (smoke)"
        else:
            verdict = "n/a" if met is None else ("met" if met else "**missed**")
        self.goals.append((scenario, goal, measured, verdict))

    def variant(self, scenario, name, samples):
        walls = [sample.wall for sample in samples]
        rates = [sample.ids_per_second for sample in samples if sample.n_ids]
        rate = f"{statistics.median(rates):,.0f}" if rates else ""
        rss = max(sample.rss_kib for sample in samples) / MIB
        busy = [sample.sim_cpu / sample.wall for sample in samples if sample.sim_cpu]
        sim_busy = f"{statistics.median(busy) * 100:.0f} %" if busy else ""
        self.variants.append((
            scenario, name, len(samples), f"{statistics.median(walls):.3f}", rate,
            f"{rss:.1f}", sim_busy,
        ))


def main():
    args = parse_args()
    sizes = SMOKE if args.smoke else FULL
    runs = 1 if args.smoke else args.runs
    selected = [name.strip().upper() for name in args.only.split(",")] if args.only else None

    report = Report(judged=not args.smoke)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="notary-bench-") as tmp:
        code = revision()
        binaries = build(args.smoke, Path(tmp))
        bench = Bench(binaries, sizes, runs, Path(tmp), report, args.smoke)
        for name, scenario in SCENARIOS:
            if selected and name not in selected:
                continue
            log(f"== {name}")
            try:
                scenario(bench)
            except BenchError as err:
                report.failed = True
                report.notes.append(f"{name} broke: {err}")
                log(f"error: {name}: {err}")
    elapsed = time.monotonic() - started

    text = render(report, args, runs, elapsed, code)
    print(text)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "results.md").write_text(text)
    return 1 if report.failed else 0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny CI version (debug build)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each scenario")
    parser.add_argument("--only", help="comma-separated scenarios, e.g. S0,T1,T6")
    return parser.parse_args()


def log(message):
    print(message, file=sys.stderr, flush=True)


def build(smoke, tmp):
    """Builds the binary and the raw client, and copies them to `tmp`.

    The copies keep the whole run on one build even if something rebuilds target/ meanwhile.
    Smoke mode uses the debug profile, which `cargo test` has just built.
    """
    profile = "debug" if smoke else "release"
    command = ["cargo", "build", "--locked", "--bin", "notary-purge", "--example", "raw_delete"]
    if not smoke:
        command.append("--release")
    log(f"== building ({profile})")
    subprocess.run(command, cwd=ROOT, check=True)
    target = ROOT / "target" / profile
    binaries = {"cli": target / "notary-purge", "raw": target / "examples" / "raw_delete"}
    for name, built in binaries.items():
        binaries[name] = str(tmp / built.name)
        shutil.copy2(built, binaries[name])
    return binaries


# -- processes ----------------------------------------------------------------------------


def measure(command, stdout_path=None, check=True):
    """Runs `command` to the end; wall time, peak RSS and CPU time from os.wait4."""
    env = dict(os.environ, NOTARY_TOKEN=TOKEN)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        target = open(stdout_path, "wb") if stdout_path else out
        try:
            started = time.monotonic()
            child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=target, stderr=err, env=env
            )
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.monotonic() - started
        finally:
            if stdout_path:
                target.close()
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if check and child.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        raise BenchError(f"`{' '.join(command[:4])} ...` exited {child.returncode}: {tail}")
    return Proc(wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, stdout)


class Simulator:
    """`notary-purge sim` on a free loopback port, for one measurement."""

    def __init__(self, cli, files, latency_ms=0, request_times=None):
        self.command = [
            cli, "sim", "--port", "0", "--files", str(files),
            "--latency-ms", str(latency_ms), "--no-request-log",
        ]
        if request_times:
            self.command += ["--request-times", str(request_times)]
        self.cpu = 0.0
        self.url = None

    def __enter__(self):
        env = dict(os.environ, NOTARY_TOKEN=TOKEN)
        self.child = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, text=True,
        )
        self.url = self.child.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.child.kill()
            self.child.wait()
            raise BenchError(f"the simulator did not start (printed `{self.url}`)")
        return self

    def __exit__(self, *exc):
        self.child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 20
        while True:
            pid, status, usage = os.wait4(self.child.pid, os.WNOHANG)
            if pid:
                break
            if deadline < time.monotonic():
                self.child.kill()
                _, status, usage = os.wait4(self.child.pid, 0)
                break
            time.sleep(0.02)
        self.child.returncode = os.waitstatus_to_exitcode(status)
        self.child.stdout.close()
        self.cpu = usage.ru_utime + usage.ru_stime
        return False


# -- the shared set-up ----------------------------------------------------------------------


class Bench:
    """Binaries, sizes, a temporary folder, and the data files and databases made once."""

    def __init__(self, binaries, sizes, runs, tmp, report, smoke):
        self.cli = binaries["cli"]
        self.raw = binaries["raw"]
        self.sizes = sizes
        self.runs = runs
        self.tmp = tmp
        self.report = report
        self.smoke = smoke
        self.made = {}
        self.counter = 0

    def path(self, name):
        self.counter += 1
        return self.tmp / f"{self.counter}-{name}"

    def ids_file(self, n_ids):
        """A file with the simulator's first `n_ids` generated file IDs, one per line."""
        key = ("ids", n_ids)
        if key not in self.made:
            path = self.tmp / f"ids-{n_ids}.txt"
            with open(path, "w") as out:
                for n in range(n_ids):
                    out.write(f"{GENERATED_PREFIX}{n:012x}\n")
            self.made[key] = path
        return self.made[key]

    def empty_db(self):
        """A fresh database with the schema applied (by enqueueing an empty file)."""
        key = ("empty",)
        if key not in self.made:
            path = self.tmp / "empty.db"
            nothing = self.tmp / "no-ids.txt"
            nothing.write_text("")
            measure([self.cli, "--db", str(path), "enqueue", "--file", str(nothing)])
            self.made[key] = path
        return self.copy_db(self.made[key])

    def queued_db(self, n_ids):
        """A fresh database with `n_ids` generated IDs pending (enqueued once, then copied)."""
        key = ("queued", n_ids)
        if key not in self.made:
            path = self.tmp / f"queued-{n_ids}.db"
            measure([self.cli, "--db", str(path), "enqueue", "--file", str(self.ids_file(n_ids))])
            self.made[key] = path
        return self.copy_db(self.made[key])

    def copy_db(self, template):
        path = self.path("bench.db")
        for suffix in ("", "-wal"):
            source = Path(f"{template}{suffix}")
            if source.exists():
                shutil.copyfile(source, f"{path}{suffix}")
        return path

    def drop_db(self, path):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def repeat(self, scenario, variants):
        """Runs every variant once per repetition, interleaved; returns samples by name."""
        samples = {name: [] for name in variants}
        for run_idx in range(self.runs):
            for name, variant in variants.items():
                log(f"[{scenario}] run {run_idx + 1}/{self.runs}: {name}")
                samples[name].append(variant())
        for name, taken in samples.items():
            self.report.variant(scenario, name, taken)
        return samples

    # -- the measured commands --------------------------------------------------------------

    def raw_delete(self, n_ids, chunk_size, concurrency):
        """The raw client against a fresh simulator."""
        sim = Simulator(self.cli, n_ids)
        with sim:
            proc = measure([self.raw, sim.url, str(n_ids), str(chunk_size), str(concurrency)])
        expect_count(r"raw: deleted (\d+) of", proc.stdout, n_ids, "raw client")
        n_requests = -(-n_ids // chunk_size)
        return Sample(proc.wall, proc.rss_kib, n_ids, sim.cpu, n_requests)

    def run(self, db, n_files, expected, run_args, latency_ms=0, timed=False):
        """`notary-purge run` on `db` against a fresh simulator; checks the summary and archive.

        With `timed`, the sample carries the arrival time of every request at the simulator.
        """
        times = self.path("request-times.txt") if timed else None
        sim = Simulator(self.cli, n_files, latency_ms, times)
        with sim:
            command = [self.cli, "--db", str(db), "--base-url", sim.url, "run", "--yes"]
            proc = measure(command + run_args)
        expect_count(SUMMARY, proc.stdout, expected, "run")
        archived = count_rows(db, "select count(*) from certificates")
        if archived != expected:
            raise BenchError(f"run archived {archived} certificates, expected {expected}")
        self.drop_db(db)
        sample = Sample(proc.wall, proc.rss_kib, expected, sim.cpu)
        if times:
            lines = times.read_text().splitlines()
            sample.stamps = sorted(float(line.split()[0]) for line in lines)
            times.unlink()
        return sample

    def guide(self, n_ids, latency_ms, threads):
        """bench/guide_sequential.py against a fresh simulator."""
        db = self.path("guide.db")
        sim = Simulator(self.cli, n_ids, latency_ms)
        with sim:
            command = [
                sys.executable, str(ROOT / "bench" / "guide_sequential.py"),
                "--base-url", sim.url, "--file", str(self.ids_file(n_ids)), "--db", str(db),
                "--threads", str(threads),
            ]
            proc = measure(command)
        expect_count(r"guide: deleted (\d+) of", proc.stdout, n_ids, "guide script")
        if count_rows(db, "select count(*) from certificates") != n_ids:
            raise BenchError("the guide script did not archive every certificate")
        self.drop_db(db)
        return Sample(proc.wall, proc.rss_kib, n_ids, sim.cpu)


def expect_count(pattern, stdout, expected, what):
    match = re.search(pattern, stdout)
    if not match or int(match.group(1)) != expected:
        raise BenchError(f"{what} printed `{stdout.strip()}`, expected {expected} deleted")


def count_rows(db, query):
    connection = sqlite3.connect(db)
    try:
        return connection.execute(query).fetchone()[0]
    finally:
        connection.close()


def median_ratio(numerators, denominators):
    """The median over repetitions of numerator / denominator, each an IDs/s figure."""
    pairs = zip(numerators, denominators)
    return statistics.median(a.ids_per_second / b.ids_per_second for a, b in pairs)


def median_rate(samples):
    return statistics.median(sample.ids_per_second for sample in samples)


def max_rss_mib(samples):
    return max(sample.rss_kib for sample in samples) / MIB


# -- the scenarios -----------------------------------------------------------------------


def s0_simulator(bench):
    """The simulator alone: the raw client at two concurrencies, and the sim's CPU time."""
    n_ids = bench.sizes.s0_ids
    samples = bench.repeat("S0", {
        "raw client, chunk 100, concurrency 16": lambda: bench.raw_delete(n_ids, 100, 16),
        "raw client, chunk 100, concurrency 64": lambda: bench.raw_delete(n_ids, 100, 64),
        "raw client, chunk 1, concurrency 16": lambda: bench.raw_delete(n_ids // 50, 1, 16),
    })
    for name, taken in samples.items():
        served = statistics.median(sample.sim_requests / sample.wall for sample in taken)
        cpu_per_request = statistics.median(
            sample.sim_cpu / sample.sim_requests for sample in taken
        )
        bench.report.notes.append(
            f"S0, {name}: the simulator served {served:,.0f} requests/s, using "
            f"{cpu_per_request * 1e6:,.0f} µs of CPU per request "
            f"(so one core serves about {1 / cpu_per_request:,.0f} requests/s)"
        )
    bulk = samples["raw client, chunk 100, concurrency 16"]
    served = statistics.median(sample.sim_requests / sample.wall for sample in bulk)
    bench.report.goal(
        "S0", "the simulator's own rate (bulk deletes of 100 IDs, 16 at a time)",
        f"{served:,.0f} requests/s = {median_rate(bulk):,.0f} IDs/s", None,
    )


def t1_throughput(bench):
    """T1 (and T7): run against the raw HTTP ceiling, with and without certificate capture."""
    n_ids = bench.sizes.t1_ids
    common = ["--concurrency", "16", "--chunk-size", "100"]
    samples = bench.repeat("T1", {
        "raw ceiling": lambda: bench.raw_delete(n_ids, 100, 16),
        "run, capture off": lambda: bench.run(
            bench.queued_db(n_ids), n_ids, n_ids, common + ["--capture-certificates", "false"]
        ),
        "run, capture on": lambda: bench.run(
            bench.queued_db(n_ids), n_ids, n_ids, common + ["--capture-certificates", "true"]
        ),
    })
    raw, off, on = samples["raw ceiling"], samples["run, capture off"], samples["run, capture on"]
    ratio = median_ratio(off, raw)
    bench.report.goal(
        "T1", "run (capture off) ≥ 0.8 × raw ceiling",
        f"{median_rate(off):,.0f} vs {median_rate(raw):,.0f} IDs/s = {ratio:.3f} ×",
        ratio >= 0.8,
    )
    capture_ratio = median_ratio(on, off)
    bench.report.goal(
        "T7", "cost of capture (T1 set-up, no latency), as a ratio",
        f"{median_rate(on):,.0f} vs {median_rate(off):,.0f} IDs/s = {capture_ratio:.3f} ×",
        None,
    )


def t2_latency(bench):
    """T2: run at concurrency 32 against the guide's script, sequential and with 32 threads."""
    n_ids, latency = bench.sizes.t2_ids, bench.sizes.t2_latency_ms
    if not has_requests(bench):
        return
    run_args = ["--concurrency", "32", "--chunk-size", "100"]
    samples = bench.repeat("T2", {
        "guide script, sequential": lambda: bench.guide(n_ids, latency, 0),
        "guide script, 32 threads": lambda: bench.guide(n_ids, latency, 32),
        "run, concurrency 32, capture off": lambda: bench.run(
            bench.queued_db(n_ids), n_ids, n_ids,
            run_args + ["--capture-certificates", "false"], latency,
        ),
        "run, concurrency 32, capture on": lambda: bench.run(
            bench.queued_db(n_ids), n_ids, n_ids,
            run_args + ["--capture-certificates", "true"], latency,
        ),
    })
    sequential = samples["guide script, sequential"]
    threads = samples["guide script, 32 threads"]
    run = samples["run, concurrency 32, capture off"]
    over_sequential = median_ratio(run, sequential)
    over_threads = median_ratio(run, threads)
    bench.report.goal(
        "T2", "run (capture off, as the script) ≥ 25 × sequential script",
        f"{median_rate(run):,.0f} vs {median_rate(sequential):,.0f} IDs/s "
        f"= {over_sequential:.1f} ×",
        over_sequential >= 25,
    )
    bench.report.goal(
        "T2", "run (capture off, as the script) ≥ 1.0 × script with 32 threads",
        f"{median_rate(run):,.0f} vs {median_rate(threads):,.0f} IDs/s "
        f"= {over_threads:.2f} ×",
        over_threads >= 1.0,
    )
    captured = samples["run, concurrency 32, capture on"]
    bench.report.goal(
        "T7", f"cost of capture at {latency} ms latency (T2 set-up), as a ratio",
        f"{median_rate(captured):,.0f} vs {median_rate(run):,.0f} IDs/s "
        f"= {median_ratio(captured, run):.3f} × (vs sequential script: "
        f"{median_ratio(captured, sequential):.2f} ×)",
        None,
    )


def has_requests(bench):
    """Whether the guide script can import `requests`, installing it with pip if needed."""
    probe = [sys.executable, "-c", "import requests"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return True
    log("installing `requests` with pip")
    install = [sys.executable, "-m", "pip", "install", "--quiet", "requests"]
    subprocess.run(install, capture_output=True)
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return True
    if not bench.smoke:
        raise BenchError("the guide script needs `requests`, and pip could not install it")
    bench.report.notes.append("T2 skipped: `requests` is missing and pip could not install it")
    return False


def t3_queue_length(bench):
    """T3: the same run with a short and a long queue; memory of draining the long one."""
    small, big = bench.sizes.t3_small, bench.sizes.t3_big
    run_args = ["--concurrency", "16", "--chunk-size", "100", "--capture-certificates", "false"]
    samples = bench.repeat("T3", {
        f"{small:,} queued, all sent": lambda: bench.run(
            bench.queued_db(small), small, small, run_args, timed=True
        ),
        f"{big:,} queued, first {small:,} sent": lambda: bench.run(
            bench.queued_db(big), big, small, run_args + ["--max-delete", str(small)],
            timed=True,
        ),
        f"{big:,} queued, all sent": lambda: bench.run(
            bench.queued_db(big), big, big, run_args, timed=True
        ),
    })
    short = samples[f"{small:,} queued, all sent"]
    long_head = samples[f"{big:,} queued, first {small:,} sent"]
    long_all = samples[f"{big:,} queued, all sent"]
    head_ratio = median_ratio(long_head, short)
    all_ratio = median_ratio(long_all, short)
    bench.report.goal(
        "T3", f"IDs/s with {big:,} queued within 10 % of {small:,} queued",
        f"same {small:,} IDs sent: {head_ratio:.3f} ×; whole queue sent: {all_ratio:.3f} ×",
        head_ratio >= 0.9 and all_ratio >= 0.9,
    )
    phase = [
        statistics.median(sample.request_phase_rate for sample in taken)
        for taken in (short, long_head, long_all)
    ]
    bench.report.goal(
        "T3", "the same, counting only from the first to the last request (no start and end)",
        f"{phase[0]:,.0f}, {phase[1]:,.0f} and {phase[2]:,.0f} IDs/s: "
        f"{phase[1] / phase[0]:.3f} × and {phase[2] / phase[0]:.3f} ×",
        None,
    )
    peak = max(max_rss_mib(long_head), max_rss_mib(long_all))
    bench.report.goal(
        "T3", f"peak RSS of run with {big:,} queued ≤ 64 MiB", f"{peak:.1f} MiB", peak <= 64
    )


def t4_enqueue(bench):
    """T4: `enqueue --file` against the sqlite3 shell importing the same file."""
    n_lines = bench.sizes.t4_lines
    ids_file = bench.ids_file(n_lines)
    samples = bench.repeat("T4", {
        "sqlite3 shell .import": lambda: sqlite3_import(bench, ids_file, n_lines),
        "notary-purge enqueue --file": lambda: enqueue(bench, ids_file, n_lines),
    })
    shell, ours = samples["sqlite3 shell .import"], samples["notary-purge enqueue --file"]
    ratio = statistics.median(a.wall / b.wall for a, b in zip(ours, shell))
    bench.report.goal(
        "T4", "enqueue time ≤ 2 × sqlite3 shell import",
        f"{statistics.median(s.wall for s in ours):.2f} s vs "
        f"{statistics.median(s.wall for s in shell):.2f} s = {ratio:.2f} ×",
        ratio <= 2.0,
    )
    peak = max_rss_mib(ours)
    bench.report.goal("T4", "peak RSS of enqueue ≤ 64 MiB", f"{peak:.1f} MiB", peak <= 64)


def enqueue(bench, ids_file, n_lines):
    db = bench.empty_db()
    proc = measure([bench.cli, "--db", str(db), "enqueue", "--file", str(ids_file)])
    expect_count(r"(\d+) enqueued", proc.stdout, n_lines, "enqueue")
    bench.drop_db(db)
    return Sample(proc.wall, proc.rss_kib)


def sqlite3_import(bench, ids_file, n_lines):
    db = bench.empty_db()
    script = bench.path("import.sql")
    script.write_text(
        ".bail on\n"
        "create temp table import_ids (file_id text);\n"
        f".import --csv '{ids_file}' import_ids\n"
        "begin immediate;\n"
        f"insert into batches (label, source) values ('sqlite3', '{ids_file}');\n"
        "insert into items (batch_id, file_id)\n"
        "select (select max(id) from batches), file_id from import_ids where true\n"
        "on conflict do nothing;\n"
        "commit;\n"
    )
    proc = measure(["sqlite3", str(db), f".read '{script}'"])
    pending = count_rows(db, "select count(*) from items where state = 'pending'")
    if pending != n_lines:
        raise BenchError(f"the sqlite3 import queued {pending} items, expected {n_lines}")
    bench.drop_db(db)
    return Sample(proc.wall, proc.rss_kib)


def t5_archive(bench):
    """T5: an archive of many certificates: index use of lookups, and a streaming export."""
    n_certs = bench.sizes.t5_certs
    db = bench.empty_db()
    started = time.monotonic()
    fill_archive(db, n_certs)
    bench.report.notes.append(
        f"T5: the archive of {n_certs:,} certificates was written with one SQL statement "
        f"in {time.monotonic() - started:.1f} s (generated values, see fill_archive)"
    )
    file_id = f"{GENERATED_PREFIX}{n_certs // 2:012x}"
    cert = query_one(db, f"select cert from certificates where file_id = '{file_id}'")
    for what, query in (
        ("by file ID", f"select cert from certificates where file_id = '{file_id}'"),
        ("by certificate ID", f"select file_id from certificates where cert = '{cert}'"),
    ):
        plan = subprocess.run(
            ["sqlite3", str(db), f"explain query plan {query}"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        bench.report.plans.append((what, query, plan))
        uses_index = "USING INDEX" in plan or "USING COVERING INDEX" in plan
        step = plan.splitlines()[-1].lstrip("`|- ")
        bench.report.goal("T5", f"lookup {what} uses an index", step, uses_index)

    samples = bench.repeat("T5", {
        "certs FILE_ID (one lookup)": lambda: lookup(bench, db, file_id, cert),
        "certs --export csv": lambda: export(bench, db, "csv", n_certs + 1),
        "certs --export jsonl": lambda: export(bench, db, "jsonl", n_certs),
    })
    for name in ("certs --export csv", "certs --export jsonl"):
        taken = samples[name]
        peak = max_rss_mib(taken)
        wall = statistics.median(sample.wall for sample in taken)
        bench.report.goal(
            "T5", f"`{name}` of {n_certs:,} streams: peak RSS ≤ 64 MiB",
            f"{peak:.1f} MiB, {wall:.2f} s ({n_certs / wall:,.0f} rows/s)", peak <= 64,
        )
    bench.drop_db(db)


def fill_archive(db, n_certs):
    """Writes `n_certs` made-up certificates (deterministic 64-hex IDs) with one statement."""
    hex_terms = ", ".join(
        f"(i * {multiplier} + {k}) % 4294967291"
        for k, multiplier in enumerate((2654435761, 2246822519, 3266489917, 668265263,
                                        374761393, 1664525, 1013904223, 22695477))
    )
    connection = sqlite3.connect(db)
    connection.executescript(
        "begin;\n"
        "insert into batches (label, source) values ('bench-archive', 'bench');\n"
        "insert into certificates (file_id, cert, batch_id, raw)\n"
        "select file_id, cert, (select max(id) from batches),\n"
        "       json_object('id', file_id, 'cert', cert, 'name', 'file-' || i || '.pdf',\n"
        "                   'size', 1000 + i % 5000, 'created_at', '2020-01-02T00:00:00.000Z')\n"
        "from (\n"
        f"  select i, printf('{GENERATED_PREFIX}%012x', i) as file_id,\n"
        f"         printf('{'%08x' * 8}', {hex_terms}) as cert\n"
        "  from (with recursive n(i) as (select 0 union all select i + 1 from n\n"
        f"        where i < {n_certs - 1}) select i from n)\n"
        ");\n"
        "commit;\n"
    )
    connection.close()


def query_one(db, query):
    connection = sqlite3.connect(db)
    try:
        return connection.execute(query).fetchone()[0]
    finally:
        connection.close()


def lookup(bench, db, file_id, cert):
    proc = measure([bench.cli, "--db", str(db), "certs", file_id])
    if cert not in proc.stdout:
        raise BenchError(f"`certs {file_id}` printed `{proc.stdout.strip()}`")
    return Sample(proc.wall, proc.rss_kib)


def export(bench, db, format_name, expected_lines):
    out = bench.path(f"export.{format_name}")
    proc = measure([bench.cli, "--db", str(db), "certs", "--export", format_name], out)
    with open(out, "rb") as lines:
        n_lines = sum(1 for _ in lines)
    out.unlink()
    if n_lines != expected_lines:
        raise BenchError(f"the {format_name} export has {n_lines} lines, expected {expected_lines}")
    return Sample(proc.wall, proc.rss_kib)


def t6_rate_limit(bench):
    """T6: the achieved request rate under a limit, from the simulator's request times."""
    rate, n_requests = bench.sizes.t6_rate, bench.sizes.t6_requests
    chunk_size = 10
    n_ids = n_requests * chunk_size
    run_args = [
        "--concurrency", "8", "--chunk-size", str(chunk_size),
        "--capture-certificates", "false", "--max-requests-per-second", str(rate),
    ]
    achieved, bursts, gaps = [], [], []

    def limited_run():
        sample = bench.run(bench.queued_db(n_ids), n_ids, n_ids, run_args, timed=True)
        stamps = sample.stamps
        if len(stamps) != n_requests:
            raise BenchError(f"the simulator saw {len(stamps)} requests, expected {n_requests}")
        achieved.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
        bursts.append(busiest_second(stamps))
        gaps.extend(later - earlier for earlier, later in zip(stamps, stamps[1:]))
        return sample

    bench.repeat("T6", {f"run --max-requests-per-second {rate}": limited_run})
    gaps.sort()
    bench.report.notes.append(
        f"T6: gaps between consecutive requests at the simulator: min {gaps[0] * 1e3:.2f} ms, "
        f"1st percentile {gaps[len(gaps) // 100] * 1e3:.2f} ms, "
        f"median {statistics.median(gaps) * 1e3:.2f} ms, max {gaps[-1] * 1e3:.2f} ms "
        f"(1 / {rate} = {1e3 / rate:.2f} ms)"
    )
    median_achieved = statistics.median(achieved)
    error = abs(median_achieved - rate) / rate
    seconds = (n_requests - 1) / median_achieved
    bench.report.goal(
        "T6", f"achieved rate within 5 % of {rate}/s (over {seconds:.0f} s)",
        f"{median_achieved:.2f} requests/s ({error * 100:.1f} % off)", error <= 0.05,
    )
    bench.report.goal(
        "T6", f"no 1 s window with more than {rate} requests",
        f"busiest 1 s window: {max(bursts)} requests (per run: {bursts})", max(bursts) <= rate,
    )


def busiest_second(stamps):
    """The most requests that arrived within any window [t, t + 1 s)."""
    busiest, first = 0, 0
    for last, stamp in enumerate(stamps):
        while stamps[first] <= stamp - 1.0:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


SCENARIOS = [
    ("S0", s0_simulator),
    ("T1", t1_throughput),
    ("T2", t2_latency),
    ("T3", t3_queue_length),
    ("T4", t4_enqueue),
    ("T5", t5_archive),
    ("T6", t6_rate_limit),
]


# -- the report ---------------------------------------------------------------------------


def render(report, args, runs, elapsed, code):
    lines = [
        "# notary-purge benchmark results",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- code: {code} (when the harness built it)",
        f"- command: `python3 bench/bench.py{command_flags(args)}` "
        f"({runs} run{'s' if runs != 1 else ''} per scenario, {elapsed:.0f} s in all)",
        f"- load when done: {os.getloadavg()[0]:.2f} (1-minute average)",
        "",
        "## Goals",
        "",
        "| scenario | goal | measured (medians) | result |",
        "|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in report.goals]
    lines += [
        "",
        "## Every variant",
        "",
        "Wall time and IDs/s are medians over the runs; peak RSS is the largest of the runs.",
        "Simulator CPU is the simulator's CPU time over the measured command's wall time",
        "(100 % is one core of the two).",
        "",
        "| scenario | variant | runs | wall s | IDs/s | peak RSS MiB | simulator CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in report.variants]
    if report.plans:
        lines += ["", "## Query plans", ""]
        for what, query, plan in report.plans:
            shown = f"sqlite> explain query plan {query}"
            lines += [f"Lookup {what}:", "", "```", shown, plan, "```", ""]
    if report.notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def command_flags(args):
    flags = ""
    if args.smoke:
        flags += " --smoke"
    elif args.runs != 3:
        flags += f" --runs {args.runs}"
    if args.only:
        flags += f" --only {args.only}"
    return flags


def revision():
    describe = ["git", "describe", "--always", "--dirty", "--exclude", "*"]
    done = subprocess.run(describe, cwd=ROOT, capture_output=True, text=True)
    return f"commit {done.stdout.strip()}" if done.returncode == 0 else "not a git checkout"


def machine():
    cores = os.cpu_count()
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    model = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = f"{total_kib / 1024 / 1024:.1f} GiB memory"
    return f"{cores} cores ({model}), {memory}, {platform.system()} {platform.release()}"


if __name__ == "__main__":
    sys.exit(main())
