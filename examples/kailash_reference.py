#!/usr/bin/env python3
"""Runs workflows with the Kailash SDK's LocalRuntime and writes what Kailash returned to
<dir>/expected.json: {"status": "succeeded" | "failed", "error": ..., "results": {node: output}}.
Kora's end-to-end tests compare `kora run` against these files.

A <dir>/params.json, when present, is passed as the runtime parameters. A run that raises is
recorded as "failed" with the exception's message and no results (Kailash returns none).

Usage (needs `pip install kailash==2.65.0`):
  python3 examples/kailash_reference.py                 # every example and tests/conformance case
  python3 examples/kailash_reference.py DIR [DIR ...]

Kailash cannot re-import cycle fields from its own Workflow.to_dict() output, so cycle edges are
rebuilt with the cycle API (create_cycle ... build()) after loading the rest.
"""
import json
import os
import sys

import yaml  # installed with kailash

import kailash.nodes.code  # noqa: F401  (registers PythonCodeNode)
import kailash.nodes.data  # noqa: F401  (registers CSVReaderNode, JSONReaderNode)
import kailash.nodes.logic  # noqa: F401  (registers SwitchNode, MergeNode)
from kailash.runtime.local import LocalRuntime
from kailash.workflow.builder import WorkflowBuilder
from kailash.workflow.graph import Workflow

HERE = os.path.dirname(os.path.abspath(__file__))


def load(path):
    with open(path) as f:
        return yaml.safe_load(f) if path.endswith((".yaml", ".yml")) else json.load(f)


def build(doc):
    nodes = doc["nodes"]
    if isinstance(nodes, dict) and any("node_type" in n for n in nodes.values()):
        cycles = [c for c in doc["connections"] if c.get("cycle")]
        plain = dict(doc, connections=[c for c in doc["connections"] if not c.get("cycle")])
        wf = Workflow.from_dict(plain)
        groups = {}
        for c in cycles:
            groups.setdefault(c.get("cycle_id") or f"cycle_{c['source_node']}_{c['target_node']}", []).append(c)
        for cid, edges in groups.items():
            first = edges[0]
            mapping = {e["source_output"]: e["target_input"] for e in edges}
            cb = wf.create_cycle(cid).connect(first["source_node"], first["target_node"], mapping)
            if first.get("max_iterations"):
                cb = cb.max_iterations(first["max_iterations"])
            if first.get("convergence_check"):
                cb = cb.converge_when(first["convergence_check"])
            cb.build()
        return wf
    return WorkflowBuilder.from_dict(doc).build()


def clean(v):
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items() if k != "_exception"}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return v


def main(dirs):
    for d in dirs:
        d = os.path.abspath(d)
        name = next(f for f in sorted(os.listdir(d)) if f.startswith("workflow."))
        wf = build(load(os.path.join(d, name)))
        params_file = os.path.join(d, "params.json")
        params = load(params_file) if os.path.exists(params_file) else {}
        cwd = os.getcwd()
        os.chdir(d)
        try:
            results, _ = LocalRuntime(enable_monitoring=False).execute(wf, parameters=params)
            out = {"status": "succeeded", "error": None,
                   "results": {node: clean(results.get(node)) for node in wf.nodes}}
        except Exception as e:  # Kailash aborts the run by raising
            out = {"status": "failed", "error": f"{type(e).__name__}: {e}", "results": None}
        finally:
            os.chdir(cwd)
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(out, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"{os.path.relpath(d)}: {out['status']} -> expected.json")


def default_dirs():
    roots = [HERE, os.path.join(HERE, "..", "tests", "conformance")]
    return [os.path.join(r, e) for r in roots for e in sorted(os.listdir(r)) if os.path.isdir(os.path.join(r, e))]


if __name__ == "__main__":
    main(sys.argv[1:] or default_dirs())
