"""The MiniMax connection in Airflow's own UI, driven by a real Chromium through Playwright.

A throwaway ``airflow api-server`` (SQLite, simple auth manager with every user an admin, the Test
button enabled) and the emulator run on free loopback ports. Each test adds a connection through
the Add Connection form as a user does, saves it and presses the row's Test button.

The browser is Debian's ``chromium`` (``make test`` installs it when it can); Playwright's own
browser download is not used. Without a browser the tests are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from airflow import __version__ as airflow_version
from packaging.version import Version

from airflow_provider_minimax.connection import conn_fields
from airflow_provider_minimax.testing.demo import airflow, airflow_env
from airflow_provider_minimax.testing.emulator import EMULATOR_API_KEY, run_emulator_in_thread

pytestmark = pytest.mark.e2e

playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'"
)

#: Executables that can be Chromium, first found wins; CHROMIUM names another.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: How long one UI step may take (a deadline, not an assertion).
PATIENCE_MS = 30_000


@dataclass(frozen=True)
class ConnType:
    """A connection type whose form this provider declares.

    :param conn_type: the connection type id
    :param label: its name in the Connection Type dropdown
    """

    conn_type: str
    label: str


#: Every connection type of the provider; one line each.
CONN_TYPES = [
    pytest.param(ConnType("minimax", "MiniMax"), id="minimax"),
    pytest.param(ConnType("pydanticai_minimax", "Pydantic AI (MiniMax)"), id="pydanticai_minimax"),
]


def _browser_path() -> str:
    named = os.environ.get("CHROMIUM")
    found = shutil.which(named) if named else next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        pytest.skip(
            f"no Chromium found ({named or ', '.join(BROWSERS)}): install Debian's chromium "
            "(apt-get install -y chromium; make test does so as root) or set CHROMIUM to its path"
        )
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Stack:
    """The api-server and the emulator of this module's tests.

    :param ui: the api-server's root URL
    :param emulator_url: the emulator's base URL (both APIs)
    :param emulator_port: the emulator's port
    """

    ui: str
    emulator_url: str
    emulator_port: int


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A throwaway api-server on SQLite with the Test button enabled, and the emulator."""
    home = tmp_path_factory.mktemp("airflow-ui")
    env = airflow_env(
        home,
        home / "dags",
        {
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        },
    )
    assert airflow(["db", "migrate"], env, home / "migrate.log") == 0, (home / "migrate.log").read_text()
    port = _free_port()
    command = ["api-server", "--apps", "core", "--host", "127.0.0.1", "--port", str(port)]
    with (
        run_emulator_in_thread() as emulator,
        (home / "api-server.log").open("wb") as log,
        subprocess.Popen(
            [sys.executable, "-m", "airflow", *command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        ) as server,
    ):
        try:
            ui = f"http://127.0.0.1:{port}"
            _wait_until_up(ui, server, home / "api-server.log")
            yield Stack(ui, emulator.base_url, emulator.port)
        finally:
            server.terminate()
            server.wait(timeout=30)


def _wait_until_up(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the api-server exited ({server.returncode}):\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the api-server did not answer in 120 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def browser() -> Iterator[playwright.BrowserContext]:
    """One headless Chromium context (its cache spares reloading the UI's bundle); no sandbox as root."""
    path = _browser_path()
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=path, args=["--no-sandbox"])
        context = chromium.new_context(viewport={"width": 1280, "height": 1400})
        context.set_default_timeout(PATIENCE_MS)
        yield context
        chromium.close()


@pytest.fixture
def page(
    browser: playwright.BrowserContext, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[playwright.Page]:
    """A fresh page; on failure its screenshot is saved in the test's tmp folder."""
    page = browser.new_page()
    failed_before = request.session.testsfailed
    yield page
    if request.session.testsfailed > failed_before:  # the call phase is reported before teardown
        shot = tmp_path / "failure.png"
        page.screenshot(path=shot, full_page=True)
        print(f"screenshot of the failure: {shot}")
    page.close()


@dataclass(frozen=True)
class Form:
    """What a user types into the Add Connection form.

    :param base_url: the Base URL (host)
    :param api_key: the API key (password)
    :param api: the API dropdown's choice
    :param port: the Port field; empty leaves it unset
    """

    base_url: str
    api_key: str
    api: str
    port: str


def open_add_form(page: playwright.Page, ui: str, conn_type: ConnType) -> playwright.Locator:
    """Open Admin > Connections > Add Connection and pick the connection type; return the dialog."""
    page.goto(f"{ui}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    type_box = dialog.get_by_role("combobox")
    type_box.click()
    type_box.fill(conn_type.label)
    page.get_by_role("option", name=conn_type.label, exact=True).click()
    return dialog


def add_connection(page: playwright.Page, ui: str, conn_type: ConnType, conn_id: str, form: Form) -> None:
    """Fill the Add Connection form and save it."""
    dialog = open_add_form(page, ui, conn_type)
    dialog.get_by_label("Connection ID").fill(conn_id)
    dialog.get_by_label("Base URL").fill(form.base_url)
    dialog.get_by_label("API key").fill(form.api_key)
    if form.port:
        dialog.get_by_label("Port").fill(form.port)
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    dialog.locator("#element_api").click()
    page.get_by_role("option", name=form.api, exact=True).click()
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")


def press_test(page: playwright.Page, conn_id: str) -> str:
    """Press the Test button on the connection's row; return the text of the toast it raises."""
    page.get_by_role("row").filter(has_text=conn_id).get_by_role("button", name="Test Connection").click()
    toast = page.locator("[data-scope=toast][data-part=root]").filter(has_text="Test Connection")
    toast.first.wait_for()
    return toast.first.inner_text()


def airflow_refuses_portless_tests() -> bool:
    """Whether this Airflow answers the Test button of a connection without a port with 400.

    Airflow 3.3.1 and 3.3.2 compare the UI's ``port: 0`` with the stored NULL (apache/airflow#73298).
    """
    return Version(airflow_version) in {Version("3.3.1"), Version("3.3.2")}


# ---------------------------------------------------------------------------------------- the form


@pytest.mark.parametrize("conn_type", CONN_TYPES)
def test_form_shows_the_settings_fields_and_api_offers_task_and_chat(
    page: playwright.Page, stack: Stack, conn_type: ConnType
) -> None:
    dialog = open_add_form(page, stack.ui, conn_type)
    for label in ("Base URL", "API key", "Port"):
        assert dialog.get_by_label(label, exact=True).is_visible(), label
    for hidden in ("Login", "Schema"):
        assert dialog.get_by_label(hidden, exact=True).count() == 0, hidden
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    for name, field in conn_fields().items():
        assert dialog.get_by_text(field["label"], exact=True).is_visible(), name
        assert dialog.get_by_text(field["description"], exact=True).is_visible(), name
        default = field["schema"].get("default")
        if name != "api" and default is not None:
            box = dialog.get_by_label(field["label"], exact=True)
            shown = (
                box.is_checked() if isinstance(default, bool) else float(box.input_value().replace(",", ""))
            )
            assert shown == default, name
    dialog.locator("#element_api").click()
    assert page.get_by_role("option").all_inner_texts() == ["task", "chat"]


# ------------------------------------------------------------------------------- the Test button


@pytest.mark.parametrize("conn_type", CONN_TYPES)
@pytest.mark.parametrize("api", ["task", "chat"])
def test_test_button_on_a_saved_connection_succeeds(
    page: playwright.Page, stack: Stack, conn_type: ConnType, api: str
) -> None:
    conn_id = f"{conn_type.conn_type}_{api}_ok"
    form = Form(stack.emulator_url, EMULATOR_API_KEY, api, str(stack.emulator_port))
    add_connection(page, stack.ui, conn_type, conn_id, form)
    toast = press_test(page, conn_id)
    assert "Test Connection Successful" in toast
    assert f"Connected to the MiniMax {api} API; the key is valid." in toast


@pytest.mark.parametrize("conn_type", CONN_TYPES)
@pytest.mark.parametrize(
    ("case", "api", "where", "key", "expected"),
    [
        pytest.param("refused", "task", "emulator", "wrong-key", "the key was refused", id="task-wrong-key"),
        pytest.param("refused", "chat", "emulator", "wrong-key", "the key was refused", id="chat-wrong-key"),
        pytest.param(
            "down", "task", "closed-port", EMULATOR_API_KEY, "MiniMax is unreachable", id="unreachable"
        ),
        pytest.param(
            "elsewhere",
            "chat",
            "api-server",
            EMULATOR_API_KEY,
            "did not answer as the chat API",
            id="not-the-api",
        ),
    ],
)
def test_test_button_explains_a_failure(
    page: playwright.Page,
    stack: Stack,
    conn_type: ConnType,
    case: str,
    api: str,
    where: str,
    key: str,
    expected: str,
) -> None:
    port = {
        "emulator": stack.emulator_port,
        "closed-port": _free_port(),
        "api-server": int(stack.ui.rsplit(":", 1)[1]),
    }
    conn_id = f"{conn_type.conn_type}_{api}_{case}"
    add_connection(
        page,
        stack.ui,
        conn_type,
        conn_id,
        Form(f"http://127.0.0.1:{port[where]}/v1", key, api, str(port[where])),
    )
    toast = press_test(page, conn_id)
    assert "Test Connection Failed" in toast
    assert expected in toast


@pytest.mark.parametrize("conn_type", CONN_TYPES)
def test_saved_connection_without_port_as_the_readme_describes(
    page: playwright.Page, stack: Stack, conn_type: ConnType
) -> None:
    conn_id = f"{conn_type.conn_type}_no_port"
    add_connection(page, stack.ui, conn_type, conn_id, Form(stack.emulator_url, EMULATOR_API_KEY, "task", ""))
    toast = press_test(page, conn_id)
    if airflow_refuses_portless_tests():
        assert "Test Connection Failed" in toast
        assert "Bad Request" in toast
    else:
        assert "Test Connection Successful" in toast


@pytest.mark.parametrize("conn_type", CONN_TYPES)
def test_test_button_after_editing_keeps_the_stored_key(
    page: playwright.Page, stack: Stack, conn_type: ConnType
) -> None:
    conn_id = f"{conn_type.conn_type}_edited"
    form = Form(stack.emulator_url, EMULATOR_API_KEY, "task", str(stack.emulator_port))
    add_connection(page, stack.ui, conn_type, conn_id, form)
    page.get_by_role("row").filter(has_text=conn_id).get_by_role("button", name="Edit Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    dialog.locator("#element_api").click()
    page.get_by_role("option", name="chat", exact=True).click()
    dialog.get_by_role("button", name="Save").click()  # the API key field still shows the redacted key
    dialog.wait_for(state="hidden")
    toast = press_test(page, conn_id)
    assert "Test Connection Successful" in toast
    assert "Connected to the MiniMax chat API; the key is valid." in toast
