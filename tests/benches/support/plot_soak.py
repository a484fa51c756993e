"""Plots a soak's samples (soak.csv, written by tests/benches/soak.rs): each role's RSS and the
hop latency over time, with the tasks finished per second. `make soak` runs it."""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{src} has no samples")
    t = [float(r["elapsed_s"]) for r in rows]
    col = lambda name: [float(r[name]) for r in rows]  # noqa: E731
    fig, (mem, lat) = plt.subplots(2, 1, sharex=True, figsize=(10, 7))
    for role in ("scheduler", "coordinator", "worker"):
        mem.plot(t, col(f"{role}_rss_mib"), label=role)
    mem.set_ylabel("RSS (MiB)")
    mem.set_ylim(bottom=0)
    mem.legend(loc="upper left")
    mem.grid(alpha=0.3)
    total = int(col("tasks")[-1])
    mem.set_title(f"Kora soak: {total:,} NoOp tasks, roles as kora serve processes")
    lat.plot(t, col("hop_p50_ms"), label="hop p50")
    lat.plot(t, col("hop_p99_ms"), label="hop p99")
    lat.set_ylabel("100-node chain hop under load (ms, log)")
    lat.set_xlabel("elapsed (s)")
    lat.set_yscale("log")
    lat.grid(alpha=0.3)
    rate = lat.twinx()
    rate.plot(t, col("tasks_per_s"), color="grey", alpha=0.5, label="tasks/s")
    rate.set_ylabel("tasks finished per second")
    rate.set_ylim(bottom=0)
    lines = lat.get_lines() + rate.get_lines()
    lat.legend(lines, [line.get_label() for line in lines], loc="upper left")
    fig.tight_layout()
    fig.savefig(dst, dpi=100)
    print(f"plot: {dst}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
