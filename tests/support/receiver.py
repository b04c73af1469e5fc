"""A real HTTP receiver on 127.0.0.1 that records every callback and answers as told.

It ships in the package for plugin authors (scheduler_core.testing); the suite imports it
from here.
"""

from scheduler_core.testing.receiver import Behaviour, Received, Receiver

__all__ = ["Behaviour", "Received", "Receiver"]
