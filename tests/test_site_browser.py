"""The leaderboard site in a real headless browser: Debian's Chromium through its chromedriver.

Selenium Manager never downloads anything: the driver and the browser are the system's
(/usr/bin/chromedriver, /usr/bin/chromium). The tests skip only where Chromium is absent and not
in CI; with ``CI=true`` (``.ci/run``) its absence fails them. Every page load checks the browser's
console for JavaScript errors. Screenshots at laptop (1366x900) and phone (390x844) widths go to
the test's tmp folder.
"""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from test_site import build  # noqa: E402  (tests/ is on sys.path: the site the unit tests check)

from robustbench_lite.reports.site import SiteFiles, make_server

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
IN_CI = os.environ.get("CI", "").lower() == "true"
HAVE_BROWSER = Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()
if not HAVE_BROWSER and not IN_CI:
    pytest.skip("Chromium and chromedriver are not installed (apt-get install chromium chromium-driver); in CI "
                "(CI=true) this is a failure", allow_module_level=True)

pytestmark = pytest.mark.slow
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")
LAPTOP, PHONE = (1366, 900), (390, 844)


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    assert HAVE_BROWSER, f"CI=true but {CHROMIUM} or {CHROMEDRIVER} is missing: .ci/run installs them"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="site-browser-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    d.set_window_size(*LAPTOP)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> SiteFiles:
    return build(tmp_path_factory.mktemp("browser_site"))


@pytest.fixture(scope="module")
def server(site: SiteFiles) -> Iterator[str]:
    srv = make_server(site.index.parent)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/"
    finally:
        srv.shutdown()
        srv.server_close()


def load(driver, url: str) -> None:
    """Open ``url`` and fail on any JavaScript error (or failed load) in the console."""
    driver.get(url)
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors


def visible_rows(driver) -> list:
    from selenium.webdriver.common.by import By

    return [r for r in driver.find_elements(By.CSS_SELECTOR, "table.board tbody tr") if r.is_displayed()]


def test_sort_by_click_and_keyboard(driver, site: SiteFiles) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    load(driver, site.index.as_uri())
    table = driver.find_elements(By.CSS_SELECTOR, "table.board")[0]  # cifar10: ours and RobustBench's rows
    col = [th.get_attribute("data-key") for th in table.find_elements(By.CSS_SELECTOR, "thead th")].index("clean")
    th = table.find_elements(By.CSS_SELECTOR, "thead th")[col]

    def column() -> list[float | None]:
        cells = [r.find_elements(By.CSS_SELECTOR, "th, td")[col] for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        return [float(c.get_attribute("data-v")) if c.get_attribute("data-v") else None for c in cells]

    before = column()
    th.find_element(By.TAG_NAME, "button").click()
    after = column()
    assert th.get_attribute("aria-sort") == "descending"
    numbers = [v for v in after if v is not None]
    assert numbers == sorted(numbers, reverse=True) and after[len(numbers):] == [None] * (len(after) - len(numbers))
    assert sorted(numbers) == sorted(v for v in before if v is not None) and after != before
    assert "sorted by clean %, descending" in driver.find_element(By.ID, "status").text
    th.find_element(By.TAG_NAME, "button").send_keys(Keys.ENTER)  # the keyboard sorts too
    numbers = [v for v in column() if v is not None]
    assert th.get_attribute("aria-sort") == "ascending" and numbers == sorted(numbers)
    others = [h.get_attribute("aria-sort") for h in table.find_elements(By.CSS_SELECTOR, "thead th") if h != th]
    assert not any(others)  # one sorted column at a time
    model = [th.get_attribute("data-key") for th in table.find_elements(By.CSS_SELECTOR, "thead th")].index("model")
    table.find_elements(By.CSS_SELECTOR, "thead th")[model].find_element(By.TAG_NAME, "button").click()
    names = [r.find_elements(By.CSS_SELECTOR, "th, td")[model].get_attribute("data-v")
             for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert names == sorted(names) and len(set(names)) > 2


def test_search_box_filters_rows(driver, site: SiteFiles) -> None:
    from selenium.webdriver.common.by import By

    load(driver, site.index.as_uri())
    total = len(visible_rows(driver))
    box = driver.find_element(By.ID, "search")
    box.send_keys("TRADES")
    rows = visible_rows(driver)
    assert 0 < len(rows) < total and all("trades" in r.text.lower() for r in rows)
    hidden = [r for r in driver.find_elements(By.CSS_SELECTOR, "table.board tbody tr") if not r.is_displayed()]
    assert all("trades" not in (r.get_attribute("textContent") or "").lower() for r in hidden)
    assert f"{len(rows)} of {total} rows shown" in driver.find_element(By.ID, "status").text
    box.clear()
    box.send_keys("no such model anywhere")
    assert visible_rows(driver) == [] and not any(s.is_displayed() for s in driver.find_elements(By.CSS_SELECTOR, "section.board"))


def test_each_filter_narrows_to_its_value(driver, site: SiteFiles) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    load(driver, site.index.as_uri())
    all_rows = driver.find_elements(By.CSS_SELECTOR, "table.board tbody tr")
    attrs = {name: [r.get_attribute(f"data-{name}") for r in all_rows]
             for name in ("dataset", "threat", "suite", "recipe", "reliable", "origin")}
    for name, values in attrs.items():
        select = Select(driver.find_element(By.CSS_SELECTOR, f'select[data-filter="{name}"]'))
        options = [o.get_attribute("value") for o in select.options if o.get_attribute("value")]
        assert sorted(options) == sorted(set(values)) and len(options) >= 2, name
        for value in options:
            select.select_by_value(value)
            rows = visible_rows(driver)
            assert [r.get_attribute(f"data-{name}") for r in rows] == [value] * values.count(value), (name, value)
        select.select_by_value("")
        assert len(visible_rows(driver)) == len(all_rows)
    Select(driver.find_element(By.CSS_SELECTOR, 'select[data-filter="origin"]')).select_by_value("ours")
    Select(driver.find_element(By.CSS_SELECTOR, 'select[data-filter="reliable"]')).select_by_value("unreliable")
    rows = visible_rows(driver)
    assert rows and all(r.get_attribute("data-origin") == "ours" and r.get_attribute("data-reliable") == "unreliable"
                        for r in rows)


def test_tooltips_on_flags_and_points(driver, site: SiteFiles) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    load(driver, site.index.as_uri())
    tip = driver.find_element(By.ID, "tip")
    flag = driver.find_element(By.CSS_SELECTOR, "tr.ours .flag.bad")  # a failed check of ours
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", flag)
    ActionChains(driver).move_to_element(flag).perform()
    assert tip.is_displayed() and tip.text == flag.get_attribute("data-tip") and "What to do" in tip.text
    point = driver.find_element(By.CSS_SELECTOR, "svg.chart g.pt.ours")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", point)
    ActionChains(driver).move_to_element(point).perform()
    assert tip.is_displayed() and "clean" in tip.text and "robust" in tip.text


def _summary_csv(site: SiteFiles, slug: str) -> list[list[str]]:
    with (site.index.parent / "runs" / slug / "summary.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_evaluation_page_per_attack_table_matches_summary_csv(driver, site: SiteFiles) -> None:
    from selenium.webdriver.common.by import By

    load(driver, site.index.as_uri())
    links = {a.get_attribute("textContent"): a for a in driver.find_elements(By.CSS_SELECTOR, "table.board tbody th a")}
    assert {"nat", "trades_b6", "madry_s0", "madry_s1"} <= set(links)  # one page per evaluation, seeds included
    for name in ("nat", "trades_b6"):  # with its run folder; a format-1 record without one
        load(driver, site.index.as_uri())
        link = next(a for a in driver.find_elements(By.CSS_SELECTOR, "table.board tbody th a")
                    if a.get_attribute("textContent") == name)
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
        link.click()
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert not errors, errors
        slug = Path(urllib.parse.urlparse(driver.current_url).path).stem
        table = driver.find_element(By.CSS_SELECTOR, "table.attacks")
        head = [th.get_attribute("textContent").strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
        rows = [[td.get_attribute("textContent").strip() for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert [head, *rows] == _summary_csv(site, slug), name


def _links(driver, page_url: str) -> set[str]:
    from selenium.webdriver.common.by import By

    load(driver, page_url)
    refs = {a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "a[href]")}
    refs |= {s.get_attribute("src") for s in driver.find_elements(By.CSS_SELECTOR, "script[src]")}
    refs |= {s.get_attribute("href") for s in driver.find_elements(By.CSS_SELECTOR, "link[href]")}
    return {r.split("#")[0] for r in refs if r and not r.startswith("data:")}


def test_no_link_is_broken_from_disk_or_http(driver, site: SiteFiles, server: str) -> None:
    pages = [site.index, *site.pages]
    for p in pages:  # file://: every target exists
        for ref in _links(driver, p.as_uri()):
            assert ref.startswith("file://"), ref
            assert Path(urllib.parse.unquote(urllib.parse.urlparse(ref).path)).is_file(), (p.name, ref)
    checked = 0
    for p in pages:  # http on 127.0.0.1: every target answers 200
        url = server + p.relative_to(site.index.parent).as_posix()
        for ref in _links(driver, url):
            assert ref.startswith(server), ref
            try:
                with urllib.request.urlopen(ref, timeout=10) as r:
                    assert r.status == 200, ref
            except urllib.error.HTTPError as err:
                pytest.fail(f"{ref} (linked from {url}) answers {err.code}")
            checked += 1
    assert checked > len(pages) * 3


@pytest.mark.parametrize("size", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_screenshots_and_no_page_overflow(driver, site: SiteFiles, tmp_path: Path, size: tuple[int, int]) -> None:
    from selenium.webdriver.common.by import By

    driver.set_window_size(*size)
    try:
        nat = next(p for p in site.pages if p.name.startswith("nat-"))
        for name, p in (("index", site.index), ("evaluation", nat)):
            load(driver, p.as_uri())
            shot = tmp_path / f"{name}_{size[0]}x{size[1]}.png"
            assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 5_000
            # the page never scrolls sideways: wide tables scroll inside their own box
            width = driver.execute_script("return document.documentElement.clientWidth")
            assert driver.execute_script("return document.documentElement.scrollWidth") <= width + 1, name
            for box in driver.find_elements(By.CSS_SELECTOR, ".scroll"):
                assert box.size["width"] <= width
    finally:
        driver.set_window_size(*LAPTOP)
