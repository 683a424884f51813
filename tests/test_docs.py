"""The documentation does not drift from the code: its examples run, its tables are complete."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_alchemy.settings import OPTIONS

ROOT = Path(__file__).resolve().parent.parent


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


def test_every_setting_is_documented_with_its_three_spellings() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for option in OPTIONS:
        row = next(
            (line for line in text.splitlines() if line.startswith(f"| `{option.name}` |")), None
        )
        assert row is not None, f"{option.name} is missing from docs/configuration.md"
        assert f"`{option.ini}`" in row
        assert f"`{option.env}`" in row
        if option.cli:
            assert f"`{option.flag}`" in row
        for alias in option.aliases:
            assert f"`{alias}`" in row


def test_every_documented_fixture_exists(pytester: pytest.Pytester) -> None:
    text = (ROOT / "docs" / "fixtures.md").read_text()
    documented = set(re.findall(r"^\| `(alchemy_\w+)` \|", text, re.M))
    assert len(documented) >= 14
    result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    listed = set(re.findall(r"^(alchemy_\w+)", result.stdout.str(), re.M))
    assert documented <= listed, documented - listed


def test_the_readme_quick_start_runs(pytester: pytest.Pytester) -> None:
    readme = (ROOT / "README.md").read_text()
    ini = _blocks(readme, "ini")[0]
    test = _blocks(readme, "python")[0]
    pytester.makefile(".ini", pytest=ini + "pythonpath = .\n")
    package = pytester.mkpydir("myapp")
    (package / "models.py").write_text(
        "from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column\n\n\n"
        "class Base(DeclarativeBase):\n    pass\n\n\n"
        "class User(Base):\n    __tablename__ = 'users'\n"
        "    id: Mapped[int] = mapped_column(primary_key=True)\n"
        "    name: Mapped[str]\n"
    )
    pytester.makepyfile(test_quick_start=test)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function"
    )
    result.assert_outcomes(passed=1)
