"""Issue 14, items 3 and 4: what a refusal must say, late actions, and the processing register.

Each test names the rule it proves and cites its source; docs/compliance.md lists them.
"""

import re
from datetime import datetime

import pytest
import time_machine
from django.urls import reverse

from dsr_requests import authorities, roles, services
from dsr_requests.deadlines import GDPR_COUNTRIES, Regime
from dsr_requests.models import ProcessingActivity, RequestEvent, RequestState, RequestType, RightsRequest
from dsr_requests.tests.conftest import LONDON
from dsr_requests.tests.factories import RightsRequestFactory, StaffUserFactory

S = RequestState
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("uk_calendar")]


@pytest.fixture
def staff():
    return StaffUserFactory(roles=[roles.PRIVACY_ADMIN])


def at(year, month, day, hour=10):
    return datetime(year, month, day, hour, tzinfo=LONDON)


def _reject(rights_request, staff, committed, ground="identity_not_proven", **extra):
    with committed():
        services.reject(
            rights_request=rights_request,
            actor=staff,
            reason="We could not verify it was you.",
            ground=ground,
            **extra,
        )
    return RightsRequest.objects.get(pk=rights_request.pk)


# --- 3. Refusals -------------------------------------------------------------------------------------


def test_every_eea_country_has_a_supervisory_authority_with_an_https_website():
    """GDPR Art. 51 and 77: every EU/EEA state has a supervisory authority the requester may complain to;
    the data file must name one for each country the GDPR regime covers."""
    listed = authorities.eea_authorities()
    assert set(listed) == set(GDPR_COUNTRIES)
    for code, authority in listed.items():
        assert authority.name.strip(), code
        assert re.fullmatch(r"https://[a-z0-9.-]+\.[a-z]{2,}(/\S*)?", authority.website), code


@pytest.mark.parametrize("country", ["GB", "JP", ""])
def test_uk_gdpr_refusal_names_the_ico_the_reasons_and_the_right_to_a_judicial_remedy(
    staff, committed, mailoutbox, country
):
    """UK GDPR Art. 12(4): without delay, the reasons for not taking action, the possibility of lodging a
    complaint with a supervisory authority (the ICO, Art. 77; DPA 2018 s.165) and of a judicial remedy
    (Art. 79)."""
    rights_request = RightsRequestFactory(state=S.IN_REVIEW, regime=Regime.UK_GDPR, country=country)
    _reject(rights_request, staff, committed)
    email = mailoutbox[-1]
    html = email.alternatives[0][0]
    for body in (email.body, html):
        assert "We could not verify it was you." in body
        assert (
            "Information Commissioner's Office (ICO)" in body
            or "Information Commissioner&#x27;s Office" in body
        )
        assert "https://ico.org.uk/make-a-complaint/" in body
        assert "judicial remedy" in body and "court" in body


@pytest.mark.parametrize(
    ("country", "authority", "website"),
    [
        ("FR", "CNIL", "https://www.cnil.fr"),
        ("DE", "Bundesbeauftragte", "https://www.bfdi.bund.de"),
        ("NO", "Norwegian Data Protection Authority", "https://www.datatilsynet.no"),
        ("IE", "Data Protection Commission", "https://www.dataprotection.ie"),
    ],
)
def test_gdpr_refusal_names_the_authority_of_the_requesters_eea_country(
    staff, committed, mailoutbox, country, authority, website
):
    """GDPR Art. 12(4) and 77: the right to complain to a supervisory authority, in particular in the state
    of habitual residence; and Art. 79: the right to a judicial remedy."""
    rights_request = RightsRequestFactory(state=S.IN_REVIEW, regime=Regime.GDPR, country=country)
    _reject(rights_request, staff, committed)
    body = mailoutbox[-1].body
    assert authority in body and website in body
    assert "where you live, where you work, or where you think the law was broken" in body
    assert "judicial remedy" in body


def test_gdpr_refusal_to_a_requester_outside_the_eea_points_to_every_eea_authority(
    staff, committed, mailoutbox
):
    """GDPR Art. 77: any EEA authority may be chosen (residence, work, place of the infringement)."""
    rights_request = RightsRequestFactory(state=S.IN_REVIEW, regime=Regime.GDPR, country="CH")
    _reject(rights_request, staff, committed)
    assert "https://www.edpb.europa.eu/about-edpb/about-edpb/members_en" in mailoutbox[-1].body


def test_ccpa_denial_states_the_basis_and_names_the_cppa_and_the_attorney_general(
    staff, committed, mailoutbox
):
    """CCPA regulations §7022(f) (deletion denied: inform, describe the basis, use what is kept for nothing
    else) and §7024(e) (request to know denied: explain the basis); the California Privacy Protection Agency
    (Civ. Code §1798.199.10) and the Attorney General (§1798.155) enforce the CCPA."""
    rights_request = RightsRequestFactory(
        state=S.APPROVED, request_type=RequestType.DELETE, regime=Regime.CCPA, country="US"
    )
    _reject(rights_request, staff, committed, ground="exemption")
    body = mailoutbox[-1].body
    assert "We could not verify it was you." in body
    assert "Ground: A legal exemption applies." in body
    assert "use it for nothing else" in body
    assert "California Privacy Protection Agency: https://cppa.ca.gov" in body
    assert "California Attorney General: https://oag.ca.gov/privacy/ccpa" in body
    assert "remedy in court" in body


# --- 3. Late refusals and answers -------------------------------------------------------------------


LATE_ACTIONS = {
    "reject": (
        S.IN_REVIEW,
        lambda r, u, **kw: services.reject(
            rights_request=r, actor=u, reason="No data.", ground="nothing_held", **kw
        ),
    ),
    "start_fulfilment": (
        S.APPROVED,
        lambda r, u, **kw: services.start_fulfilment(rights_request=r, actor=u, **kw),
    ),
    "complete": (S.FULFILLING, lambda r, u, **kw: services.complete(rights_request=r, actor=u, **kw)),
}


@pytest.mark.parametrize("action", sorted(LATE_ACTIONS))
def test_refusing_or_answering_after_the_statutory_date_warns_staff_first_and_records_it(
    staff, committed, action
):
    """GDPR / UK GDPR Art. 12(3)-(4), CCPA §1798.130(a)(2): a refusal or answer after the time limit breaks
    the law. Staff are warned before anything is sent (nothing happens until they confirm), and the late
    action is on the timeline for anyone reviewing the request."""
    from_state, call = LATE_ACTIONS[action]
    rights_request = RightsRequestFactory(
        state=from_state,
        regime=Regime.UK_GDPR,
        received_at=at(2024, 3, 4),
        request_type=RequestType.PROCESSING,
    )
    with time_machine.travel(at(2024, 4, 9), tick=False):  # statutory date 4 April: 5 days late
        events = rights_request.events.count()
        with pytest.raises(services.LateActionNotConfirmed, match="5 days past its statutory date"):
            call(rights_request, staff)
        fresh = RightsRequest.objects.get(pk=rights_request.pk)
        assert (fresh.state, fresh.events.count(), fresh.emails.count()) == (from_state, events, 0)
        with committed():
            call(rights_request, staff, acknowledge_late=True)
    late = RequestEvent.objects.filter(
        request=rights_request, public=False, note__contains="after the statutory date", actor=staff
    )
    assert late.count() == 1
    assert "5 days after the statutory date (2024-04-04)" in late.get().note


def test_an_answer_before_the_statutory_date_needs_no_confirmation(staff, committed):
    """Art. 12(3): in time, nothing extra is asked of staff and nothing is marked late."""
    rights_request = RightsRequestFactory(
        state=S.IN_REVIEW, regime=Regime.UK_GDPR, received_at=at(2024, 3, 4)
    )
    with time_machine.travel(at(2024, 4, 4), tick=False):
        services.reject(rights_request=rights_request, actor=staff, reason="No data.", ground="nothing_held")
    assert not RequestEvent.objects.filter(
        request=rights_request, note__contains="after the statutory"
    ).exists()


def test_the_change_page_warns_staff_of_a_late_action_and_the_button_needs_the_tick(client, staff):
    """GDPR Art. 12(3)-(4): staff see the warning before anything is sent; posting without the tick does
    nothing and says why; with it the refusal goes out and the timeline says it was late."""
    client.force_login(staff)
    rights_request = RightsRequestFactory(state=S.IN_REVIEW, regime=Regime.GDPR, received_at=at(2024, 3, 4))
    change = reverse("admin:dsr_requests_rightsrequest_change", args=[rights_request.pk])
    act = reverse("admin:dsr_requests_rightsrequest_act", args=[rights_request.pk, "reject"])
    with time_machine.travel(at(2024, 4, 9), tick=False):
        page = client.get(change).content.decode()
        assert "5 days past its statutory date" in page and 'name="acknowledge_late"' in page
        form = {"text": "No data.", "ground": "nothing_held", "expected_state": "in_review"}
        response = client.post(act, form, follow=True)
        assert "Nothing was done" in response.content.decode()
        assert RightsRequest.objects.get(pk=rights_request.pk).state == S.IN_REVIEW
        client.post(act, {**form, "acknowledge_late": "1"})
    assert RightsRequest.objects.get(pk=rights_request.pk).state == S.REJECTED
    assert rights_request.events.filter(note__contains="days after the statutory date").exists()


def test_a_fulfilment_job_finishing_after_the_statutory_date_puts_that_on_the_timeline(staff, committed):
    """GDPR Art. 12(3): the record shows when the answer really went out, late included."""
    rights_request = RightsRequestFactory(
        state=S.APPROVED,
        regime=Regime.UK_GDPR,
        received_at=at(2024, 3, 4),
        request_type=RequestType.PROCESSING,
    )
    with time_machine.travel(at(2024, 4, 5), tick=False), committed():
        services.start_fulfilment(rights_request=rights_request, actor=staff, acknowledge_late=True)
    fresh = RightsRequest.objects.get(pk=rights_request.pk)
    assert fresh.state == S.COMPLETED
    notes = list(fresh.events.filter(public=False).values_list("note", flat=True))
    assert any(n.startswith("Fulfilment started 1 days after") for n in notes)
    assert any(n.startswith("Completed 1 days after") for n in notes)


def test_bad_input_for_a_hold_in_admin_is_a_message_and_changes_nothing(client, staff):
    """EDPB Guidelines 01/2022; ICO: a hold reason outside the fixed list is refused with a clear message."""
    client.force_login(staff)
    rights_request = RightsRequestFactory(state=S.IN_REVIEW)
    act = reverse("admin:dsr_requests_rightsrequest_act", args=[rights_request.pk, "put_on_hold"])
    response = client.post(
        act, {"text": "Which site?", "hold_reason": "fee", "expected_state": "in_review"}, follow=True
    )
    assert "Choose why the request goes on hold" in response.content.decode()
    assert RightsRequest.objects.get(pk=rights_request.pk).state == S.IN_REVIEW


@pytest.mark.parametrize("days", ["46", "ten", "-3"])
def test_bad_ccpa_extension_length_in_admin_is_a_message_and_changes_nothing(client, staff, days):
    """Civ. Code §1798.130(a)(2): up to 45 further days; anything else is refused with a message."""
    client.force_login(staff)
    rights_request = RightsRequestFactory(state=S.IN_REVIEW, regime=Regime.CCPA)
    act = reverse("admin:dsr_requests_rightsrequest_act", args=[rights_request.pk, "extend_deadline"])
    response = client.post(act, {"text": "Busy.", "days": days, "expected_state": "in_review"}, follow=True)
    assert response.status_code == 200
    assert "error" in response.content.decode()
    assert RightsRequest.objects.get(pk=rights_request.pk).extended_at is None


# --- 4. The processing register ---------------------------------------------------------------------


def test_the_processing_register_is_seeded_from_the_privacy_policy():
    """GDPR / UK GDPR Art. 15(1)(a)-(h), Art. 13/14: purposes, categories, legal basis, recipients (Heroku as
    hosting processor, Atlassian as source), retention (backups 7 daily / 8 weekly / 12 monthly, request log
    24 months), source and transfers, as the privacy policy states them."""
    register = {a.name: a for a in ProcessingActivity.objects.all()}
    assert {
        "Atlassian Connect app registrations",
        "Log files",
        "Usage statistics",
        "Your privacy requests",
    } <= set(register)
    connect = register["Atlassian Connect app registrations"]
    assert "7 days (daily), 8 weeks (weekly) and 12 months (monthly)" in connect.retention
    assert "Heroku" in connect.recipients and "processor" in connect.recipients
    assert connect.source.startswith("Atlassian")
    assert "24 months" in register["Your privacy requests"].retention
    for activity in register.values():
        assert activity.purposes and activity.data_categories and activity.legal_basis and activity.retention
        assert activity.transfers and activity.source and activity.recipients


@pytest.mark.parametrize("request_type", [RequestType.PROCESSING, RequestType.REVIEW, RequestType.COPY])
def test_answering_a_processing_review_or_copy_request_with_an_empty_register_is_refused(staff, request_type):
    """GDPR / UK GDPR Art. 15(1)(a)-(h): the answer must give the processing information; an empty register
    would make it a placeholder, so starting or completing is refused with a clear message."""
    ProcessingActivity.objects.all().delete()
    approved = RightsRequestFactory(state=S.APPROVED, request_type=request_type)
    fulfilling = RightsRequestFactory(state=S.FULFILLING, request_type=request_type)
    with pytest.raises(services.ActionRefused, match="processing register is empty"):
        services.start_fulfilment(rights_request=approved, actor=staff)
    with pytest.raises(services.ActionRefused, match="processing register is empty"):
        services.complete(rights_request=fulfilling, actor=staff)
    assert RightsRequest.objects.get(pk=approved.pk).state == S.APPROVED
    assert RightsRequest.objects.get(pk=fulfilling.pk).state == S.FULFILLING


def test_a_register_entry_without_a_legal_basis_counts_as_incomplete(staff):
    """GDPR Art. 15(1)(a)-(d): purposes, categories, recipients and retention; Art. 13(1)(c): legal basis."""
    ProcessingActivity.objects.filter(name="Log files").update(legal_basis="")
    approved = RightsRequestFactory(state=S.APPROVED, request_type=RequestType.PROCESSING)
    with pytest.raises(services.ActionRefused, match="incomplete"):
        services.start_fulfilment(rights_request=approved, actor=staff)


def test_a_deletion_needs_no_register(staff):
    """Art. 17 answers are receipts, not processing information: the register rule does not block them."""
    ProcessingActivity.objects.all().delete()
    approved = RightsRequestFactory(state=S.APPROVED, request_type=RequestType.CHANGE)
    services.start_fulfilment(rights_request=approved, actor=staff)


@pytest.mark.parametrize(
    ("state", "received", "message"),
    [
        (S.IN_REVIEW, at(2024, 1, 2), "Too late to extend"),  # GDPR: the first month ended 2 February
        (S.SUBMITTED, at(2024, 3, 1), "has not confirmed their email address"),
    ],
)
def test_a_late_extension_or_one_for_an_unconfirmed_address_is_a_message_in_admin_and_changes_nothing(
    client, staff, state, received, message
):
    """GDPR / UK GDPR Art. 12(3): an extension is made within the first month and notified to the
    requester with its reasons; staff who try otherwise get a clear message and nothing changes."""
    client.force_login(staff)
    rights_request = RightsRequestFactory(state=state, regime=Regime.GDPR, received_at=received)
    act = reverse("admin:dsr_requests_rightsrequest_act", args=[rights_request.pk, "extend_deadline"])
    with time_machine.travel(at(2024, 3, 4), tick=False):
        response = client.post(act, {"text": "Busy.", "months": "2", "expected_state": state}, follow=True)
    assert message in response.content.decode()
    fresh = RightsRequest.objects.get(pk=rights_request.pk)
    assert fresh.extended_at is None and not fresh.emails.exists() and not fresh.events.exists()
