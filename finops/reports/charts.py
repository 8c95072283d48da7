"""Charts as static SVG, drawn without a browser (Vega-Lite through vl-convert).

Each chart becomes a `data:image/svg+xml` URI, so the HTML file carries its images inside
it (nothing to lose when it is mailed or archived) and WeasyPrint draws them as vectors.
"""

from __future__ import annotations

import base64

import altair as alt
import vl_convert

_CONFIG = {
    "font": "DejaVu Sans",
    "axis": {"labelFontSize": 10, "titleFontSize": 10, "grid": True, "gridColor": "#E5E9F0"},
    "legend": {"labelFontSize": 10, "titleFontSize": 10},
    "title": {"fontSize": 12, "anchor": "start", "color": "#1F3A5F"},
    "view": {"stroke": None},
}


def svg(chart: alt.TopLevelMixin) -> str:
    """The chart drawn as SVG text."""
    spec = chart.to_dict()
    spec["config"] = {**_CONFIG, **spec.get("config", {})}
    return vl_convert.vegalite_to_svg(spec)


def svg_data_uri(chart: alt.TopLevelMixin) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg(chart).encode()).decode()
