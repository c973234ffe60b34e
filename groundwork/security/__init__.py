"""Security: API keys and roles, document scope, exact rate limits, guards and the audit log."""

from groundwork.security.audit import AuditEvent, AuditLog
from groundwork.security.guards import GuardBlockedError, GuardDecision, Guards
from groundwork.security.keys import ApiKey, KeyStore, parse_duration
from groundwork.security.permissions import DocumentGroupsPolicy, can_read, route_permission
from groundwork.security.ratelimit import CounterStore, MemoryCounterStore, RateDecision, gcra
from groundwork.security.service import Security

__all__ = [
    "ApiKey",
    "AuditEvent",
    "AuditLog",
    "CounterStore",
    "DocumentGroupsPolicy",
    "GuardBlockedError",
    "GuardDecision",
    "Guards",
    "KeyStore",
    "MemoryCounterStore",
    "RateDecision",
    "Security",
    "can_read",
    "gcra",
    "parse_duration",
    "route_permission",
]
