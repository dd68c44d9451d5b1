"""Factories for rights requests and what hangs off them."""

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from dsr_requests import rollup, tokens
from dsr_requests.models import RequestState, RequestType, RightsRequest
from dsr_requests.services import apply_due_dates


class StaffUserFactory(factory.django.DjangoModelFactory):
    """A support-staff user (admin access)."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"staff{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@artemis.example")
    is_staff = True

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        """``StaffUserFactory(roles=[roles.APPROVER])`` puts the user in those role groups."""
        if create and extracted:
            self.groups.add(*Group.objects.filter(name__in=extracted))


class RightsRequestFactory(factory.django.DjangoModelFactory):
    """A review request just submitted, email not yet confirmed."""

    class Meta:
        model = RightsRequest

    reference = factory.LazyFunction(tokens.new_reference)
    request_type = RequestType.REVIEW
    state = RequestState.SUBMITTED
    name = factory.Faker("name")
    email = factory.Sequence(lambda n: f"person{n}@example.org")
    email_hash = factory.LazyAttribute(lambda o: tokens.email_blind_index(o.email))
    details = "Please show me what you hold."
    received_at = factory.LazyFunction(timezone.now)
    held_since = factory.LazyAttribute(lambda o: timezone.now() if o.state == RequestState.ON_HOLD else None)
    hold_reason = factory.LazyAttribute(lambda o: "clarification" if o.state == RequestState.ON_HOLD else "")
    # Past ``submitted`` the address was confirmed (closing unconfirmed requests is the exception).
    email_confirmed_at = factory.LazyAttribute(
        lambda o: (
            None if o.state in (RequestState.SUBMITTED, RequestState.CLOSED_UNVERIFIED) else o.received_at
        )
    )
    # A rejected request carries a ground (a database constraint), as the reject service always sets.
    rejection_ground = factory.LazyAttribute(lambda o: "other" if o.state == RequestState.REJECTED else "")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        """Store the due dates the services would have stored on receipt (unless a test sets them), and
        count the request in the dashboard's rollup as the services count one that reaches its state."""
        rights_request = model_class(*args, **kwargs)
        if rights_request.effective_due_on is None:
            apply_due_dates(rights_request)
        rights_request.save(force_insert=True)
        rollup.state_changed(rights_request, from_state="", to_state=rights_request.state)
        return rights_request


class ProcessingActivityFactory(factory.django.DjangoModelFactory):
    """One entry of the processing register."""

    class Meta:
        model = "dsr_requests.ProcessingActivity"

    name = factory.Sequence(lambda n: f"Rights requests {n}")
    purposes = "Answering your privacy requests."
    data_categories = "Name, email address, request details."
    legal_basis = "Legal obligation (UK GDPR Art. 6(1)(c))."
    recipients = "Our email provider."
    retention = "24 months after the request is closed."
    source = "You."
    transfers = ""


def approved_request(request_type=RequestType.REVIEW, *, approver=None, **fields):
    """A request reviewed and approved (email confirmed, status token set); returns (request, token).

    ``approver`` defaults to a new staff member with the approver role.
    """
    from dsr_requests import roles, services

    token, token_hash = tokens.new_status_token()
    rights_request = RightsRequestFactory(
        request_type=request_type,
        state=RequestState.IN_REVIEW,
        email_confirmed_at=timezone.now(),
        status_token_hash=token_hash,
        **fields,
    )
    approver = approver or StaffUserFactory(roles=[roles.APPROVER])
    return services.approve(rights_request=rights_request, actor=approver), token
