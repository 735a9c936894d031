"""Fixtures shared by several integration test modules."""

from tests.integration.inference_fixtures import runtime, small_archive  # noqa: F401
