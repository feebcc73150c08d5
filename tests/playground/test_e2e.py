"""The playground in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by
Playwright against the real server. Screenshots go to test-artifacts/playground/."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("NOMAGIC_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set NOMAGIC_CHROMIUM)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, live_server):
    ctx = browser.new_context(viewport={"width": 1400, "height": 960})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.errors = errors
    yield pg
    ctx.close()
    assert not errors, errors


def _ready(page) -> None:
    page.wait_for_function("document.getElementById('conn').textContent === 'connected' "
                           "&& document.querySelector('.node') !== null", timeout=20_000)


def _number(page, selector: str) -> float:
    return float(page.locator(selector).text_content().replace(",", "") or "nan")


def test_train_xor_then_watch_the_processes_and_a_crash(page, live_server, artifacts):
    page.goto(live_server.url + "/")
    _ready(page)
    page.click('#datasets button[data-dataset="xor"]')
    page.wait_for_selector('#datasets button[data-dataset="xor"].selected')
    page.click("#run")
    page.wait_for_function("(() => { const v = document.getElementById('loss-test').dataset.value;"
                           " return v !== undefined && v !== '' && Number(v) < 0.1; })()", timeout=120_000)
    assert _number(page, "#epoch") > 0
    assert "100.0%" in page.locator("#acc-test").text_content() or _number(page, "#loss-test") < 0.1
    page.screenshot(path=str(artifacts / "xor-trained.png"), full_page=True)

    page.select_option("#engine", "processes")
    page.wait_for_selector("#trace:not([hidden])")
    page.wait_for_function("Number(document.getElementById('msg-count').textContent) > 0", timeout=30_000)
    first = _number(page, "#msg-count")
    page.wait_for_function(f"Number(document.getElementById('msg-count').textContent) > {first}", timeout=30_000)
    assert _number(page, "#msg-count") > first
    page.wait_for_selector("circle.msg", state="attached", timeout=10_000)  # dots travel along the synapses
    page.screenshot(path=str(artifacts / "processes-messages.png"), full_page=True)

    page.select_option("#crash-neuron", "h1[1]")
    page.click("#crash")
    page.wait_for_function("[...document.querySelectorAll('#notes li')].some(li => "
                           "/neuron h1\\[1\\] crashed .*restarted from its snapshot/.test(li.textContent))",
                           timeout=30_000)
    page.screenshot(path=str(artifacts / "processes-crash.png"), full_page=True)
    page.click("#run")  # pause
    page.wait_for_function("!document.getElementById('run').classList.contains('running')", timeout=10_000)


def test_upload_a_csv(page, live_server, artifacts, tmp_path):
    page.goto(live_server.url + "/")
    _ready(page)
    lines = ["x1,x2,label"]
    for i in range(200):
        a, b = (i * 37 % 100) / 10 - 5, (i * 59 % 100) / 10 - 5
        lines.append(f"{a:.2f},{b:.2f},{int(a * a + b * b < 9)}")
    path = tmp_path / "ring.csv"
    path.write_text("\n".join(lines) + "\n")
    page.set_input_files("#upload", str(path))
    page.wait_for_function("document.getElementById('upload-name').textContent.includes('ring.csv')", timeout=20_000)
    assert "dataset=csv" in urlsplit(page.url).fragment
    page.click("#step")
    page.wait_for_function("document.getElementById('epoch').textContent.endsWith('1')", timeout=20_000)
    bad = tmp_path / "bad.csv"
    bad.write_text("x1,x2,label\n1,2\n")
    page.set_input_files("#upload", str(bad))
    page.wait_for_selector("#error:not([hidden])", timeout=20_000)
    assert "line 2 has 2 fields" in page.locator("#error-text").text_content()
    page.screenshot(path=str(artifacts / "upload.png"), full_page=True)


def test_a_shared_link_reproduces_the_settings(browser, page, live_server, artifacts):
    page.goto(live_server.url + "/")
    _ready(page)
    page.click('#datasets button[data-dataset="spiral"]')
    page.wait_for_selector('#datasets button[data-dataset="spiral"].selected')
    page.select_option("#lr", "0.1")
    page.wait_for_function("location.hash.includes('lr=0.1')")
    page.click("#add-layer")
    page.wait_for_function("location.hash.includes('layers=4%2C2%2C2')")
    page.click('.node[data-id="x1x2"]')
    page.wait_for_function("location.hash.includes('x1x2')")
    page.check("#show_test")
    link = page.locator("#share").get_attribute("href")
    assert "show_test=true" in link

    other = browser.new_context(viewport={"width": 1400, "height": 960}).new_page()
    other.goto(link)
    _ready(other)
    other.wait_for_function("location.hash.includes('dataset=spiral') && "
                            "document.querySelector('#datasets button.selected').dataset.dataset === 'spiral'",
                            timeout=20_000)
    other.wait_for_function("document.getElementById('layers-label').textContent === '3 hidden layers'")
    assert other.input_value("#lr") == "0.1"
    assert other.is_checked("#show_test")
    assert not other.locator('.node[data-id="x1x2"]').get_attribute("class").endswith("off")
    assert urlsplit(other.url).fragment == urlsplit(link).fragment
    other.screenshot(path=str(artifacts / "shared-link.png"), full_page=True)
    other.context.close()
