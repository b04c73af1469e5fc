"""schemathesis, an independent OpenAPI tool, reads the served document and sends requests
generated from it to a live server: no answer is a 500, and every answer (status, content
type, headers, body) is one the document describes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import start_server

pytestmark = pytest.mark.slow

KEY = "fuzz-key"
# Requests per operation and phase: enough to cover every parameter and field, small
# enough that a run stays under half a minute per backend.
MAX_EXAMPLES = 15
# Checks left out, and why:
# - positive_data_acceptance: the document cannot say every rule (a webhook URL whose
#   host is malformed, an opaque cursor, retryBackoffMaxMs >= retryBackoffMs against
#   the stored value), so schema-valid requests may be refused with a 400;
# - use_after_free: DELETE cancels a task, which stays readable, as SPEC.md says.
EXCLUDED_CHECKS = "positive_data_acceptance,use_after_free"
# A body over the size limit is refused with 413 before it is read, whatever it holds.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 403, 404, 405, 409, 413]
"""


def test_generated_requests_get_documented_answers_and_never_a_500(
    clean_database: str, tmp_path: Path
) -> None:
    # No dispatcher: generated tasks name hosts anywhere; none of them is ever called.
    server = start_server(clean_database, "--no-dispatcher", env={"SCHEDULER_API_KEYS": KEY})
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "from schemathesis.cli import schemathesis; schemathesis()",
                "--config-file",
                str(config),
                "--no-color",
                "run",
                f"{server.base_url}/api/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {KEY}",
                "--checks",
                "all",
                "--exclude-checks",
                EXCLUDED_CHECKS,
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                str(MAX_EXAMPLES),
                # One worker: Python 3.11's ast.parse is not safe in two threads at once
                # (hypothesis reads its strategies' source to describe them), which fails
                # a run with "SystemError: AST constructor recursion depth mismatch".
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--request-timeout",
                "10",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
        )
        log = server.output
    finally:
        server.stop()

    assert result.returncode == 0, result.stdout[-12000:] + result.stderr[-3000:]
    # Warnings (a generated value the document allows but a rule it cannot state refuses,
    # say) do not fail the run: schemathesis exits 0 and prints no FAILURES section.
    assert "FAILURES" not in result.stdout, result.stdout[-12000:]
    assert "Traceback" not in log and "unhandled error" not in log, log[-5000:]
