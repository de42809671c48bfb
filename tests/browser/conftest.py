"""Real browsers against real fastws server processes.

Fixtures
--------
``site``      the test pages (tests/browser/static/) over HTTP on 127.0.0.1 (package scope).
``chromium``  Debian's Chromium driven by Playwright for Python (package scope).
``page``      a Chromium page (module scope) on static/index.html: ``window.wsTests`` is
              static/wsclient.mjs, ``window.inWorker(name, ...args)`` runs one of its functions
              in a Web Worker.
``webkit``    WebKitGTK's MiniBrowser (the Safari engine) driven by WebKitWebDriver through
              Selenium, on an Xvfb display the fixture starts (package scope); it is on
              static/index.html, like ``page``.
``headless``  ``headless("chromium" | "firefox", url)``: a browser without a driver on a page
              that POSTs its report back (static/postback.html); ended by PID.
``node``      the command (list) that runs a Node with a global ``WebSocket``.

Nothing is downloaded: the browsers are the system's (``.ci/run`` installs Debian's ``chromium``,
``firefox-esr``, ``webkit2gtk-driver`` and ``xvfb``; never ``playwright install``). A missing browser skips its tests with the
reason, unless ``FASTWS_TEST_BROWSERS=required`` (set by .ci/run), which makes it a failure.
Node is optional everywhere (skipped when missing).
Paths: ``FASTWS_TEST_CHROMIUM``, ``FASTWS_TEST_FIREFOX``, ``FASTWS_TEST_WEBKIT`` (MiniBrowser),
``FASTWS_TEST_WEBKIT_DRIVER``, ``FASTWS_TEST_XVFB``, ``FASTWS_TEST_NODE`` override them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.checks import MAX_MESSAGE_SIZE
from tests.browser.external import end_process_group, node_command, node_modules, unavailable
from tests.browser.site import TestSite
from tests.conftest import _server_factory

if TYPE_CHECKING:
    from tests.conftest import ServerFactory, ServerProcess

CHROMIUM = os.environ.get("FASTWS_TEST_CHROMIUM", "/usr/bin/chromium")
FIREFOX = os.environ.get("FASTWS_TEST_FIREFOX", "/usr/bin/firefox-esr")
# Debian's webkit2gtk-driver: WebKitGTK's MiniBrowser, driven by WebKitWebDriver.
WEBKIT = os.environ.get(
    "FASTWS_TEST_WEBKIT", "/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser"
)
WEBKIT_DRIVER = os.environ.get("FASTWS_TEST_WEBKIT_DRIVER", "/usr/bin/WebKitWebDriver")
XVFB = os.environ.get("FASTWS_TEST_XVFB", "/usr/bin/Xvfb")
# Playwright (as root) adds --no-sandbox, --headless, a fresh profile and the quiet-network
# flags itself; the resolver rule stops Chromium's remaining DNS look-ups to Google's hosts.
CHROMIUM_ARGS = ["--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
PAGE_TIMEOUT_MS = 60_000


def executable(path: str, install: str, variable: str) -> str:
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        unavailable(f"{path} not found: {install} (.ci/run does), or set {variable}")
    return path


@pytest.fixture(scope="package")
def site() -> Iterator[TestSite]:
    test_site = TestSite()
    yield test_site
    test_site.close()


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    """A headless Chromium, shared by the package's tests (each module gets its own page)."""
    yield from launch_chromium()


def launch_chromium() -> Iterator[Any]:
    """Playwright's Chromium until the generator is closed. While it runs, Playwright's event
    loop runs in this thread: a fixture outside tests/browser must not outlive its module."""
    path = executable(CHROMIUM, "apt-get install chromium", "FASTWS_TEST_CHROMIUM")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(chromium: Any, site: TestSite) -> Iterator[Any]:
    """One page per test module (wsclient.mjs's functions keep no state between calls); what
    it logged to its console is printed if a test fails."""
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"page error: {error}"))
    page.goto(site.url_for("/index.html"))
    page.wait_for_function("window.ready === true")
    page.console_messages = console
    try:
        yield page
    finally:
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the page's console to the report of a failed test that used it."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    for value in (funcargs.get("page"), funcargs.get("driven")):
        console = getattr(value, "console_messages", None)
        if report.failed and console is not None:
            report.sections.append(("browser console", "\n".join(console)))
            break
    return report


class DrivenPage:
    """static/index.html in a browser a driver controls (``window.wsTests`` is wsclient.mjs,
    ``window.inWorker(name, ...args)`` runs one of its functions in a Web Worker), behind one
    interface so that a test runs unchanged in each browser."""

    name = ""

    def evaluate(self, body: str, *args: Any) -> Any:
        """Run the body of an async function whose `args` are `args`; return its JSON result
        (a rejection fails the test)."""
        raise NotImplementedError

    def run(self, where: str, name: str, *args: Any) -> Any:
        """Call wsclient.mjs's `name(*args)` in the page or in a dedicated Web Worker."""
        if where == "page":
            return self.evaluate("return await window.wsTests[args[0]](...args[1]);", name, args)
        reply = self.evaluate("return await window.inWorker(args[0], ...args[1]);", name, args)
        assert reply["inWorker"] is True, reply
        return reply["result"]


class ChromiumPage(DrivenPage):
    """The ``page`` fixture's Playwright page."""

    name = "chromium"

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console_messages: list[str] = page.console_messages

    def evaluate(self, body: str, *args: Any) -> Any:
        return self.page.evaluate(f"async (args) => {{ {body} }}", list(args))


# --- WebKit (WebKitGTK's MiniBrowser) through WebKitWebDriver --------------------------------

#: How long one execute_async_script may take (the whole suite, 64 MiB included).
WEBKIT_SCRIPT_TIMEOUT = 120


@pytest.fixture(scope="package")
def xvfb_display() -> Iterator[str]:
    """A private X display for MiniBrowser, which has no headless mode. Xvfb picks a free
    display number itself (-displayfd) and is ended by its PID afterwards."""
    path = executable(XVFB, "apt-get install xvfb", "FASTWS_TEST_XVFB")
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [path, "-displayfd", str(write_end), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
            pass_fds=[write_end],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        os.close(write_end)
    number = b""
    with os.fdopen(read_end, "rb") as announced:
        number = announced.readline().strip()  # written once the display accepts clients
    try:
        if not number.isdigit():
            pytest.fail(f"Xvfb did not announce a display (exit {proc.poll()})", pytrace=False)
        yield f":{number.decode()}"
    finally:
        end_process_group(proc)


@pytest.fixture(scope="package")
def webkit(xvfb_display: str, site: TestSite, _server_log_dir: Path) -> Iterator[Any]:
    """A Selenium session on WebKitGTK's MiniBrowser, on static/index.html (``window.wsTests``,
    ``window.inWorker``) like Chromium's ``page``. WebKitWebDriver and the browser processes
    it starts run in their own process group, ended by PID when the package's tests end."""
    path = executable(WEBKIT, "apt-get install webkit2gtk-driver", "FASTWS_TEST_WEBKIT")
    driver_path = executable(
        WEBKIT_DRIVER, "apt-get install webkit2gtk-driver", "FASTWS_TEST_WEBKIT_DRIVER"
    )
    try:
        from selenium import webdriver
        from selenium.webdriver.webkitgtk.options import Options
        from selenium.webdriver.webkitgtk.service import Service
    except ImportError:
        unavailable("selenium is not installed: pip install -e '.[test]'")
    options = Options()
    options.binary_location = path
    options.add_argument("--automation")
    env = {**os.environ, "DISPLAY": xvfb_display}
    with open(_server_log_dir / "webkitwebdriver.log", "wb") as log:
        service = Service(
            driver_path, env=env, log_output=log, popen_kw={"start_new_session": True}
        )
        driver = None
        try:
            with warnings.catch_warnings():
                # Selenium 4.5x calls its own deprecated RemoteConnection(remote_server_addr=).
                warnings.filterwarnings("ignore", "setting remote_server_addr", DeprecationWarning)
                driver = webdriver.WebKitGTK(options=options, service=service)
            driver.set_script_timeout(WEBKIT_SCRIPT_TIMEOUT)
            driver.get(site.url_for("/index.html"))
            WebKitPage(driver).wait_ready()
            yield driver
        finally:
            if driver is not None:
                with contextlib.suppress(Exception):
                    driver.quit()
            if service.process is not None:
                end_process_group(service.process)


class WebKitPage(DrivenPage):
    """static/index.html in MiniBrowser, through Selenium's execute_async_script."""

    name = "webkit"

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.driver.execute_script("return window.ready === true"):
            if time.monotonic() > deadline:
                pytest.fail("static/index.html did not load in WebKit", pytrace=False)
            time.sleep(0.05)

    def evaluate(self, body: str, *args: Any) -> Any:
        script = (
            "const done = arguments[arguments.length - 1];"
            f"(async (args) => {{ {body} }})(Array.from(arguments).slice(0, -1)).then("
            "(value) => done({ value }),"
            "(error) => done({ error: String(error && error.stack ? error.stack : error) }));"
        )
        reply = self.driver.execute_async_script(script, *args)
        if "error" in reply:
            raise AssertionError(f"in WebKit: {reply['error']}")
        return reply.get("value")


@pytest.fixture
def webkit_page(webkit: Any) -> WebKitPage:
    return WebKitPage(webkit)


@pytest.fixture(params=["chromium", "webkit"])
def driven(request: pytest.FixtureRequest) -> DrivenPage:
    """static/index.html in Chromium (Playwright, the module's ``page``) and in WebKit
    (Selenium): the tests that use it run in both."""
    if request.param == "chromium":
        return ChromiumPage(request.getfixturevalue("page"))
    return WebKitPage(request.getfixturevalue("webkit"))


# --- Firefox ESR, without a WebDriver -------------------------------------------------------

# A fresh profile that keeps Firefox off the network: no updates, telemetry, studies, push,
# safe browsing, prefetching, connectivity or captive-portal checks, top sites; a dead proxy
# for anything but 127.0.0.1, and every host name resolved to 127.0.0.1.
FIREFOX_PREFS = {
    "app.update.auto": False,
    "app.update.enabled": False,
    "app.update.checkInstallTime": False,
    "app.normandy.enabled": False,
    "app.normandy.api_url": "",
    "app.shield.optoutstudies.enabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "nimbus.debug": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.policy.firstRunURL": "",
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "",
    "toolkit.coverage.opt-out": True,
    "dom.push.enabled": False,
    "dom.push.serverURL": "",
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.google.updateURL": "",
    "network.prefetch-next": False,
    "network.dns.disablePrefetch": True,
    "network.predictor.enabled": False,
    "network.http.speculative-parallel-limit": 0,
    "browser.urlbar.speculativeConnect.enabled": False,
    "browser.places.speculativeConnect.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.captive-portal-service.enabled": False,
    "captivedetect.canonicalURL": "",
    "browser.newtabpage.enabled": False,
    "browser.newtabpage.activity-stream.feeds.topsites": False,
    "browser.newtabpage.activity-stream.default.sites": "",
    "browser.topsites.contile.enabled": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.aboutwelcome.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.sessionstore.resume_from_crash": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/",
    "network.proxy.type": 1,
    "network.proxy.http": "127.0.0.1",
    "network.proxy.http_port": 9,
    "network.proxy.ssl": "127.0.0.1",
    "network.proxy.ssl_port": 9,
    "network.proxy.no_proxies_on": "127.0.0.1",
    "network.proxy.allow_hijacking_localhost": False,
    "network.dns.forceResolve": "127.0.0.1",
}


def _pref(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


# Chromium without a driver: what Playwright adds as root, minus the DevTools pipe (whose
# Network domain copies every WebSocket frame's payload to the driver: a 64 MiB round trip
# takes ~10 s under Playwright and ~1 s without it).
CHROMIUM_HEADLESS_ARGS = [
    "--headless",
    "--no-sandbox",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    *CHROMIUM_ARGS,
]


def _firefox_command(path: str, home: Path, url: str) -> tuple[list[str], dict[str, str]]:
    profile = home / "profile"
    profile.mkdir(parents=True)
    (profile / "user.js").write_text(
        "".join(f"user_pref({_pref(k)}, {_pref(v)});\n" for k, v in FIREFOX_PREFS.items())
    )
    env = {
        "MOZ_HEADLESS": "1",
        "MOZ_CRASHREPORTER_DISABLE": "1",
        "MOZ_REMOTE_SETTINGS_DEVTOOLS": "1",
    }
    return [path, "--headless", "--no-remote", "--profile", str(profile), url], env


def _chromium_command(path: str, home: Path, url: str) -> tuple[list[str], dict[str, str]]:
    return [path, *CHROMIUM_HEADLESS_ARGS, f"--user-data-dir={home / 'profile'}", url], {}


BROWSERS = {
    "chromium": (CHROMIUM, "apt-get install chromium", "FASTWS_TEST_CHROMIUM", _chromium_command),
    "firefox": (FIREFOX, "apt-get install firefox-esr", "FASTWS_TEST_FIREFOX", _firefox_command),
}


@pytest.fixture
def headless(request: pytest.FixtureRequest) -> Iterator[Callable[[str, str], Any]]:
    """``headless(browser, url)`` opens `url` in "chromium" or "firefox" (ESR), headless, with
    a fresh offline profile and no driver, and returns the Popen. The process and its whole
    session are ended (by PID, then process group) when the test ends."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    with tempfile.TemporaryDirectory(prefix="fastws-browser-") as tmp:

        def run(browser: str, url: str) -> subprocess.Popen[bytes]:
            default, install, variable, command = BROWSERS[browser]
            path = executable(default, install, variable)
            home = Path(tmp) / f"{browser}{len(started)}"
            home.mkdir()
            argv, extra_env = command(path, home, url)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(home),
                "TMPDIR": str(home),
                **extra_env,
            }
            log = home / "browser.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # its child processes share its process group
                )
            started.append((proc, log))
            return proc

        try:
            yield run
        finally:
            for proc, log in started:
                end_process_group(proc)
                output = log.read_text(errors="replace") if log.exists() else ""
                request.node.add_report_section("teardown", f"{proc.args[0]} log", output)


# --- Node --------------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def node() -> list[str]:
    """Node 22+ (global WebSocket), else Node 20/21 with --experimental-websocket."""
    return node_command()


@pytest.fixture(scope="package")
def websocket_node(node: list[str]) -> tuple[list[str], Path]:
    """Node and the node_modules folder holding WebSocket-Node (npm `websocket`), which .ci/run
    installs next to Node 22. Without Node the tests are skipped (as for test_node.py); with
    Node but without the package they fail under FASTWS_TEST_BROWSERS=required."""
    return node, node_modules("websocket")


# --- servers the clients talk to (package scope: started once for tests/browser) -------------


@pytest.fixture(scope="package")
def start_package_server(_server_log_dir: Path) -> Iterator[ServerFactory]:
    """Like tests/conftest.py's start_module_server, for servers all the browser tests share."""
    with _server_factory(_server_log_dir) as start:
        yield start


@pytest.fixture(scope="package")
def echo(start_package_server: ServerFactory) -> ServerProcess:
    """The echo app, with room for the largest message of checks.SIZES."""
    return start_package_server(max_message_size=MAX_MESSAGE_SIZE)


@pytest.fixture(scope="package")
def subprotocol_server(start_package_server: ServerFactory) -> ServerProcess:
    """Supports "chat" then "superchat"; the handler first sends what it negotiated."""
    return start_package_server("tests.apps:report_subprotocol", subprotocols=["chat", "superchat"])


@pytest.fixture(scope="package")
def close_log_server(start_package_server: ServerFactory) -> ServerProcess:
    """Echoes, and logs the close code and reason its handler saw."""
    return start_package_server("tests.apps:log_close")


@pytest.fixture(scope="package")
def compressed_echo(start_package_server: ServerFactory) -> ServerProcess:
    """The echo app with permessage-deflate on."""
    return start_package_server(max_message_size=MAX_MESSAGE_SIZE, compression="deflate")


@pytest.fixture(scope="package")
def other_origin_only(start_package_server: ServerFactory) -> ServerProcess:
    """Allows only pages from http://example.com (and refuses clients that send no Origin)."""
    return start_package_server(origins=["http://example.com"])


@pytest.fixture(scope="package")
def superchat_first(start_package_server: ServerFactory) -> ServerProcess:
    """Prefers "superchat" to "chat"; the handler first sends what it negotiated."""
    return start_package_server("tests.apps:report_subprotocol", subprotocols=["superchat", "chat"])


@pytest.fixture(scope="package")
def no_common_subprotocol(start_package_server: ServerFactory) -> ServerProcess:
    """Supports only "other", which no test page offers."""
    return start_package_server("tests.apps:report_subprotocol", subprotocols=["other"])


@pytest.fixture(scope="package")
def page_origin_allowed(start_package_server: ServerFactory, site: TestSite) -> ServerProcess:
    """Allows http://example.com and the test pages' own origin."""
    return start_package_server(origins=["http://example.com", site.origin])


@pytest.fixture(scope="package")
def closes_4000(start_package_server: ServerFactory) -> ServerProcess:
    """Closes with 4000 "bye" as soon as the connection is open."""
    return start_package_server("tests.apps:close_4000_bye")


@pytest.fixture(scope="package")
def raises(start_package_server: ServerFactory) -> ServerProcess:
    """Echoes; the message "raise" makes the handler raise (the server then closes 1011)."""
    return start_package_server("tests.apps:raise_on_message")


@pytest.fixture(scope="package")
def suite_urls(
    echo: ServerProcess,
    subprotocol_server: ServerProcess,
    close_log_server: ServerProcess,
    compressed_echo: ServerProcess,
    other_origin_only: ServerProcess,
) -> dict[str, str]:
    """The `urls` argument of wsclient.mjs's suite()."""
    return {
        "echo": echo.url,
        "subprotocol": subprotocol_server.url,
        "closeLog": close_log_server.url,
        "compressed": compressed_echo.url,
        "refused": other_origin_only.url,
    }
