"""report.html in a real browser: headless Chromium over the DevTools protocol (stdlib only, via
--remote-debugging-pipe). Opens the file from disk, records every network request, console message,
exception and dialog, measures the images and takes screenshots (desktop and phone width).

Skipped when chromium is not installed (CI installs Debian's `chromium`).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from aligneval.report import build_report
from tests.fixtures_results import make_run

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-default-apps",
         "--mute-audio", "--hide-scrollbars", "--remote-debugging-pipe"]
LOCAL_SCHEMES = ("file:", "data:", "about:")


class Browser:
    """A minimal DevTools-protocol client over the pipe transport (NUL-separated JSON messages)."""

    def __init__(self, exe: str):
        self.profile = tempfile.mkdtemp(prefix="aligneval-chromium-")
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        def wire():  # the pipe transport: chromium reads commands on fd 3 and writes replies on fd 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=wire, pass_fds=(3, 4))
        os.close(to_child_r)
        os.close(from_child_w)
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _read(self, timeout: float) -> dict | None:
        while b"\0" not in self.buf:
            ready, _, _ = select.select([self.from_child], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self.from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._read(deadline - time.monotonic())
            if reply is None:
                break
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise TimeoutError(method)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while time.monotonic() < deadline:
            for e in self.events[seen:]:
                if e.get("method") == method:
                    return e
            seen = len(self.events)
            msg = self._read(max(0.0, deadline - time.monotonic()))
            if msg is not None:
                self.events.append(msg)
        raise TimeoutError(method)

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            msg = self._read(left)
            if msg is not None:
                self.events.append(msg)

    def open(self, url: str, width: int = 1200, height: int = 900, mobile: bool = False) -> str:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}, session=session)
        self.events.clear()
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired")
        self.drain(0.5)
        return session

    def evaluate(self, session: str, expression: str):
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        return r["result"].get("value")

    def screenshot(self, session: str, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                         session=session)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.to_child, self.from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def _problems(events: list[dict]) -> dict[str, list]:
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    return {
        "remote_requests": [u for u in requests if not u.startswith(LOCAL_SCHEMES)],
        "requests": requests,
        "console_errors": [e["params"] for e in events if e.get("method") == "Runtime.consoleAPICalled"
                           and e["params"].get("type") in ("error", "assert")],
        "exceptions": [e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"],
        "log_errors": [e["params"]["entry"] for e in events if e.get("method") == "Log.entryAdded"
                       and e["params"]["entry"].get("level") == "error"],
        "dialogs": [e["params"] for e in events if e.get("method") == "Page.javascriptDialogOpening"],
    }


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    b = Browser(CHROMIUM)
    yield b
    b.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    run = make_run(root / "run", n=200, nasty=True)
    return build_report(run, root / "report", resamples=50)


IMAGES_JS = ("JSON.stringify([...document.images].map(i => ({w: i.naturalWidth, h: i.naturalHeight, "
             "cw: i.getBoundingClientRect().width, ch: i.getBoundingClientRect().height, ok: i.complete, "
             "src: i.currentSrc.slice(0, 21)})))")


def test_report_opens_from_disk_without_network_or_errors(browser, report, tmp_path):
    session = browser.open(report.html.resolve().as_uri())
    problems = _problems(browser.events)
    assert problems["remote_requests"] == []
    assert all(u.startswith(LOCAL_SCHEMES) for u in problems["requests"])
    assert any(u.startswith("file:") for u in problems["requests"])  # the recorder does see requests
    assert problems["console_errors"] == [] and problems["exceptions"] == [] and problems["log_errors"] == []
    images = json.loads(browser.evaluate(session, IMAGES_JS))
    assert len(images) >= 8
    for im in images:
        assert im["ok"] and im["src"] == "data:image/png;base64"
        assert im["w"] >= 300 and im["h"] >= 200  # decoded, real pictures
        assert im["cw"] >= 250 and im["ch"] >= 150  # laid out at a visible size
    shot = browser.screenshot(session, tmp_path / "desktop.png")
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size[0] == 1200 and im.size[1] > 3000
        assert len(im.convert("L").resize((60, 200)).getcolors(256) or []) > 20  # not a blank page


def test_injected_markup_stays_text_and_no_dialog_fires(browser, report, tmp_path):
    session = browser.open(report.html.resolve().as_uri())
    text = browser.evaluate(session, "document.body.innerText")
    for raw in ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "{{ 7*7 }}"):
        assert raw in text  # shown to the reader, literally
    assert browser.evaluate(session, "document.scripts.length") == 0
    assert browser.evaluate(session, "document.querySelectorAll('img[onerror], img[src=x]').length") == 0
    assert _problems(browser.events)["dialogs"] == []
    # the detector works: a page that does run alert() is caught
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><title>c</title><img src="http://127.0.0.1:9/x.png"><script>alert(1)</script>')
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    s2 = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    browser.send("Page.enable", session=s2)
    browser.send("Network.enable", session=s2)
    browser.events.clear()
    browser.send("Page.navigate", {"url": control.as_uri()}, session=s2)
    dialog = browser.wait_for("Page.javascriptDialogOpening", timeout=20)
    assert dialog["params"]["message"] == "1"
    assert _problems(browser.events)["remote_requests"] == ["http://127.0.0.1:9/x.png"]  # and remote loads too
    browser.send("Page.handleJavaScriptDialog", {"accept": True}, session=s2)


PHONE_FITS_JS = ("window.innerWidth === 390 && document.documentElement.scrollWidth <= 391")  # a mobile layout
# viewport grows to the widest element, so innerWidth staying at the device width is what proves the fit


def test_readable_on_a_phone(browser, report, tmp_path):
    session = browser.open(report.html.resolve().as_uri(), width=390, height=844, mobile=True)
    # the page itself never scrolls sideways; wide tables scroll inside their own wrapper
    assert browser.evaluate(session, PHONE_FITS_JS)
    widths = json.loads(browser.evaluate(session, IMAGES_JS))
    assert all(im["cw"] <= 390 for im in widths)
    browser.screenshot(session, tmp_path / "phone.png")


@pytest.fixture(scope="module")
def dose_report(tmp_path_factory):
    from tests.fixtures_alignment import make_dose_run

    root = tmp_path_factory.mktemp("browser-dose")
    run = make_dose_run(root / "run", n=80, attacks=False, splits={"test": "test"})
    return build_report(run, root / "report", resamples=30)


def test_dose_and_alignment_report_opens_and_fits_a_phone(browser, dose_report, tmp_path):
    session = browser.open(dose_report.html.resolve().as_uri())
    problems = _problems(browser.events)
    assert problems["remote_requests"] == [] and problems["exceptions"] == [] and problems["console_errors"] == []
    images = json.loads(browser.evaluate(session, IMAGES_JS))
    assert len(images) >= 10 and all(im["ok"] and im["w"] >= 300 and im["cw"] >= 250 for im in images)
    for section in ("dose", "alignment", "headline-aligned-lam0.01", "headline-aligned-lam1"):
        assert browser.evaluate(session, f"document.getElementById({section!r}) !== null"), section
    session = browser.open(dose_report.html.resolve().as_uri(), width=390, height=844, mobile=True)
    assert browser.evaluate(session, PHONE_FITS_JS)
    assert all(im["cw"] <= 390 for im in json.loads(browser.evaluate(session, IMAGES_JS)))
    browser.screenshot(session, tmp_path / "dose-phone.png")
