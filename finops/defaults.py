"""The defaults a deployment starts from: finops.yaml, collectors/, policies/, reports/templates/.

They live once, in the repository's top-level folders, and ship inside the wheel as
`finops/_defaults/` (see pyproject.toml), so `finops init` works from an installed
package as well as from a checkout.
"""

from __future__ import annotations

import shutil
from importlib.resources import as_file, files
from pathlib import Path

from finops.errors import FinopsError

DEFAULT_ENTRIES = ("finops.yaml", "collectors", "policies", "reports/templates")


def defaults_root() -> Path:
    """Where the defaults are: inside the installed package, else the checkout's root."""
    packaged = files("finops") / "_defaults"
    if packaged.is_dir():
        with as_file(packaged) as path:
            return Path(path)
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "policies").is_dir():
        return checkout
    raise FinopsError("the default policy pack and templates are missing from this installation")


def init_deployment(directory: Path, *, force: bool = False) -> list[Path]:
    """Copy the defaults into `directory`; refuse to overwrite a file unless `force`."""
    root = defaults_root()
    sources = []
    for entry in DEFAULT_ENTRIES:
        source = root / entry
        sources += (
            [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        )
    targets = [(s, directory / s.relative_to(root)) for s in sources]
    clashes = [t for _, t in targets if t.exists()]
    if clashes and not force:
        raise FinopsError(
            f"{directory}: {len(clashes)} file(s) already exist, e.g. {clashes[0]}; use --force to overwrite"
        )
    for source, target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return [t for _, t in targets]
