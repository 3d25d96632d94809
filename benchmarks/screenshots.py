"""Screenshots of relay's records in the MLflow UI, taken with headless Chromium.

Usage: python benchmarks/screenshots.py [configs/demo.yaml] [--out screenshots] [--run]
Needs Debian's Chromium (`apt-get install chromium`). With --run (or no store yet) it runs
the pipeline first (`relay run CONFIG --until register`). Then it starts `relay ui CONFIG`,
drives Chromium over the DevTools protocol and writes, under --out (not committed):
experiment.png (the model-training view), model_version.png (the version page with its
schema), dataset.png (the best trial's training split in the dataset drawer: the schema as
columns and types) and lineage.png (the pipeline run's lineage.svg in the artifact viewer).
Each page is waited for by the text it must show, so a blank page fails the script rather
than passing as a screenshot. Last line: one JSON object with the files.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RELAY = str(Path(sys.executable).parent / "relay")
WIDTH, HEIGHT = 1600, 1000
OWN_TEXT = (  # JS: the elements whose own text (not their children's) holds the argument
    "((text) => [...document.querySelectorAll('*')].filter(e => [...e.childNodes].some("
    "n => n.nodeType === 3 && n.textContent.includes(text))))"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Page:
    """One Chromium tab, driven over its DevTools websocket."""

    def __init__(self, socket_: Any):
        self.socket, self.next_id = socket_, 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def wait_for_text(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        probe = f"document.body && document.body.innerText.includes({json.dumps(text)})"
        while not await self.evaluate(probe):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page never showed {text!r}")
            await asyncio.sleep(0.5)

    async def click_text(self, text: str) -> None:
        """Click the innermost element whose own text is `text` (a dataset's name)."""
        found = await self.evaluate(
            f"(() => {{ const all = {OWN_TEXT}({json.dumps(text)}); "
            "if (!all.length) return false; all[0].click(); return true; })()"
        )
        if not found:
            raise RuntimeError(f"nothing to click showing {text!r}")

    async def shot(self, shot: Shot) -> None:
        url, must_show, path, click, then_shows = shot
        await self.call("Page.navigate", url=url)
        await self.wait_for_text(must_show)
        if click:
            await self.click_text(click)
            await self.wait_for_text(then_shows or click)
        elif then_shows:  # a section further down the page: scrolled into view
            await self.evaluate(
                f"(() => {{ const found = {OWN_TEXT}({json.dumps(then_shows)}); "
                "if (found.length) found[found.length - 1].scrollIntoView(); })()"
            )
        await asyncio.sleep(1.5)  # charts and tables settle after their data arrives
        data = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(data["data"]))


# url, text it shows, file, what to click, then the text it shows (no click: scrolled to)
Shot = tuple[str, str, Path, str | None, str | None]


async def take(debug_port: int, shots: list[Shot]) -> None:
    import websockets

    with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json/list", timeout=10) as r:
        target = next(t for t in json.load(r) if t["type"] == "page")
    async with websockets.connect(target["webSocketDebuggerUrl"], max_size=2**26) as ws:
        page = Page(ws)
        await page.call("Page.enable")
        await page.call(
            "Emulation.setDeviceMetricsOverride",
            width=WIDTH,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )
        for shot in shots:
            await page.shot(shot)


def chromium(port: int, profile: str) -> subprocess.Popen:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("no Chromium here: apt-get install chromium (Debian's package)")
    command = [
        binary,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={profile}",
    ]
    command += [f"--remote-debugging-port={port}", f"--window-size={WIDTH},{HEIGHT}", "about:blank"]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=2).close()
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("Chromium did not start its DevTools endpoint") from None
            time.sleep(0.3)


def recorded(config: str) -> tuple[str, str, str, str, str] | None:
    """(experiment, pipeline run, best trial, its training split's dataset name, an input
    column) of the latest run; None when the store has none."""
    sys.path.insert(0, str(ROOT))
    from cluster.errors import RelayError
    from jobs.client import Relay

    try:
        relay = Relay(config=config)
        latest = relay.runs(limit=1)
    except RelayError:
        return None
    if not latest or latest[0].model_version is None:
        return None
    chain = relay.lineage(latest[0].run_id)
    trial = relay.client.get_run(chain["best_trial"]["run_id"])
    (train,) = [d.dataset for d in trial.inputs.dataset_inputs if d.dataset.name.endswith("-train")]
    column = json.loads(train.schema)["mlflow_colspec"][0]["name"]
    return trial.info.experiment_id, latest[0].run_id, trial.info.run_id, train.name, column


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/demo.yaml")
    parser.add_argument("--out", default="screenshots", type=Path)
    parser.add_argument("--run", action="store_true", help="run the pipeline first")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    found = None if args.run else recorded(args.config)
    if found is None:
        subprocess.run([RELAY, "run", args.config, "--until", "register"], check=True)
        found = recorded(args.config)
    assert found is not None, "the run recorded no model version"
    experiment, pipeline, trial, train, column = found
    ui = subprocess.Popen([RELAY, "ui", args.config, "--json"], stdout=subprocess.PIPE, text=True)
    profile = tempfile.mkdtemp(prefix="relay-chromium-")
    browser = None
    try:
        shown = json.loads(ui.stdout.readline())
        base, links = shown["url"], shown["links"]
        debug_port = free_port()
        browser = chromium(debug_port, profile)
        runs = f"{base}/#/experiments/{experiment}/runs"
        view = "?workflowType=machine_learning"
        shots: list[Shot] = [
            (links["experiment"], "pipeline-", args.out / "experiment.png", None, None),
            (links["model_version"], "Schema", args.out / "model_version.png", "Description",
             "Schema"),  # the card folded away: the schema in view
            (f"{runs}/{trial}{view}", train, args.out / "dataset.png", train, column),
            (f"{runs}/{pipeline}/artifacts/lineage.svg{view}", "lineage.svg",
             args.out / "lineage.png", None, None),
        ]  # fmt: skip
        asyncio.run(take(debug_port, shots))
    finally:
        if browser is not None:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait()
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=60)
        shutil.rmtree(profile, ignore_errors=True)
    files = {shot[2].stem: str(shot[2]) for shot in shots}
    for name, path in files.items():
        print(f"{name:<14} {path}  {Path(path).stat().st_size:,} bytes")
    print(json.dumps({"screenshots": files, "ui": base}))


if __name__ == "__main__":
    main()
