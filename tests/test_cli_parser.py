"""The command tree as a user reads it: every leaf's --help ends with examples that parse, -k means one thing,
required arguments are argparse's, old spellings still work with a notice, and parse errors are one line."""

from __future__ import annotations

import argparse
import logging
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from unibind.retrieval.cli.main import DEPRECATED_COMMANDS, build_parser, main
from unibind.retrieval.cli.parser import DEPRECATIONS, DeprecatedOption, example_lines, listed_children
from unibind.schema.errors import Conflict


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command path, parser) of every command that runs something, old spellings included."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, child in subs[0].choices.items():
        yield from leaves(child, (*path, name))


def example_argv(example: str) -> list[str]:
    words = shlex.split(example)
    while words and "=" in words[0] and words[0].split("=")[0].isupper():  # VAR=value before the command
        words = words[1:]
    assert words[0] == "unibind", example
    return words[1:]


def groups(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command path, parser) of the root and every command group (an old name of a group is the same parser)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return
    yield path, parser
    for name, child in subs[0].choices.items():
        if name not in DEPRECATED_COMMANDS:
            yield from groups(child, (*path, name))


LEAVES = list(leaves(build_parser()))
GROUPS = list(groups(build_parser()))


def test_the_tree_has_the_command_groups() -> None:
    paths = {p for p, _ in LEAVES}
    assert {("corpus", "list"), ("corpus", "show"), ("corpus", "delete"), ("index", "verify"), ("index", "rebuild"),
            ("modality", "add"), ("modality", "list"), ("head", "train"), ("head", "list"), ("head", "show"),
            ("head", "activate"), ("gallery", "add"), ("gallery", "list"), ("gallery", "remove"),
            ("gallery", "verify"), ("gallery", "rebuild"), ("centres", "build"), ("centres", "show"),
            ("eval", "recognition"), ("eval", "dev"), ("ingest",), ("categories",), ("search",), ("recognize",),
            ("serve",), ("config",), ("heads", "train"), ("search-descriptions",)} <= paths


@pytest.mark.parametrize("path,parser", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_leaf_ends_its_help_with_examples_that_parse(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    examples = example_lines(parser)
    assert examples, f"unibind {' '.join(path)} --help has no example"
    help_text = parser.format_help().rstrip()
    assert help_text.splitlines()[-1].strip() == examples[-1] and "examples:" in help_text
    own = parser.get_default("func")
    for example in examples:
        args = build_parser().parse_args(example_argv(example))
        assert args.func is own, example  # the example runs this very command
        if path[0] not in DEPRECATED_COMMANDS:  # an example of a current command uses current spellings
            assert not getattr(args, DEPRECATIONS, None), example


def test_the_groups_are_the_root_and_the_commands_with_actions() -> None:
    assert {p for p, _ in GROUPS} == {(), ("corpus",), ("index",), ("centres",), ("eval",), ("plot",), ("modality",),
                                      ("head",), ("gallery",), ("kb",)}


@pytest.mark.parametrize("path,parser", GROUPS, ids=[" ".join(p) or "unibind" for p, _ in GROUPS])
def test_every_group_and_the_root_end_their_help_with_an_example_of_each_command(
        path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    examples = example_lines(parser)
    children = listed_children(parser)
    assert len(children) >= 2 and examples == [example_lines(child)[0] for child in children], path
    help_text = parser.format_help().rstrip()
    assert "examples:" in help_text and help_text.splitlines()[-1].strip() == examples[-1]
    funcs = []
    for example, child in zip(examples, children):
        args = build_parser().parse_args(example_argv(example))
        assert list(example_argv(example)[:len(path)]) == list(path), example  # an example of this group
        assert not getattr(args, DEPRECATIONS, None), example  # in current spellings
        own = child.get_default("func") or leaf_funcs(child)
        assert args.func is own or args.func in own, example  # it runs the command it stands for
        funcs.append(args.func)
    assert len(set(funcs)) == len(funcs)  # one example per command, none repeated


def leaf_funcs(parser: argparse.ArgumentParser) -> list[object]:
    return [leaf.get_default("func") for _, leaf in leaves(parser)]


def test_group_help_is_printed_with_its_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["corpus", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: unibind corpus") and out.rstrip().endswith(
        "examples:\n  unibind corpus list\n  unibind corpus show cupl-gpt3\n  unibind corpus delete cupl-gpt3")
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "\nexamples:\n  unibind ingest " in out and out.rstrip().endswith("  unibind config")


def test_k_means_the_number_of_answers_everywhere() -> None:
    with_k = []
    for path, parser in LEAVES:
        for action in parser._actions:
            if "-k" in action.option_strings:
                if isinstance(action, DeprecatedOption):
                    assert action.new == "--centre-size" and path[0] == "centres", path
                    continue
                assert action.dest == "top" and "--top" in action.option_strings, path
                with_k.append(path[0])
    assert {"recognize", "search", "search-descriptions"} <= set(with_k)
    for path, parser in LEAVES:  # the centre size has its own long option wherever it is taken
        dests = {a.dest: a for a in parser._actions}
        if "centre_size" in dests:
            assert "--centre-size" in [o for a in parser._actions if a.dest == "centre_size" for o in a.option_strings]


def test_required_arguments_are_declared_so_the_usage_shows_them() -> None:
    usage = {" ".join(p): parser.format_usage() for p, parser in LEAVES}
    assert "NAME" in usage["corpus delete"] and "[NAME]" not in usage["corpus delete"]
    assert "--dim DIM" in usage["modality add"] and "[--dim DIM]" not in usage["modality add"]
    assert "--modality MODALITY" in usage["head train"] and "[--modality MODALITY]" not in usage["head train"]
    assert "--version VERSION" in usage["head activate"] and "[--version VERSION]" not in usage["head activate"]
    assert "(--text TEXT | --image IMAGE | --features FILE)" in usage["recognize"]
    assert "(--files FILES [FILES ...] | --features FEATURES)" in usage["gallery add"]
    assert "(--label LABEL | --all)" in usage["gallery remove"]
    assert "--target TARGET" in usage["search"] and "[--target TARGET]" not in usage["search"]


def test_old_spellings_parse_to_the_new_ones_with_a_notice() -> None:
    old = build_parser().parse_args(["centres", "build", "--strategy", "top", "-k", "7"])
    new = build_parser().parse_args(["centres", "build", "--strategy", "top", "--centre-size", "7"])
    assert old.centre_size == new.centre_size == 7 and old.func is new.func
    assert getattr(old, DEPRECATIONS) == ["`-k` of `unibind centres build` is deprecated: use `--centre-size`"]
    assert not getattr(new, DEPRECATIONS, None)
    assert build_parser().parse_args(["centres", "show", "tench", "-K", "3"]).centre_size == 3
    assert build_parser().parse_args(["recognize", "--text", "x", "-k", "3"]).top == 3
    assert build_parser().parse_args(["recognize", "--text", "x", "--top", "3"]).top == 3
    heads = build_parser().parse_args(["heads", "activate", "--modality", "audio", "--version", "2"])
    head = build_parser().parse_args(["head", "activate", "--modality", "audio", "--version", "2"])
    assert heads.func is head.func and (heads.command, head.command) == ("heads", "head")


@pytest.mark.parametrize("argv,notice", [
    (["heads", "list"], "`unibind heads` is deprecated: use `unibind head`"),
    (["search-descriptions", "a fish"], "`unibind search-descriptions` is deprecated: use `unibind search --text TEXT "
                                        "--target descriptions`"),
    (["centres", "build", "-k", "5"], "`-k` of `unibind centres build` is deprecated: use `--centre-size`"),
])
def test_an_old_spelling_logs_its_notice(argv: list[str], notice: str, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    with caplog.at_level(logging.WARNING, logger="unibind"):
        code = main(["--home", str(tmp_path), *argv])
    # it ran, on an empty store (a conflict with the store's state)
    assert code == Conflict.exit_code and "the knowledge base is empty" in capsys.readouterr().err
    assert [r.getMessage() for r in caplog.records if r.name == "unibind"] == [
        f"{notice} (the old spelling still works for now)"]


@pytest.mark.parametrize("argv,needles", [
    (["recognize", "--text", "a", "--image", "b.png"],
     ["argument --image: not allowed with argument --text", "give exactly one kind of query",
      "(see `unibind recognize --help`)"]),
    (["recognize"], ["one of the arguments --text --image --features is required", "exactly one kind"]),
    (["search", "--text", "a"], ["the following arguments are required: --target", "`unibind search --help`"]),
    (["corpus"], ["the following arguments are required: ACTION", "(see `unibind corpus --help`)"]),
    (["corpus", "show"], ["the following arguments are required: NAME"]),
    (["modality", "add", "lidar"], ["the following arguments are required: --dim"]),
    (["gallery", "remove", "--modality", "audio"], ["one of the arguments --label --all is required",
                                                    "gallery remove needs --label L or --all"]),
    (["ingest", "a.json", "--builtin", "cupl-imagenet"], ["not allowed with argument", "not both"]),
    (["nosuch"], ["argument COMMAND: invalid choice: 'nosuch'"]),
    (["head", "list", "extra", "--nope"], ["unrecognized arguments: extra --nope (see `unibind head list --help`)"]),
    (["recognize", "--text", "a", "-k", "two"], ["argument -k/--top: invalid int value: 'two'"]),
])
def test_command_line_mistakes_are_one_line_and_exit_2(argv: list[str], needles: list[str], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--home", str(tmp_path / "h"), *argv])
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert out.err.startswith("unibind: error: ") and out.err.count("\n") == 1, out.err
    for needle in needles:
        assert needle in out.err, (needle, out.err)
    assert not (tmp_path / "h").exists()  # nothing was opened or written


def test_help_exits_0_and_prints_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gallery", "add", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: unibind gallery add") and out.rstrip().endswith(
        "unibind gallery add --modality audio --features clips.jsonl")
    assert main(["--help"]) == 0 and "config" in capsys.readouterr().out
