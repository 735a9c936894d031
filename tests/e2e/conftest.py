"""Fixtures shared with the integration tests."""

from tests.integration.inference_fixtures import small_archive  # noqa: F401
