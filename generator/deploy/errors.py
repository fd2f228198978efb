"""Exceptions that carry a ready-to-print message and the exit code of the command.

Every message reads "what happened: why, and what to do". Exit codes are part of the interface
(documented in docs/deploy.md) and never change meaning.
"""

from __future__ import annotations

EXIT_OK = 0           # success, including "no changes"
EXIT_FAILED = 1       # CloudFormation (or an AWS call) failed; a rollback, if any, has finished
EXIT_USAGE = 2        # bad arguments or configuration; nothing was called
EXIT_REFUSED = 3      # preflight refused: wrong account/region, no bootstrap, stack busy, prod destroy
EXIT_DECLINED = 4     # the operator declined the change set; it was deleted
EXIT_INTERRUPTED = 130  # Ctrl-C; CloudFormation was left consistent and the next steps were printed


class DeployError(Exception):
    """Base: `what` happened, `why`, and what `todo`."""

    exit_code = EXIT_FAILED

    def __init__(self, what: str, why: str, todo: str = "") -> None:
        self.what, self.why, self.todo = what, why, todo
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.what}: {self.why.rstrip().rstrip('.')}"   # AWS's messages often end in a period already
        return f"{text}.\n  To fix: {self.todo}" if self.todo else text


class UsageError(DeployError):
    exit_code = EXIT_USAGE


class PreflightRefused(DeployError):
    exit_code = EXIT_REFUSED


class DeployFailed(DeployError):
    exit_code = EXIT_FAILED


class Declined(DeployError):
    exit_code = EXIT_DECLINED


class Interrupted(DeployError):
    exit_code = EXIT_INTERRUPTED
