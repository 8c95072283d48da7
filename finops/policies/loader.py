"""Reading policy files: every error names the file, the line and the key.

A policy file holds `policies:`, a list of policies. The file is composed into YAML nodes
first, so each value keeps the line it was written on; pydantic's error locations are then
mapped back to those lines. A typo in a key is an error, never ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from finops.cron import cron_trigger
from finops.errors import PolicyError
from finops.policies.model import LoadedPolicy, Policy, PolicyFile
from finops.policies.registry import kind as find_kind

Location = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.key}: {self.message}"


def _to_python(node: yaml.Node, at: Location, lines: dict[Location, int]) -> Any:
    """The node's value, recording the line of every key and item below it."""
    lines[at] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            lines[(*at, key)] = key_node.start_mark.line + 1
            out[key] = _to_python(value_node, (*at, key), lines)
            lines[(*at, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*at, i), lines) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _line(lines: dict[Location, int], loc: Location) -> int:
    """The line of the deepest part of `loc` that the file holds."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _problems(
    exc: ValidationError,
    path: Path,
    lines: dict[Location, int],
    base: Location,
    name: str | None = None,
) -> Iterator[Problem]:
    """One problem per pydantic error, at its line, keyed from the policy's name if known."""
    for error in exc.errors():
        loc = (*base, *error["loc"])
        message = (
            "unknown key (check its spelling)"
            if error["type"] == "extra_forbidden"
            else error["msg"]
        )
        shown = (name, *loc[2:]) if name and loc[:1] == ("policies",) else loc
        key = ".".join(str(part) for part in shown) or "(top level)"
        yield Problem(path, _line(lines, loc), key, message)


def read_policy_file(path: Path) -> tuple[list[LoadedPolicy], list[Problem]]:
    """The valid policies of one file, and the problems of the others."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        return [], [Problem(path, line, "(file)", f"not valid YAML: {exc}")]
    except OSError as exc:
        return [], [Problem(path, 1, "(file)", f"cannot be read: {exc.strerror}")]
    if node is None:
        return [], [Problem(path, 1, "(file)", "empty: expected `policies:` with a list")]
    lines: dict[Location, int] = {}
    data = _to_python(node, (), lines)
    if not isinstance(data, dict):
        return [], [Problem(path, 1, "(top level)", "expected a mapping with `policies:`")]
    try:
        PolicyFile.model_validate({**data, "policies": []})
    except ValidationError as exc:
        return [], list(_problems(exc, path, lines, ()))
    raw = data.get("policies")
    if not isinstance(raw, list):
        return [], [Problem(path, _line(lines, ("policies",)), "policies", "expected a list")]

    loaded: list[LoadedPolicy] = []
    problems: list[Problem] = []
    for index, item in enumerate(raw):
        at: Location = ("policies", index)
        name = item.get("name") if isinstance(item, dict) else None
        try:
            policy = Policy.model_validate(item)
        except ValidationError as exc:
            problems.extend(
                _problems(exc, path, lines, at, name if isinstance(name, str) else None)
            )
            continue
        try:
            spec = find_kind(policy.kind)
        except PolicyError as exc:
            problems.append(
                Problem(path, _line(lines, (*at, "kind")), f"{policy.name}.kind", str(exc))
            )
            continue
        if policy.action not in spec.actions:
            problems.append(
                Problem(
                    path,
                    _line(lines, (*at, "action")),
                    f"{policy.name}.action",
                    f"{policy.kind} may only {' or '.join(spec.actions)}",
                )
            )
            continue
        bad_schedule = _check_schedule(policy, path, _line(lines, (*at, "schedule")))
        if bad_schedule:
            problems.extend(bad_schedule)
            continue
        try:
            params = spec.params.model_validate(policy.params)
        except ValidationError as exc:
            problems.extend(_problems(exc, path, lines, (*at, "params"), policy.name))
            continue
        loaded.append(LoadedPolicy(policy, params, path, _line(lines, at)))
    return loaded, problems


def _check_schedule(policy: Policy, path: Path, line: int) -> list[Problem]:
    try:
        cron_trigger(policy.schedule, policy.time_zone or "UTC")
    except (ValueError, LookupError) as exc:
        return [Problem(path, line, f"{policy.name}.schedule", f"not a cron expression: {exc}")]
    return []


def policy_files(paths: Iterable[Path]) -> list[Path]:
    """The YAML files named, and those inside the folders named, in a stable order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml")))
        elif path.exists():
            files.append(path)
        else:
            raise PolicyError(f"{path}: no such policy file or folder")
    return files


def validate_policies(paths: Iterable[Path]) -> tuple[list[LoadedPolicy], list[Problem]]:
    """Every policy in these files and folders, and every problem found (names are unique)."""
    loaded: list[LoadedPolicy] = []
    problems: list[Problem] = []
    for path in policy_files(paths):
        good, bad = read_policy_file(path)
        loaded.extend(good)
        problems.extend(bad)
    seen: dict[str, LoadedPolicy] = {}
    for item in loaded:
        first = seen.setdefault(item.policy.name, item)
        if first is not item:
            problems.append(
                Problem(
                    item.path,
                    item.line,
                    item.policy.name,
                    f"policy name already used at {first.path}:{first.line}",
                )
            )
    return loaded, problems


def load_policies(paths: Iterable[Path]) -> list[LoadedPolicy]:
    """The policies, or a PolicyError listing every problem with file, line and key."""
    loaded, problems = validate_policies(paths)
    if problems:
        raise PolicyError(
            f"{len(problems)} problem(s) in policy files:\n" + "\n".join(f"  {p}" for p in problems)
        )
    return loaded
