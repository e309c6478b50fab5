"""The argparse pieces every command group uses: leaves with examples, shared options, deprecated spellings.

A parse error is raised as :class:`~unibind.schema.errors.InvalidInput` (one line, exit 2) instead of argparse's
usage-and-exit, so the CLI reports every user mistake the same way.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from unibind.schema.errors import InvalidInput

log = logging.getLogger("unibind.cli")

Command = Callable[[Any, argparse.Namespace], int]
DEPRECATIONS = "deprecations"  # the namespace attribute that collects the old spellings a command line used


class CliParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are ``InvalidInput`` naming the command's ``--help``."""

    def __init__(self, *args: Any, lists_examples: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        self.lists_examples = lists_examples
        super().__init__(*args, **kwargs)
        self.exclusive_hints: list[tuple[argparse._MutuallyExclusiveGroup, str]] = []

    @property
    def epilog(self) -> str | None:  # type: ignore[override]
        """The text that ends ``--help``. A parser that ``lists_examples`` (the root, a command group) ends it
        with the first example of each of its listed sub-commands, gathered when the help is shown (its
        sub-commands are added after it)."""
        if not self.lists_examples:
            return self._epilog
        examples = [lines[0] for child in listed_children(self) if (lines := example_lines(child))]
        block = examples_epilog(examples) if examples else None
        return "\n\n".join(part for part in (self._epilog, block) if part) or None

    @epilog.setter
    def epilog(self, value: str | None) -> None:
        self._epilog = value

    def error(self, message: str) -> NoReturn:
        if "not allowed with argument" in message or "one of the arguments" in message:
            for group, hint in self.exclusive_hints:
                if any(o in message for a in group._group_actions for o in a.option_strings or [a.dest]):
                    message = f"{message}: {hint}"
                    break
        raise InvalidInput(f"{message} (see `{self.prog} --help`)")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        """As argparse's, but words no option takes are named with the ``--help`` of the command they followed."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            prog = getattr(parsed, "command_prog", None) or self.prog
            raise InvalidInput(f"unrecognized arguments: {' '.join(extras)} (see `{prog} --help`)")
        return parsed


def examples_epilog(examples: Sequence[str]) -> str:
    """The ``examples:`` block that ends a command's ``--help``."""
    return "examples:\n" + "\n".join(f"  {e}" for e in examples)


def example_lines(parser: argparse.ArgumentParser) -> list[str]:
    """The command lines of a parser's ``examples:`` block (the last block of its ``--help``)."""
    epilog = parser.epilog or ""
    if "examples:" not in epilog:
        return []
    block = epilog.split("examples:", 1)[1]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def listed_children(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The sub-commands a parser's ``--help`` lists, in order (old spellings, unlisted, left out)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return []
    return [subs[0].choices[choice.dest] for choice in subs[0]._choices_actions]


def add_group(sub: argparse._SubParsersAction, name: str, help: str, *,  # type: ignore[type-arg]
              description: str | None = None) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    """A command with sub-commands (``unibind corpus list|show|delete``); returns where to add them. Its ``--help``
    ends with the first example of each sub-command."""
    group = sub.add_parser(name, help=help, description=description or help, lists_examples=True)
    group.epilog = f"run `{group.prog} ACTION --help` for an action's options and all its examples"
    return group.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=CliParser)


def add_leaf(sub: argparse._SubParsersAction, name: str, help: str | None, func: Command,  # type: ignore[type-arg]
             examples: Sequence[str], *, description: str | None = None) -> CliParser:
    """A command that runs ``func``; its ``--help`` ends with ``examples`` (at least one). ``help=None``: a command
    kept for an old spelling, not listed in its parent's ``--help``."""
    if not examples:
        raise TypeError(f"command {name!r} needs at least one example")
    listed = {"help": help} if help is not None else {}
    sp: CliParser = sub.add_parser(name, **listed, description=description or help,
                                   epilog=examples_epilog(examples))
    sp.set_defaults(func=func, command_prog=sp.prog)
    # -v after the command too (`unibind corpus list -v`); SUPPRESS keeps a -v given before it when none follows
    sp.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                    help="more logging (-vv for debug); also accepted before the command")
    return sp


def add_hidden_alias(sub: argparse._SubParsersAction, old: str, parser: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    """``old`` reaches ``parser`` too, unlisted in ``--help`` (the command records which name was typed)."""
    sub.choices[old] = parser


def common(sp: argparse.ArgumentParser, encoder_help: str = "the space's encoder spec (default: $UNIBIND_ENCODER; "
                                                          "needed when several spaces exist)") -> None:
    """``--encoder`` and ``--json``, taken by every command that reads the store."""
    sp.add_argument("--encoder", help=encoder_help)
    sp.add_argument("--json", action="store_true", help="machine-readable output")


def add_top_option(sp: argparse.ArgumentParser, default: int, what: str) -> None:
    """``-k/--top N``: the number of answers, the one meaning of ``-k`` in every command."""
    sp.add_argument("-k", "--top", type=int, default=default, metavar="N", help=f"{what} (default {default})")


def exclusive(sp: CliParser, hint: str, *, required: bool = True) -> argparse._MutuallyExclusiveGroup:
    """A group of options of which at most (``required``: exactly) one may be given; ``hint`` ends its errors."""
    group = sp.add_mutually_exclusive_group(required=required)
    sp.exclusive_hints.append((group, hint))
    return group


class DeprecatedOption(argparse.Action):
    """An old spelling of an option: stores into the new option's ``dest`` and records a notice."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)
        note(namespace, f"`{option_string}` of `{parser.prog}` is deprecated: use `{self.new}`")


def deprecated_option(sp: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs: Any) -> None:
    """Keep ``old`` working for ``new`` (same ``dest``), hidden from ``--help``, with a notice on stderr."""
    sp.add_argument(old, dest=dest, action=DeprecatedOption, new=new, default=argparse.SUPPRESS, **kwargs)


def note(namespace: argparse.Namespace, message: str) -> None:
    """Record a deprecation notice; ``main`` logs it once logging is set up."""
    notes = list(getattr(namespace, DEPRECATIONS, None) or [])
    notes.append(message)
    setattr(namespace, DEPRECATIONS, notes)
