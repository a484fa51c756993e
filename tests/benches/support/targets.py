"""Prints the targets `make bench` measured (support/targets.rs) as one table: the guard that
shows a lost target at a glance. Exits 0 either way: the figures are for people to read, not a
gate (timing on a shared 2-core machine is too noisy for one)."""
import json
import sys

rows = []
try:
    with open(sys.argv[1], encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
except FileNotFoundError:
    pass
if not rows:
    print("bench targets: none recorded")
    sys.exit(0)
head = ("bench", "figure", "measured", "target", "")
table = [head] + [
    (r["bench"], r["what"], f'{r["value"]:.3g} {r["unit"]}', f'{r["target"]} {r["unit"]}',
     "met" if r["met"] else "MISSED")
    for r in rows
]
widths = [max(len(row[i]) for row in table) for i in range(len(head))]
print("\nbench targets (one run, this machine):")
for i, row in enumerate(table):
    print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if i == 0:
        print("  " + "  ".join("-" * w for w in widths))
met = sum(r["met"] for r in rows)
print(f"  {met} of {len(rows)} targets met")
