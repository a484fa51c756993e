#!/usr/bin/env python3
"""An external Kora worker in Python: proof that the wire contract in proto/ is enough.

It serves one queue of ExternalNode tasks, following proto/README.md's rules for a worker:
pull from `workers-<queue>-high` then `workers-<queue>` on `<P>_TASKS`, run the node, publish
the NodeResult with `Nats-Msg-Id: result:<task_id>` and wait for the publish ack, and only then
ack the task; a task that cannot be decoded is dead-lettered and terminated; long tasks send
in-progress acks.

    pip install nats-py msgpack
    python3 worker.py --queue text --prefix kora --nats nats://127.0.0.1:4222

Workflow side: {"id": "shout", "type": "ExternalNode",
                "config": {"queue": "text", "operation": "upper"}, ...}
The node's input is its config overlaid by its inputs; the operations below read `text` or
`values`. Add your own to OPERATIONS.
"""

import argparse
import asyncio
import os
import signal
import socket
import time

import msgpack
import nats
from nats.js.api import AckPolicy, ConsumerConfig

WIRE_VERSION = 1


class PermanentError(Exception):
    """A failure a retry will not fix (bad input)."""


def upper(inp):
    text = inp.get("text")
    if not isinstance(text, str):
        raise PermanentError("'text' must be a string")
    return {"text": text.upper()}


def word_count(inp):
    text = inp.get("text")
    if not isinstance(text, str):
        raise PermanentError("'text' must be a string")
    return {"words": len(text.split())}


def total(inp):
    values = inp.get("values")
    if not isinstance(values, list):
        raise PermanentError("'values' must be a list of numbers")
    return {"sum": sum(values)}


def slow(inp):
    time.sleep(float(inp.get("seconds", 1)))
    return {"slept": inp.get("seconds", 1)}


OPERATIONS = {"upper": upper, "word_count": word_count, "sum": total, "slow": slow}


def now_ms():
    return int(time.time() * 1000)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queue", required=True, help="the queue whose ExternalNode tasks to serve")
    ap.add_argument("--prefix", default=os.environ.get("KORA_PREFIX", "kora"))
    ap.add_argument("--nats", default=os.environ.get("KORA_NATS_URL", "nats://127.0.0.1:4222"))
    ap.add_argument("--ack-wait", type=float, default=30.0, help="the task consumers' ack wait, seconds")
    args = ap.parse_args()
    p, q = args.prefix, args.queue
    stream = p.upper().replace("-", "_") + "_TASKS"
    worker_id = f"py-{socket.gethostname()}-{os.getpid()}"

    nc = await nats.connect(args.nats, name=worker_id)
    js = nc.jetstream()
    subs = []
    for durable, subject in ((f"workers-{q}-high", f"{p}.task.{q}.high"), (f"workers-{q}", f"{p}.task.{q}")):
        try:
            await js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            await js.add_consumer(stream, ConsumerConfig(
                durable_name=durable, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT,
                ack_wait=args.ack_wait, max_deliver=5))
        subs.append(await js.pull_subscribe_bind(durable=durable, stream=stream))

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"{worker_id}: serving queue {q!r} of {p!r}", flush=True)

    async def handle(msg):
        try:
            task = msgpack.unpackb(msg.data, raw=False)
            task_id, run_id, node_id = task["task_id"], task["run_id"], task["node_id"]
        except Exception as e:  # rule 5: dead-letter what cannot be decoded
            meta = msg.metadata
            await js.publish(f"{p}.dlq.task", msg.data, headers={
                "Kora-Reason": f"undecodable task: {e}", "Kora-Orig-Subject": msg.subject,
                "Kora-Orig-Seq": str(meta.sequence.stream), "Kora-Deliveries": str(meta.num_delivered)})
            await msg.term()
            return
        inp = dict(task.get("config") or {})
        inp.update(task.get("inputs") or {})
        started = now_ms()
        op = OPERATIONS.get(inp.get("operation"))
        try:
            if op is None:
                raise PermanentError(f"unknown operation {inp.get('operation')!r}; this worker has {sorted(OPERATIONS)}")
            # Heartbeat while the operation runs in a thread (rule 2).
            work = asyncio.ensure_future(asyncio.to_thread(op, inp))
            while True:
                done, _ = await asyncio.wait({work}, timeout=args.ack_wait / 3)
                if done:
                    break
                await msg.in_progress()
            outcome = {"success": {"output": work.result()}}
        except PermanentError as e:
            outcome = {"failure": {"error": str(e), "error_type": "ValueError", "retryable": False}}
        except Exception as e:
            outcome = {"failure": {"error": f"{type(e).__name__}: {e}", "error_type": type(e).__name__,
                                   "retryable": isinstance(e, (ConnectionError, TimeoutError, OSError))}}
        result = {"v": WIRE_VERSION, "task_id": task_id, "run_id": run_id, "node_id": node_id,
                  "iteration": task.get("iteration", 0), "attempt": task["attempt"], "outcome": outcome,
                  "worker_id": worker_id, "started_at_ms": started, "finished_at_ms": now_ms()}
        # Rules 3 and 4: the result is stored before the task is acked.
        await js.publish(f"{p}.ledger.result", msgpack.packb(result, use_bin_type=True),
                         headers={"Nats-Msg-Id": f"result:{task_id}"})
        await msg.ack()

    while not stop.is_set():
        msgs = []
        for i, sub in enumerate(subs):  # rule 1: the high-priority consumer first
            try:
                msgs = await sub.fetch(1, timeout=0.05 if i == 0 else 0.5)
            except (asyncio.TimeoutError, nats.errors.TimeoutError):
                continue
            if msgs:
                break
        for m in msgs:
            await handle(m)
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
