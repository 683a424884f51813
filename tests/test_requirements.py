"""The framework releases binders need: an older one installed is one paragraph naming the
object and the release to install; a distribution pip does not know is not checked."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from pytest_alchemy.binding.base import Requirement
from pytest_alchemy.errors import ConfigurationError


def test_a_release_too_old_is_said() -> None:
    installed = version("sqlalchemy")
    with pytest.raises(ConfigurationError) as raised:
        Requirement("sqlalchemy", "999.1").check("app:SessionLocal")
    assert (
        f"app:SessionLocal comes from sqlalchemy {installed}; pytest-alchemy binds it from "
        "sqlalchemy 999.1 on. Upgrade it: pip install 'sqlalchemy>=999.1'."
    ) in " ".join(str(raised.value).split())


@pytest.mark.parametrize("minimum", ["2.0", "2.0.0rc1", "1.4.99"])
def test_a_recent_enough_release_passes(minimum: str) -> None:
    Requirement("sqlalchemy", minimum).check("app:SessionLocal")


def test_a_distribution_pip_does_not_know_is_not_checked() -> None:
    Requirement("no-such-distribution-here", "1.0").check("app:SessionLocal")
