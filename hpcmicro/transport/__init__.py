"""How the protocol machines' messages travel: MPI between ranks, or queues between threads."""

from .base import Backoff, Envelope, Transport

__all__ = ["Backoff", "Envelope", "Transport"]
