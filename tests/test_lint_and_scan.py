"""cfn-lint (0 errors, 0 warnings) and checkov (0 failed; every suppression has a reason) on a fresh render."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cfn_helpers import rendered

from generator import render

REPO = Path(__file__).resolve().parent.parent
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


@pytest.fixture(scope="module")
def fresh_render(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("templates")
    render.write(rendered(), out)
    return out


def _yaml_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*.yaml"))


def test_cfn_lint_reports_no_errors_or_warnings(fresh_render):
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or "cfn-lint"
    result = subprocess.run([cfn_lint, "--format", "parseable", *_yaml_files(fresh_render)],
                            capture_output=True, text=True, check=False)
    findings = [line.replace(str(fresh_render) + "/", "") for line in result.stdout.splitlines() if line.strip()]
    blocking = [f for f in findings if ":E" in f or ":W" in f]
    assert not blocking, "cfn-lint findings:\n" + "\n".join(blocking)
    assert result.returncode in (0, 8), result.stderr  # 8 = informational findings only


def test_checkov_reports_no_failed_checks_and_every_skip_has_a_reason(fresh_render):
    if not CHECKOV.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHECKOV} missing: run `make tools`")
        pytest.skip("checkov not installed (make tools)")
    result = subprocess.run(
        [str(CHECKOV), "--skip-download", "-d", str(fresh_render), "--framework", "cloudformation", "-o", "json"],
        capture_output=True, text=True, check=False)
    reports = json.loads(result.stdout or "[]")
    reports = reports if isinstance(reports, list) else [reports]
    failed, unexplained, skipped = [], [], 0
    for report in reports:
        results = report.get("results", {})
        for check in results.get("failed_checks", []):
            failed.append(f"{check['file_path']}:{check['resource']} {check['check_id']} {check['check_name']}")
        for check in results.get("skipped_checks", []):
            skipped += 1
            reason = (check.get("check_result") or {}).get("suppress_comment") or ""
            if len(reason.strip()) < 15:
                unexplained.append(f"{check['file_path']}:{check['resource']} {check['check_id']}")
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert not unexplained, "suppressions without a written reason:\n" + "\n".join(unexplained)
    assert skipped, "checkov reported no suppressions at all: its JSON output changed shape (this test reads them)"
