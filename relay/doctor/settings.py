"""The settings checks: what does not load (one line per variable), the features the
settings turn on (`Settings.features()`), and their risky combinations."""

from __future__ import annotations

from bots.checks import CheckResult, fail, ok, skip, warn
from bots.features import Feature, Risk
from relay.settings import Settings, SettingsError


def settings_failures(error: SettingsError) -> list[CheckResult]:
    """The failed `settings` lines of settings that do not load (one per variable)."""
    return [
        fail(
            "settings",
            f"{problem.variable} is invalid: {problem.reason}",
            f"fix {problem.variable} (environment or .env)",
        )
        for problem in error.problems
    ]


def settings_checks(settings: Settings) -> list[CheckResult]:
    """Settings that load, the features they turn on, and risky combinations."""
    results = [ok("settings", "loaded")]
    results += [_feature_check(feature) for feature in settings.features()]
    results += [_risk_check("settings", risk) for risk in settings.risks()]
    return results


def _feature_check(feature: Feature) -> CheckResult:
    name = f"feature {feature.name}"
    if feature.enabled:
        return ok(name, feature.state)
    if feature.risk_when_off is not None:
        return _risk_check(name, feature.risk_when_off)
    return skip(name, feature.state)


def _risk_check(name: str, risk: Risk) -> CheckResult:
    if risk.level == "fail":
        return fail(name, risk.detail, risk.fix)
    return warn(name, risk.detail, risk.fix)
