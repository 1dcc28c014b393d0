"""Headless Chromium, driven over the Chrome DevTools Protocol through a pipe.

The web bundle's tests and benchmark (``tests/test_web.py``, ``bench/bench_web.py``) open the page
in a real browser: Debian's ``chromium`` in ``--headless=new`` mode, WebGL2 on SwiftShader (a CPU
rasteriser). Chromium's ``--remote-debugging-pipe`` reads protocol messages (JSON, each ended by a
NUL byte) from file descriptor 3 and writes replies and events to descriptor 4, so no port is
opened and no websocket client is needed: the standard library is enough.

Usage::

    with Browser() as b:
        page = b.new_page("http://127.0.0.1:8000/?ui=0")
        value = page.evaluate("window.mpitalk.ready.then(() => 'ok')")
        page.console_errors()  # console errors, uncaught exceptions, failed loads

The browser is started with host-name resolution off for everything but 127.0.0.1 (every other
host fails to resolve), so a page that reached for the network would fail visibly; every request
a page makes is recorded (``page.requests``) so a test can also check where they went.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from mpitalk import UserError

# the network is blocked for pages: every host except the local server fails to resolve
_OFFLINE_RULES = "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


def chromium_path() -> str | None:
    """The Chromium executable (``chromium``, ``chromium-browser`` or ``google-chrome`` on PATH,
    or ``$MPITALK_CHROMIUM``), or None when there is none."""
    env = os.environ.get("MPITALK_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class CDPError(RuntimeError):
    """The browser answered a protocol command with an error, or went away."""


class Page:
    """One browser tab attached in flat mode: commands go out with its session id; its events
    (console, exceptions, log entries, requests) are collected as they arrive."""

    def __init__(self, browser: Browser, session_id: str, target_id: str):
        self.browser = browser
        self.session_id = session_id
        self.target_id = target_id
        self.events: list[dict] = []
        self.requests: list[str] = []

    def send(self, method: str, params: dict | None = None, timeout: float = 60.0) -> dict:
        return self.browser.send(method, params, session_id=self.session_id, timeout=timeout)

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        """The value of a JavaScript expression (awaited if it is a promise), as JSON."""
        res = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                             "returnByValue": True, "timeout": timeout * 1000},
                        timeout=timeout + 5)
        if "exceptionDetails" in res:
            d = res["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            raise CDPError(f"JavaScript error: {text}")
        return res["result"].get("value")

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (failed loads) so far."""
        out = []
        for m, p in ((e["method"], e["params"]) for e in self.events):
            if m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                  for a in p["args"]))
            elif m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append("exception: " + str(d.get("exception", {}).get("description")
                                               or d.get("text")))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
        return out

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target_id})


class Browser:
    """A headless Chromium process and the protocol pipe to it (a context manager)."""

    def __init__(self, executable: str | None = None, extra_args: tuple[str, ...] = ()):
        exe = executable or chromium_path()
        if exe is None:
            raise UserError("no Chromium found; install it (apt-get install chromium, see "
                            "scripts/setup_system.sh) or set MPITALK_CHROMIUM")
        self._profile = tempfile.mkdtemp(prefix="mpitalk-chromium-")
        args = [exe, "--headless=new", "--remote-debugging-pipe",
                f"--user-data-dir={self._profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                "--mute-audio", "--autoplay-policy=no-user-gesture-required",
                # WebGL2 on SwiftShader (Chromium asks for this flag before using it for WebGL)
                "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                f"--host-resolver-rules={_OFFLINE_RULES}", "--window-size=1024,1024",
                *extra_args]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        # descriptors 3 and 4 in the child, as the pipe mode expects, set by a shell rather than
        # a preexec_fn: that would fork a process full of JAX threads (a deadlock risk)
        shell = f'exec "$@" 3<&{to_child_r} 4>&{from_child_w}'
        self._log = tempfile.TemporaryFile()
        bash = shutil.which("bash") or "/bin/bash"  # dash cannot redirect descriptors above 9
        self.proc = subprocess.Popen([bash, "-c", shell, "bash", *args],
                                     pass_fds=(to_child_r, from_child_w),
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log)
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._pages: dict[str, Page] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    # -- protocol ------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
                    else:
                        self._on_event(msg)

    def _on_event(self, msg: dict) -> None:
        page = self._pages.get(msg.get("sessionId", ""))
        if page is None:
            return
        page.events.append(msg)
        if msg["method"] == "Network.requestWillBeSent":
            page.requests.append(msg["params"]["request"]["url"])

    def send(self, method: str, params: dict | None = None, session_id: str | None = None,
             timeout: float = 60.0) -> dict:
        """Send one command and wait for its reply; return its ``result``."""
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg: dict = {"id": mid, "method": method, "params": params or {}}
        if session_id:
            msg["sessionId"] = session_id
        try:
            os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        except OSError as exc:
            raise CDPError(f"{method}: the browser has gone ({exc}); its log ends: "
                           f"{self.log_tail()}") from exc
        with self._cond:
            ok = self._cond.wait_for(lambda: mid in self._replies or self._closed, timeout)
            if mid not in self._replies:
                raise CDPError(f"{method}: no reply in {timeout:.0f} s" if not ok
                               else f"{method}: the browser exited")
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def log_tail(self, lines: int = 5) -> str:
        """The last lines Chromium wrote to stdout/stderr (for error messages)."""
        self._log.seek(0)
        return " | ".join(self._log.read().decode(errors="replace").splitlines()[-lines:])

    # -- pages ---------------------------------------------------------------------------------
    def new_page(self, url: str | None = None) -> Page:
        """A new tab with console, log and network events recorded from the start; navigated to
        ``url`` if given."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        page = Page(self, sid, target)
        with self._cond:
            self._pages[sid] = page
        for domain in ("Runtime", "Log", "Network", "Page"):
            page.send(f"{domain}.enable")
        if url is not None:
            page.navigate(url)
        return page

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("Browser.close", timeout=10)
            except CDPError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
