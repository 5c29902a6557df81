"""Moved to sim.fake_service (the demo runs it too); kept so older imports still work."""

from sim.fake_service import DEFAULT_FLOW, FakeServiceHandle, start_fake_service

__all__ = ["DEFAULT_FLOW", "FakeServiceHandle", "start_fake_service"]
