"""The console in a real browser: Debian's Chromium driven by Playwright, against the real
`handoff serve` the Rust test `console::console_in_a_browser` started (HANDOFF_URL, its data
directory in HANDOFF_DATA_DIR), with the tiny OpenID provider that test runs as
`[console.oidc]`. With HANDOFF_SCREENSHOTS=DIR, screenshots of the inbox, a
request and a task view are written there (docs/console/ in the repository).
"""

import json
import os
import sys
import time

import httpx
from playwright.sync_api import expect, sync_playwright

from common import CONFIG, DATA, EXCHANGE, JWT, LARGE, TXN, URL, cli

SHOTS = os.environ.get("HANDOFF_SCREENSHOTS")
TIMEOUT_MS = 20_000


def identity(agent: str) -> str:
    return cli("identity", "issue", "--agent", agent, "--data-dir", DATA, "--config", CONFIG)


def link(user: str, *groups: str) -> str:
    args = ["approver", "login", "--user", user, "--server", URL, "--data-dir", DATA]
    for group in groups:
        args += ["--group", group]
    return cli(*args)


def open_task(agent: str, purpose: str, plan: list[str], intent: str) -> tuple[str, str]:
    answer = httpx.post(f"{URL}/v1/tasks", headers={"authorization": f"Bearer {agent}"},
                        json={"intent": intent, "purpose": purpose, "user": "alice", "plan": plan})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return body["task_id"], body["txn_token"]


def exchange(agent: str, txn: str, audience: str, scope: str, **extra: str) -> httpx.Response:
    form = {"grant_type": EXCHANGE, "subject_token": txn, "subject_token_type": TXN,
            "actor_token": agent, "actor_token_type": JWT, "audience": audience, "scope": scope}
    form.update(extra)
    return httpx.post(f"{URL}/oauth/token", data=form)


def shot(page, name: str) -> None:
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def signed_in(browser, user: str, *groups: str, phone: bool = False):
    viewport = {"width": 390, "height": 844} if phone else {"width": 1100, "height": 900}
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(link(user, *groups))
    expect(page.locator("#who")).to_contain_text(user)
    page.errors = errors
    return page


def tab_to(page, selector: str, limit: int = 60) -> None:
    """Moves the keyboard focus with Tab alone until it is on `selector`."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => !!document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def post_directly(page, path: str) -> dict:
    """A decision sent straight from the signed-in page, with its CSRF token: the server decides."""
    return page.evaluate(
        """async (path) => {
            const me = await (await fetch('/console/api/me')).json();
            const r = await fetch('/console/api' + path, {method: 'POST',
                headers: {'content-type': 'application/json', 'x-handoff-csrf': me.csrf},
                body: JSON.stringify({reason: 'approving my own request'})});
            return {status: r.status, body: await r.json()};
        }""", path)


def main() -> None:
    expect.set_options(timeout=TIMEOUT_MS)
    payer = identity("payments-agent")
    task, txn = open_task(payer, "payments", ["payments"], "pay supplier invoice 7 (2,500.00 EUR)")
    first = exchange(payer, txn, "payments", "create", authorization_details=json.dumps(LARGE))
    assert first.status_code == 400 and first.json()["error"] == "authorization_pending", first.text
    approval = first.json()["approval_id"]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu"])
        bob = signed_in(browser, "bob", "payments-owners")
        carol = signed_in(browser, "carol", "support-leads", phone=True)
        dana = signed_in(browser, "dana", "payments-owners", phone=True)

        # The payment waits in the payments owners' inbox, and not in another group's.
        expect(bob.locator(f'[data-approval="{approval}"]')).to_contain_text("payments: create")
        expect(carol.locator("main")).to_contain_text("Nothing is waiting for your groups.")
        expect(carol.locator(f'[data-approval="{approval}"]')).to_have_count(0)
        shot(bob, "inbox")

        # The task's agent and its user cannot approve, even posting straight to the server.
        for user in ("payments-agent", "alice"):
            self_page = signed_in(browser, user, "payments-owners")
            answer = post_directly(self_page, f"/approvals/{approval}/approve")
            assert answer["status"] == 403, answer
            assert answer["body"]["reason"] == "separation_of_duties", answer
            self_page.context.close()

        # A second owner watches the request; the first decides it.
        dana.goto(f"{URL}/console/#/approval/{approval}")
        expect(dana.locator("main .tag.status-pending")).to_be_visible()
        # By keyboard alone: Tab to the request, Enter opens it.
        tab_to(bob, f'[data-approval="{approval}"] a')
        bob.keyboard.press("Enter")
        expect(bob.locator("main")).to_contain_text("pay supplier invoice 7")
        expect(bob.locator("[data-testid=details]")).to_contain_text("ACME GmbH")
        expect(bob.locator("main")).to_contain_text("payments-create-large")
        shot(bob, "request")
        tab_to(bob, "#reason")
        bob.keyboard.type("invoice 7 matches the purchase order")
        tab_to(bob, "#approve")
        bob.keyboard.press("Enter")
        expect(bob.locator("main .tag.status-approved")).to_be_visible()
        # Dana's page changes by itself (the live stream), with no reload.
        expect(dana.locator("main .tag.status-approved")).to_be_visible()
        expect(dana.locator("main")).to_contain_text("bob (console-link)")
        expect(dana.locator("#approve")).to_have_count(0)
        # Nothing a view leaves out is written as text (a decided request has no form).
        assert "null" not in dana.locator("main").inner_text()
        # On a phone-width screen the request reflows: nothing scrolls sideways.
        wide = dana.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 1, f"the request page is {wide}px wider than a 390px screen"

        # The agent's next poll gets the token (after the poll interval it was told).
        token = None
        for _ in range(20):
            answer = exchange(payer, txn, "payments", "create",
                              authorization_details=json.dumps(LARGE), approval_id=approval)
            if answer.status_code == 200:
                token = answer.json()["access_token"]
                break
            assert answer.json()["error"] in ("slow_down", "authorization_pending"), answer.text
            time.sleep(1)
        assert token, "the approved poll got no token"

        # A multi-system task, every step in order in the operator's timeline; then revoked.
        worker = identity("support-agent")
        work, work_txn = open_task(worker, "support", ["tickets", "git"], "fix ticket 42 and push")
        steps = [("tickets", "read", 200), ("git", "push", 200), ("tickets", "comment", 200),
                 ("crm", "read_customer", 403)]
        tokens = []
        for system, scope, status in steps:
            answer = exchange(worker, work_txn, system, scope)
            assert answer.status_code == status, answer.text
            if status == 200:
                tokens.append(answer.json()["access_token"])
        erin = signed_in(browser, "erin", "security-oncall")
        expect(erin.locator("#nav-operator")).to_be_visible()
        erin.goto(f"{URL}/console/#/task/{work}")
        timeline = erin.locator("[data-testid=timeline] > li")
        expect(timeline).to_have_count(5)
        texts = timeline.all_inner_texts()
        assert "task_open" in texts[0], texts
        for text, (system, scope, status) in zip(texts[1:], steps):
            assert system in text and scope in text, (text, system, scope)
            assert ("permit" if status == 200 else "deny") in text, text
        shot(erin, "task")
        erin.locator("#revoke-reason").fill("pushed without review")
        erin.locator("#revoke").click()
        expect(erin.locator("#revoke")).to_contain_text("Confirm")
        erin.locator("#revoke").click()
        expect(erin.locator("main")).to_contain_text("Revoked.")
        secret = cli("credentials", "issue", "--system", "tickets", "--data-dir", DATA)
        for tickets_token in tokens[:1]:
            answer = httpx.post(f"{URL}/oauth/introspect", auth=("tickets", secret),
                                data={"token": tickets_token})
            assert answer.json()["active"] is False, answer.text

        # A delegated sub-task: the delegate's steps nested under its delegation, right after the
        # step that made it.
        release = identity("release-agent")
        helper = identity("test-worker")
        rel, rel_txn = open_task(release, "release", ["ci"], "run the tests, then deploy")
        answer = httpx.post(f"{URL}/v1/delegations", headers={"authorization": f"Bearer {release}"},
                            json={"txn_token": rel_txn, "delegate": "test-worker", "scope": ["ci:run_tests"]})
        assert answer.status_code == 201, answer.text
        delegation, child = answer.json()["delegation_id"], answer.json()["txn_token"]
        answer = exchange(helper, child, "ci", "run_tests")
        assert answer.status_code == 200, answer.text
        answer = exchange(release, rel_txn, "ci", "deploy")
        assert answer.status_code == 200, answer.text
        erin.goto(f"{URL}/console/#/task/{rel}")
        top = erin.locator("[data-testid=timeline] > li")
        expect(top).to_have_count(4)
        kinds = [top.nth(i).get_attribute("data-kind") or top.nth(i).get_attribute("class") for i in range(4)]
        assert kinds == ["task_open", "delegate", "delegation", "exchange"], kinds
        node = erin.locator(f'[data-testid=timeline] > li.delegation[data-delegation="{delegation}"]')
        expect(node).to_contain_text("Delegated to test-worker")
        nested = node.locator(":scope > ol > li")
        expect(nested).to_have_count(1)
        expect(nested.first).to_contain_text("run_tests")
        expect(nested.first).to_contain_text("permit")
        expect(top.nth(3)).to_contain_text("deploy")
        shot(erin, "task-delegated")

        # A person signs in through the organisation's OpenID provider (code + PKCE).
        olivia = browser.new_context().new_page()
        olivia.set_default_timeout(TIMEOUT_MS)
        olivia.goto(f"{URL}/console/")
        olivia.locator("#oidc").click()
        expect(olivia.locator("#who")).to_contain_text("olivia · payments-owners")
        expect(olivia.locator("main h1")).to_have_text("Approvals waiting for you")

        # No page logged a script error (a CSP violation would show here).
        for page in (bob, carol, dana, erin):
            assert not page.errors, page.errors
        browser.close()
    print("console browser scenarios passed")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        raise
