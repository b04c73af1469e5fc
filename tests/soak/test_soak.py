"""The soak in the suite: 10,000 tasks through one server and two workers, per backend,
with the receiver failing a seeded 10% of calls. Every task must end resolved or stale
with exactly the calls its attempts say, and no process may grow its memory beyond the
soak's threshold. The 100,000-task version is `python -m tests.soak` (see --help).
"""

from __future__ import annotations

import pytest

from tests.soak.soak import run_soak
from tests.store.databases import require_backend

pytestmark = pytest.mark.slow

TASKS = 10_000
TIMEOUT_S = 300.0  # measured: well under a minute per backend on two cores


@pytest.mark.parametrize("soak_backend", ["postgresql", "sqlite"])
def test_ten_thousand_tasks_end_resolved_or_stale_with_the_right_calls_and_flat_memory(
    soak_backend: str,
) -> None:
    require_backend(soak_backend)

    result = run_soak(backend=soak_backend, tasks=TASKS, workers=2, timeout=TIMEOUT_S)

    print(result.table())  # shown with -s, or when the test fails
    assert result.failures == []
    assert result.resolved + result.stale == TASKS
    assert result.stale > 0, "the run should have made some tasks stale"
    assert result.calls > TASKS, "the run should have retried some tasks"
