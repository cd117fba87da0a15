"""Table 6: the dashboard in headless chromium against a real hub.

First meaningful paint of a big run (100,000 metric points, 2,000 digit samples): from the
navigation's start to the moment the page's own code marks the chart drawn (run page) or the
sample grid shown with its images (dataset view), measured in the page with
``performance.now()`` (0 is the navigation start). The first load after the hub started is
reported apart (the hub builds its numpy columns and thumbnails then); the others are
medians. Then edit-to-other-browser: a relabel sent from one browser page until the other
page has applied the pushed change (both pages read one clock: ``timeOrigin + now``), and
the edit's own ack.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import Table, progress, scaled

POINTS = 100_000
SAMPLES = 2_000
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _big_run(store: Path, points: int, samples: int) -> None:
    """A hub store holding run ``big``: ``points`` loss values, ``samples`` digits."""
    import convergent
    from convergent.run import Float, Int

    (store / "runs").mkdir(parents=True, exist_ok=True)
    run = convergent.open(store / "runs" / "big.convergent", user="bench")
    run.config.declare({"lr": Float(0.05, min=0.0, max=10.0), "batch_size": Int(32, min=1)})
    with run.transaction():
        ids = run.dataset.from_sklearn("digits")
        extra = samples - len(ids)
        if extra > 0:
            rng = np.random.default_rng(0)
            more = rng.integers(0, 17, size=(extra, 8, 8), dtype=np.uint8)
            run.dataset.add_many(more, labels=rng.integers(0, 10, size=extra))
        run.dataset.assign_splits(val=0.2)
    steps = np.arange(points)
    loss = 2.3 * np.exp(-steps / (points / 5)) + 0.05 * np.random.default_rng(1).random(points)
    for lo in range(0, points, 1000):
        with run.transaction():
            for s in range(lo, min(lo + 1000, points)):
                run.log({"loss": float(loss[s])}, step=int(s))
    run.close()


def _paint(browser: Any, url: str, mark: str) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function(
            f"window.convergent && window.convergent.marks.{mark} !== undefined", timeout=60_000
        )
        return float(page.evaluate(f"window.convergent.marks.{mark}")) / 1000
    finally:
        context.close()


def _latency(browser: Any, url: str, n: int) -> tuple[list[float], list[float]]:
    contexts = [browser.new_context(viewport={"width": 1400, "height": 900}) for _ in range(2)]
    try:
        a, b = (c.new_page() for c in contexts)
        for page in (a, b):
            page.goto(url)
            page.wait_for_function(
                "window.convergent && window.convergent.marks.grid !== undefined"
            )
        sid = a.evaluate("document.querySelector('.cell').dataset.id")
        b.evaluate(
            """(sid) => { window.convergent.onApply = (v) => {
                 for (const c of (v.dataset && v.dataset.changes) || [])
                   if (c[0] === sid && c[1] === window.wanted)
                     window.arrived = performance.timeOrigin + performance.now(); }; }""",
            sid,
        )
        others, acks = [], []
        for i in range(n):
            label = 100 + i  # a new label each time: every edit changes the sample
            b.evaluate("(l) => { window.wanted = l; window.arrived = undefined; }", label)
            sent, acked = a.evaluate(
                """async ([sid, label]) => {
                     const t0 = performance.timeOrigin + performance.now();
                     await window.convergent.app.request({type: "relabel", samples: [sid], label});
                     return [t0, performance.timeOrigin + performance.now()]; }""",
                [sid, label],
            )
            b.wait_for_function("window.arrived !== undefined")
            arrived = b.evaluate("window.arrived")
            others.append((arrived - sent) / 1000)
            acks.append((acked - sent) / 1000)
        return others, acks
    finally:
        for c in contexts:
            c.close()


def table6(errors: list[str]) -> Table:
    points, samples = scaled(POINTS, 1000), scaled(SAMPLES, 200)
    t = Table(
        f"Table 6: the dashboard in headless chromium ({points:,} metric points, "
        f"{samples:,} samples)",
        ["measure", "first load", "median", "p90", "n"],
    )
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None  # type: ignore[assignment]
    if chromium is None or sync_playwright is None:
        errors.append("table 6: needs chromium (apt-get install chromium) and playwright")
        return t
    from convergent.testing.hub import spawn_hub

    folder = Path(tempfile.mkdtemp(prefix="convergent-bench-dash-"))
    progress(f"table 6: building a run with {points:,} points and {samples:,} samples")
    _big_run(folder / "hub", points, samples)
    hub = spawn_hub(folder / "hub", run="big")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=ARGS)
            base = f"http://127.0.0.1:{hub.port}/runs/big"
            token = f"#token={hub.admin}&user=bench"
            for label, view, mark in (
                ("run page: navigation -> chart drawn, s", "charts", "chart"),
                ("dataset view: navigation -> grid shown, s", "dataset", "grid"),
            ):
                progress(f"table 6: {label}")
                times = [_paint(browser, f"{base}?view={view}{token}", mark) for _ in range(6)]
                rest = sorted(times[1:])
                t.add(
                    label,
                    f"{times[0]:.3f}",
                    f"{statistics.median(rest):.3f}",
                    f"{rest[int(0.9 * (len(rest) - 1))]:.3f}",
                    len(rest),
                )
            progress("table 6: relabel -> the other browser")
            others, acks = _latency(browser, f"{base}?view=dataset{token}", scaled(40, 10))
            for label, raw in (
                ("relabel -> applied in the other browser, ms", others),
                ("relabel -> ack in the editing browser, ms", acks),
            ):
                xs = sorted(raw)
                t.add(
                    label,
                    "",
                    f"{1000 * statistics.median(xs):.1f}",
                    f"{1000 * xs[int(0.9 * (len(xs) - 1))]:.1f}",
                    len(xs),
                )
            browser.close()
    except Exception:
        errors.append(f"table 6: {traceback.format_exc()}")
    finally:
        hub.stop()
        shutil.rmtree(folder, ignore_errors=True)
    t.note("first load: the first page after the hub started (it builds and caches columns)")
    t.note("pushes are coalesced to at most one per 100 ms per run: an edit waits up to that")
    return t
