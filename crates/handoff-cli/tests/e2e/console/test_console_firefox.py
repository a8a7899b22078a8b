"""The console in Firefox: Debian's Firefox ESR, headless, driven over Marionette (Mozilla's own
remote protocol, through its `marionette_driver` client; no geckodriver, nothing downloaded),
against the real `handoff serve` the Rust test `console::console_in_firefox` started
(HANDOFF_URL, its data directory in HANDOFF_DATA_DIR). The same page as in Chromium: sign in
with a one-time link, the payment in the owner's inbox, the request and its details, approve by
keyboard, the agent's next poll gets the token, and the page reflows in a narrow window.
"""

import json
import os
import sys
import tempfile
import time

import httpx
from marionette_driver.keys import Keys
from marionette_driver.marionette import Marionette

from common import CONFIG, DATA, EXCHANGE, JWT, LARGE, TXN, URL, cli

FIREFOX = os.environ.get("HANDOFF_FIREFOX", "/usr/bin/firefox-esr")
TIMEOUT_S = 20


def exchange(agent: str, txn: str, **extra: str) -> httpx.Response:
    form = {"grant_type": EXCHANGE, "subject_token": txn, "subject_token_type": TXN,
            "actor_token": agent, "actor_token_type": JWT, "audience": "payments",
            "scope": "create", "authorization_details": json.dumps(LARGE)}
    form.update(extra)
    return httpx.post(f"{URL}/oauth/token", data=form)


def wait_for(browser: Marionette, script: str, what: str, *args):
    """Polls `script` (a function body returning a value) until it is truthy."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        value = browser.execute_script(script, script_args=list(args))
        if value:
            return value
        if time.monotonic() > deadline:
            text = browser.execute_script("return document.body ? document.body.innerText : ''")
            raise AssertionError(f"never: {what}; the page shows:\n{text}")
        time.sleep(0.1)


def text_of(selector: str) -> str:
    return f"const n = document.querySelector({json.dumps(selector)}); return n ? n.innerText : '';"


def focused_is(selector: str) -> str:
    return f"return !!document.activeElement && document.activeElement.matches({json.dumps(selector)});"


def tab_to(browser: Marionette, selector: str, limit: int = 60) -> None:
    """Moves the keyboard focus with Tab alone until it is on `selector`."""
    body = browser.find_element("css selector", "body")
    for _ in range(limit):
        active = browser.execute_script("return document.activeElement") or body
        active.send_keys(Keys.TAB)
        if browser.execute_script(focused_is(selector)):
            return
    raise AssertionError(f"Tab never reached {selector}")


def main() -> None:
    payer = cli("identity", "issue", "--agent", "payments-agent", "--data-dir", DATA, "--config", CONFIG)
    answer = httpx.post(f"{URL}/v1/tasks", headers={"authorization": f"Bearer {payer}"},
                        json={"intent": "pay supplier invoice 9", "purpose": "payments",
                              "user": "alice", "plan": ["payments"]})
    assert answer.status_code == 201, answer.text
    txn = answer.json()["txn_token"]
    first = exchange(payer, txn)
    assert first.status_code == 400 and first.json()["error"] == "authorization_pending", first.text
    approval = first.json()["approval_id"]
    link = cli("approver", "login", "--user", "bob", "--group", "payments-owners",
               "--server", URL, "--data-dir", DATA)

    log = os.path.join(tempfile.mkdtemp(prefix="handoff-firefox-"), "gecko.log")
    browser = Marionette(bin=FIREFOX, headless=True, app_args=["-no-remote"], gecko_log=log)
    try:
        browser.start_session()
        version = browser.session_capabilities.get("browserVersion")
        browser.set_window_rect(width=1100, height=900)
        browser.navigate(link)
        wait_for(browser, text_of("#who"), "signed in")
        assert "bob" in browser.execute_script(text_of("#who")), "the header names bob"
        card = f'[data-approval="{approval}"]'
        wait_for(browser, f"return document.querySelector({json.dumps(card)});", "the payment in bob's inbox")
        assert "payments: create" in browser.execute_script(text_of(card))

        # Keyboard alone: Tab to the request, Enter opens it; Tab to the reason, type, Enter approves.
        tab_to(browser, f"{card} a")
        browser.execute_script("return document.activeElement").send_keys(Keys.ENTER)
        wait_for(browser, "return document.body.innerText.includes('pay supplier invoice 9');", "the request page")
        wait_for(browser, text_of("[data-testid=details]"), "the payment's details")
        assert "ACME GmbH" in browser.execute_script(text_of("[data-testid=details]"))
        tab_to(browser, "#reason")
        browser.execute_script("return document.activeElement").send_keys("invoice 9 matches the order")
        tab_to(browser, "#approve")
        browser.execute_script("return document.activeElement").send_keys(Keys.ENTER)
        wait_for(browser, "return document.querySelector('main .tag.status-approved');", "approved")

        # Nothing a view leaves out is written as text (a decided request has no form).
        assert "null" not in browser.execute_script("return document.querySelector('main').innerText;")

        # A narrow window (headless Firefox goes no narrower than 500 px; the 390 px phone width
        # is the Chromium test's): the page reflows, nothing scrolls sideways.
        browser.set_window_rect(width=390, height=844)
        wait_for(browser, "return window.innerWidth <= 500;", "a narrow window")
        wide = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth;")
        assert wide <= 1, f"the page is {wide}px wider than a phone-width window"
    finally:
        browser.cleanup()

    # The agent's next poll gets the token.
    for _ in range(20):
        answer = exchange(payer, txn, approval_id=approval)
        if answer.status_code == 200:
            break
        assert answer.json()["error"] in ("slow_down", "authorization_pending"), answer.text
        time.sleep(1)
    assert answer.status_code == 200, "the approved poll got no token"
    print(f"console firefox scenarios passed (Firefox {version})")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # the Rust test prints this output on failure
        print(f"FAILED: {error!r}", file=sys.stderr)
        raise
