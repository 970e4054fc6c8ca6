"""The HTML report in a real headless browser: Debian's chromium driven by its chromedriver.

A real report is built by running the workflow on a tiny synthetic `folder` dataset (two SVMs
and two published rows; 30 to 100 s, mostly the Python start-up of its ~25 jobs). A second page
is rendered with leukbench.report.render_page around a hand-written section whose sortable table
pins down the sorter's rules (numbers with confidence intervals, integers of different lengths,
negative numbers, empty cells, published rows, ties). Both pages are opened from file:// with no
network.

Checked: no SEVERE entry in the browser console, nothing fetched but data: URIs, every <img>
decodes (naturalWidth > 0), and clicking a header of a `table.sortable` sorts its rows both ways,
with aria-sort and the arrow following. A screenshot of the real report is saved to
test-artifacts/report.png.

A missing chromium or chromedriver fails the test (apt-get install chromium chromium-driver); it
is never skipped.
"""

from __future__ import annotations

import base64
import io
import math
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait
from workflow_helpers import REPO, patient_folder_dataset, small_config, snakemake, write_config

from leukbench.report import png_data_uri, render_page

ARTIFACTS = REPO / "test-artifacts"
SECTION_TEMPLATE = REPO / "workflow/scripts/leukbench/templates/report_section.html.j2"
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"

# The sorter's rules, mirrored from the script in report.html.j2.
NUMBER = re.compile(r"^[-+\u2212]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
EMPTY = re.compile(r"^(?:|-|\u2013|\u2014|nan|n/a|none)$", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """reports/<task>.html of a real workflow run on a two-class folder dataset."""
    workdir = tmp_path_factory.mktemp("workflow")
    dataset = patient_folder_dataset(workdir, ["A", "B"])
    published = {
        "source": "a made-up paper",
        "rows": [
            {"model": "Paper SVM", "accuracy": 0.5, "total_cost": 12, "f1_macro": 0.49},
            {"model": "Paper CNN", "train_accuracy": 0.99},
        ],
    }
    config = small_config({"toy": dataset}, {"toy_ab": {"dataset": "toy", "published": published}})
    # Two models: more rows to sort, and the paired model comparison has a pair.
    config["models"]["svm_linear"] = {"family": "svm", "grid": {"kernel": ["linear"], "C": [1]}}
    write_config(workdir, config)
    result = snakemake(workdir, "--cores", "2", "all", timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    page = workdir / "reports" / "toy_ab.html"
    assert page.is_file() and (workdir / "reports" / "report.html").is_file()
    assert "Paper SVM" in page.read_text(), "the published rows are missing from the report"
    return page


def _pil_png(color: tuple[int, int, int], size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure_png() -> str:
    figure, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot(np.arange(5), np.arange(5) ** 2)
    return png_data_uri(figure)  # closes the figure


# (row class, cells). "published" rows are sorted with the others. The numbers are chosen so that
# neither text order nor a numeric-aware text collation gets them right: "0.95" vs "0.8000",
# "\u22120.1" (U+2212 minus) vs "-0.25", "1e-3".
SYNTHETIC_ROWS = [
    ("", ("leukbench", "svm P10", "0.9960 [0.990, 1.000]", "9", "+0.05")),
    ("", ("leukbench", "svm P2", "0.95 [0.930, 0.970]", "10", "")),
    ("published", ("published", "Paper CNN", "0.9961", "0", "\u22120.1")),
    ("published", ("published", "Paper SVM", "", "345", "-0.25")),
    ("", ("leukbench", "xgb", "0.8000 [0.700, 0.900]", "100", "1e-3")),
]
SYNTHETIC_HEADER = ("source", "model", "test acc", "total cost", "\u0394 acc")


@pytest.fixture(scope="module")
def synthetic_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    head = "".join(f"<th>{c}</th>" for c in SYNTHETIC_HEADER)
    body = "\n".join(
        f' <tr class="{cls}">' + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
        for cls, row in SYNTHETIC_ROWS
    )
    images = [_pil_png((200, 30, 30), (40, 30)), _pil_png((30, 30, 200), (16, 16)), _figure_png()]
    section = (
        '<section class="task" id="task-sorting"><h2>Sorting</h2>\n'
        f'<table class="table sortable" id="synthetic">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table>\n"
        '<table class="table" id="plain"><thead><tr><th>n</th></tr></thead>'
        "<tbody><tr><td>2</td></tr><tr><td>1</td></tr></tbody></table>\n"
        '<div class="figs">'
        + "".join(f'<img src="{uri}" alt="figure {i}">' for i, uri in enumerate(images))
        + "</div></section>"
    )
    page = tmp_path_factory.mktemp("synthetic") / "page.html"
    page.write_text(render_page("browser test", [section], {"seed": 1}, None))
    return page


# --------------------------------------------------------------------------------------------
# Browser
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    missing = [
        name
        for name, path in (("chromium", chromium), ("chromedriver", chromedriver))
        if path is None
    ]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found on PATH; the report's browser test needs "
            f"Debian's chromium and chromium-driver: run `{INSTALL}` (as root)",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1600",
        "--force-device-scale-factor=1",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager (which would download one) never runs.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(chromedriver)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver: WebDriver, page: Path) -> list[dict]:
    """Load `page`, wait until it and its images are done; the console entries it logged."""
    driver.get_log("browser")  # drop entries of earlier pages
    driver.get(page.as_uri())
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && "
            "Array.from(document.images).every((img) => img.complete)"
        )
    )
    return driver.get_log("browser")


def assert_loads_cleanly(driver: WebDriver, page: Path) -> None:
    entries = open_page(driver, page)
    severe = [e for e in entries if e.get("level") == "SEVERE"]
    assert not severe, f"console errors on {page.name}:\n" + "\n".join(
        e.get("message", str(e)) for e in severe
    )
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
        ".filter((name) => !name.startsWith('data:'))"
    )
    assert fetched == [], f"{page.name} is not self-contained; it fetched {fetched}"
    images = driver.execute_script(
        "return Array.from(document.images, (img) => "
        "[img.alt, img.complete, img.naturalWidth, img.naturalHeight, img.src.slice(0, 30)])"
    )
    assert images, f"{page.name} has no <img>"
    broken = [i for i in images if not (i[1] and i[2] > 0 and i[3] > 0)]
    assert not broken, f"images that do not render on {page.name}: {broken}"


# --------------------------------------------------------------------------------------------
# Table helpers
# --------------------------------------------------------------------------------------------


def header_cell(table: WebElement, label: str) -> WebElement:
    for th in table.find_elements(By.CSS_SELECTOR, "thead tr:last-child th"):
        if th.text.strip() == label:
            return th
    raise AssertionError(f"no header {label!r} in table {table.get_attribute('id')!r}")


def click_header(th: WebElement) -> None:
    th.find_element(By.CSS_SELECTOR, "button.sort").click()


def body_rows(driver: WebDriver, table: WebElement) -> list[list[list[str]]]:
    """Cell texts of the body rows, one list per <tbody>, in the order shown."""
    return driver.execute_script(
        "return Array.from(arguments[0].tBodies, (body) => Array.from(body.rows)"
        ".filter((row) => row.hasAttribute('data-sort-index'))"
        ".map((row) => Array.from(row.cells, (c) => c.textContent.replace(/\\s+/g, ' ').trim())))",
        table,
    )


def column(driver: WebDriver, table: WebElement, index: int) -> list[str]:
    return [row[index] for body in body_rows(driver, table) for row in body]


def aria_sorts(table: WebElement) -> dict[str, str]:
    return {
        th.text.strip(): th.get_attribute("aria-sort")
        for th in table.find_elements(By.CSS_SELECTOR, "thead tr:last-child th")
        if th.get_attribute("aria-sort") is not None
    }


def arrow(driver: WebDriver, th: WebElement) -> str:
    return driver.execute_script(
        "return getComputedStyle(arguments[0].querySelector('.sort-arrow'), '::after').content",
        th,
    )


def first_number(text: str) -> float:
    match = NUMBER.match(text)
    return float(match.group(0).replace("\u2212", "-")) if match else math.nan


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_sorter_sorts_numbers_text_empties_and_published_rows(
    browser: WebDriver, synthetic_page: Path
) -> None:
    assert_loads_cleanly(browser, synthetic_page)
    table = browser.find_element(By.ID, "synthetic")
    models = SYNTHETIC_HEADER.index("model")
    original = [row[models] for _, row in SYNTHETIC_ROWS]
    assert column(browser, table, models) == original
    assert aria_sorts(table) == {}
    plain = browser.find_element(By.ID, "plain")
    assert plain.find_elements(By.CSS_SELECTOR, "button") == [], "a table without 'sortable'"

    def sorted_by(label: str) -> list[str]:
        click_header(header_cell(table, label))
        return column(browser, table, models)

    # test acc: by the first number of "0.9960 [0.990, 1.000]"; the empty cell last both ways.
    acc = header_cell(table, "test acc")
    assert sorted_by("test acc") == ["xgb", "svm P2", "svm P10", "Paper CNN", "Paper SVM"]
    assert aria_sorts(table) == {"test acc": "ascending"} and arrow(browser, acc) == '"▲"'
    assert sorted_by("test acc") == ["Paper CNN", "svm P10", "svm P2", "xgb", "Paper SVM"]
    assert aria_sorts(table) == {"test acc": "descending"} and arrow(browser, acc) == '"▼"'

    # total cost: numeric, not lexicographic. Another column takes over aria-sort and the arrow.
    cost = header_cell(table, "total cost")
    assert sorted_by("total cost") == ["Paper CNN", "svm P10", "svm P2", "xgb", "Paper SVM"]
    assert aria_sorts(table) == {"total cost": "ascending"}
    assert arrow(browser, acc) == '"↕"' and arrow(browser, cost) == '"▲"'
    assert column(browser, table, SYNTHETIC_HEADER.index("total cost")) == [
        "0",
        "9",
        "10",
        "100",
        "345",
    ]
    assert sorted_by("total cost") == ["Paper SVM", "xgb", "svm P2", "svm P10", "Paper CNN"]

    # Signs (U+2212 too) and exponents.
    assert sorted_by("\u0394 acc") == ["Paper SVM", "Paper CNN", "xgb", "svm P10", "svm P2"]
    assert sorted_by("\u0394 acc") == ["svm P10", "xgb", "Paper CNN", "Paper SVM", "svm P2"]

    # Text: digit runs compare as numbers (P2 < P10); case-insensitive.
    assert sorted_by("model") == ["Paper CNN", "Paper SVM", "svm P2", "svm P10", "xgb"]
    assert sorted_by("model") == ["xgb", "svm P10", "svm P2", "Paper SVM", "Paper CNN"]

    # Ties keep the original order, in both directions.
    assert sorted_by("source") == ["svm P10", "svm P2", "xgb", "Paper CNN", "Paper SVM"]
    assert sorted_by("source") == ["Paper CNN", "Paper SVM", "svm P10", "svm P2", "xgb"]

    # Published rows are moved (not copied) and keep their class and highlighting.
    published = browser.execute_script(
        "return Array.from(arguments[0].tBodies[0].rows, (r) => r.classList.contains('published'))",
        table,
    )
    assert published == [True, True, False, False, False]
    assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == len(SYNTHETIC_ROWS)

    # Keyboard: the header label is a button, so Enter sorts too.
    button = acc.find_element(By.CSS_SELECTOR, "button.sort")
    assert button.get_attribute("type") == "button" and button.get_attribute("title")
    button.send_keys("\n")
    assert aria_sorts(table) == {"test acc": "ascending"}
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, f"console errors while sorting: {severe}"


def check_sortable_table(driver: WebDriver, table: WebElement) -> None:
    """Each header sorts: numeric columns by their first number, empty cells last."""
    driver.execute_script(  # a table in a closed <details> cannot be clicked
        "for (let e = arguments[0]; e; e = e.parentElement)"
        " if (e.tagName === 'DETAILS') e.open = true",
        table,
    )
    headers = table.find_elements(By.CSS_SELECTOR, "thead tr:last-child th")
    labels = [th.text.strip() for th in headers]
    for index, th in enumerate(headers):
        if not th.find_elements(By.CSS_SELECTOR, "button.sort"):
            assert not labels[index], f"header {labels[index]!r} has no sort button"
            continue
        for direction in ("ascending", "descending"):
            click_header(th)
            assert th.get_attribute("aria-sort") == direction
            for body in body_rows(driver, table):
                values = [row[index] for row in body]
                filled = [v for v in values if not EMPTY.match(v)]
                assert values[: len(filled)] == filled, (
                    f"column {labels[index]!r} {direction}: empty cells not last: {values}"
                )
                numbers = [first_number(v) for v in filled]
                if filled and not any(math.isnan(n) for n in numbers):
                    expected = sorted(numbers, reverse=direction == "descending")
                    assert numbers == expected, f"column {labels[index]!r} {direction}: {values}"


def test_real_report_renders_and_sorts(browser: WebDriver, real_report: Path) -> None:
    for page in (real_report, real_report.with_name("report.html")):
        assert_loads_cleanly(browser, page)
        tables = browser.find_elements(By.CSS_SELECTOR, "table.sortable")
        if "sortable" in SECTION_TEMPLATE.read_text():
            assert tables, f"{page.name}: the section template marks tables sortable, none is"
        for table in tables:
            check_sortable_table(browser, table)
        severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
        assert not severe, f"console errors while sorting on {page.name}: {severe}"

    assert_loads_cleanly(browser, real_report)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    assert browser.save_screenshot(str(shot)), "chromium returned no screenshot"
    with Image.open(shot) as image:
        assert image.size[0] >= 800 and image.size[1] >= 600, image.size
        # Not a blank page: the report's text and figures vary the pixels.
        assert len(np.unique(np.asarray(image.convert("L")))) > 10
