"""Slack: one platform package (see docs/ARCHITECTURE.md, "Adding a platform")."""

# The platform's name wherever one is stored or shown: conversation links, the delivery
# ledger, installations, metrics labels, agent tags, its processor kind.
PLATFORM = "slack"
