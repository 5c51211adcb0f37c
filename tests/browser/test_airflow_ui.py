"""What an operator sees: `nexgen-etl airflow` (the `make airflow` launcher) driven in headless Chromium.

Logs in through the login form, finds nexgen_etl_pipeline, triggers it with "Unpause on trigger", waits for the
runs to succeed as the UI shows them, reads the transform task's log in the UI, and stops Airflow with SIGINT
leaving no process behind. Screenshots land in test-artifacts/browser/.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nexgen_etl.core.publish import read_catalog
from nexgen_etl.core.settings import PROJECT_ROOT, AwsCredentials, S3Settings, Secret
from nexgen_etl.core.storage import S3Store, s3_client
from nexgen_etl.dev.airflow_local import session_processes
from nexgen_etl.dev.local_services import LOADING_BUCKET
from tests.conftest import TEST_ACCESS_KEY, TEST_SECRET

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "browser"
DAG_ID = "nexgen_etl_pipeline"
RUN_TIMEOUT = 900  # one small batch takes 1.5–3 min of spark-submit here, much more on a loaded machine
BATCH_LINE = re.compile(r"nexgen-etl: batch (\S+): (\w+)")

pytestmark = pytest.mark.timeout(2700)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    """`nexgen-etl airflow --port 0` in its own session, with a small sample and the test's credentials."""
    home = tmp_path_factory.mktemp("airflow-ui")
    env = {**os.environ, "NEXGEN_LOCAL_ACCESS_KEY": TEST_ACCESS_KEY, "NEXGEN_LOCAL_SECRET_KEY": TEST_SECRET}
    out = open(home / "launcher.out", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "nexgen-etl"), "airflow", "--port", "0",
                             "--home", str(home), "--days", "10", "--stores", "2", "--skus", "3",
                             "--ready-timeout", "1200"],
                            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    state_file = home / "launcher.json"
    deadline = time.monotonic() + 1260  # a few seconds past the launcher's own --ready-timeout
    while not state_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the launcher did not get Airflow ready:\n" + (home / "launcher.out").read_text()[-3000:]
                        + "\n" + (home / "standalone.log").read_text(errors="replace")[-5000:])
        time.sleep(1)
    state = json.loads(state_file.read_text())
    yield {"proc": proc, "home": home, "state": state, "out": home / "launcher.out"}
    if proc.poll() is None:  # the shutdown test did not run (or failed before it stopped the launcher)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(180)
        except subprocess.TimeoutExpired:
            for pid in session_processes(proc.pid) + session_processes(state["standalone_pid"]):
                os.kill(pid, signal.SIGKILL)
    out.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download a driver or a browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):  # only this run's screenshots
        old.unlink()
    yield driver
    driver.quit()


def shot(driver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def wait_for(driver, condition, timeout: float, what: str, every: float = 1.0):
    """Poll `condition(driver)` (re-evaluated from scratch each time: the React UI re-renders under us)."""
    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := condition(driver):
                return value
        except WebDriverException:
            pass
        time.sleep(every)
    shot(driver, f"timeout-{re.sub(r'[^a-z0-9]+', '-', what.lower())}")
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def click(driver, by: str, selector: str, what: str, timeout: float = 60) -> None:
    """Find and click in one retried step: the element found a moment ago may have been re-rendered (stale)."""
    def attempt(d):
        found = d.find_elements(by, selector)
        if found and found[0].is_enabled():
            found[0].click()
            return True
        return False

    wait_for(driver, attempt, timeout, what)


def js(driver, script: str):
    return driver.execute_script(script)


def body_text(driver) -> str:
    return js(driver, "return document.body.innerText")


def runs_table(driver) -> list[dict]:
    """The Runs tab as the UI shows it: run id, run type and the state badge of each row."""
    rows = js(driver, """return [...document.querySelectorAll('tbody tr')].map(r => ({
        cells: [...r.cells].map(c => c.innerText.trim()),
        href: (r.querySelector('a[href*="/runs/"]') || {}).href || null}))""")
    return [{"run_id": r["cells"][1], "state": r["cells"][3], "type": r["cells"][4], "href": r["href"]}
            for r in rows if r["href"] and len(r["cells"]) > 4]


def login(driver, url: str, username: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "input[name=username]"), 120, "the login form")
    shot(driver, "01-login")
    driver.find_element(By.CSS_SELECTOR, "input[name=username]").send_keys(username)
    driver.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(password)
    click(driver, By.XPATH, "//button[@type='submit' and normalize-space()='Sign in']", "the Sign in button")
    wait_for(driver, lambda d: "/auth/login" not in d.current_url, 60, "the login to go through")


def test_operator_triggers_the_dag_and_reads_its_log(launcher, browser):
    from selenium.webdriver.common.by import By

    state = launcher["state"]
    url = state["url"]
    password = json.loads(Path(state["passwords_file"]).read_text())[state["username"]]
    started = time.monotonic()
    login(browser, url, state["username"], password)

    # the DAG list: our DAG is there, paused (new DAGs start paused)
    browser.get(f"{url}/dags")
    wait_for(browser, lambda d: d.find_elements(By.LINK_TEXT, DAG_ID), 300, "the DAG in the list", every=5)
    shot(browser, "02-dag-list")
    assert js(browser, "return document.querySelector('[data-testid=toggle-pause]').dataset.state") == "unchecked"
    click(browser, By.LINK_TEXT, DAG_ID, "the DAG's link")
    wait_for(browser, lambda d: d.current_url.rstrip("/").endswith(f"/dags/{DAG_ID}"), 60, "the DAG's page")

    # trigger from the DAG page; the trigger form's "Unpause … on trigger" box un-pauses it in the same action
    click(browser, By.CSS_SELECTOR, "button[aria-label='Trigger Dag']", "the Trigger button")
    unpause = f"//*[@role='dialog']//label[contains(., 'Unpause {DAG_ID} on trigger')]//input"
    wait_for(browser, lambda d: d.find_element(By.XPATH, unpause).is_selected(), 60,
             "the trigger form, its 'Unpause on trigger' box ticked")
    shot(browser, "03-trigger-form")
    # enabled only when the form's params are valid (they are optional: the form must not demand values)
    click(browser, By.XPATH, "//*[@role='dialog']//button[normalize-space()='Trigger']", "the form's Trigger button")
    # the UI then closes the form and opens the new run, but on a busy machine the form was seen to stay open
    # (its button spinning) long after the API had created the run: the Runs tab is the record that counts
    deadline = time.monotonic() + 60
    while browser.find_elements(By.CSS_SELECTOR, "[role=dialog]") and time.monotonic() < deadline:
        time.sleep(2)
    shot(browser, "04-triggered")

    def manual_run(d):
        d.get(f"{url}/dags/{DAG_ID}/runs")
        return [r for r in wait_for(d, runs_table, 60, "the runs table") if r["type"] == "Manual"]

    (manual,) = wait_for(browser, manual_run, 180, "the triggered run in the Runs tab", every=5)
    wait_for(browser, lambda d: js(d, "return (document.querySelector('[data-testid=toggle-pause]') || {dataset: {}})"
                                      ".dataset.state") == "checked", 60, "the DAG to show as un-paused")

    # Un-pausing an hourly DAG also starts the scheduled run of the last hour, as in any Airflow: wait until the
    # Runs tab shows every run finished, each one "Success"
    def finished(d):
        d.get(f"{url}/dags/{DAG_ID}/runs")
        rows = wait_for(d, runs_table, 60, "the runs table")
        return rows if all(r["state"] in {"Success", "Failed"} for r in rows) else None

    rows = wait_for(browser, finished, RUN_TIMEOUT, "the runs to finish", every=15)
    shot(browser, "05-runs")
    print(f"runs finished {time.monotonic() - started:.0f}s after login: {rows}")
    assert manual["run_id"] in {r["run_id"] for r in rows}
    assert {r["state"] for r in rows} == {"Success"}, rows

    # the transform log in the UI: exactly one run processed the sample (the other found nothing new)
    logs = {}
    for r in rows:
        browser.get(f"{r['href'].rstrip('/')}/tasks/transform")
        status = wait_for(browser, lambda d: re.search(r"\ntransform\n(Success|Skipped)\n", body_text(d)), 60,
                          "the transform task's state")[1]
        if status == "Success":
            logs[r["run_id"]] = wait_for(browser, lambda d: BATCH_LINE.search(body_text(d)) and body_text(d), 120,
                                         "the batch line in the transform log")
            shot(browser, "06-transform-log")
    assert len(logs) == 1, f"expected one run to transform the batch, got {sorted(logs)}"
    (text,) = logs.values()
    batch_id, status = BATCH_LINE.search(text).groups()
    assert status == "staged", text[-2000:]
    assert TEST_SECRET not in text and TEST_ACCESS_KEY not in text
    # the batch the UI's log names is the one published to the loading bucket of this launcher's S3 endpoint
    cat = read_catalog(S3Store(LOADING_BUCKET, "", s3_client(S3Settings(endpoint_url=state["moto_url"], path_style=True),
                                                             AwsCredentials(TEST_ACCESS_KEY, Secret(TEST_SECRET)))))
    assert list(cat.batches) == [batch_id] and len(cat.partitions("features")) == 10
    print(f"UI flow took {time.monotonic() - started:.0f}s; batch {batch_id}: {status}")


def test_sigint_stops_airflow_and_leaves_no_process(launcher):
    """Ctrl-C: the launcher forwards SIGINT to standalone, stops moto, and nothing of either session is left."""
    proc, state = launcher["proc"], launcher["state"]
    standalone = session_processes(state["standalone_pid"])
    assert len(standalone) >= 4, standalone  # standalone, scheduler, dag-processor, api-server, triggerer, …
    assert state["moto_pid"] in session_processes(proc.pid)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(300)
    out = launcher["out"].read_text()
    print(f"stopped in {time.monotonic() - t0:.0f}s")
    assert rc == 0, out[-3000:]
    assert "stopped cleanly, no process left" in out
    assert session_processes(state["standalone_pid"]) == [] and session_processes(proc.pid) == []
    assert not any(_alive(p) for p in standalone + [state["moto_pid"]])
    logs = out + (launcher["home"] / "standalone.log").read_text(errors="replace")
    assert "Shutting down components" in logs and TEST_SECRET not in logs
