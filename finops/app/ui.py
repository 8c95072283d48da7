"""What every page shares: the viewer, the filters, money, empty states, downloads, charts.

The filters (period, provider, team, environment, cost basis) live in the sidebar, drawn
once per run by `finops.app.main` before the page, so they persist from page to page; they
are mirrored in the URL's query parameters, so a view can be shared as a link.
Team scoping happens here, before anything is displayed or offered for download: a lead's
tables are narrowed to their teams (`narrow`) and analytics that take teams get them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import altair as alt
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import streamlit as st

from finops.app import data
from finops.app.access import Viewer

ALL = "All"
_SCRATCH = duckdb.connect()


def scratch() -> duckdb.DuckDBPyConnection:
    """A cursor on one in-memory DuckDB, to regroup tables a page already fetched: a new
    in-memory database costs about 0.1 s to start, a cursor on this one almost nothing
    (and each cursor's registered tables are its own, so pages drawn at once do not mix)."""
    return _SCRATCH.cursor()


FILTER_KEYS: tuple[str, ...] = ("period", "provider", "team", "environment", "cost")
STATUS_MARK: dict[str, str] = {"green": "🟢 green", "amber": "🟠 amber", "red": "🔴 red"}


@dataclass(frozen=True)
class Filters:
    period: str
    provider: str
    team: str
    environment: str
    cost: str

    @property
    def label(self) -> str:
        parts = [self.period, f"{self.cost} cost"]
        parts += [
            f"{name} {value}"
            for name, value in (
                ("provider", self.provider),
                ("team", self.team),
                ("environment", self.environment),
            )
            if value != ALL
        ]
        return ", ".join(parts)


@dataclass(frozen=True)
class Context:
    """What a page needs: the warehouse file and its marker, the viewer and the filters."""

    db: str
    marker: str
    viewer: Viewer
    filters: Filters
    currency: str

    @property
    def teams(self) -> tuple[str, ...] | None:
        """The teams whose rows the page may show: the chosen team, else the viewer's."""
        if self.filters.team != ALL:
            return (self.filters.team,)
        return self.viewer.teams


def team_options(viewer: Viewer) -> list[str]:
    config = data.settings()
    names = [t.name for t in config.teams] if viewer.teams is None else list(viewer.teams)
    if viewer.teams is None:
        names.append(config.allocation.unallocated_label)
    return [ALL, *names] if len(names) != 1 else names


def _choose(label: str, key: str, options: list[str], **kwargs: Any) -> str:
    """A sidebar selectbox whose value starts from the URL and is written back to it."""
    if key not in st.session_state:
        wanted = st.query_params.get(key)
        st.session_state[key] = wanted if wanted in options else options[0]
    elif st.session_state[key] not in options:
        st.session_state[key] = options[0]
    value = st.sidebar.selectbox(label, options, key=key, **kwargs)
    st.query_params[key] = value
    return str(value)


def sidebar_filters(viewer: Viewer, db: str, marker: str, ready: bool) -> Filters:
    """Draw the filters (on every page) and return their values."""
    config = data.settings()
    periods, providers, environments = [ALL], [ALL], [ALL]
    if ready:
        periods = data.period_choices(data.months(db, marker)) or [ALL]
        values = data.filter_values(db, marker)
        providers += values["provider"]
        environments += values["environment"]
    bases = ["effective", "billed"]
    if "cost" not in st.session_state and st.query_params.get("cost") not in bases:
        st.session_state["cost"] = config.allocation.cost_basis
    return Filters(
        period=_choose("Period", "period", periods, help="A billing month or fiscal quarter"),
        provider=_choose("Provider", "provider", providers),
        team=_choose("Team", "team", team_options(viewer)),
        environment=_choose("Environment", "environment", environments),
        cost=_choose(
            "Cost basis",
            "cost",
            bases,
            help="effective: commitments amortised over the usage they cover; billed: as invoiced",
        ),
    )


def context() -> Context:
    """The page's context, as `finops.app.main` left it for this run."""
    found: Context = st.session_state["_context"]
    return found


NO_COST_ROWS = "The warehouse holds no cost rows yet."


def open_page(title: str, *, needs_period: bool = True, caption: bool = True) -> Context | None:
    """Start a page: its title, then its context; None once the page has said why there
    is nothing to show (no warehouse, or, for a page that needs one, no billed period)."""
    ctx = context()
    st.title(title)
    if ctx.marker == "none":
        no_warehouse()
        return None
    if needs_period and ctx.filters.period == ALL:
        empty(NO_COST_ROWS, "finops ingest focus PATH")
        return None
    if caption:
        scope_caption(ctx)
    return ctx


# --- tables -------------------------------------------------------------------------------


def narrow(table: pa.Table, ctx: Context, *, team_column: str = "team") -> pa.Table:
    """Rows of the chosen provider, environment and the teams the page may show."""
    table = only_teams(table, ctx.teams, team_column)
    for name in ("provider", "environment"):
        value = getattr(ctx.filters, name)
        if value != ALL and name in table.column_names:
            table = table.filter(pc.equal(table[name], value))
    return table


def only_teams(table: pa.Table, teams: tuple[str, ...] | None, column: str = "team") -> pa.Table:
    if teams is None or column not in table.column_names:
        return table
    return table.filter(pc.is_in(table[column], pa.array(teams, pa.string())))


def regroup(table: pa.Table, keys: list[str], *, order: str = "exact_cost DESC") -> pa.Table:
    """A charge-back table summed again by `keys` (after `narrow`), exact, with shares."""
    group = ", ".join(f'"{k}"' for k in keys)
    with scratch() as conn:
        conn.register("spend_rows", table)
        return conn.sql(
            f"""
            SELECT {group}, currency, round(sum(exact_cost), 2) AS cost,
                   round(100 * sum(exact_cost) / nullif(sum(sum(exact_cost)) OVER (PARTITION BY currency), 0), 2)
                       AS share,
                   sum(exact_cost) AS exact_cost
            FROM spend_rows GROUP BY {group}, currency ORDER BY currency, {order}, {group}
            """
        ).to_arrow_table()


def total(table: pa.Table, column: str = "exact_cost") -> Decimal:
    if column not in table.column_names or table.num_rows == 0:
        return Decimal(0)
    value = pc.sum(table[column]).as_py()
    return Decimal(value) if value is not None else Decimal(0)


def for_display(table: pa.Table) -> pa.Table:
    """What the page shows and offers for download: exact columns dropped, money as numbers."""
    kept = [name for name in table.column_names if name != "exact_cost"]
    table = table.select(kept)
    return pa.table([_shown(col) for col in table.columns], names=table.column_names)


def _shown(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Money as numbers, lists as text: one value a cell, for the screen, CSV and XLSX."""
    if pa.types.is_decimal(col.type):
        # Through text: Arrow's decimal-to-float cast divides by a power of ten and can
        # land a hair off (37452.950000000004); parsing the digits gives the nearest float.
        return pc.cast(pc.cast(col, pa.string()), pa.float64())
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        return pc.binary_join(pc.cast(col, pa.list_(pa.string())), ", ")
    return col


def money(value: Decimal | float | None, currency: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.2f} {currency}"


def change_pct(now: Decimal | float, before: Decimal | float) -> str | None:
    if not before:
        return None
    return f"{100 * (float(now) - float(before)) / float(before):+.1f}%"


def show_table(table: pa.Table, name: str, *, key: str, currency: str | None = None) -> None:
    """Display a table and offer CSV and XLSX downloads of exactly what is displayed."""
    shown = for_display(table)
    money_columns = {
        c: st.column_config.NumberColumn(f"{c} ({currency})", format="%.2f")
        for c in shown.column_names
        if currency and c in MONEY_COLUMNS
    }
    st.dataframe(shown, hide_index=True, width="stretch", column_config=money_columns)
    download_buttons(shown, name, key=key)


MONEY_COLUMNS = {
    "cost",
    "direct_cost",
    "shared_cost",
    "idle_cost",
    "monthly_savings",
    "estimated",
    "realised",
    "value",
    "net_value",
    "forecast",
    "actual",
    "amount",
    "previous_cost",
    "change",
}


def csv_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    return buffer.getvalue()


def xlsx_bytes(table: pa.Table, sheet: str = "data") -> bytes:
    """The table as one worksheet (times in UTC, lists as text: a cell holds one value)."""
    columns = []
    for col in table.columns:
        if pa.types.is_timestamp(col.type) and col.type.tz is not None:
            col = pc.cast(col, pa.timestamp(col.type.unit))
        columns.append(col)
    frame = pa.table(columns, names=table.column_names).to_pandas()
    for name in frame.columns:
        if frame[name].dtype == "object":
            frame[name] = frame[name].map(_cell)
    buffer = io.BytesIO()
    frame.to_excel(buffer, sheet_name=sheet[:31], index=False, engine="xlsxwriter")
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple, dict)):
        return ", ".join(map(str, value)) if not isinstance(value, dict) else str(value)
    return value


def download_buttons(table: pa.Table, name: str, *, key: str) -> None:
    left, right, _ = st.columns([1, 1, 6])
    left.download_button(
        "CSV",
        csv_bytes(table),
        f"{name}.csv",
        "text/csv",
        key=f"{key}-csv",
        icon=":material/download:",
    )
    right.download_button(
        "XLSX",
        lambda: xlsx_bytes(table, name),  # built when clicked: a workbook costs a render time
        f"{name}.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        key=f"{key}-xlsx",
        icon=":material/download:",
    )


def status_column(table: pa.Table, column: str = "status") -> pa.Table:
    """Green / amber / red as a coloured mark that reads in light and dark themes."""
    if column not in table.column_names:
        return table
    marks = pc.fill_null(pc.cast(table[column], pa.string()), "n/a")
    for status, mark in STATUS_MARK.items():
        marks = pc.if_else(pc.equal(marks, status), mark, marks)
    return table.set_column(table.column_names.index(column), column, marks)


# --- empty states -------------------------------------------------------------------------


def no_warehouse() -> None:
    st.info(
        "No data yet. Run `finops demo` for the demo organisation, or `finops ingest focus PATH` "
        "(or `finops collect`) for your own bills, then reload."
    )


def empty(what: str, command: str) -> None:
    st.info(f"{what} Run `{command}` to fill it.")


def scope_caption(ctx: Context) -> None:
    who = ctx.viewer
    teams = "every team" if ctx.teams is None else ", ".join(ctx.teams)
    st.caption(f"{ctx.filters.label} · showing {teams} · {who.name} ({who.role})")


# --- charts -------------------------------------------------------------------------------


def _records(table: pa.Table) -> list[dict[str, Any]]:
    return for_display(table).to_pylist()


def chart_data(table: pa.Table) -> alt.Data:
    return alt.Data(values=_records(table))
