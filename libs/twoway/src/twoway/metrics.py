"""Prometheus metrics shared by every service (prometheus-client's default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PUBLISH_ERRORS = Counter(
    "twoway_publish_errors_total", "Publishes the broker did not confirm", ["exchange"]
)
BROKER_RECONNECTS = Counter(
    "twoway_broker_reconnects_total",
    "Times a service's broker connection was lost and made again",
    ["service"],
)
CONSUMED = Counter("twoway_consumed_total", "Messages consumed and acked", ["queue"])
CONSUME_ERRORS = Counter(
    "twoway_consume_errors_total", "Messages whose handler failed and were requeued", ["queue"]
)
DEAD_LETTERS = Counter(
    "twoway_dead_letters_total", "Messages sent to a dead-letter queue", ["queue"]
)
CONSUME_GIVEN_UP = Counter(
    "twoway_consume_given_up_total",
    "Messages a consumer dead-lettered after `max_deliveries` deliveries: its handler kept "
    "failing (cause `failed`) or its deliveries kept ending without an outcome (`redelivered`)",
    ["queue", "cause"],
)
INBOUND_RECEIVED = Counter(
    "twoway_inbound_received_total", "Inbound SMS accepted by ingress", ["gateway"]
)
OPEN_GATEWAY_POSTS = Counter(
    "twoway_ingress_open_posts_total",
    "Posts accepted from a gateway configured `open: true` (no authenticity check)",
    ["gateway"],
)
INBOUND_REFUSED = Counter(
    "twoway_inbound_refused_total", "Inbound posts refused by ingress", ["status"]
)
INBOUND_RATE_LIMITED = Counter(
    "twoway_inbound_rate_limited_total",
    "Inbound SMS refused (429) over a gateway's inbound limit",
    ["gateway", "limit"],
)
INBOUND_LIMIT_SYNC_ERRORS = Counter(
    "twoway_inbound_limit_sync_errors_total",
    "Failed exchanges of inbound-limit counts with MongoDB (each replica then counts alone)",
)
INBOUND_LIMIT_EVICTIONS = Counter(
    "twoway_inbound_limit_evictions_total",
    "Inbound-limit counts dropped from memory before their window ended (too many senders)",
)
DELIVERY_REPORTS = Counter(
    "twoway_delivery_reports_total",
    "Delivery reports ingress accepted from gateways, by status",
    ["gateway", "status"],
)
ROUTED = Counter("twoway_router_routed_total", "Inbound SMS dispatched to a handler", ["adapter"])
UNMATCHED = Counter("twoway_router_unmatched_total", "Inbound SMS that no handler matched")
UNMATCHED_FALLBACKS = Counter(
    "twoway_router_unmatched_fallback_total",
    "Fallbacks applied to unmatched SMS (none: parked)",
    ["action"],
)
DUPLICATES = Counter(
    "twoway_router_duplicates_total",
    "Inbound SMS dropped as a gateway's repeated post",
    ["gateway"],
)
COMPLIANCE = Counter(
    "twoway_router_compliance_total",
    "Opt-out, opt-in and help keywords the router answered itself",
    ["action"],
)
ROUTING_SECONDS = Histogram(
    "twoway_router_match_seconds",
    "Time to match one inbound SMS against the handler table",
    buckets=(1e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2),
)
OUTBOUND_SENT = Counter(
    "twoway_outbound_total", "Outbound SMS by gateway and result", ["gateway", "result"]
)
OUTBOUND_RETRIES = Counter("twoway_outbound_retries_total", "Outbound retries", ["gateway"])
OUTBOUND_IN_DOUBT = Counter(
    "twoway_outbound_in_doubt_total",
    "Redelivered outbound SMS whose last attempt has no logged outcome, by the gateway's policy",
    ["gateway", "policy"],
)
OUTBOUND_IN_DOUBT_SETTLED = Counter(
    "twoway_outbound_in_doubt_settled_total",
    "Held in-doubt outbound SMS settled: by a delivery report (reported), by in_doubt_timeout "
    "(timeout), or sent again for want of a report (resent)",
    ["gateway", "outcome"],
)
HANDLED = Counter("twoway_adapter_handled_total", "Messages handled by adapters", ["adapter"])
HANDLER_RETRIES = Counter(
    "twoway_adapter_retries_total", "Failed handler runs scheduled for a retry", ["adapter"]
)
HANDLER_GAVE_UP = Counter(
    "twoway_adapter_gave_up_total", "Messages dead-lettered after their handler failed", ["adapter"]
)
BACKEND_CALLS = Counter(
    "twoway_backend_calls_total",
    "Back-end HTTP attempts by outcome (2xx..5xx, timeout, unreachable)",
    ["outcome"],
)
BACKEND_RETRIES = Counter("twoway_backend_retries_total", "Back-end HTTP calls sent again")
CONVERSATION_ANSWERS = Counter(
    "twoway_router_conversation_answers_total",
    "Inbound SMS routed as the answer to an open conversation",
    ["adapter"],
)
CONVERSATION_LOOKUP_SECONDS = Histogram(
    "twoway_router_conversation_lookup_seconds",
    "Time to look up whether an inbound SMS answers an open conversation",
    buckets=(1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2),
)
