"""What rights requests' erasures write to the erasure ledger (registrations/erasure_ledger.py).

The ledger keeps keyed hashes of erased identifiers so that a restored backup cannot bring erased data
back. Rights requests record the Atlassian account IDs and the email blind-index values a deletion request
erased (the site's record is recorded by the Connect provider itself). Call these in the transaction that
erases, so the ledger and the erasure commit together.

Not recorded: the retention purge (``dsr_purge``) and the closing of unconfirmed requests. They are the
portal's own storage limit, not a person's erasure request; the ledger would otherwise become a list of
everyone who ever wrote to us, and the registration backups it protects hold no rights-request data.
"""

from registrations import erasure_ledger


def record_request_erasure(*, rights_requests, reference, actor):
    """Record the account IDs and email blind-index values of requests a deletion request erases."""
    account_ids = {r.account_id for r in rights_requests if r.account_id}
    email_hashes = {r.email_hash for r in rights_requests if r.email_hash}
    return erasure_ledger.record_erasure(
        account_ids=sorted(account_ids), email_hashes=sorted(email_hashes), reference=reference, actor=actor
    )


def record_account_erasure(*, account_id, actor):
    """Record an Atlassian account ID erased because Atlassian reported the account closed."""
    return erasure_ledger.record_erasure(account_ids=[account_id], actor=actor)
