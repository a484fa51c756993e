"""Writes each fuzz target's seed corpus under the given directory, from the repository's own
examples: workflow files and the corpus of bad workflows (load), the wire format's golden
vectors (wire), converge_when expressions from the expression tests (expr), and templates
from the conformance cases plus hand-picked edge cases (template)."""
import glob
import hashlib
import os
import re
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = sys.argv[1]


def put(target, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


for pattern in ("examples/*/*.yaml", "examples/*/*.json", "tests/corpus/*.json",
                "tests/corpus/*.yaml", "tests/conformance/*/workflow.*"):
    for p in sorted(glob.glob(os.path.join(root, pattern))):
        with open(p, "rb") as f:
            data = f.read()
        if len(data) <= 64 * 1024:
            put("load", data)

for p in sorted(glob.glob(os.path.join(root, "proto/vectors/*.msgpack.hex"))):
    with open(p) as f:
        put("wire", bytes.fromhex(re.sub(r"[^0-9a-fA-F]", "", f.read())))

with open(os.path.join(root, "crates/kora-model/src/expr/tests.rs")) as f:
    for m in re.finditer(r'\("((?:[^"\\]|\\.)*)", json!', f.read()):
        put("expr", m.group(1).encode().decode("unicode_escape"))
for e in ("n > 2 and not t", "len(l) == 4", "o['a']['b'] + big", "s[0:2] == 'te'",
          "f * 2 ** 3 >= n", "z is None or e"):
    put("expr", e)

templates = set()
for p in sorted(glob.glob(os.path.join(root, "tests/conformance/*/workflow.*"))):
    with open(p, encoding="utf-8") as f:
        templates.update(re.findall(r'"[^"\n]*\$\{[^"\n]*"', f.read()))
for t in sorted(templates):
    put("template", t)
for t in ("${a}", "x ${a} y ${f} ${g} ${h}", "${a.b}", "${ a }", "${}", "${${a}}", "$${a}}",
          "${big}", '{"k": ["${l}", "${o} and ${n}"]}', "${s}", "${a}\x00{\"a\": 1.0e400}"):
    put("template", t)
