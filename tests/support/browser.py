"""A real browser for the HTML reports: Debian's headless Chromium, driven
over the DevTools protocol with a small client (websocket-client, which the
kubernetes package already brings).

The page is loaded from a file at a given window width; the tests read the
rendered DOM (element boxes, data attributes) with ``evaluate``, take
screenshots, and see every request the page made (a self-contained page
makes none but its own file).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from support.availability import unavailable

# Debian's package (apt-get install chromium); $DASHI_TEST_CHROMIUM for another.
CHROMIUM = os.environ.get("DASHI_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--hide-scrollbars",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]
START_TIMEOUT = 60  # a cold start on a loaded 2-core machine takes a few seconds
CALL_TIMEOUT = 60


def chromium_or_skip() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        unavailable("browser", f"no Chromium at {CHROMIUM} (apt-get install chromium, or set DASHI_TEST_CHROMIUM)")
    return CHROMIUM


class Browser:
    """One headless Chromium with a fresh profile, and its one page."""

    def __init__(self, width: int = 1280, height: int = 900):
        import websocket

        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="dashi-chromium-")
        self.proc = subprocess.Popen([chromium_or_skip(), *FLAGS, f"--user-data-dir={self.profile}",
                                      f"--window-size={width},{height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = self._port()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                targets = json.load(r)
            page = next(t for t in targets if t["type"] == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=CALL_TIMEOUT,
                                                  suppress_origin=True)
        except BaseException:
            self.close()
            raise
        self._id = 0
        self.events: list[dict] = []
        self.call("Page.enable")
        self.call("Network.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def _port(self) -> int:
        """Chromium writes the port it chose into the profile once it listens."""
        path = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode} before it listened")
            if path.is_file() and path.read_text().strip():
                return int(path.read_text().split()[0])
            time.sleep(0.05)
        raise TimeoutError(f"chromium did not listen within {START_TIMEOUT} s")

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def _wait_event(self, name: str) -> dict:
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == name:
                    return self.events.pop(i)
            self.events.append(json.loads(self.ws.recv()))

    def open(self, path: Path) -> None:
        """Load a file and wait for its load event; the requests it made are in ``requests``."""
        self.events.clear()
        self.call("Page.navigate", url=path.resolve().as_uri())
        self._wait_event("Page.loadEventFired")

    @property
    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def evaluate(self, expression: str):
        """A JavaScript expression's value (JSON-serialisable), evaluated in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, *, full_page: bool = False, selector: str | None = None,
                   top: int | None = None, scale: float = 1.0) -> Path:
        """A PNG at the window's width: of the window, the whole page
        (``full_page``), the element ``selector`` matches, or the page's first
        ``top`` pixels; ``scale`` shrinks the picture (not the layout)."""
        total = self.evaluate("document.documentElement.scrollHeight")
        if selector:
            y, h = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                                 ".getBoundingClientRect(); return [r.top + scrollY, r.height]; })()")
        else:
            y, h = 0, (total if full_page else min(total, top or self.height))
        # The whole page is laid out in one window as tall as it, so nothing
        # outside the first screen is missing from the picture.
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=max(total, self.height),
                  deviceScaleFactor=1, mobile=False)
        try:
            data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False,
                             clip={"x": 0, "y": y, "width": self.width, "height": h, "scale": scale})["data"]
        finally:
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                      deviceScaleFactor=1, mobile=False)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
