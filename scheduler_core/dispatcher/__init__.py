"""The dispatcher: claims due tasks, runs their attempts, records outcomes.

Split by job: `loop` (wake-ups and claims), `throttle` (how many may start),
`runner` (delivery threads and deadlines), `attempt` (one attempt, start to decision),
`decision` (the retry budget), `recorder` (outcomes written together), `retention`.
"""

from scheduler_core.dispatcher.loop import Dispatcher
from scheduler_core.dispatcher.retention import PURGE_BATCH, PURGE_EVERY_S

__all__ = ["PURGE_BATCH", "PURGE_EVERY_S", "Dispatcher"]
