"""docs/PLUGINS.md against the hook specs: every hook documented with its contract and a
runnable example, every example run, every hook exercised by some test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy
import pytest

from scheduler_core import hookspecs
from scheduler_core.plugin_manager import PROJECT_NAME

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "PLUGINS.md"
TEXT = DOC.read_text(encoding="utf-8")


def hook_specs() -> dict[str, object]:
    """Every hook pluggy registers from scheduler_core.hookspecs, by name."""
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    callers = {name: getattr(manager.hook, name) for name in dir(manager.hook)}
    return {
        name: getattr(hookspecs, name)
        for name, caller in callers.items()
        if isinstance(caller, pluggy.HookCaller) and caller.spec is not None
    }


SPECS = hook_specs()
SECTION_HEADING = re.compile(r"^### `(\w+)\(", re.MULTILINE)
CODE_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
CONTRACT_PARTS = ("**Called:**", "**Arguments:**", "**Returns:**", "**Errors:**", "**Built-in:**")


def sections() -> dict[str, str]:
    """Each `### `hook(...)`` section of the doc, heading included, by hook name."""
    headings = list(SECTION_HEADING.finditer(TEXT))
    found = {}
    for heading, following in zip(headings, [*headings[1:], None], strict=True):
        end = following.start() if following else TEXT.find("\n## ", heading.end())
        found[heading.group(1)] = TEXT[heading.start() : end if end != -1 else len(TEXT)]
    return found


SECTIONS = sections()


def test_the_specs_are_found() -> None:
    assert set(SPECS) >= {
        "scheduler_delivery_schemes",
        "scheduler_deliver",
        "scheduler_run_attempt",
        "scheduler_authorize",
        "scheduler_retry_decision",
    }
    assert all(name.startswith("scheduler_") for name in SPECS)


def test_every_section_is_a_hook_that_exists() -> None:
    assert set(SECTIONS) <= set(SPECS), sorted(set(SECTIONS) - set(SPECS))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_is_documented_with_its_contract_and_an_example(name: str) -> None:
    assert name in SECTIONS, f"docs/PLUGINS.md has no '### `{name}(...)`' section"
    section = SECTIONS[name]
    arguments = list(inspect.signature(SPECS[name]).parameters)  # type: ignore[arg-type]

    heading = section.splitlines()[0]
    assert heading == f"### `{name}({', '.join(arguments)})`", heading
    for part in CONTRACT_PARTS:
        assert part in section, f"{name}: no {part}"
    for argument in arguments:
        assert f"`{argument}`" in section, f"{name}: argument {argument!r} is not described"
    firstresult = SPECS[name].scheduler_core_spec.get("firstresult")  # type: ignore[attr-defined]
    assert ("*First result" in section) == bool(firstresult), f"{name}: first result or not"
    assert CODE_BLOCK.search(section), f"{name}: no runnable python example"
    assert f"def {name}(" in section, f"{name}: the example does not implement it"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_is_exercised_by_a_test(name: str) -> None:
    this_file = Path(__file__).resolve()
    word = re.compile(rf"\b{name}\b")
    users = [
        path.relative_to(REPO).as_posix()
        for path in (REPO / "tests").rglob("*.py")
        if path.resolve() != this_file and word.search(path.read_text(encoding="utf-8"))
    ]

    assert users, f"no test under tests/ mentions {name}"


EXAMPLES = [
    pytest.param(match.group(1), id=f"line-{TEXT.count(chr(10), 0, match.start()) + 2}")
    for match in CODE_BLOCK.finditer(TEXT)
]


@pytest.mark.parametrize("source", EXAMPLES)
def test_every_example_in_the_doc_runs(source: str) -> None:
    line = TEXT.count("\n", 0, TEXT.index(source)) + 1
    code = compile("\n" * (line - 1) + source, str(DOC), "exec")

    exec(code, {"__name__": "plugins_md_example"})
