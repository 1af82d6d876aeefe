"""`imsguard report --html` in a real browser: Debian's chromium, driven by Playwright,
offline. The page must show the report's numbers, draw each rule's bar in proportion,
render a hostile image name as text, and fetch nothing.

Needs /usr/bin/chromium (`make browser` installs it) and the `playwright` package
(requirements-dev.txt); without either the test is skipped, saying which is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from imsguard_tools.cli import main
from imsguard_tools.report import BAR_WIDTH

CHROMIUM = "/usr/bin/chromium"
REPORT = Path(__file__).parent / "reports" / "obs_sweep.json"
EVIL = "<script>alert(1)</script>"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is None:
    pytest.skip(
        f"no browser at {CHROMIUM}: `make browser` installs Debian's chromium",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed"
)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        browser.close()


def test_the_page_shows_the_reports_numbers_and_runs_nothing(browser, tmp_path, capsys):
    page_file = tmp_path / "report.html"
    assert main(["report", str(REPORT), "--html", str(page_file)]) == 0
    capsys.readouterr()
    url = page_file.as_uri()
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    page.goto(url)

    totals = {
        cell.get_attribute("data-total"): cell.inner_text()
        for cell in page.locator("#totals td[data-total]").all()
    }
    assert totals == {
        "examined": "6",
        "compliant": "1",
        "error": "1",
        "non_compliant": "1",
        "not_applicable": "1",
        "updated": "2",
    }
    bars = page.locator("#chart .rule-bar")
    shown = {}
    for index in range(bars.count()):
        bar = bars.nth(index)
        track = bar.locator("rect.track").bounding_box()
        filled = bar.locator("rect.bar").bounding_box()
        assert track is not None and filled is not None
        assert track["width"] == pytest.approx(BAR_WIDTH, abs=0.5)
        percent = float(bar.get_attribute("data-percent") or "nan")
        assert filled["width"] / track["width"] == pytest.approx(percent / 100, abs=0.005)
        shown[bar.get_attribute("data-rule")] = (
            percent,
            bar.locator("text.percent").text_content(),
        )
    assert shown == {
        "kebab-case-name": (60.0, "60%"),
        "uefi-boot": (40.0, "40%"),
        "nic-multiqueue": (80.0, "80%"),
    }
    # The hostile name is shown as text, in the changes and the attention table, and ran.
    assert page.locator("#changes td", has_text=EVIL).count() == 2
    assert page.locator("#attention td", has_text=EVIL).count() == 1
    assert dialogs == []  # alert(1) never ran
    assert page.evaluate("() => document.scripts.length") == 0
    assert requests == [url]
    page.close()


def test_the_page_of_a_report_the_sweep_wrote_to_obs(browser, tmp_path, capsys):
    """The whole path: a sweep writes its report to (the fake) OBS, `imsguard report` renders
    the object, and the browser shows the sweep's own totals and percentages."""
    from helpers import SECRETS, use_policy
    from imsguard.app import handler
    from imsguard_tools.local_context import LocalContext
    from imsguard_tools.testing import SAMPLE_PROJECT_ID, FakeIms, FakeObs

    obs = FakeObs(("reports",))
    with FakeIms(project_id=SAMPLE_PROJECT_ID) as ims, obs.serve() as endpoint:
        for name in ("web-base", "Web_Base_2", "DB Base", "cache"):
            ims.add_image({"name": name})
        settings = {"IMSGUARD_REPORT_BUCKET": "reports", "IMSGUARD_OBS_ENDPOINT": endpoint}
        context = LocalContext(settings, *SECRETS)
        use_policy(
            context,
            tmp_path,
            "version: 1\nrules:\n  - {name: kebab, kind: name, "
            "pattern: '^[a-z0-9]+(-[a-z0-9]+)*$', fix: normalize}\n",
        )
        sweep = handler({"action": "sweep"}, context)
        (hop_key,) = json.loads(obs.text("imsguard/latest.json", bucket="reports"))["hops"]
        saved = tmp_path / "hop-0.json"
        saved.write_text(obs.text(hop_key, bucket="reports"))
    page_file = tmp_path / "report.html"
    assert main(["report", str(saved), "--html", str(page_file)]) == 0
    capsys.readouterr()
    page = browser.new_page()
    page.goto(page_file.as_uri())

    totals = {
        cell.get_attribute("data-total"): cell.inner_text()
        for cell in page.locator("#totals td[data-total]").all()
    }
    assert totals == {"examined": "4", **{k: str(v) for k, v in sweep["summary"].items()}}
    bar = page.locator('#chart .rule-bar[data-rule="kebab"]')
    assert bar.locator("text.percent").text_content() == "50%"  # 2 of 4 names were kebab-case
    page.close()
