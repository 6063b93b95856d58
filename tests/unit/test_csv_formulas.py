"""The CSV export's formula guard: nothing it writes starts a formula, and the import
reads every value back exactly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bootbrain.inventory.transfer import FORMULA_STARTS, _defuse, _restore

# Values built mostly from the characters the rule is about, so the corners are hit.
values = st.text(alphabet=st.sampled_from(["'", "=", "+", "-", "@", "\t", "\r", "a", " "]))


@given(values | st.text())
def test_restore_undoes_defuse(value: str) -> None:
    assert _restore(_defuse(value)) == value


@given(values | st.text())
def test_no_defused_cell_starts_a_formula(value: str) -> None:
    assert not _defuse(value).startswith(FORMULA_STARTS)


def test_owasp_examples() -> None:
    assert _defuse("=1+1") == "'=1+1"
    assert _defuse("\t=1") == "'\t=1"
    assert _defuse("\r=1") == "'\r=1"
    assert _defuse("'=1") == "''=1"
    assert _defuse("'x") == "'x"
    assert _defuse("plain") == "plain"
