"""This process's counters and latency histograms of the mention -> reply path.

Webhook routes (bots/), mention jobs (bots/), the job handlers that start
conversations and deliver replies (processors/) and the request-timing middleware
(relay/) all record here, so it lives in db/, the room every other room may import.
relay.health serves REGISTRY at /metrics next to its database gauges. The values
belong to one process: an `agent-relay worker` process counts the jobs it ran, and
is scraped (or not) on its own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()

EVENTS_RECEIVED = Counter(
    "agent_relay_events_received",
    "Platform deliveries that passed verification, by platform and what became of them"
    " (queued, duplicate, ignored)",
    ["platform", "outcome"],
    registry=REGISTRY,
)
MENTIONS = Counter(
    "agent_relay_mentions",
    "Mentions decided by a platform's event job: accepted, or the reason for refusing",
    ["platform", "outcome"],
    registry=REGISTRY,
)
REPLIES = Counter(
    "agent_relay_replies",
    "Replies delivered to a platform, or failed for good",
    ["platform", "outcome"],
    registry=REGISTRY,
)
# Slack wants an answer within 3 s, GitHub within 10 s; the ack is a few milliseconds.
WEBHOOK_ACK_SECONDS = Histogram(
    "agent_relay_webhook_ack_seconds",
    "From a webhook request's arrival to its response, by route",
    ["platform"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
# A mention waits for its job, a few platform API calls and the agent-server's
# start; an outage stretches that to minutes or hours of retries.
MENTION_TO_AGENT_SECONDS = Histogram(
    "agent_relay_mention_to_agent_seconds",
    "From a mention's delivery to its agent conversation started or messaged",
    ["platform"],
    buckets=(0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0),
    registry=REGISTRY,
)
REPLY_SECONDS = Histogram(
    "agent_relay_stop_to_reply_seconds",
    "From the agent event that produced a reply to the reply delivered",
    ["platform"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0),
    registry=REGISTRY,
)

MENTION_ACCEPTED = "accepted"

# Reconciliation with the agent-server (processors/reconcile.py).
RECONCILE_RUNS = Counter(
    "agent_relay_reconcile_runs",
    "Reconciliation runs, by outcome (ok, or unreachable when the agent-server did not answer)",
    ["outcome"],
    registry=REGISTRY,
)
RECONCILED = Counter(
    "agent_relay_reconciled_conversations",
    "Quiet conversations the reconciliation asked the agent-server about, by what it found"
    " (stopped: processed as if its webhook had arrived; lost: unknown to the agent-server;"
    " running)",
    ["outcome"],
    registry=REGISTRY,
)

# Redelivery of webhooks the platforms failed to deliver (bots/redelivery.py).
REDELIVERIES = Counter(
    "agent_relay_redeliveries",
    "Failed platform deliveries found in the platform's delivery log, by what became of"
    " them (requested, in_ledger, not_retried, already_requested)",
    ["platform", "outcome"],
    registry=REGISTRY,
)
