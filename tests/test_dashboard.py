"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a real
hub subprocess and a real trainer. Two browser contexts are two people on one live run.

Screenshots of the main views go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import convergent
from convergent.testing.hub import HubProcess, spawn_hub
from convergent.training import attach
from convergent.training.live import KNOWN
from convergent.training.tasks import digits_mlp, ensure_digits

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]

SHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def wait_for(check: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """Poll ``check`` until it is truthy (a deadline, not a sleep to coordinate)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.02)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if sync_playwright is None or chromium is None:
        pytest.fail(
            "the dashboard tests need Playwright for Python and Debian's chromium: "
            "pip install 'playwright>=1.40' and apt-get install -y chromium "
            "(make test and .ci/run install both)"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    h = spawn_hub(tmp_path_factory.mktemp("hub"))
    setup = convergent.connect(h.url(), h.admin, user="setup")
    ensure_digits(setup)
    setup.config.declare(KNOWN)
    setup.wait_synced()
    setup.close()
    yield h
    h.stop()


def open_run(browser: Browser, hub: HubProcess, user: str, token: str, view: str) -> Page:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda d: d.accept())
    page.goto(f"http://127.0.0.1:{hub.port}/runs/digits?view={view}#token={token}&user={user}")
    expect(page.locator("#conn")).to_have_text("live")
    return page


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_two_people_edit_lr_at_once_and_both_see_the_conflict(
    browser: Browser, hub: HubProcess
) -> None:
    alice = open_run(browser, hub, "alice", hub.admin, "config")
    bob = open_run(browser, hub, "bob", hub.admin, "config")
    try:
        # both start typing while they see the same lr, then both press Enter
        alice.fill("#cfg-lr", "0.02")
        bob.fill("#cfg-lr", "0.05")
        # presence: each sees who else is on this key
        expect(alice.locator("tr[data-key=lr] .editing")).to_have_text("bob")
        expect(bob.locator("tr[data-key=lr] .editing")).to_have_text("alice")
        alice.press("#cfg-lr", "Enter")
        expect(alice.locator("#cfg-lr-msg")).to_have_text("saved")
        bob.press("#cfg-lr", "Enter")
        expect(bob.locator("#cfg-lr-msg")).to_have_text("saved")
        for page in (alice, bob):
            card = page.locator(".conflict[data-key=lr]")
            expect(card).to_contain_text("0.02 by alice")
            expect(card).to_contain_text("0.05 by bob")
        shot(bob, "config-conflict")
        bob.click(".conflict[data-key=lr] button.resolve[data-value='0.02']")
        expect(alice.locator(".conflict[data-key=lr]")).to_have_count(0)
        expect(alice.locator("#cfg-lr")).to_have_value("0.02")
        expect(alice.locator("tr[data-key=lr]")).to_contain_text("0.02 by bob")
        # presence: each sees the other, looking at the config
        expect(alice.locator("#people li[data-user=bob]")).to_contain_text("looking at config")
    finally:
        alice.context.close()
        bob.context.close()


def test_a_relabel_in_one_browser_appears_in_the_other(browser: Browser, hub: HubProcess) -> None:
    alice = open_run(browser, hub, "alice", hub.admin, "dataset")
    bob = open_run(browser, hub, "bob", hub.admin, "dataset")
    try:
        cell = alice.locator(".cell").nth(5)
        sid = cell.get_attribute("data-id")
        old = int(cell.locator(".cell-label").inner_text())
        new = (old + 1) % 10
        other = bob.locator(f".cell[data-id='{sid}'] .cell-label")
        expect(other).to_have_text(str(old))
        cell.focus()
        alice.keyboard.press("ArrowRight")  # keyboard: move, then back, then a digit key
        alice.keyboard.press("ArrowLeft")
        alice.keyboard.press(str(new))
        expect(other).to_have_text(str(new))
        expect(bob.locator(f".counts [data-label='{new}']")).to_be_visible()
        # bulk: select two cells with the keyboard, relabel both from the toolbar
        alice.locator(".cell").nth(0).focus()
        alice.keyboard.press("Space")
        alice.keyboard.press("ArrowRight")
        alice.keyboard.press("Space")
        expect(alice.locator("#sel-count")).to_have_text("2 selected")
        first_two = [alice.locator(".cell").nth(i).get_attribute("data-id") for i in (0, 1)]
        alice.fill("#bulk-label", "4")
        alice.click("#bulk-relabel")
        for sid2 in first_two:
            expect(bob.locator(f".cell[data-id='{sid2}'] .cell-label")).to_have_text("4")
        # add a sample from numbers typed into the page
        total = bob.locator("#ds-total").inner_text()
        n = int(total.split(" of ")[1].split()[0].replace(",", ""))
        alice.click("#add-samples summary")
        alice.fill("#add-numbers", ", ".join(str((k * 7) % 17) for k in range(64)))
        alice.fill("#add-label", "3")
        alice.click("#add-go")
        expect(alice.locator("#add-status")).to_have_text("added 1 sample(s)")
        expect(bob.locator("#ds-total")).to_contain_text(f"of {n + 1:,} samples")
        bob.locator(".cell").nth(5).click()
        expect(bob.locator("#detail")).to_contain_text(str(sid))
        shot(bob, "dataset")
    finally:
        alice.context.close()
        bob.context.close()


class Trainer:
    """The digits MLP attached to the run through the hub, on a thread of its own."""

    def __init__(self, hub: HubProcess) -> None:
        self.run = convergent.connect(hub.url(), hub.token("worker"), user="trainer")
        self.run.wait_until(lambda: len(self.run.dataset) > 0)
        model, optimizer = digits_mlp()
        self.live = attach(self.run, model, optimizer, log_every=5)
        self.steps = 0
        self.error: BaseException | None = None
        self.halt = threading.Event()  # its short wait per step also keeps 2 CPUs usable
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        try:
            for x, y in self.live.batches():
                loss = torch.nn.functional.cross_entropy(self.live.model(x), y)
                self.live.optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                self.live.optimizer.step()
                self.live.step(loss=loss.item())
                self.steps = self.live.step_count
                if self.halt.wait(0.004):
                    break
        except BaseException as err:  # reported by the test
            self.error = err

    def close(self) -> None:
        self.halt.set()  # a worker token may not stop the run; the test's own trainer stops
        self.thread.join(timeout=20)
        self.run.wait_synced(10)
        self.run.close()


def test_the_chart_grows_while_a_trainer_runs_and_pause_stops_it(
    browser: Browser, hub: HubProcess
) -> None:
    trainer = Trainer(hub)
    page = open_run(browser, hub, "alice", hub.admin, "charts")
    try:
        points = "() => (window.convergent.charts.series.get('loss') || {n: 0}).n"
        page.wait_for_function(f"({points})() > 20")
        seen = page.evaluate(points)
        page.wait_for_function(f"({points})() > {seen}")  # pushed, not polled
        # zoom with the wheel: the zoom holds while points keep arriving, until reset
        page.locator("figure[data-metric=loss] .u-over").hover()
        page.mouse.wheel(0, -400)
        page.wait_for_function("window.convergent.charts.zoomed !== null")
        x_max = "() => window.convergent.charts.plots.get('loss').scales.x.max"
        zoomed_max = page.evaluate(x_max)
        page.wait_for_function(f"({points})() > {page.evaluate(points) + 5}")
        assert page.evaluate(x_max) == zoomed_max
        page.click("#zoom-reset")
        page.wait_for_function(
            f"({x_max})() === window.convergent.charts.series.get('loss').x[({points})() - 1]"
        )
        page.check("#log-y")  # the loss is positive: its chart takes a log scale
        page.wait_for_function("window.convergent.charts.plots.get('loss').scales.y.distr === 3")
        page.uncheck("#log-y")
        # an lr change from the browser becomes a marker once the trainer applied it
        page.click("#tab-config")
        page.fill("#cfg-lr", "0.03")
        page.press("#cfg-lr", "Enter")
        expect(page.locator("tr[data-key=lr] td.in-effect")).to_contain_text("0.03since step")
        page.click("#tab-charts")
        page.wait_for_function("window.convergent.charts.markers.length > 0")
        page.wait_for_function(f"({points})() > {page.evaluate(points) + 10}")
        shot(page, "run-page")

        page.click("#btn-pause")
        wait_for(lambda: trainer.live.paused, what="the trainer to pause")
        expect(page.locator("#run-state")).to_have_text("paused")
        stopped_at = trainer.steps
        page.click("#btn-checkpoint")
        page.click("#btn-resume")
        wait_for(lambda: trainer.steps > stopped_at + 5, what="the trainer to resume")
        page.click("#tab-checkpoints")
        expect(page.locator("#checkpoints tr").first).to_contain_text("trainer")
        page.click("#btn-stop")  # the confirm dialog is accepted
        trainer.thread.join(timeout=20)
        assert not trainer.thread.is_alive() and trainer.error is None
        expect(page.locator("#run-state")).to_have_text("stopped")
        expect(page.locator("#workers li[data-user=trainer]")).to_contain_text("worker")
        page.click("#tab-history")
        expect(page.locator("#history")).to_contain_text("alice lr: 0.02 → 0.03")
        shot(page, "history")
    finally:
        trainer.close()
        page.context.close()


def test_a_viewer_sees_no_edit_controls_and_the_hub_refuses_its_writes(
    browser: Browser, hub: HubProcess
) -> None:
    page = open_run(browser, hub, "val", hub.token("viewer"), "config")
    try:
        expect(page.locator("#me")).to_contain_text("viewer")
        expect(page.locator("#btn-pause")).to_be_hidden()
        expect(page.locator("#cfg-lr")).to_be_disabled()
        expect(page.locator("tr[data-key=lr] button[type=submit]")).to_be_hidden()
        page.click("#tab-dataset")
        expect(page.locator("#bulk")).to_be_hidden()
        before = page.locator(".cell .cell-label").first.inner_text()
        page.locator(".cell").first.focus()
        page.keyboard.press("0" if before != "0" else "1")
        # the hub refuses a write sent by hand anyway
        refused = page.evaluate(
            """() => window.convergent.app.request({type: "set_config", key: "lr", value: 0.5})
                 .then(() => "accepted", (err) => err.message)"""
        )
        assert "may not change config" in refused
        expect(page.locator(".cell .cell-label").first).to_have_text(before)
    finally:
        page.context.close()


def test_a_lost_connection_is_shown_and_retried(browser: Browser, tmp_path: Path) -> None:
    store = tmp_path / "hub"
    hub = spawn_hub(store)
    page = open_run(browser, hub, "alice", hub.admin, "config")
    try:
        hub.stop()
        expect(page.locator("#conn")).to_contain_text("offline")
        expect(page.locator("#banner")).to_contain_text("Connection to the hub lost")
        refused = page.evaluate(
            """() => window.convergent.app.request({type: "control", action: "pause"})
                 .then(() => "sent", (err) => err.message)"""
        )
        assert "offline" in refused  # never silently dropped
        hub = spawn_hub(store, port=hub.port)
        expect(page.locator("#conn")).to_have_text("live", timeout=20_000)
        expect(page.locator("#banner")).to_be_hidden()
        page.click("#btn-pause")
        expect(page.locator("#run-state")).to_have_text("paused")
    finally:
        page.context.close()
        hub.stop()


def test_the_runs_list(browser: Browser, hub: HubProcess) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 500})
    page = context.new_page()
    try:
        page.goto(f"http://127.0.0.1:{hub.port}/#token={hub.admin}&user=alice")
        expect(page.locator("#runs a")).to_have_text("digits")
        assert hub.admin not in page.url  # the token left the address bar
        page.click("#runs a")
        expect(page.locator("#conn")).to_have_text("live")  # the stored token opens the run
        expect(page.locator("#me")).to_contain_text("alice")
        # the views are tabs a keyboard walks with the arrow keys
        page.focus("#tab-charts")
        page.keyboard.press("ArrowRight")
        expect(page.locator("#tab-config")).to_be_focused()
        expect(page.locator("#view-config")).to_be_visible()
        expect(page.locator("#view-charts")).to_be_hidden()
    finally:
        context.close()
