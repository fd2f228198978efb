"""Where text goes: prompts, progress and messages to stderr; data (outputs, plans) to stdout.

rich styles on a terminal; plain text otherwise (CI logs, pipes, tests). Secrets never pass here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.text import Text


@dataclass(frozen=True)
class Line:
    """One line of output and its style (a rich style name, or '' for none)."""

    text: str
    style: str = ""


class Ui:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, inp: TextIO | None = None) -> None:
        self.out_file = out or sys.stdout
        self.err_file = err or sys.stderr
        self.inp = inp or sys.stdin
        self.tty = _isatty(self.err_file)
        self.err = Console(file=self.err_file, highlight=False, soft_wrap=True, emoji=False)
        self.out = Console(file=self.out_file, highlight=False, soft_wrap=True, emoji=False)

    # ---- messages (stderr) ----------------------------------------------------------------------
    def info(self, text: str, style: str = "") -> None:
        self.err.print(Text(text, style=style))

    def step(self, text: str) -> None:
        self.err.print(Text("==> ", style="bold blue") + Text(text, style="bold"))

    def warn(self, text: str) -> None:
        self.err.print(Text(f"warning: {text}", style="bold yellow"))

    def error(self, text: str) -> None:
        self.err.print(Text(f"error: {text}", style="bold red"))

    def lines(self, lines: list[Line], *, data: bool = False) -> None:
        console = self.out if data else self.err
        for line in lines:
            console.print(Text(line.text, style=line.style))

    # ---- data (stdout) --------------------------------------------------------------------------
    def data(self, text: str) -> None:
        self.out.print(Text(text))

    def table(self, rows: dict[str, str]) -> None:
        width = max((len(k) for k in rows), default=0)
        for key, value in rows.items():
            self.data(f"{key.ljust(width)}  {value}")

    # ---- prompts (stderr, answers from stdin) ---------------------------------------------------
    def ask(self, prompt: str) -> str | None:
        """One line from stdin (None at end of input, e.g. a non-interactive run)."""
        self.err.print(Text(prompt, style="bold"), end="")
        self.err_file.flush()
        answer = self.inp.readline()
        if not answer:
            self.err.print()
            return None
        if not _isatty(self.inp):
            self.err.print()   # the typed newline was not echoed
        return answer.strip()

    def confirm(self, question: str) -> bool:
        answer = self.ask(f"{question} [y/N] ")
        return (answer or "").lower() in ("y", "yes")

    def confirm_typed(self, question: str, expected: str) -> bool:
        answer = self.ask(f"{question}\nType {expected!r} to continue: ")
        return answer == expected


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False
