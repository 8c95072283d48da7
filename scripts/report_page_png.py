"""Render the first page of a report (cover and executive summary) to PNG for the README.

There is no PDF rasteriser here (no pdftoppm, no pdfium), so this photographs the report's
HTML in Chromium (through Playwright, using the system's /usr/bin/chromium) at A4's width,
cut where the PDF's first page ends: before the second section.

Usage: python scripts/report_page_png.py reports/out/finops-2026-Q3.html docs/report-page.png
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

A4_WIDTH_PX = 794  # 210 mm at 96 px per inch
PAGE_MARGIN = "padding: 60px 60px 40px;"  # about the PDF's 16 mm side margins


def main(html: Path, png: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page(
            viewport={"width": A4_WIDTH_PX, "height": 1123}, device_scale_factor=1.25
        )
        page.goto(html.resolve().as_uri())
        page.add_style_tag(content=f"body {{ {PAGE_MARGIN} max-width: none; }}")
        second = page.locator("section.section").nth(1).bounding_box()
        assert second is not None
        page.screenshot(
            path=str(png),
            clip={"x": 0, "y": 0, "width": A4_WIDTH_PX, "height": second["y"]},
            full_page=True,
        )
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
