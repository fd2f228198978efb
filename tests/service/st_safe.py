"""The schemathesis CLI (`st`) with one CPython 3.11.7 bug worked around.

hypothesis describes each filter lambda by parsing its source with `ast.parse`; on CPython 3.11.7 that call can
raise `SystemError: AST constructor recursion depth mismatch` (CPython gh-106905, fixed in later 3.11 releases)
deep inside schemathesis' coverage phase. The description is only a repr, so a failed parse falls back to
hypothesis' own "unknown body" text instead of crashing the run. Nothing that decides a test's outcome changes.
"""

import sys

from hypothesis.internal import lambda_sources
from schemathesis.cli import schemathesis

_describe = lambda_sources._lambda_description


def _lambda_description(f, *args, **kwargs):
    try:
        return _describe(f, *args, **kwargs)
    except SystemError:
        return "lambda *args, **kwargs: <unknown>"


lambda_sources._lambda_description = _lambda_description

if __name__ == "__main__":
    sys.argv[0] = "st"
    sys.exit(schemathesis())
