"""Headless Chromium for the UI tests: Debian's `chromium` (`make test-e2e` installs it when missing and root),
driven by Playwright through ``executable_path``; no browser is ever downloaded."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_HINT = "apt-get install -y --no-install-recommends chromium (`make test-e2e` does it when run as root)"


def chromium_path() -> str:
    """Debian's Chromium; fails under CI (which must run the UI test), skips elsewhere, when it is missing."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    message = f"headless Chromium is not installed: {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class UiPage:
    """One browser tab on the Prefect UI; every page it opens is screenshotted into ``output``."""

    page: object  # playwright.sync_api.Page
    output: Path
    timeout_ms: float

    def open(self, url: str, name: str, *texts: str, selector: str | None = None) -> str:
        """Open ``url``, wait until every text in ``texts`` (and ``selector``, if given) is shown, save
        ``<output>/<name>.png`` and return the DOM as rendered."""
        self.page.goto(url, wait_until="domcontentloaded", timeout=self.timeout_ms)
        return self._settle(name, texts, selector)

    def click(self, text: str, name: str, *texts: str, selector: str | None = None) -> str:
        """Click the first element showing ``text``, then as :meth:`open`."""
        self.page.get_by_text(text, exact=True).first.click(timeout=self.timeout_ms)
        return self._settle(name, texts, selector)

    def _settle(self, name: str, texts: tuple[str, ...], selector: str | None) -> str:
        try:
            for text in texts:
                self.page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=self.timeout_ms)
            if selector is not None:
                self.page.locator(selector).first.wait_for(state="visible", timeout=self.timeout_ms)
        finally:  # what the page showed, also when the wait failed
            self.page.screenshot(path=str(self.output / f"{name}.png"), full_page=True)
            (self.output / f"{name}.html").write_text(self.page.content())
        return self.page.content()

    def image_sizes(self, selector: str) -> list[tuple[int, int]]:
        """Decoded (natural) width and height of every image ``selector`` matches: (0, 0) for a broken one."""
        return [
            tuple(size)
            for size in self.page.eval_on_selector_all(
                selector, "images => images.map(image => [image.naturalWidth, image.naturalHeight])"
            )
        ]


@contextmanager
def ui_page(output: Path, timeout_s: float = 60.0) -> Iterator[UiPage]:
    """A headless Chromium tab (1400x1000) whose pages land as screenshots and DOM dumps in ``output``."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    output.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses to run as root (CI) with its sandbox on.
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            yield UiPage(page, output, timeout_s * 1000)
        finally:
            browser.close()
