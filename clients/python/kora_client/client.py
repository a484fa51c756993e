"""`Client`: one Kora gateway, one credential. Every method is one or a few calls of the
`/v1` API (see `docs/gateway.md`); failures raise the errors of `kora_client.errors`.

Standard library only (`urllib`), so installing it pulls in nothing.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, List, Optional, Tuple

from . import sse
from .errors import ConnectionFailed, NotFound, RunTimeout, error_for

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "rejected"})

_Answer = Tuple[int, Any, Dict[str, str]]


def _seg(value: str) -> str:
    """A path segment, percent-encoded (run ids, names and dead-letter ids are opaque)."""
    return urllib.parse.quote(str(value), safe="")


class Client:
    """A Kora gateway at `base_url` (`http://127.0.0.1:8080`), called with `api_key` (an API
    key `kora_<id>_<secret>` or a JWT).

    Requests that were not processed (429, and 503 for reads or submissions with an
    idempotency key) are retried up to `max_retries` times, after the gateway's `Retry-After`.

    A submitted run is in the ledger once a coordinator admits it (normally within a few
    milliseconds); until then `get` says `NotFound`, while `wait` and `events` keep trying for
    up to `admission_grace` seconds.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        admission_grace: float = 10.0,
        user_agent: str = "kora-client-python/0.1",
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required (kora keys create prints one)")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.admission_grace = admission_grace
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": user_agent,
        }

    def __repr__(self) -> str:  # never the credential
        return f"Client({self.base_url!r})"

    # -- transport ---------------------------------------------------------------------

    def _url(self, path: str, query: Optional[Dict[str, Any]] = None) -> str:
        url = self.base_url + path
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            for k, v in pairs.items():
                if isinstance(v, bool):
                    pairs[k] = "true" if v else "false"
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        return url

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Dict[str, Any]] = None,
        body: Any = None,
        timeout: Optional[float] = None,
        retry_unavailable: bool = False,
    ) -> _Answer:
        data = None
        headers = dict(self._headers)
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        url = self._url(path, query)
        attempt = 0
        while True:
            req = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                    return resp.status, _json(resp.read()), dict(resp.headers.items())
            except urllib.error.HTTPError as e:
                raw = e.read()
                retry_after = _retry_after(e.headers.get("Retry-After"))
                err = error_for(
                    e.code, _json(raw), e.headers.get("X-Request-Id"), retry_after
                )
                retryable = e.code == 429 or (
                    e.code == 503 and (method == "GET" or retry_unavailable)
                )
                if retryable and attempt < self.max_retries:
                    attempt += 1
                    time.sleep(min(retry_after or 0.5 * attempt, 30.0))
                    continue
                raise err from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                if (method == "GET" or retry_unavailable) and attempt < self.max_retries:
                    attempt += 1
                    time.sleep(0.2 * attempt)
                    continue
                raise ConnectionFailed(0, "connection_failed", f"{url}: {reason}") from None

    # -- runs --------------------------------------------------------------------------

    def submit(
        self,
        workflow: Any = None,
        *,
        workflow_name: Optional[str] = None,
        version: Optional[int] = None,
        params: Optional[Dict[str, Any]] = None,
        idempotency_key: Optional[str] = None,
        priority: Optional[str] = None,
    ) -> str:
        """Start a run of `workflow` (inline: a dict, or JSON/YAML text) or of the registered
        `workflow_name` (its latest version unless `version`). The run's id."""
        status, body, _ = self._request(
            "POST",
            "/v1/runs",
            body=_submission(workflow, workflow_name, version, params, idempotency_key, priority),
            retry_unavailable=idempotency_key is not None,
        )
        return body["run_id"]

    def run(
        self,
        workflow: Any = None,
        *,
        workflow_name: Optional[str] = None,
        version: Optional[int] = None,
        params: Optional[Dict[str, Any]] = None,
        idempotency_key: Optional[str] = None,
        priority: Optional[str] = None,
        timeout: float = 60.0,
    ) -> Dict[str, Any]:
        """Start a run and wait up to `timeout` seconds for it to end: its results, exactly as
        `kora run --format json` prints them (`run_id`, `status`, `results`, `error`?).
        Raises `RunTimeout` (with the run's id) if it has not ended by then."""
        deadline = time.monotonic() + timeout
        status, body, _ = self._request(
            "POST",
            "/v1/runs",
            query={"wait": f"{timeout:g}"},
            body=_submission(workflow, workflow_name, version, params, idempotency_key, priority),
            timeout=timeout + self.timeout,
            retry_unavailable=idempotency_key is not None,
        )
        if status == 200:
            return body
        # The gateway waits at most its gateway.max_wait; follow the rest of the way here.
        run = self.wait(body["run_id"], timeout=max(0.0, deadline - time.monotonic()))
        out = {"run_id": run["run_id"], "status": run["status"], "results": run["results"]}
        if run.get("error") is not None:
            out["error"] = run["error"]
        return out

    def wait(self, run_id: str, *, timeout: float = 60.0) -> Dict[str, Any]:
        """Wait for a run to end, following its event stream: the run (as `get` gives it).
        Raises `RunTimeout` if it has not ended within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        admitted_by = time.monotonic() + self.admission_grace
        try:
            run = self._get_admitted(run_id, min(deadline, admitted_by))
        except NotFound:
            if deadline < admitted_by:
                raise RunTimeout(run_id, timeout, "not admitted yet") from None
            raise
        if run["status"] in FINAL_STATUSES:
            return run
        after = None
        while time.monotonic() < deadline:
            reopened = None
            try:
                for ev in self.events(
                    run_id, after=after, read_timeout=max(0.1, deadline - time.monotonic())
                ):
                    if ev.is_final:
                        run = self.get(run_id)
                        if run["status"] in FINAL_STATUSES:
                            return run
                        # A final event from before an operator reopened the run (a replay
                        # or a restart from a node): its new end comes after it.
                        reopened = ev.id
                    if time.monotonic() >= deadline:
                        break
            except (ConnectionFailed, OSError):
                pass  # the stream timed out or dropped: the run's row decides below
            if reopened is None:
                break
            after = reopened
        run = self.get(run_id)
        if run["status"] in FINAL_STATUSES:
            return run
        raise RunTimeout(run_id, timeout, run["status"])

    def _get_admitted(self, run_id: str, deadline: float) -> Dict[str, Any]:
        """`get`, allowing for a run submitted a moment ago that a coordinator has not yet
        admitted (it is not in the ledger until then, normally a few milliseconds)."""
        pause = 0.02
        while True:
            try:
                return self.get(run_id)
            except NotFound:
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    def get(self, run_id: str) -> Dict[str, Any]:
        """A run: `status`, `results`, `error`, `workflow`, `tenant`, timings, `attempts`."""
        return self._request("GET", f"/v1/runs/{_seg(run_id)}")[1]

    def runs(
        self,
        *,
        status: Optional[str] = None,
        workflow: Optional[str] = None,
        since: Optional[str] = None,
        until: Optional[str] = None,
        page_size: int = 50,
    ) -> Iterator[Dict[str, Any]]:
        """The tenant's runs, newest first, fetched a page at a time as you iterate. `since`
        and `until`: `30m`, `12h`, `7d` back from now, or epoch ms."""
        cursor: Optional[str] = None
        while True:
            page = self._request(
                "GET",
                "/v1/runs",
                query={
                    "status": status,
                    "workflow": workflow,
                    "since": since,
                    "until": until,
                    "limit": page_size,
                    "cursor": cursor,
                },
            )[1]
            yield from page["runs"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def cancel(self, run_id: str) -> Dict[str, Any]:
        """Cancel a run: `{"run_id", "status"}` (`cancelled`, or how it had already ended)."""
        return self._request("POST", f"/v1/runs/{_seg(run_id)}/cancel")[1]

    def retry(
        self,
        run_id: str,
        *,
        from_node: Optional[str] = None,
        set: Optional[Dict[str, Any]] = None,  # noqa: A002 - the API's name
    ) -> Dict[str, Any]:
        """Retry a run that ended: replay its open dead letters, or (with `from_node`) run that
        node and everything downstream again, with `set` over its inputs."""
        body: Dict[str, Any] = {}
        if from_node is not None:
            body["from"] = from_node
        if set:
            body["set"] = set
        return self._request("POST", f"/v1/runs/{_seg(run_id)}/retry", body=body)[1]

    def events(
        self, run_id: str, *, after: Optional[int] = None, read_timeout: Optional[float] = None
    ) -> Iterator[sse.Event]:
        """A run's events, from the start (or after sequence number `after`), then live; ends
        after the run's final event. A dropped connection is resumed where it stopped
        (`Last-Event-ID`), up to `max_retries` times in a row."""
        last = after
        failures = 0
        admitted_by = time.monotonic() + self.admission_grace
        pause = 0.02
        while True:
            headers = dict(self._headers, Accept="text/event-stream")
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            req = urllib.request.Request(
                self._url(f"/v1/runs/{_seg(run_id)}/events"), headers=headers
            )
            try:
                with urllib.request.urlopen(req, timeout=read_timeout or self.timeout) as resp:
                    for ev in sse.parse(iter(resp.readline, b"")):
                        failures = 0
                        last = ev.id
                        yield ev
                        if ev.is_final:
                            return
                # Closed without the final event: resume.
            except urllib.error.HTTPError as e:
                if e.code == 404 and last is None and time.monotonic() < admitted_by:
                    time.sleep(pause)  # submitted a moment ago, not admitted yet
                    pause = min(pause * 2, 0.5)
                    continue
                raise error_for(e.code, _json(e.read()), e.headers.get("X-Request-Id")) from None
            except (urllib.error.URLError, OSError) as e:
                if isinstance(e, TimeoutError) or "timed out" in str(e):
                    raise
                failures += 1
                if failures > self.max_retries:
                    raise ConnectionFailed(0, "connection_failed", f"event stream: {e}") from None
                time.sleep(0.2 * failures)

    # -- dead letters ------------------------------------------------------------------

    def dead_letters(
        self,
        *,
        workflow: Optional[str] = None,
        reason: Optional[str] = None,
        since: Optional[str] = None,
        run_id: Optional[str] = None,
        include_closed: bool = False,
        limit: Optional[int] = None,
    ) -> List[Dict[str, Any]]:
        """Dead letters, newest first: the open ones (or, with `include_closed`, replayed and
        purged ones too)."""
        return self._request(
            "GET",
            "/v1/dead-letters",
            query={
                "workflow": workflow,
                "reason": reason,
                "since": since,
                "run_id": run_id,
                "state": "any" if include_closed else None,
                "limit": limit,
            },
        )[1]["dead_letters"]

    def dead_letter(self, dead_letter_id: str) -> Dict[str, Any]:
        """One dead letter and every attempt of its node: `{"dead_letter", "attempts"}`."""
        return self._request("GET", f"/v1/dead-letters/{_seg(dead_letter_id)}")[1]

    def replay(
        self, dead_letter_id: str, *, set: Optional[Dict[str, Any]] = None  # noqa: A002
    ) -> Dict[str, Any]:
        """Replay one dead letter (with `set` over its node's inputs); the run resumes."""
        return self._request(
            "POST",
            f"/v1/dead-letters/{_seg(dead_letter_id)}/replay",
            body={"set": set or {}},
        )[1]

    def replay_all(self, *, dry_run: bool = False, **filter: Any) -> Dict[str, Any]:
        """Replay every open dead letter matching `filter` (`workflow`, `reason`, `since`,
        `run_id`, `limit`): `{"count", "dry_run", "replayed", "failed"}`. With `dry_run`, only
        the count."""
        return self._request(
            "POST", "/v1/dead-letters/replay", body=dict(filter, dry_run=dry_run)
        )[1]

    def purge(self, *, dry_run: bool = False, **filter: Any) -> Dict[str, Any]:
        """Close the open dead letters matching `filter` without replaying them:
        `{"count", "dry_run"}`."""
        return self._request(
            "POST", "/v1/dead-letters/purge", body=dict(filter, dry_run=dry_run)
        )[1]

    # -- registered workflows ----------------------------------------------------------

    def register_workflow(self, name: str, workflow: Any) -> Dict[str, Any]:
        """Register `workflow` under `name` as its next version: `{"name", "version", ...}`."""
        return self._request("POST", "/v1/workflows", body={"name": name, "workflow": workflow})[1]

    def workflows(self) -> List[Dict[str, Any]]:
        """The tenant's registered workflows."""
        return self._request("GET", "/v1/workflows")[1]["workflows"]


def _submission(
    workflow: Any,
    workflow_name: Optional[str],
    version: Optional[int],
    params: Optional[Dict[str, Any]],
    idempotency_key: Optional[str],
    priority: Optional[str],
) -> Dict[str, Any]:
    if (workflow is None) == (workflow_name is None):
        raise ValueError("give a workflow or a workflow_name (one of them)")
    body: Dict[str, Any] = {}
    if workflow is not None:
        body["workflow"] = workflow
    else:
        body["workflow_name"] = workflow_name
        if version is not None:
            body["version"] = version
    if params:
        body["params"] = params
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    if priority is not None:
        body["priority"] = priority
    return body


def _json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _retry_after(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value else None
    except ValueError:
        return None
