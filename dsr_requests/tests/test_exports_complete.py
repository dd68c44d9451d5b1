"""Exports are complete (issue 14, item 5): every record about the subject, and what is left out, and why.

A request is taken through the real services (confirmation, a failed and a passed document check, an
account code, an assignment, questions and answers, a staff-only note, an extension, a correction on an
earlier request, a staff view in the access audit), then fulfilled by the real job; the export is opened
as the requester would open it and searched item by item, in data.json and in the CSV.
"""

import csv
import io
import json
import zipfile
from pathlib import Path

import jsonschema
import pytest
from django.test import RequestFactory

from dsr_requests import exports, providers, roles, services
from dsr_requests.export_records import STAFF, StaffRedactor
from dsr_requests.models import (
    AccountProofCode,
    Concerns,
    DataExport,
    DownloadCode,
    RequestState,
    RequestType,
    RightsRequest,
)
from dsr_requests.tests.conftest import ask_for_code, download
from dsr_requests.tests.factories import StaffUserFactory, approved_request
from registrations.tests.factories import RegistrationFactory
from security import audit
from security.models import AccessAction

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "dsr-export.schema.json").read_text())
EMAIL = "ada@example.org"
STAFF_IP = "203.0.113.77"
STAFF_BROWSER = "StaffBrowser/9.1 (review desk)"
PDF = b"%PDF-1.4\n% a scanned passport\n"
pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_member():
    """An approver whose user name, email and full name must never reach an export."""
    return StaffUserFactory(
        username="jane.reviewer",
        email="jane.reviewer@artemis.example",
        first_name="Jane",
        last_name="Reviewer",
        roles=[roles.APPROVER],
    )


def _staff_view(staff_member, obj, *, action=AccessAction.VIEW_PERSONAL_DATA, detail=""):
    """What the admin writes when a staff member opens a request: an access-audit row (IP, browser)."""
    request = RequestFactory().get("/admin/", REMOTE_ADDR=STAFF_IP, HTTP_USER_AGENT=STAFF_BROWSER)
    request.user = staff_member
    audit.record(request, action=action, obj=obj, detail=detail)


def _history(staff_member, *, request_type, country):
    """A request with everything the portal records about a requester, approved and ready to fulfil.

    Returns ``(request, earlier change request, facts)``; ``facts`` holds the secrets that must stay out.
    """
    earlier, _token = approved_request(RequestType.CHANGE, approver=staff_member, email=EMAIL, name="Ada")
    correction = services.record_rectification(
        rights_request=earlier,
        actor=staff_member,
        provider="rights_requests",
        field="name",
        new_value="Ada King",
    )
    _staff_view(staff_member, correction, action=AccessAction.TRANSITION, detail="record rectification")

    submitted = services.submit_request(
        request_type=request_type,
        name="Ada Lovelace",
        email=EMAIL,
        details="Everything you hold about me, please.",
        country=country,
        transfer_to="requester" if request_type == RequestType.TRANSFER else "",
    )
    rights_request, status_token = services.confirm_email(reference=submitted.reference)
    code = services.issue_account_code(rights_request=rights_request)
    code_hash = AccountProofCode.objects.get(request=rights_request).code_hash
    services.add_identity_document(rights_request=rights_request, content=PDF, content_type="application/pdf")
    services.record_document_check(
        rights_request=rights_request,
        actor=staff_member,
        passed=False,
        note="The photo is too blurred to read; Jane Reviewer asked for the account proof instead.",
    )
    services.redeem_account_code(
        code=code,
        client_key="ada-site-key",
        site_url="https://ada-analytics.atlassian.net",
        account_id="557058:ada",
    )
    services.assign(rights_request=rights_request, actor=staff_member, assignee=staff_member)
    services.put_on_hold(
        rights_request=rights_request,
        actor=staff_member,
        message="Which Atlassian site do you use?",
        reason="clarification",
    )
    services.answer_question(
        question=rights_request.questions.get(), answer="ada-analytics.atlassian.net is my site."
    )
    services.put_on_hold(
        rights_request=rights_request,
        actor=staff_member,
        message="Any other email addresses?",
        reason="other",
    )
    services.resume(
        rights_request=rights_request,
        actor=staff_member,
        note="Requester phoned jane.reviewer@artemis.example instead; no other addresses.",
    )
    services.extend_deadline(
        rights_request=rights_request,
        actor=staff_member,
        reason="Your request covers several systems we must search.",
        months=None if country == "US" else 1,
    )
    _staff_view(staff_member, rights_request)
    rights_request = services.approve(rights_request=rights_request, actor=staff_member)
    facts = {
        "status_token_hash": RightsRequest.objects.get(pk=rights_request.pk).status_token_hash,
        "email_hash": rights_request.email_hash,
        "code_hash": code_hash,
        "status_token": status_token,
    }
    return rights_request, earlier, facts


def _fulfil(rights_request, actor, committed):
    with committed():
        services.start_fulfilment(rights_request=rights_request, actor=actor)
    done = RightsRequest.objects.get(pk=rights_request.pk)
    assert done.state == RequestState.COMPLETED
    return done


def _files(done):
    """The export's files as the requester gets them: ``{name: bytes}`` (a transfer: data.json alone)."""
    export = DataExport.objects.get(request=done)
    plain = b"".join(exports.iter_plain(exports.open_export(export.file_name)))
    if export.kind == "json":
        return {"data.json": plain}
    archive = zipfile.ZipFile(io.BytesIO(plain))
    return {name: archive.read(name) for name in archive.namelist()}


def _csv_text(content):
    """Every cell of a CSV file, one per line (nested lists are JSON inside a cell)."""
    return "\n".join(cell for row in csv.reader(io.StringIO(content.decode())) for cell in row)


def _records(data):
    return {
        r["reference"]: r
        for r in next(p for p in data["providers"] if p["key"] == "rights_requests")["records"]
    }


@pytest.mark.parametrize("country", ["GB", "DE", "US"])  # UK GDPR, GDPR, CCPA
def test_a_copy_holds_staff_notes_identity_checks_questions_corrections_and_the_extension(
    staff_member, committed, country
):
    """A copy is complete: every record about the requester, staff-only ones included.

    GDPR / UK GDPR Art. 15(1) (the personal data and the information about its processing), Art. 15(3)
    (a copy of the personal data undergoing processing); CCPA Civ. Code §1798.110(a)(5) and (b), and
    §1798.130(a)(2)(B) (the specific pieces of personal information collected about the consumer); CCPA
    regs §7024(h) (all the personal information collected and maintained about the consumer).
    """
    rights_request, earlier, _facts = _history(staff_member, request_type=RequestType.COPY, country=country)
    queued_before = {e.subject for e in rights_request.emails.all()}  # extension, question, ... emails
    files = _files(_fulfil(rights_request, staff_member, committed))
    data = json.loads(files["data.json"])
    jsonschema.validate(data, SCHEMA)
    records = _records(data)
    mine, before = records[rights_request.reference], records[earlier.reference]

    assert mine["regime"] == {"GB": "uk_gdpr", "DE": "gdpr", "US": "ccpa"}[country]
    assert mine["extension_reason"] == "Your request covers several systems we must search."
    assert (
        mine["extended_at"]
        and mine["statutory_due_on"]
        and mine["policy_due_on"]
        and mine["effective_due_on"]
    )
    assert mine["held_since"] is None and mine["hold_reason"] == ""
    # The clarification hold stopped the legal clock (its days count); the "other" one did not.
    assert mine["hold_calendar_days"] == 0  # both holds were lifted the day they began
    assert (mine["channel"], mine["by_agent"]) == ("web", False)
    assert (mine["assignee"], mine["approved_by"], mine["erasure_approved_by"]) == (STAFF, STAFF, "")
    staff_only = [(e["note"], e["actor"]) for e in mine["timeline"] if not e["public"]]
    assert ("Assigned to staff.", "staff") in staff_only
    assert ("Requester phoned staff instead; no other addresses.", "staff") in staff_only
    assert ("Atlassian account code created", "requester") in staff_only
    assert [(c["step"], c["outcome"], c["checked_by"], c["note"]) for c in mine["identity_checks"]] == [
        ("email", "passed", "automatic", ""),
        (
            "document",
            "failed",
            STAFF,
            "The photo is too blurred to read; staff asked for the account proof instead.",
        ),
        ("account", "passed", "automatic", ""),
    ]
    assert mine["identity_documents"] == []  # deleted once checked
    assert (mine["account_id"], mine["verified_site_url"]) == (
        "557058:ada",
        "https://ada-analytics.atlassian.net",
    )
    (code,) = mine["account_codes"]
    assert code["created_at"] and code["used_at"]
    assert [(q["question"], q["answer"]) for q in mine["questions"]] == [
        ("Which Atlassian site do you use?", "ada-analytics.atlassian.net is my site."),
        ("Any other email addresses?", ""),
    ]
    assert {e["subject"] for e in mine["emails"]} == queued_before
    assert {e["to"] for e in mine["emails"]} == {EMAIL}
    assert [(a["action"], a["succeeded"]) for a in mine["staff_access"]] == [("view_personal_data", True)]
    assert mine["fulfilment"]["status"] == "running"  # the export is written while the job runs
    ((correction_access),) = before["staff_access"]
    assert (
        correction_access["action"] == "transition" and correction_access["detail"] == "record rectification"
    )
    (correction,) = before["corrections"]
    assert (correction["provider"], correction["field"], correction["new_value"]) == (
        "rights_requests",
        "name",
        "Ada King",
    )
    assert correction["applied_at"] is None

    csv_text = _csv_text(files["rights_requests.csv"])
    for item in (
        "Assigned to staff.",
        "Requester phoned staff instead; no other addresses.",
        "The photo is too blurred to read; staff asked for the account proof instead.",
        "Which Atlassian site do you use?",
        "ada-analytics.atlassian.net is my site.",
        "Ada King",
        "Your request covers several systems we must search.",
        "view_personal_data",
        "record rectification",
        '"outcome":"failed"',  # nested values are JSON as data.json writes them (orjson: no spaces)
        mine["regime"],
        mine["statutory_due_on"],
    ):
        assert item in csv_text, item


@pytest.mark.parametrize("request_type", [RequestType.COPY, RequestType.TRANSFER])
def test_no_staff_identity_credential_or_blind_index_reaches_any_file_of_the_export(
    staff_member, committed, request_type
):
    """Staff are other people: their names, user names, emails, IP and browser are left out and they
    appear as "staff" (GDPR / UK GDPR Art. 15(4); DPA 2018 Sch. 2 para. 16; CJEU C-579/21 Pankki S: the
    dates and purposes of consultations, not the employees). Security credentials are never disclosed
    (GDPR Art. 32; CCPA regs §7024(d), which bars disclosing passwords and security answers in a
    response to a request to know).
    """
    rights_request, _earlier, facts = _history(staff_member, request_type=request_type, country="GB")
    files = _files(_fulfil(rights_request, staff_member, committed))
    forbidden = [
        "jane.reviewer",
        "jane.reviewer@artemis.example",
        "Jane Reviewer",
        STAFF_IP,
        STAFF_BROWSER,
        facts["status_token_hash"],
        facts["status_token"],
        facts["email_hash"],
        facts["code_hash"],
    ]
    for name, content in files.items():
        text = content.decode()
        for secret in forbidden:
            assert secret.casefold() not in text.casefold(), (name, secret)
    assert "Ada Lovelace" in files["data.json"].decode()  # the requester's own data is there


@pytest.mark.parametrize("request_type", [RequestType.COPY, RequestType.TRANSFER])
def test_the_export_lists_what_was_withheld_and_why_in_data_json_and_the_readme(
    staff_member, committed, request_type
):
    """Anything withheld is listed with its reason (GDPR / UK GDPR Art. 15(3)-(4), Art. 12(1): concise,
    transparent information; CCPA regs §7024(d): say with sufficient particularity what was collected but
    not disclosed). A transfer (Art. 20; CCPA §1798.130(a)(2)(B), a readily usable format) carries the
    same list."""
    rights_request, _earlier, _facts = _history(staff_member, request_type=request_type, country="GB")
    done = _fulfil(rights_request, staff_member, committed)
    files = _files(done)
    data = json.loads(files["data.json"])
    jsonschema.validate(data, SCHEMA)
    subject = services.subject_for(done)
    expected = [
        {"provider": provider.key, "what": str(item.what), "reason": str(item.reason)}
        for provider in providers.all_providers()
        for item in provider.withheld(subject)
    ]
    assert data["withheld"] == expected
    whats = {item["what"] for item in expected}
    assert "Who on our staff handled your request" in whats
    assert "Installation records of Atlassian sites" in whats  # not a site-scoped request
    security = next(item for item in expected if item["what"].startswith("The fingerprints (hashes)"))
    assert security["reason"].startswith(
        "Security credentials; disclosing them would put your request at risk"
    )
    if request_type == RequestType.TRANSFER:
        assert list(files) == ["data.json"]
        return
    readme = files["README.txt"].decode()
    section = readme[readme.index("What we did not include, and why") :]
    for item in expected:
        assert f"* {item['what']} (" in section and item["reason"] in section
    assert "Identity documents you sent us" in section and "delete a document as soon as" in section


def test_the_readme_keeps_a_record_count_per_provider(staff_member, committed):
    """Art. 15(1): where the data is held, and how much; the README says per source (the count is the
    number of requests, the current one and the earlier change request here)."""
    rights_request, _earlier, _facts = _history(staff_member, request_type=RequestType.COPY, country="GB")
    readme = _files(_fulfil(rights_request, staff_member, committed))["README.txt"].decode()
    assert "Your requests to us (rights_requests): 2 records" in readme
    assert "Your Atlassian site's installation record (connect_registrations): 0 records" in readme
    assert "Usage statistics (usage_counts): no personal data" in readme


def test_a_later_copy_holds_the_earlier_exports_and_every_download_of_them(ready_copy, client, committed):
    """The export and download log is data about the requester too (Art. 15(1) GDPR / UK GDPR); the
    download codes appear only as times, never the code or its hash (Art. 32; CCPA regs §7024(d))."""
    first, token = ready_copy
    response = download(client, token, ask_for_code(client, token, committed))
    assert response.status_code == 200
    b"".join(response.streaming_content)
    code_hash = DownloadCode.objects.get(export__request=first).code_hash
    approver = StaffUserFactory(roles=[roles.APPROVER])
    second, _token = approved_request(RequestType.COPY, approver=approver, email="reader@example.org")

    files = _files(_fulfil(second, approver, committed))

    data = json.loads(files["data.json"])
    jsonschema.validate(data, SCHEMA)
    (export,) = _records(data)[first.reference]["exports"]
    assert export["kind"] == "zip" and export["records"] == 1 and export["purged_at"] is None
    assert [d["channel"] for d in export["downloads"]] == ["code"]
    (code,) = export["download_codes"]
    assert code["used_at"] is not None
    assert (
        code_hash not in files["data.json"].decode()
        and code_hash not in files["rights_requests.csv"].decode()
    )
    assert '"downloads":[{"channel":"code"' in _csv_text(files["rights_requests.csv"])


def test_a_site_scoped_export_says_the_sites_shared_secret_is_never_exported(committed):
    """The tenant's shared secret is the app's credential, not the requester's data: stated, never
    exported (GDPR Art. 15(4) and 32; CCPA regs §7024(d))."""
    tenant = RegistrationFactory()
    approver = StaffUserFactory(roles=[roles.APPROVER])
    rights_request, _token = approved_request(
        RequestType.COPY,
        approver=approver,
        concerns=Concerns.SITE,
        site_client_key=tenant.client_key,
        verified_site_url=tenant.base_url,
        account_id="557058:abc",
    )
    files = _files(_fulfil(rights_request, approver, committed))
    data = json.loads(files["data.json"])
    jsonschema.validate(data, SCHEMA)
    (record,) = next(p for p in data["providers"] if p["key"] == "connect_registrations")["records"]
    assert record["blocked_at"] is None and record["client_key"] == tenant.client_key
    whats = [item["what"] for item in data["withheld"] if item["provider"] == "connect_registrations"]
    assert whats == [
        "The shared secret Atlassian gave our app for your site",
        "Copies of the installation record in our encrypted backups",
    ]
    readme = files["README.txt"].decode()
    assert (
        "* The shared secret Atlassian gave our app for your site (Your Atlassian site's installation"
        in readme
    )
    for content in files.values():
        assert tenant.shared_secret.encode() not in content


def test_a_document_awaiting_its_check_is_listed_without_its_content():
    """Art. 15(1): the document is held, so it is listed (type, size, date); its file is not copied back
    (the README says why)."""
    submitted = services.submit_request(request_type=RequestType.COPY, name="Ada", email=EMAIL, country="GB")
    rights_request, _token = services.confirm_email(reference=submitted.reference)
    services.add_identity_document(rights_request=rights_request, content=PDF, content_type="application/pdf")
    subject = providers.Subject(email=EMAIL, email_hash=rights_request.email_hash)

    (record,) = providers.get("rights_requests").export(subject)

    (document,) = record["identity_documents"]
    assert (document["content_type"], document["size"]) == ("application/pdf", len(PDF))
    assert "passport" not in json.dumps(record, default=str)


# --- the staff redactor ---------------------------------------------------------------------------------


def test_staff_identifiers_are_replaced_whole_and_in_any_case(staff_member):
    redact = StaffRedactor(subject_email=EMAIL)
    assert redact("Mail JANE.REVIEWER@artemis.example or jane.reviewer.") == "Mail staff or staff."
    assert redact("Checked by Jane Reviewer") == "Checked by staff"
    assert redact("jane.reviewers and xjane.reviewer stay") == "jane.reviewers and xjane.reviewer stay"
    assert redact("") == "" and redact(None) is None


def test_short_user_names_are_not_redacted_inside_ordinary_words():
    StaffUserFactory(username="al", email="", first_name="", last_name="")
    assert StaffRedactor()("All approvals al") == "All approvals al"


def test_a_requester_who_is_also_staff_sees_their_own_name(staff_member):
    redact = StaffRedactor(subject_email="Jane.Reviewer@artemis.example")
    assert redact("Assigned to jane.reviewer.") == "Assigned to jane.reviewer."
