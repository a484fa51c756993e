"""The client against a running gateway. Run by the Rust test `gateway::python` (which starts
every role and makes the keys); by hand:

    KORA_URL=http://127.0.0.1:8080 KORA_ADMIN_KEY=... KORA_VIEWER_KEY=... \
        python -m unittest discover -s clients/python/tests -v
"""

import os
import unittest
import uuid

import kora_client
from kora_client import Client

URL = os.environ["KORA_URL"]
ADMIN = os.environ["KORA_ADMIN_KEY"]
VIEWER = os.environ["KORA_VIEWER_KEY"]

DOUBLE = {
    "kora": 1,
    "name": "py-double",
    "nodes": [{"id": "a", "type": "PythonCodeNode", "config": {"code": "result = x * 2", "x": 1}}],
}
DIVIDE = {
    "kora": 1,
    "name": "py-divide",
    "nodes": [{"id": "d", "type": "PythonCodeNode", "config": {"code": "result = 1 / x", "x": 0}}],
}
SLEEPY = {
    "kora": 1,
    "name": "py-sleepy",
    "nodes": [
        {"id": "s", "type": "PythonCodeNode", "config": {"code": "import time\ntime.sleep(20)\nresult = 1"}}
    ],
}


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.kora = Client(URL, ADMIN)
        self.viewer = Client(URL, VIEWER)

    def test_run_waits_and_gives_the_results(self):
        out = self.kora.run(DOUBLE, params={"a": {"x": 21}})
        self.assertEqual(out["status"], "succeeded", out)
        self.assertEqual(out["results"]["a"]["result"], 42, out)

    def test_submit_then_wait_get_and_list(self):
        key = f"py-{uuid.uuid4()}"
        run_id = self.kora.submit(DOUBLE, params={"a": {"x": 5}}, idempotency_key=key)
        self.assertEqual(self.kora.submit(DOUBLE, idempotency_key=key), run_id)
        run = self.kora.wait(run_id, timeout=30)
        self.assertEqual(run["status"], "succeeded")
        self.assertEqual(run["results"]["a"]["result"], 10)
        self.assertEqual(self.kora.get(run_id)["workflow"], "py-double")
        self.assertTrue(run["attempts"], run)
        # Pages are followed: a page size of 1 still yields every run.
        ids = [r["run_id"] for r in self.kora.runs(workflow="py-double", page_size=1)]
        self.assertIn(run_id, ids)
        self.assertEqual(len(ids), len(set(ids)))
        statuses = {r["status"] for r in self.kora.runs(status="succeeded", page_size=2)}
        self.assertEqual(statuses, {"succeeded"})

    def test_events_follow_a_run_to_its_end_and_resume(self):
        run_id = self.kora.submit(DOUBLE)
        events = list(self.kora.events(run_id))
        kinds = [e.kind for e in events]
        self.assertEqual(kinds[0], "run_accepted", kinds)
        self.assertEqual(kinds[-1], "run_succeeded", kinds)
        self.assertIn("node_succeeded", kinds)
        self.assertEqual([e.id for e in events], sorted(e.id for e in events))
        later = list(self.kora.events(run_id, after=events[0].id))
        self.assertEqual([e.id for e in later], [e.id for e in events[1:]])

    def test_cancel(self):
        run_id = self.kora.submit(SLEEPY)
        first = next(iter(self.kora.events(run_id)))  # admitted (events allow for the delay)
        self.assertEqual(first.kind, "run_accepted")
        self.kora.cancel(run_id)
        run = self.kora.wait(run_id, timeout=30)
        self.assertEqual(run["status"], "cancelled")

    def test_wait_times_out_with_the_run_id(self):
        run_id = self.kora.submit(SLEEPY)
        next(iter(self.kora.events(run_id)))  # admitted, so that it can be cancelled after
        with self.assertRaises(kora_client.RunTimeout) as cm:
            self.kora.wait(run_id, timeout=0.5)
        self.assertEqual(cm.exception.run_id, run_id)
        self.kora.cancel(run_id)

    def test_dead_letters_replay_retry_and_purge(self):
        out = self.kora.run(DIVIDE)
        run_id = out["run_id"]
        self.assertTrue(out["results"]["d"].get("failed"), out)
        letters = self.kora.dead_letters(run_id=run_id)
        self.assertEqual(len(letters), 1, letters)
        dl = self.kora.dead_letter(letters[0]["id"])
        self.assertEqual(dl["dead_letter"]["node_id"], "d")
        # Replay with the input fixed: the run resumes and succeeds.
        self.kora.replay(letters[0]["id"], set={"x": 4})
        run = self.kora.wait(run_id, timeout=30)
        self.assertEqual(run["status"], "succeeded", run)
        self.assertEqual(run["results"]["d"]["result"], 0.25)
        with self.assertRaises(kora_client.Conflict):
            self.kora.replay(letters[0]["id"])
        # Retry from a node with an override.
        self.kora.retry(run_id, from_node="d", set={"x": 2})
        run = self.kora.wait(run_id, timeout=30)
        self.assertEqual(run["results"]["d"]["result"], 0.5, run)
        # Bulk: a dry run counts, a purge closes.
        second = self.kora.run(DIVIDE)["run_id"]
        counted = self.kora.replay_all(run_id=second, dry_run=True)
        self.assertEqual(counted["count"], 1, counted)
        purged = self.kora.purge(run_id=second)
        self.assertEqual(purged["count"], 1, purged)
        self.assertEqual(self.kora.dead_letters(run_id=second), [])
        self.assertEqual(len(self.kora.dead_letters(run_id=second, include_closed=True)), 1)

    def test_registered_workflows(self):
        name = f"py-reg-{uuid.uuid4().hex[:8]}"
        v1 = self.kora.register_workflow(name, DOUBLE)
        self.assertEqual(v1["version"], 1, v1)
        out = self.kora.run(workflow_name=name, params={"a": {"x": 3}})
        self.assertEqual(out["results"]["a"]["result"], 6, out)
        self.assertIn(name, [w["name"] for w in self.kora.workflows()])

    def test_typed_errors(self):
        with self.assertRaises(kora_client.NotFound) as cm:
            self.kora.get("no-such-run")
        self.assertEqual(cm.exception.status, 404)
        self.assertEqual(cm.exception.code, "not_found")
        with self.assertRaises(kora_client.Unauthenticated):
            Client(URL, "kora_nope_nope").get("x")
        with self.assertRaises(kora_client.Forbidden):
            self.viewer.submit(DOUBLE)
        run_id = self.kora.submit(DOUBLE)
        self.assertEqual(self.viewer.wait(run_id, timeout=30)["run_id"], run_id)
        with self.assertRaises(kora_client.Invalid) as cm:
            self.kora.submit({"kora": 1, "nodes": [{"id": "a", "type": "NoSuchNode"}]})
        self.assertIn("NoSuchNode", cm.exception.message)
        with self.assertRaises(kora_client.ConnectionFailed):
            Client("http://127.0.0.1:9", ADMIN, max_retries=0).submit(DOUBLE)
        with self.assertRaises(ValueError):
            self.kora.submit()
        self.assertNotIn(ADMIN, repr(self.kora))


if __name__ == "__main__":
    unittest.main()
