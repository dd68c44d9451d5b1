"""Synthetic rights requests in bulk, for measuring the staff pages at scale (issue 19; never for real data).

``fill(requests=N, events_per_request=E)`` tops the table up to ``N`` requests whose references start
with ``PREFIX`` (those already there are kept, so a bench can measure at 100,000 and then grow the same
table to 1,000,000), each with ``E`` events, then recounts the dashboard's rollup. The mix is the one
``bench/dsr_staff.py`` always used: received over the last two years; open (in one of the working
states) when received in the last 60 days, otherwise closed (80 % completed, 1 to 45 days after receipt);
regimes 2:1:1 UK GDPR, GDPR, CCPA. For the email search: ``PERSON`` made requests 1 to 3 at every size,
as a real person makes a few; ``NEEDLE`` made every 1,000th request (1,000 at 1,000,000), a stress case
no real person reaches, kept so that figures before and after the person was added compare.
Due dates are approximations with the real relation between them (the earlier one is the effective
date): 42 days after receipt for ours, 30 (45 under CCPA) for the statutory one.

On PostgreSQL the rows are made by the server itself, ``INSERT ... SELECT`` over ``generate_series``,
one statement for the requests and one for the events (10,000,000 events in minutes rather than hours);
elsewhere (the tests' SQLite) with ``bulk_create``. Encrypted fields hold real Fernet tokens of a few
sample values (encrypted once, then reused), so the pages decrypt them as they would real ones.
"""

import random
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from dsr_requests import rollup, tokens
from dsr_requests.models import RequestEvent, RequestState, RequestType, RightsRequest

PREFIX = "BEN-"
NEEDLE = "bench-needle@example.org"
PERSON = "bench-person@example.org"
PERSON_NUMBERS = (1, 2, 3)  # the same three requests at every size
S = RequestState
OPEN = [S.VERIFYING, S.IN_REVIEW, S.IN_REVIEW, S.APPROVED, S.FULFILLING, S.ON_HOLD]
CLOSED = [S.COMPLETED] * 16 + [S.REJECTED] * 2 + [S.WITHDRAWN, S.CLOSED_UNVERIFIED]
REGIMES = ["uk_gdpr", "uk_gdpr", "gdpr", "ccpa"]
ENCRYPTED = (
    "name",
    "email",
    "site_url",
    "details",
    "transfer_email",
    "agent_name",
    "agent_email",
    "status_token",
)
POOL = 16  # sample values per encrypted field
BATCH = 5000


def _samples():
    """``{field: [Fernet token, ...]}``: POOL encryptions of sample values per encrypted field."""
    values = {
        "name": [f"Person {number}" for number in range(POOL)],
        "email": [f"person{number}@example.org" for number in range(POOL)],
        "site_url": [""] * POOL,
        "details": ["Bench request."] * POOL,
        "transfer_email": [""] * POOL,
        "agent_name": [""] * POOL,
        "agent_email": [""] * POOL,
        "status_token": [""] * POOL,  # bench requests have no status link to email
    }
    return {
        name: [bytes(RightsRequest._meta.get_field(name).fernet.encrypt(value.encode())) for value in texts]
        for name, texts in values.items()
    }


def existing():
    """How many bench requests and bench events the database holds."""
    requests = RightsRequest.objects.filter(reference__startswith=PREFIX)
    return requests.count(), RequestEvent.objects.filter(request__reference__startswith=PREFIX).count()


def fill(*, requests, events_per_request, now=None, seed=5):
    """Top the bench rows up to ``requests`` requests with ``events_per_request`` events each; returns
    the number of requests added. The rollup is recounted at the end (rows made here bypass the services)."""
    now = now or timezone.now()
    give_person_their_requests()  # for databases seeded before PERSON existed; new rows get it below
    have = RightsRequest.objects.filter(reference__startswith=PREFIX).count()
    if have >= requests:
        return 0
    with transaction.atomic():
        first_id = (RightsRequest.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
        if connection.vendor == "postgresql":
            _fill_postgresql(have, requests, now, seed)
        else:
            _fill_orm(have, requests, now, seed)
        _add_events(first_id, events_per_request)
    rollup.rebuild()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE dsr_requests_rightsrequest")
            cursor.execute("ANALYZE dsr_requests_requestevent")
    return requests - have


def _reference(number):
    return f"{PREFIX}{number:07d}"


def give_person_their_requests():
    """Requests ``PERSON_NUMBERS`` belong to ``PERSON`` (an update of at most three rows by reference)."""
    RightsRequest.objects.filter(reference__in=[_reference(number) for number in PERSON_NUMBERS]).exclude(
        email_hash=tokens.email_blind_index(PERSON)
    ).update(email_hash=tokens.email_blind_index(PERSON))


def _email_hash(number, needle_hash, person_hash):
    if number % 1000 == 0:
        return needle_hash
    return person_hash if number in PERSON_NUMBERS else f"{number:064x}"


def _fill_orm(start, stop, now, seed):
    rng, samples = random.Random(seed + start), _samples()
    needle_hash, person_hash = tokens.email_blind_index(NEEDLE), tokens.email_blind_index(PERSON)
    batch = []
    for number in range(start, stop):
        received_at = now - timedelta(days=rng.uniform(0, 730))
        state = rng.choice(OPEN if (now - received_at).days < 60 else CLOSED)
        regime = rng.choice(REGIMES)
        policy = timezone.localdate(received_at) + timedelta(days=42)
        statutory = timezone.localdate(received_at) + timedelta(days=45 if regime == "ccpa" else 30)
        row = RightsRequest(
            reference=_reference(number),
            request_type=rng.choice(RequestType.values),
            state=state,
            held_from_state=S.IN_REVIEW if state == S.ON_HOLD else "",
            held_since=now if state == S.ON_HOLD else None,
            hold_reason="clarification" if state == S.ON_HOLD else "",
            email_hash=_email_hash(number, needle_hash, person_hash),
            received_at=received_at,
            regime=regime,
            policy_due_on=policy,
            statutory_due_on=statutory,
            effective_due_on=min(policy, statutory),
            rejection_reason="Identity not proven." if state == S.REJECTED else "",
            rejection_ground="identity_not_proven" if state == S.REJECTED else "",
            closed_at=received_at + timedelta(days=rng.uniform(1, 45)) if state in CLOSED else None,
        )
        for name in ENCRYPTED:
            # Already encrypted: set on the instance's raw value so bulk_create stores it as it is.
            row.__dict__[name] = samples[name][number % POOL]
        batch.append(row)
        if len(batch) == BATCH:
            _bulk_raw(batch)
            batch = []
    _bulk_raw(batch)


def _bulk_raw(rows):
    """``bulk_create`` with the encrypted fields' tokens written as they are (not encrypted again)."""
    if len(rows) > 500:  # SQLite takes at most 32,766 parameters per statement
        _bulk_raw(rows[:500])
        _bulk_raw(rows[500:])
        return
    if not rows:
        return
    fields = [field for field in RightsRequest._meta.concrete_fields if not field.primary_key]
    raw = {field.name for field in fields if field.name in ENCRYPTED}
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    placeholders = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * len(rows))
    values = []
    for row in rows:
        row.created_at = row.updated_at = timezone.now()
        for field in fields:
            value = getattr(row, field.attname)
            values.append(value if field.name in raw else field.get_db_prep_save(value, connection))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {RightsRequest._meta.db_table} ({columns}) VALUES {placeholders}",  # noqa: S608
            values,
        )


def _fill_postgresql(start, stop, now, seed):
    samples = _samples()
    params = {
        "start": start,
        "stop": stop,
        "now": now,
        "seed": (seed % 1000) / 1000,
        "prefix": PREFIX,
        "needle": tokens.email_blind_index(NEEDLE),
        "person": tokens.email_blind_index(PERSON),
        "person_numbers": list(PERSON_NUMBERS),
        "open": [str(state) for state in OPEN],
        "closed": [str(state) for state in CLOSED],
        "regimes": REGIMES,
        "types": list(RequestType.values),
        **{name: samples[name] for name in ENCRYPTED},
    }
    pool = POOL
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%(seed)s)", params)
        cursor.execute(
            f"""
            INSERT INTO dsr_requests_rightsrequest (
                reference, request_type, state, held_from_state, name, email, email_hash, site_url,
                concerns, details, transfer_to, transfer_email, country, received_at, channel, by_agent,
                agent_name, agent_email, policy_due_on, email_confirmed_at, account_id, site_client_key,
                verified_site_url, created_at, updated_at, regime, statutory_due_on, effective_due_on,
                held_since, hold_reason, hold_working_days, hold_calendar_days, extension_calendar_days,
                extension_working_days, extension_reason, rejection_reason, rejection_ground, closed_at,
                status_token
            )
            SELECT
                %(prefix)s || lpad(g::text, 7, '0'), t.request_type, t.state,
                CASE WHEN t.state = 'on_hold' THEN 'in_review' ELSE '' END,
                (%(name)s::bytea[])[1 + g %% {pool}], (%(email)s::bytea[])[1 + g %% {pool}],
                CASE WHEN g %% 1000 = 0 THEN %(needle)s WHEN g = ANY(%(person_numbers)s) THEN %(person)s
                     ELSE md5(g::text) || md5((-g)::text) END,
                (%(site_url)s::bytea[])[1 + g %% {pool}], '', (%(details)s::bytea[])[1 + g %% {pool}], '',
                (%(transfer_email)s::bytea[])[1 + g %% {pool}], '', t.received_at, 'web', false,
                (%(agent_name)s::bytea[])[1 + g %% {pool}], (%(agent_email)s::bytea[])[1 + g %% {pool}],
                (t.received_at + interval '42 days')::date, t.received_at, '', '', '', %(now)s, %(now)s,
                t.regime, t.statutory, LEAST((t.received_at + interval '42 days')::date, t.statutory),
                CASE WHEN t.state = 'on_hold' THEN %(now)s END,
                CASE WHEN t.state = 'on_hold' THEN 'clarification' ELSE '' END, 0, 0, 0, 0, '',
                CASE WHEN t.state = 'rejected' THEN 'Identity not proven.' ELSE '' END,
                CASE WHEN t.state = 'rejected' THEN 'identity_not_proven' ELSE '' END,
                CASE WHEN t.state = ANY(%(closed)s)
                     THEN t.received_at + (1 + random() * 44) * interval '1 day' END,
                (%(status_token)s::bytea[])[1 + g %% {pool}]
            FROM generate_series(%(start)s, %(stop)s - 1) AS g
            CROSS JOIN LATERAL (
                SELECT r.received_at, r.regime,
                    (r.received_at + CASE WHEN r.regime = 'ccpa' THEN interval '45 days'
                                          ELSE interval '30 days' END)::date AS statutory,
                    CASE WHEN r.received_at > %(now)s - interval '60 days'
                         THEN (%(open)s::text[])[1 + floor(r.pick * 6)::int]
                         ELSE (%(closed)s::text[])[1 + floor(r.pick * 20)::int] END AS state,
                    (%(types)s::text[])[1 + floor(r.kind * 6)::int] AS request_type
                FROM (SELECT %(now)s - random() * 730 * interval '1 day' + g * interval '0 second'
                                 AS received_at,
                             (%(regimes)s::text[])[1 + floor(random() * 4)::int] AS regime,
                             random() AS pick, random() AS kind) AS r
            ) AS t
            """,  # noqa: S608 (only our constants are formatted in)
            params,
        )


def _add_events(first_id, events_per_request):
    """``events_per_request`` timeline rows for every request from ``first_id`` on."""
    if not events_per_request:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO dsr_requests_requestevent
                    (request_id, from_state, to_state, actor_id, actor_kind, note, public, created_at)
                SELECT r.id, 'in_review', 'in_review', NULL, 'system', 'Bench event', g %% 2 = 0,
                       r.received_at + make_interval(hours => g)
                FROM dsr_requests_rightsrequest r CROSS JOIN generate_series(1, %s) AS g
                WHERE r.id >= %s AND r.reference LIKE %s
                """,
                [events_per_request, first_id, PREFIX + "%"],
            )
        return
    ids = RightsRequest.objects.filter(pk__gte=first_id, reference__startswith=PREFIX).values_list(
        "pk", "received_at"
    )
    batch = []
    for pk, received_at in ids.iterator(chunk_size=BATCH):
        for number in range(1, events_per_request + 1):
            batch.append(
                RequestEvent(
                    request_id=pk,
                    from_state=S.IN_REVIEW,
                    to_state=S.IN_REVIEW,
                    actor_kind="system",
                    note="Bench event",
                    public=number % 2 == 0,
                    created_at=received_at + timedelta(hours=number),
                )
            )
        if len(batch) >= BATCH:
            RequestEvent.objects.bulk_create(batch)
            batch = []
    RequestEvent.objects.bulk_create(batch)
