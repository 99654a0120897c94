"""Every doctor test here runs against the deployment of tests/support/deployment.py,
with no setting from the surrounding environment (tests/support/doctor.py)."""

from __future__ import annotations

from tests.support.deployment import database_url, github_key, peers
from tests.support.doctor import clean_environment, oauth_environment

__all__ = ["clean_environment", "database_url", "github_key", "oauth_environment", "peers"]
