"""Prometheus metrics shared by every service (prometheus-client's default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PUBLISH_ERRORS = Counter(
    "twoway_publish_errors_total", "Publishes the broker did not confirm", ["exchange"]
)
CONSUMED = Counter("twoway_consumed_total", "Messages consumed and acked", ["queue"])
CONSUME_ERRORS = Counter(
    "twoway_consume_errors_total", "Messages whose handler failed and were requeued", ["queue"]
)
DEAD_LETTERS = Counter(
    "twoway_dead_letters_total", "Messages sent to a dead-letter queue", ["queue"]
)
INBOUND_RECEIVED = Counter(
    "twoway_inbound_received_total", "Inbound SMS accepted by ingress", ["gateway"]
)
INBOUND_REFUSED = Counter(
    "twoway_inbound_refused_total", "Inbound posts refused by ingress", ["status"]
)
ROUTED = Counter("twoway_router_routed_total", "Inbound SMS dispatched to a handler", ["adapter"])
UNMATCHED = Counter("twoway_router_unmatched_total", "Inbound SMS that no handler matched")
ROUTING_SECONDS = Histogram(
    "twoway_router_match_seconds",
    "Time to match one inbound SMS against the handler table",
    buckets=(1e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2),
)
OUTBOUND_SENT = Counter(
    "twoway_outbound_total", "Outbound SMS by gateway and result", ["gateway", "result"]
)
OUTBOUND_RETRIES = Counter("twoway_outbound_retries_total", "Outbound retries", ["gateway"])
HANDLED = Counter("twoway_adapter_handled_total", "Messages handled by adapters", ["adapter"])
