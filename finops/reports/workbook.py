"""The XLSX report: one sheet per section holding its figures as numbers.

Money cells carry the amount rounded to the cent with a currency format, percentages the
analytics' 0-100 figure with a `%` suffix format (so a cell equals the figure the other
formats print), headers are frozen and every table has an autofilter. The workbook's
creation date is the report's generation time, so the same inputs give the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from finops.reports.model import ReportData, to_cent

Kind = Literal["text", "money", "pct", "number", "int", "datetime"]


@dataclass(frozen=True)
class Column:
    """One column of a table: the record's attribute, its heading and how to write it."""

    key: str
    label: str
    kind: Kind = "text"


@dataclass(frozen=True)
class TableSpan:
    """Where a table landed: header row, first and last data rows (0-based), columns."""

    header_row: int
    first_row: int
    last_row: int
    columns: tuple[Column, ...]

    def column_index(self, key: str) -> int:
        return next(i for i, c in enumerate(self.columns) if c.key == key)


_WIDTH = {"text": 18, "money": 16, "pct": 10, "number": 12, "int": 10, "datetime": 20}
_INVALID_SHEET_CHARS = str.maketrans(dict.fromkeys("[]:*?/\\", "-"))


class ReportWorkbook:
    """An xlsxwriter workbook with the report's formats and table helpers."""

    def __init__(self, path: Path, report: ReportData) -> None:
        self.report = report
        self.book = xlsxwriter.Workbook(str(path), {"remove_timezone": True})
        created = report.generated_at.replace(tzinfo=None)
        self.book.set_properties(
            {
                "title": report.title,
                "company": report.organisation,
                "created": created,
                "comments": f"inputs digest {report.inputs.digest}",
            }
        )
        self._formats: dict[str, Format] = {}

    def close(self) -> None:
        self.book.close()

    def format(self, kind: str, currency: str | None = None) -> Format:
        key = f"{kind}:{currency or ''}"
        if key not in self._formats:
            self._formats[key] = self.book.add_format(self._format_properties(kind, currency))
        return self._formats[key]

    def _format_properties(self, kind: str, currency: str | None) -> dict[str, Any]:
        match kind:
            case "header":
                return {"bold": True, "bg_color": "#1F3A5F", "font_color": "#FFFFFF"}
            case "title":
                return {"bold": True, "font_size": 14}
            case "money":
                return {"num_format": f'#,##0.00 "{currency or self.report.currency}"'}
            case "money_total":
                return {
                    "num_format": f'#,##0.00 "{currency or self.report.currency}"',
                    "bold": True,
                    "top": 1,
                }
            case "pct":
                return {"num_format": '0.00"%"'}
            case "number":
                return {"num_format": "#,##0.00"}
            case "int":
                return {"num_format": "#,##0"}
            case "datetime":
                return {"num_format": "yyyy-mm-dd hh:mm:ss"}
            case "total":
                return {"bold": True, "top": 1}
            case "wrap":
                return {"text_wrap": True, "valign": "top"}
        return {}

    def sheet(self, name: str) -> Worksheet:
        return self.book.add_worksheet(name.translate(_INVALID_SHEET_CHARS)[:31])

    def no_data(self, name: str, reason: str) -> Worksheet:
        """A sheet saying why its section is empty."""
        sheet = self.sheet(name)
        sheet.write_string(0, 0, name, self.format("title"))
        sheet.write_string(1, 0, f"No data: {reason}")
        sheet.set_column(0, 0, 120)
        return sheet

    def table(
        self,
        sheet: Worksheet,
        columns: Sequence[Column],
        records: Iterable[Any],
        *,
        first_row: int = 0,
        total: Mapping[str, Any] | None = None,
        filters: bool = True,
    ) -> TableSpan:
        """Write records (dataclasses or mappings) under a frozen header, with an autofilter.

        `total` (column key -> value) goes in a bold row under the filtered range, so sorting
        and filtering never move it.
        """
        for col, column in enumerate(columns):
            sheet.write_string(first_row, col, column.label, self.format("header"))
            sheet.set_column(col, col, max(_WIDTH[column.kind], len(column.label) + 2))
        row = first_row
        for record in records:
            row += 1
            for col, column in enumerate(columns):
                self._cell(sheet, row, col, column, _value(record, column.key), record)
        span = TableSpan(first_row, first_row + 1, row, tuple(columns))
        if filters:
            sheet.autofilter(first_row, 0, max(row, first_row), len(columns) - 1)
        if first_row == 0:
            sheet.freeze_panes(1, 0)
        if total is not None:
            row += 1
            for col, column in enumerate(columns):
                if column.key in total:
                    value = total[column.key]
                    kind = "money_total" if column.kind == "money" else "total"
                    if isinstance(value, str):
                        sheet.write_string(row, col, value, self.format("total"))
                    else:
                        currency = _value(total, "currency")
                        sheet.write_number(
                            row,
                            col,
                            _number(value, is_money=column.kind == "money"),
                            self.format(kind, currency),
                        )
        return span

    def _cell(
        self, sheet: Worksheet, row: int, col: int, column: Column, value: Any, record: Any
    ) -> None:
        if value is None:
            sheet.write_blank(row, col, None)
        elif column.kind == "text":
            sheet.write_string(row, col, str(value))
        elif column.kind == "datetime":
            sheet.write_datetime(row, col, value.replace(tzinfo=None), self.format("datetime"))
        elif column.kind == "money":
            currency = _value(record, "currency")
            sheet.write_number(
                row, col, _number(value, is_money=True), self.format("money", currency)
            )
        else:
            sheet.write_number(row, col, _number(value), self.format(column.kind))

    def bar_chart(
        self,
        sheet: Worksheet,
        span: TableSpan,
        *,
        category: str,
        values: Sequence[str],
        title: str,
        anchor: str,
        stacked: bool = False,
    ) -> None:
        """A native column chart of some of a table's columns, by one text column."""
        if span.last_row < span.first_row:
            return
        chart = self.book.add_chart(
            {"type": "column", "subtype": "stacked"} if stacked else {"type": "column"}
        )
        name = sheet.get_name()
        cat = span.column_index(category)
        for key in values:
            col = span.column_index(key)
            chart.add_series(
                {
                    "name": [name, span.header_row, col],
                    "categories": [name, span.first_row, cat, span.last_row, cat],
                    "values": [name, span.first_row, col, span.last_row, col],
                }
            )
        chart.set_title({"name": title})
        chart.set_legend({"position": "bottom"})
        chart.set_size({"width": 720, "height": 360})
        sheet.insert_chart(anchor, chart)


def _value(record: Any, key: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(key)
    return getattr(record, key, None)


def _number(value: Any, *, is_money: bool = False) -> float:
    """A cell's number: money to the cent (as the other formats print it), else as given."""
    if is_money and isinstance(value, Decimal):
        return float(to_cent(value))
    return float(value)


def write_workbook(path: Path, report: ReportData) -> None:
    """Write each section's sheet (or its no-data sheet) in report order."""
    workbook = ReportWorkbook(path, report)
    try:
        for result in report.sections:
            section = result.section
            if not result.has_data:
                workbook.no_data(section.title, result.data.reason)
            elif section.write_sheet is not None:
                section.write_sheet(workbook, result.data)
    finally:
        workbook.close()
