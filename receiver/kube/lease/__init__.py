"""A target's Lease: one rollback per target across every receiver replica.

Everything about the Lease lives here: its name and labels, the record codec (the
rollback's record and history kept in its annotations), expiry, the conflict loop, and
acquire / renew / release.

client-go's rules: read the Lease; if another holder's Lease changed within its
leaseDurationSeconds of *local* time (LeaseObservations; never its renewTime against our
clock), back off; otherwise write it back carrying the resourceVersion that was read, so
of two replicas racing only one write succeeds (the other gets 409). leaseTransitions
counts changes of holder; release clears holderIdentity. The Lease also carries the
rollback's record, rewritten as it changes and at each renewal, so any replica can answer
GET /rollbacks, resume a half-done rollback, or count recent rollbacks for fight detection.
"""

from receiver.kube.lease.codec import (
    ANN_HISTORY,
    ANN_RECORD,
    DOMAIN,
    HISTORY_KEEP,
    LABEL_MANAGED_BY,
    LABEL_TARGET,
    LEASE_SELECTOR,
    MANAGED_BY,
    RecordCache,
    RecordError,
    Records,
    encode_history,
    encode_record,
    history_from_lease,
    holder,
    lease_body,
    lease_name,
    lease_namespace,
    read_records,
    record_from_lease,
    with_history,
    with_records,
)
from receiver.kube.lease.expiry import LeaseObservations, is_expired, lease_expired
from receiver.kube.lease.held import (
    CONFLICT_ATTEMPTS,
    HeldLease,
    LeaseLost,
    try_acquire,
    update_lease,
)

__all__ = [
    "ANN_HISTORY",
    "ANN_RECORD",
    "CONFLICT_ATTEMPTS",
    "DOMAIN",
    "HISTORY_KEEP",
    "LABEL_MANAGED_BY",
    "LABEL_TARGET",
    "LEASE_SELECTOR",
    "MANAGED_BY",
    "HeldLease",
    "LeaseLost",
    "LeaseObservations",
    "RecordCache",
    "RecordError",
    "Records",
    "encode_history",
    "encode_record",
    "history_from_lease",
    "holder",
    "is_expired",
    "lease_body",
    "lease_expired",
    "lease_name",
    "lease_namespace",
    "read_records",
    "record_from_lease",
    "try_acquire",
    "update_lease",
    "with_history",
    "with_records",
]
