"""CLI conventions: bad input -> one line on stderr and exit code 2."""

import pytest

from pipeline.cli import EXIT_BAD_INPUT, BadInput, handle_errors, make_parser
from pipeline.contracts import ContractError


@pytest.mark.parametrize("exc", [BadInput("--roi needs 4 numbers"), ContractError("x: column 'a' row 3"), FileNotFoundError("no such video: a.mp4")])
def test_bad_input_exits_2_with_one_line(capsys, exc):
    with pytest.raises(SystemExit) as stop:
        with handle_errors("prog"):
            raise exc
    assert stop.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prog: error: ") and str(exc) in err


def test_other_errors_are_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        with handle_errors():
            1 / 0


def test_parser_has_common_options(capsys):
    parser = make_parser("Demo.", prog="python -m x")
    assert parser.parse_args(["-q"]).quiet
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--help"])
    assert stop.value.code == 0
    assert "--verbose" in capsys.readouterr().out
