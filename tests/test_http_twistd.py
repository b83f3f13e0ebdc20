"""
C{twistd -n jsonservice --http ENDPOINT}, a real process: a plain HTTP
client (urllib), a WebSocket client (the C{websockets} library), the
command line over C{ws://} and C{http://}, and the explorer page driven in
a real headless Chromium through playwright (skipped, saying why, where
there is no browser).  One server for the module, stopped with SIGTERM at
the end, cleanly.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from websockets.sync.client import connect as ws_connect

from jsonservice.demo import make_demo_service

try:
    from tests.conftest import free_port
    from tests.test_twistd import WAIT, Twistd, classic_client, twistd
    from tests.web_helpers import WebServer, within
except ImportError:  # pragma: no cover - tests/ on sys.path
    from conftest import free_port  # type: ignore[no-redef]
    from test_twistd import WAIT, Twistd, classic_client, twistd  # type: ignore[no-redef]
    from web_helpers import WebServer, within  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
#: Where the README's screenshot comes from: C{UPDATE_SCREENSHOT=1} rewrites it.
SCREENSHOT = ROOT / "docs" / "explorer.png"
#: Chromium's flags for a sandboxed CI box with no network (DESIGN §8).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Served:
    """The running server: its line port and its HTTP base URL."""

    def __init__(self, process: Twistd, http_port: int) -> None:
        self.process = process
        self.port = process.port
        self.http = f"http://127.0.0.1:{http_port}"
        self.ws = f"ws://127.0.0.1:{http_port}/ws"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    cwd = tmp_path_factory.mktemp("http-twistd")
    http_port = free_port()
    with twistd(cwd, free_port(), "--http", f"tcp:{http_port}:interface=127.0.0.1") as process:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, process.output()
                time.sleep(0.05)
        yield Served(process, http_port)
        process.assert_clean_stop(process.terminate())


def post(url: str, body: bytes) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("content-type", "")


def test_http_websocket_and_lines_from_one_process(served: Served) -> None:
    status, body, kind = post(served.http + "/rpc", b'{"jsonrpc":"2.0","method":"echo","params":[1],"id":1}')
    assert (status, json.loads(body), kind) == (
        200,
        {"jsonrpc": "2.0", "result": 1, "id": 1},
        "application/json",
    )
    status, body, _ = post(served.http + "/rpc", b'{"jsonrpc":"2.0","method":"echo","params":[1]}')
    assert (status, body) == (204, b"")
    status, body, _ = post(served.http + "/rpc", b'{"jsonrpc":"2.0","method":"nope","id":1}')
    assert (status, json.loads(body)["error"]["code"]) == (404, -32601)
    with urllib.request.urlopen(served.http + "/openrpc.json", timeout=WAIT) as response:
        assert "echo" in {method["name"] for method in json.load(response)["methods"]}
    with urllib.request.urlopen(served.http + "/", timeout=WAIT) as response:
        assert b"explorer.js" in response.read()
    with ws_connect(served.ws) as ws:
        ws.send('{"jsonrpc":"2.0","method":"echo","params":["over ws"],"id":1}')
        assert json.loads(ws.recv(timeout=WAIT))["result"] == "over ws"
    # ...next to the line protocol, on its own port.
    assert classic_client(served.port, {"name": "John"}) == {"message": "Hello from server"}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jsonservice", *args],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
        check=False,
    )


def test_command_line_over_websocket_and_http(served: Served) -> None:
    for url in (served.ws, served.http + "/rpc"):
        done = cli("call", "--connect", url, "echo", '{"a": [1, 2]}')
        assert (done.returncode, done.stdout) == (0, '{"a":[1,2]}\n'), done.stderr
    done = cli("send", "--connect", served.http + "/rpc", '{"name": "John"}')
    assert (done.returncode, done.stdout) == (0, '{"message":"Hello from server"}\n'), done.stderr
    done = cli("notify", "--connect", served.ws, "echo", "1")
    assert (done.returncode, done.stdout) == (0, ""), done.stderr
    done = cli("call", "--connect", served.http + "/rpc", "nope")
    assert done.returncode == 1
    assert done.stderr.startswith("error -32601: Method not found"), done.stderr
    done = cli("call", "--connect", served.ws.replace("/ws", "/nowhere"), "ping")
    assert done.returncode == 2
    assert done.stderr.startswith("cannot connect to ws://"), done.stderr
    assert "WebSocket handshake failed" in done.stderr


def _browser() -> tuple[Any, Any, str]:
    """playwright's sync API and a Chromium to drive, or skip saying which is missing."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.skip("no browser test: the playwright package is not installed (the test extra has it)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no browser test: no chromium on PATH (apt-get install chromium; .ci/run tries)")
    return sync_playwright, expect, chromium


def test_explorer_in_a_real_browser(served: Served, tmp_path: Path) -> None:
    """Load the page, see the demo methods, call echo, see the result, receive a notification."""
    sync_playwright, expect, chromium = _browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 560})
            problems: list[str] = []
            page.on(
                "console", lambda message: problems.append(message.text) if message.type == "error" else None
            )
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(served.http + "/")
            methods = page.locator("#methods button")
            methods.filter(has_text="ping").wait_for(timeout=WAIT * 1000)
            names = [name.split("\n")[0] for name in methods.all_inner_texts()]
            assert names == ["echo", "notify_me", "ping"]
            # Keyboard only: focus the method, type the param, Enter.
            page.locator("#methods button", has_text="echo").focus()
            page.keyboard.press("Enter")
            assert page.evaluate("document.activeElement.id") == "param-0"
            page.keyboard.type('{"hello": ["world", 42]}')
            page.keyboard.press("Enter")
            expect(page.locator("#reply")).to_contain_text("world", timeout=WAIT * 1000)
            assert json.loads(page.text_content("#reply") or "") == {"hello": ["world", 42]}
            page.fill("#param-0", "not json")
            page.keyboard.press("Enter")
            assert "not a JSON value" in (page.text_content("#reply") or "")
            # An error reply shows its code, message and data.
            page.locator("#methods button", has_text="notify_me").click()
            page.fill("#param-1", '"soon"')
            page.keyboard.press("Enter")
            expect(page.locator("#reply")).to_contain_text("Error", timeout=WAIT * 1000)
            reply = (page.text_content("#reply") or "").splitlines()
            assert reply[0] == "Error -32602: Invalid params"
            # (The typed handler's data: the path of the wrong value.)
            assert json.loads("\n".join(reply[1:]))["message"] == "$.delay: expected float, got str"
            # A notification pushed by the server.
            page.fill("#param-0", '"ding"')
            page.fill("#param-1", "")
            page.keyboard.press("Enter")
            page.locator("#notifications li").first.wait_for(timeout=WAIT * 1000)
            assert 'notice ["ding"]' in (page.text_content("#notifications") or "")
            page.locator("#methods button", has_text="echo").click()
            page.fill("#param-0", '{"hello": ["world", 42]}')
            page.keyboard.press("Enter")
            expect(page.locator("#reply")).to_contain_text("world", timeout=WAIT * 1000)
            shot = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") else tmp_path / "explorer.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
            assert problems == []
        finally:
            browser.close()


@pytest_twisted.ensureDeferred
async def test_explorer_asks_for_the_token() -> None:
    """With a token required, the page asks for it, authenticates over the WebSocket, lists the methods."""
    sync_playwright, expect, chromium = _browser()
    server = await WebServer(make_demo_service(), auth_token="s3cret").start()

    def browse(url: str) -> list[str]:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(url)
                expect(page.locator("#auth")).to_be_visible(timeout=WAIT * 1000)
                assert page.evaluate("document.activeElement.id") == "token"
                page.keyboard.type("s3cret")
                page.keyboard.press("Enter")
                page.locator("#methods button", has_text="ping").wait_for(timeout=WAIT * 1000)
                return [name.split("\n")[0] for name in page.locator("#methods button").all_inner_texts()]
            finally:
                browser.close()

    try:
        names = await within(deferToThread(browse, server.url("/", "http")), 30)
    finally:
        await server.stop()
    assert names == ["echo", "notify_me", "ping"]
