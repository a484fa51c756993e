"""The dashboard in headless Chromium, driven by Playwright; run by ui.rs with the gateway's
address, two keys (operator, viewer) and two finished runs in the environment. Exits non-zero
with a message on the first check that fails; writes a screenshot of each page to KORA_SHOTS."""

import base64
import hashlib
import hmac
import json
import os
import re
import sys
import time

from playwright.sync_api import expect, sync_playwright

BASE = os.environ["KORA_URL"]
OPERATOR = os.environ["KORA_OPERATOR_KEY"]
VIEWER = os.environ["KORA_VIEWER_KEY"]
STATES_RUN = os.environ["KORA_STATES_RUN"]
WIDE_RUN = os.environ["KORA_WIDE_RUN"]
DIVIDE_RUN = os.environ["KORA_DIVIDE_RUN"]
PARENT_RUN = os.environ["KORA_PARENT_RUN"]
SHOTS = os.environ["KORA_SHOTS"]
ADMIN = os.environ["KORA_ADMIN_KEY"]
STRANGER = os.environ["KORA_STRANGER_KEY"]
JWT_SECRET = os.environ["KORA_JWT_SECRET"]
# The budget for a 10,000-node run's page: from navigation to its node list shown.
WIDE_BUDGET_S = 5.0

expect.set_options(timeout=15_000)


AXE = open(os.environ["KORA_AXE"]).read()
A11Y = {}
SHOT_NAMES = []


def accessibility(page, name):
    """axe-core's WCAG 2 A and AA rules on the page as it is; the violations by page."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE + "\n;0")
    found = page.evaluate(
        """async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}))
            .violations.map(v => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`)"""
    )
    if found:
        A11Y[name] = found


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True)
    accessibility(page, name)
    SHOT_NAMES.append(name)
    # A value the page forgot to leave out shows as a bare "null" or "undefined".
    text = page.inner_text("main")
    if re.search(r"(^|\n)\s*(null|undefined)\s*(\n|$)", text) or "[object " in text:
        fail(f"the {name} page shows a bare null, undefined or [object …]:\n{text}")


def jwt(claims):
    """An HS256 JWT, as an identity provider would sign it."""
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(JWT_SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def sign_out(page):
    page.locator("#sign-out").click()
    expect(page.get_by_label("API key or token")).to_be_visible()


def bulk_by_filter(page, dialogs, action, workflow, done):
    """A bulk action on the dead letters of `workflow`: the confirmation must say how many
    first (one), and the page then what it did."""
    page.goto(f"{BASE}/ui/#/dead-letters?workflow={workflow}")
    expect(page.locator(f'tr[data-dead-letter^="{STATES_RUN}:explode:"]')).to_be_visible()
    page.locator(f'[data-action="{action}"]').click()
    expect(page.get_by_role("status")).to_contain_text(f"{done} 1")
    label = action.capitalize()
    if not any(f"{label} 1 open dead letter matching" in m for m in dialogs):
        fail(f"the {action} by filter did not show its count first: {dialogs}")


def sign_in(page, key):
    page.goto(BASE + "/ui/")
    page.get_by_label("API key or token").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()


def node(page, node_id):
    return page.locator(f'g[data-node="{node_id}"]')


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # The page's own policy: nothing it loads may be refused by its CSP.
        page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)

        # Sign in: a wrong key is refused with a message; the right one shows the runs.
        page.goto(BASE + "/ui/")
        page.get_by_label("API key or token").fill("kora_nosuchkey_nosuchsecret")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("refused")
        shot(page, "sign-in")
        page.get_by_label("API key or token").fill(OPERATOR)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator(f'tr[data-run="{STATES_RUN}"]')).to_be_visible()
        expect(page.locator("#who-text")).to_have_text("ui · operator")
        shot(page, "runs")

        # Filters: the states workflow's succeeded runs hold the states run, not the wide one.
        page.get_by_label("Status").select_option("succeeded")
        page.get_by_label("Workflow", exact=True).fill("ui-states")
        page.get_by_role("button", name="Filter").click()
        expect(page).to_have_url(re.compile(r"#/runs\?status=succeeded&workflow=ui-states"))
        expect(page.locator(f'tr[data-run="{STATES_RUN}"]')).to_be_visible()
        expect(page.locator(f'tr[data-run="{WIDE_RUN}"]')).to_have_count(0)
        # A custom time range: one ending an hour ago holds none of the test's runs.
        page.get_by_label("to", exact=True).fill(time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() - 3600)))
        page.get_by_role("button", name="Filter").click()
        expect(page).to_have_url(re.compile(r"until=\d+"))
        expect(page.locator("table.runs")).to_contain_text("No runs match these filters.")
        page.get_by_label("to", exact=True).fill("")
        page.get_by_label("Started").select_option("")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator(f'tr[data-run="{STATES_RUN}"]')).to_be_visible()

        # Opening a run by its idempotency key.
        page.get_by_label("Run id or idempotency key").fill("ui-states-key")
        page.get_by_role("button", name="Open").click()
        expect(page).to_have_url(re.compile(f"#/runs/{STATES_RUN}$"))
        page.go_back()
        expect(page.locator(f'tr[data-run="{STATES_RUN}"]')).to_be_visible()
        page.get_by_label("Run id or idempotency key").fill("no-such-key")
        page.get_by_role("button", name="Open").click()
        expect(page.get_by_role("alert")).to_contain_text("No run has the id or idempotency key")

        # The run page: the graph with each node's state, as text as well as colour.
        page.locator(f'tr[data-run="{STATES_RUN}"] a').click()
        expect(page.get_by_role("heading", name=re.compile("ui-states"))).to_be_visible()
        expected = {
            "start": "succeeded",
            "improve": "succeeded",
            "route": "succeeded",
            "yes": "succeeded",
            "no": "skipped",
            "explode": "dead_lettered",
        }
        for node_id, state in expected.items():
            expect(node(page, node_id)).to_have_attribute("data-state", state)
        expect(node(page, "no")).to_have_accessible_name(re.compile("skipped"))
        expect(node(page, "explode")).to_have_accessible_name(re.compile("dead-lettered"))
        # The cycle: its node shows how many iterations ran, and its back edge is drawn.
        label = node(page, "improve").locator("title").text_content()
        m = re.search(r"(\d+) iterations", label or "")
        if not m or int(m.group(1)) < 3:
            fail(f"the cycle node does not show its iterations: {label!r}")
        expect(page.locator("path.edge.cycle")).to_have_count(1)
        # Left to right: a node is drawn right of what feeds it.
        def x_of(node_id):
            return node(page, node_id).bounding_box()["x"]
        if not (x_of("start") < x_of("improve") < x_of("explode") and x_of("route") < x_of("yes")):
            fail("the graph is not laid out left to right")
        # The timeline: a bar per attempt, coloured by outcome; the cycle's node has one per
        # iteration.
        expect(page.locator('svg.timeline rect.bar[data-attempt="explode:0:1"]')).to_have_class(re.compile("st-dead_lettered"))
        if page.locator('svg.timeline rect.bar[data-attempt^="improve:"]').count() < 3:
            fail("the timeline does not show every iteration of the cycle's node")
        # The events, a page at a time from the stream; the run is over, so all of them.
        page.get_by_role("button", name="Load events").click()
        expect(page.locator("table.events tbody tr").first).to_be_visible()
        expect(page.locator("section.events")).to_contain_text("that is all of them")
        expect(page.locator("table.events")).to_contain_text("run succeeded")
        # The operator may retry the failed run; it is over, so no cancel.
        expect(page.locator('[data-action="retry"]')).to_be_visible()
        expect(page.locator('[data-action="cancel"]')).to_have_count(0)
        shot(page, "run")

        # A node's details, opened from the keyboard: its attempts, error and configuration.
        node(page, "explode").focus()
        page.keyboard.press("Enter")
        panel = page.get_by_role("complementary", name="Node details")
        expect(panel.get_by_role("heading", name="explode")).to_be_visible()
        expect(panel).to_contain_text("division by zero")
        expect(panel).to_contain_text("Attempts (1)")
        # What feeds it, and the inputs its failed attempt ran with (kept for its replay).
        expect(panel.locator("ul.fed-by")).to_contain_text("estimate ← improve.result")
        inputs = panel.locator('details.inputs[data-inputs="0:1"]')
        expect(inputs).to_contain_text("as recorded with its dead letter")
        expect(inputs).to_contain_text('"guess"')
        shot(page, "node")
        # The first screen of it, as docs/dashboard-run.png shows it.
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=os.path.join(SHOTS, "run-first-screen.png"))
        node(page, "improve").click()
        expect(panel.get_by_role("heading", name="improve")).to_be_visible()
        # Its inputs per iteration, recomputed from what its sources recorded: iteration 1
        # got iteration 0's guess, (4.5 + 9 / 4.5) / 2.
        first = panel.locator('details.inputs[data-inputs="1:1"]')
        expect(first).to_contain_text("recomputed from its sources")
        first.locator("summary").click()
        expect(first.locator("pre")).to_contain_text('"guess": 3.25')
        rows = panel.locator("table.attempts tbody tr")
        expect(rows).not_to_have_count(0)
        if rows.count() < 3:
            fail(f"the cycle node lists {rows.count()} attempts, not one per iteration")

        # Dead letters: the list, then one replayed with an edited input from its page.
        dialogs = []

        def on_dialog(d):
            dialogs.append(d.message)
            d.accept()

        page.on("dialog", on_dialog)
        page.get_by_role("link", name="Dead letters").click()
        expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()
        divide_dl = page.locator(f'tr[data-dead-letter^="{DIVIDE_RUN}:d:"]')
        expect(divide_dl).to_be_visible()
        expect(page.locator(f'tr[data-dead-letter^="{STATES_RUN}:explode:"]')).to_be_visible()
        shot(page, "dead-letters")
        divide_dl.locator("a").click()
        editor = page.get_by_label("Inputs (edit, then replay)")
        expect(editor).to_have_value(re.compile(r'"divisor": 0'))
        inputs = json.loads(editor.input_value())
        inputs["divisor"] = 4
        replay = page.locator('[data-action="replay"]')
        editor.fill('{"divisor": 4,')
        expect(page.locator("#replay-check")).to_contain_text("not JSON")
        expect(replay).to_be_disabled()
        editor.fill('[4]')
        expect(page.locator("#replay-check")).to_contain_text("must be a JSON object")
        editor.fill(json.dumps(inputs, indent=2))
        expect(replay).to_be_enabled()
        replay.click()
        expect(page.get_by_role("status")).to_contain_text("runs again as attempt 2")
        shot(page, "dead-letter")
        page.get_by_role("link", name="Follow the run").click()
        expect(node(page, "d")).to_have_attribute("data-state", "succeeded", timeout=30_000)
        node(page, "d").click()
        panel = page.get_by_role("complementary", name="Node details")
        expect(panel).to_contain_text("2.5")
        shot(page, "replayed-run")
        # Run the node again from its panel with another input: it then returns 10 / 5.
        restart = panel.get_by_label("Run again from this node")
        restart.fill('{"divisor": ')
        expect(panel.locator('[data-action="restart"]')).to_be_disabled()
        restart.fill('{"divisor": 5}')
        panel.locator('[data-action="restart"]').click()
        expect(page.get_by_role("status")).to_contain_text("d runs again")
        expect(panel).to_contain_text("Attempts (3)", timeout=30_000)
        expect(panel.locator(".node-result pre")).to_have_text(re.compile(r'"result": 2\s*}'), timeout=30_000)

        # Parent and child runs: the WorkflowNode's panel links its child, whose page links back.
        page.goto(f"{BASE}/ui/#/runs/{PARENT_RUN}")
        node(page, "child").click()
        child_link = page.locator("a[data-child]")
        expect(child_link).to_have_count(1)
        child_link.click()
        expect(page.get_by_role("heading", name=re.compile("ui-child"))).to_be_visible()
        expect(page.locator(f'a[href="#/runs/{PARENT_RUN}"]')).to_be_visible()
        shot(page, "child-run")

        # Bulk replay by filter: the count first, in the confirmation.
        bulk_by_filter(page, dialogs, "replay", "ui-states", "Replayed")

        # Triggers: create a cron trigger for a registered workflow, pause it, resume it.
        page.get_by_role("link", name="Triggers").click()
        expect(page.get_by_role("heading", name="Triggers", exact=True)).to_be_visible()
        page.get_by_label("Name", exact=True).fill("ui-yearly")
        page.get_by_label("Starts a run on", exact=True).select_option("schedule")
        page.get_by_label("Schedule", exact=True).fill("0 0 1 1 *")
        page.get_by_label("Workflow", exact=True).fill("ui-doubling")
        page.get_by_role("button", name="Create trigger").click()
        row = page.locator('tr[data-trigger="ui-yearly"]')
        expect(row).to_contain_text("active")
        row.get_by_role("button", name="Pause trigger ui-yearly").click()
        expect(row).to_contain_text("paused")
        row.get_by_role("button", name="Resume trigger ui-yearly").click()
        expect(row).to_contain_text("active")
        # A webhook trigger: its signing secret is shown once, on creation.
        page.get_by_label("Name", exact=True).fill("ui-hook")
        page.get_by_label("Starts a run on", exact=True).select_option("webhook")
        expect(page.get_by_label("Subject", exact=True)).to_be_disabled()
        page.get_by_label("Workflow", exact=True).fill("ui-doubling")
        page.get_by_role("button", name="Create trigger").click()
        expect(page.get_by_text("Its signing secret, shown once")).to_be_visible()
        expect(page.locator('tr[data-trigger="ui-hook"]')).to_contain_text("/v1/hooks/ui-hook")
        shot(page, "triggers")

        # The overview: the tenant's KPIs over the last hour, per workflow.
        page.get_by_role("link", name="Overview").click()
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        throughput = page.locator('[data-kpi="throughput"]')
        expect(throughput).to_contain_text("finished")
        finished = int(re.search(r"(\d+) finished", throughput.inner_text()).group(1))
        if finished < 3:
            fail(f"the overview counts {finished} finished runs, not the test's 3")
        expect(page.locator('[data-kpi="success"]')).to_contain_text("%")
        expect(page.locator('tr[data-workflow="ui-wide"]')).to_be_visible()
        # The two sleeping runs: active, and stuck (no progress for 2 s in this installation).
        expect(page.locator('[data-kpi="active"]')).to_contain_text("2 running")
        expect(page.locator('[data-kpi="stuck"] .kpi-value')).to_have_text("2", timeout=20_000)
        shot(page, "overview")
        # Queues and workers: the task queue and the worker that ran the test's runs.
        page.get_by_role("link", name="Queues and workers").click()
        expect(page.locator("table.workers tbody tr[data-worker]")).not_to_have_count(0)
        # The worker alive now, with the two sleepers in its slots (its status every 5 s; the
        # page refreshes every 10 s).
        alive = page.locator('table.workers tbody tr[data-alive="true"]')
        expect(alive).to_have_count(1)
        expect(alive.locator("td.busy")).to_contain_text("2 of 16", timeout=25_000)
        shot(page, "fleet")

        # The stuck runs on the runs list, cancelled from there: the count first.
        page.get_by_role("link", name="Runs", exact=True).click()
        page.get_by_label("Status").select_option("stuck")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("table.runs tbody tr[data-run]")).to_have_count(2)
        expect(page.locator("table.runs")).to_contain_text("idle")
        shot(page, "stuck-runs")
        page.locator('[data-action="cancel-listed"]').click()
        expect(page.get_by_role("status")).to_contain_text("Cancelled 2 of 2")
        if not any("Cancel the 2 runs listed" in m for m in dialogs):
            fail(f"cancelling the listed runs did not show the count first: {dialogs}")
        expect(page.locator("table.runs tbody tr[data-run]")).to_have_count(0, timeout=20_000)

        # A viewer: every page loads, no write action is offered, and a write is refused.
        sign_out(page)
        sign_in(page, VIEWER)
        expect(page.locator("#who-text")).to_have_text("ui · viewer")
        page.goto(f"{BASE}/ui/#/runs/{STATES_RUN}")
        expect(node(page, "explode")).to_have_attribute("data-state", "dead_lettered")
        expect(page.locator("[data-action]")).to_have_count(0)
        shot(page, "viewer-run")
        page.get_by_role("link", name="Dead letters").click()
        expect(page.locator(f'tr[data-dead-letter^="{STATES_RUN}:explode:"]')).to_be_visible()
        expect(page.locator("[data-action]")).to_have_count(0)
        page.locator(f'tr[data-dead-letter^="{STATES_RUN}:explode:"] a').first.click()
        expect(page.get_by_role("heading", name="Inputs")).to_be_visible()
        expect(page.locator("textarea")).to_have_count(0)
        shot(page, "viewer-dead-letters")
        page.get_by_role("link", name="Triggers").click()
        expect(page.locator('tr[data-trigger="ui-yearly"]')).to_be_visible()
        expect(page.locator("[data-action]")).to_have_count(0)
        expect(page.get_by_role("button", name="Create trigger")).to_have_count(0)
        shot(page, "viewer-triggers")
        page.get_by_role("link", name="Overview").click()
        expect(page.locator('tr[data-workflow="ui-states"]')).to_be_visible()
        page.get_by_role("link", name="Queues and workers").click()
        expect(page.locator("table.workers tbody tr[data-worker]")).not_to_have_count(0)
        status = page.evaluate(
            """async (run) => {
                const key = sessionStorage.getItem('kora.credential');
                const r = await fetch(`/v1/runs/${run}/retry`, {method: 'POST',
                    headers: {Authorization: 'Bearer ' + key, 'Content-Type': 'application/json'}, body: '{}'});
                return r.status;
            }""",
            STATES_RUN,
        )
        if status != 403:
            fail(f"a viewer's retry answered {status}, not 403")

        # A 10,000-node run: drawn by groups and listed within the budget, reading no attempt
        # history (the run's summary only).
        asked = []
        page.on("request", lambda r: asked.append(r.url))
        started = time.monotonic()
        page.goto(f"{BASE}/ui/#/runs/{WIDE_RUN}")
        expect(page.locator("table.nodes tbody tr")).to_have_count(100)
        took = time.monotonic() - started
        print(f"10,000-node run page: node list shown in {took:.2f} s (budget {WIDE_BUDGET_S} s)")
        if took > WIDE_BUDGET_S:
            fail(f"the 10,000-node run's page took {took:.2f} s, over {WIDE_BUDGET_S} s")
        expect(page.locator("ul.summary")).to_contain_text("10000")
        reads = [u for u in asked if f"/v1/runs/{WIDE_RUN}" in u and "/graph" not in u and "/events" not in u]
        if not reads or any(not u.endswith("?view=summary") for u in reads):
            fail(f"the 10,000-node run's page read more than its summary: {reads}")
        # Drawn by groups of layers: a fan-out is one layer of 10,000 nodes.
        group = page.locator("svg.grouped g[data-group]")
        expect(group).to_have_count(1)
        expect(group).to_contain_text("10000 nodes")
        group.focus()
        page.keyboard.press("Enter")
        expect(page.get_by_text("Listing the 10000 nodes of layer 0")).to_be_visible()
        page.get_by_role("button", name="Next").click()
        expect(page.locator('tr[data-node="n100"]')).to_be_visible()
        shot(page, "wide-run")

        # A JWT from the identity provider signs in as its role in its tenant.
        sign_out(page)
        token = jwt({"sub": "ui-jwt", "tenant": "ui", "role": "viewer", "exp": int(time.time()) + 600})
        sign_in(page, token)
        expect(page.locator("#who-text")).to_have_text("ui · viewer")
        page.goto(f"{BASE}/ui/#/runs")
        expect(page.locator(f'tr[data-run="{STATES_RUN}"]')).to_be_visible()
        shot(page, "jwt-runs")

        # Another tenant's admin sees none of this tenant's runs, not even by id.
        sign_out(page)
        sign_in(page, STRANGER)
        expect(page.locator("table.runs")).to_contain_text("No runs match these filters.")
        page.goto(f"{BASE}/ui/#/runs/{STATES_RUN}")
        expect(page.get_by_role("alert")).to_contain_text("no run")
        shot(page, "stranger-runs")

        # The admin purges the states run's open dead letter by filter: the count first.
        sign_out(page)
        sign_in(page, ADMIN)
        bulk_by_filter(page, dialogs, "purge", "ui-states", "Purged")
        page.reload()
        expect(page.locator("table.dead-letters")).to_contain_text("No dead letters match these filters.")
        shot(page, "purged")

        if errors:
            fail("the page reported errors: " + json.dumps(errors))
        if A11Y:
            fail("axe-core found accessibility violations:\n" + json.dumps(A11Y, indent=2))
        print(f"axe-core: no WCAG 2.1 A/AA violation on {len(SHOT_NAMES)} pages")
        browser.close()
    print("all dashboard checks passed")


def fail(message):
    print("FAILED: " + message, file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
