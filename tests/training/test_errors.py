"""User errors: one line on stderr, exit status 2, the traceback only with --debug."""

import pytest

from longseq.training.config import ConfigError
from longseq.training.errors import EXIT_USER_ERROR, UserError, check_positive, run_cli


class DomainError(ValueError):
    """A domain's own input error, made known to run_cli by ``known``."""


def failing(error: BaseException):
    def main(argv):
        raise error

    return main


@pytest.mark.parametrize("error", [UserError("--seq-len: must be a positive whole number, got 0"),
                                   ConfigError("cfg.yaml:3: model.dimm: unknown key")])
def test_known_error_is_one_line_and_status_2(error, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(failing(error), [], prog="longseq-demo")
    assert exit_info.value.code == EXIT_USER_ERROR == 2
    captured = capsys.readouterr()
    assert captured.err == f"longseq-demo: error: {error}\n" and captured.out == ""


def test_message_on_several_lines_is_joined_and_prog_is_optional(capsys):
    with pytest.raises(SystemExit):
        run_cli(failing(UserError("genome.fa: empty file\n  (0 bytes)")), [])
    assert capsys.readouterr().err == "error: genome.fa: empty file (0 bytes)\n"


def test_extra_known_types_and_unknown_errors():
    with pytest.raises(SystemExit):
        run_cli(failing(DomainError("data.csv:3: empty label")), [], known=(DomainError,))
    with pytest.raises(DomainError):  # not declared: a bug, shown with its traceback
        run_cli(failing(DomainError("x")), [])
    with pytest.raises(KeyError):
        run_cli(failing(KeyError("bug")), [])


def test_debug_shows_the_traceback():
    with pytest.raises(UserError, match="--batch-size"):
        run_cli(failing(UserError("--batch-size: must be >= 1, got 0")), ["--debug"])
    with pytest.raises(UserError):
        run_cli(failing(UserError("x")), [], debug=True)


def test_result_and_argv_pass_through():
    assert run_cli(lambda argv: argv, ["--a", "1"]) == ["--a", "1"]


def test_check_positive_names_the_first_bad_flag():
    check_positive({"--a": 1, "--b": None})
    with pytest.raises(UserError, match=r"^--b: must be >= 1, got 0$"):
        check_positive({"--a": 3, "--b": 0, "--c": -1})
    with pytest.raises(UserError, match=r"^--w: must be >= 0, got -1$"):
        check_positive({"--w": -1}, minimum=0, what="must be >= 0")
