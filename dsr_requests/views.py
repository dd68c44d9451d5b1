"""Public pages of rights requests: the form, email confirmation, and the status page.

Views only parse input, apply rate limits and call ``services``. Pages that carry a secret in their URL
or show a person's request send ``Cache-Control: no-store`` and ``Referrer-Policy: same-origin``.
"""

import re
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from artemis_portal.prerender import PrerenderedPage
from dsr_requests import forms as forms_module
from dsr_requests import ratelimit, selectors, services, tokens
from dsr_requests.forms import (
    AccountCodeForm,
    AnswerForm,
    DownloadCodeForm,
    IdentityDocumentForm,
    LostLinkForm,
    RightsRequestForm,
    WithdrawForm,
)
from dsr_requests.models import StaffQuestion
from registrations.jwt import connect_jwt_required


def sensitive_page(view):
    """No caching anywhere, and no Referer header carrying the URL's secret to other sites.

    ``same-origin`` rather than ``no-referrer``: under ``no-referrer`` browsers send ``Origin: null`` with
    the page's own form posts, which Django's CSRF check (rightly) refuses over https. ``same-origin``
    keeps the URL's secret on our own origin, which already knows it.
    """

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response["Referrer-Policy"] = "same-origin"
        return response

    return never_cache(wrapped)


def rate_limited(request, rate):
    """The 429 page: what happened and when to try again."""
    minutes = _retry_minutes(rate)
    response = render(request, "dsr_requests/rate_limited.html", {"minutes": minutes}, status=429)
    response["Retry-After"] = str(ratelimit.seconds_until_reset(rate))
    return response


def limit_status_lookups(view):
    """Count every use of a confirmation or status link against the per-IP limit.

    Tokens are far too long to guess; the limit also keeps one client from loading the database.
    """

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if ratelimit.hit("status-ip", ratelimit.client_ip(request), settings.DSR_RATE_STATUS_PER_IP):
            return rate_limited(request, settings.DSR_RATE_STATUS_PER_IP)
        return view(request, *args, **kwargs)

    return wrapped


def error_page(request, message, *, status=400):
    """A short page with one clear reason, for links that cannot be used."""
    return render(request, "dsr_requests/error.html", {"message": message}, status=status)


@sensitive_page
@sensitive_post_parameters("name", "email", "details", "transfer_email", "site_url")
def new_request(request):
    """The request form; a valid submission is stored and the requester is sent to a 'what next' page."""
    form = RightsRequestForm(request.POST or None)
    # Only an accepted submission counts towards the limits: a form sent back with errors uses up nothing.
    if request.method == "POST" and form.is_valid():
        ip = ratelimit.client_ip(request)
        email_key = tokens.email_blind_index(form.cleaned_data["email"])
        limit = None
        if ratelimit.hit("submit-ip", ip, settings.DSR_RATE_SUBMIT_PER_IP):
            limit = settings.DSR_RATE_SUBMIT_PER_IP
        elif ratelimit.hit("submit-email", email_key, settings.DSR_RATE_SUBMIT_PER_EMAIL):
            ratelimit.release("submit-ip", ip, settings.DSR_RATE_SUBMIT_PER_IP)
            limit = settings.DSR_RATE_SUBMIT_PER_EMAIL
        if limit is not None:
            # The form comes back as typed, saying when it can be sent (Retry-After says it to machines).
            minutes = _retry_minutes(limit)
            form.add_error(
                None,
                ngettext(
                    "We received too many requests from you in a short time, so this one was not sent. "
                    "Everything you typed is still here: please send it again in about %(minutes)d minute.",
                    "We received too many requests from you in a short time, so this one was not sent. "
                    "Everything you typed is still here: please send it again in about %(minutes)d minutes.",
                    minutes,
                )
                % {"minutes": minutes},
            )
            response = render(
                request,
                "dsr_requests/request_form.html",
                {"form": form, "answer_dates": selectors.answer_dates()},
                status=429,
            )
            response["Retry-After"] = str(ratelimit.seconds_until_reset(limit))
            return response
        if form.is_bot:
            # Look like success so the bot learns nothing; store nothing.
            return redirect("dsr_requests:submitted")
        data = form.cleaned_data
        services.submit_request(
            request_type=data["request_type"],
            name=data["name"],
            email=data["email"],
            details=data["details"],
            site_url=data["site_url"],
            concerns=data["concerns"],
            transfer_to=data["transfer_to"],
            transfer_email=data["transfer_email"],
            country=data["country"],
            actor=services.REQUESTER,
        )
        return redirect("dsr_requests:submitted")
    return render(
        request,
        "dsr_requests/request_form.html",
        {"form": form, "answer_dates": selectors.answer_dates()},
    )


def _retry_minutes(rate):
    """Whole minutes (at least 1) until the window of ``rate`` ends."""
    return max(1, -(-ratelimit.seconds_until_reset(rate) // 60))


def submitted(request):
    """After submitting: what happens next, the same words whoever the requester is."""
    return render(
        request,
        "dsr_requests/submitted.html",
        {
            "hours": settings.DSR_CONFIRMATION_MAX_AGE_HOURS,
            "close_after_days": settings.DSR_CLOSE_UNVERIFIED_AFTER_DAYS,
        },
    )


@sensitive_page
@limit_status_lookups
def confirm(request):
    """Email confirmation: GET shows a button (link scanners must not use up the link), POST confirms.

    The signed token travels in the query string, which the access log never records.
    """
    token = request.GET.get("token", "")
    try:
        reference = tokens.read_confirmation_token(token, max_age=services.confirmation_max_age())
    except signing.SignatureExpired:
        return error_page(
            request,
            _("This confirmation link has expired. Use a newer link we emailed you, or make a new request."),
        )
    except signing.BadSignature:
        return error_page(request, _("This confirmation link is not valid. Check that you copied all of it."))
    if request.method != "POST":
        return render(request, "dsr_requests/confirm.html", {"reference": reference})
    try:
        _rights_request, status_token = services.confirm_email(reference=reference, actor=services.REQUESTER)
    except services.ActionRefused as exc:
        return error_page(request, str(exc))
    return redirect("dsr_requests:status", token=status_token)


def _status_request_or_404(request, token):
    """The request behind a status token; the same 404 for any wrong token."""
    rights_request = selectors.request_for_status_token(token)
    if rights_request is None:
        raise Http404(_("No request matches this link."))
    return rights_request


def _render_status(request, rights_request, token, *, status=200, **extra):
    """Render the status page; ``extra`` replaces blank forms with bound ones or adds the account code."""
    context = selectors.status_page_context(rights_request)
    context.update(
        token=token,
        document_form=IdentityDocumentForm(),
        answer_form=AnswerForm(),
        withdraw_form=WithdrawForm(),
        upload_limit=settings.DSR_UPLOAD_MAX_BYTES,
        code_minutes=settings.DSR_ACCOUNT_CODE_TTL_MINUTES,
        export=services.downloadable_export(rights_request=rights_request),
        download_form=DownloadCodeForm(),
    )
    context.update(extra)
    return render(request, "dsr_requests/status.html", context, status=status)


@sensitive_page
@limit_status_lookups
def status(request, token):
    """The requester's status page."""
    return _render_status(request, _status_request_or_404(request, token), token)


@sensitive_page
@limit_status_lookups
@require_POST
def new_account_code(request, token):
    """Show a fresh one-time code for the Atlassian account proof (on this response only)."""
    rights_request = _status_request_or_404(request, token)
    try:
        code = services.issue_account_code(rights_request=rights_request, actor=services.REQUESTER)
    except services.ActionRefused as exc:
        messages.error(request, str(exc))
        return redirect("dsr_requests:status", token=token)
    return _render_status(request, rights_request, token, account_code=code)


@sensitive_page
@limit_status_lookups
@require_POST
def upload_document(request, token):
    """Accept one identity document for the staff check."""
    rights_request = _status_request_or_404(request, token)
    if _declared_length(request) > settings.DSR_UPLOAD_MAX_BYTES + 64 * 1024:
        # A body this large cannot hold an acceptable file: answer 413 without opening it. The form checks
        # the file's real size below, before reading it into memory.
        # Still the status page, with the error on the upload field (the link itself is fine).
        form = IdentityDocumentForm(data={}, files={})
        form.errors["document"] = form.error_class([forms_module.too_large_message()])
        return _render_status(request, rights_request, token, document_form=form, status=413)
    form = IdentityDocumentForm(request.POST, request.FILES)
    if not form.is_valid():
        return _render_status(request, rights_request, token, document_form=form, status=400)
    try:
        services.add_identity_document(
            rights_request=rights_request,
            content=form.cleaned_data["document"],
            content_type=form.cleaned_data["content_type"],
            actor=services.REQUESTER,
        )
    except services.ActionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Thank you: we received your document. Our staff will check it."))
    return redirect("dsr_requests:status", token=token)


def _declared_length(request):
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


@sensitive_page
@limit_status_lookups
@sensitive_post_parameters("answer")
@require_POST
def answer(request, token):
    """Store the requester's answer to a question staff asked."""
    rights_request = _status_request_or_404(request, token)
    form = AnswerForm(request.POST)
    if not form.is_valid():
        return _render_status(request, rights_request, token, answer_form=form, status=400)
    question = get_object_or_404(StaffQuestion, pk=form.cleaned_data["question"], request=rights_request)
    try:
        services.answer_question(
            question=question, answer=form.cleaned_data["answer"], actor=services.REQUESTER
        )
    except services.ActionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Thank you: we received your answer."))
    return redirect("dsr_requests:status", token=token)


@sensitive_page
@limit_status_lookups
@require_POST
def withdraw(request, token):
    """Withdraw the request, once the requester has ticked the box."""
    rights_request = _status_request_or_404(request, token)
    form = WithdrawForm(request.POST)
    if not form.is_valid():
        return _render_status(request, rights_request, token, withdraw_form=form, status=400)
    try:
        services.withdraw(rights_request=rights_request, actor=services.REQUESTER)
    except services.InvalidTransition:
        messages.error(request, _("This request can no longer be withdrawn."))
    else:
        messages.success(request, _("Your request has been withdrawn."))
    return redirect("dsr_requests:status", token=token)


# Atlassian account IDs ("557058:uuid", or a 24-character hex id); the column holds 128 characters.
ACCOUNT_ID_SHAPE = re.compile(r"[A-Za-z0-9:._-]{1,128}")
# The Connect hot path: every page load of a signed-in account is this page with an empty form, which
# differs between loads only in the site and the account (artemis_portal.prerender).
ACCOUNT_PROOF_PAGE = PrerenderedPage(
    "dsr_requests/account_proof.html",
    slots=("site_url", "account_id"),
    context=lambda: {"form": AccountCodeForm()},
)


@connect_jwt_required(allow_context_qsh=True, module="identity-proof")
@sensitive_post_parameters("code")
def account_proof(request):
    """The Connect app's identity page: entering a status-page code binds this account and site.

    Atlassian loads it in an iframe with a JWT whose ``sub`` is the signed-in account and whose ``iss``
    is the site, so whoever can enter the code here controls that account on that site.
    """
    tenant, account_id = request.connect.tenant, request.connect.account_id
    if not isinstance(account_id, str) or not ACCOUNT_ID_SHAPE.fullmatch(account_id):
        account_id = None  # a token without a usable sub: an anonymous visitor
    context = {"site_url": tenant.base_url, "account_id": account_id}
    if not account_id:
        return render(
            request, "dsr_requests/account_proof.html", context, status=403 if request.POST else 200
        )
    if request.method != "POST":
        return HttpResponse(ACCOUNT_PROOF_PAGE.render(request, **context))
    form = AccountCodeForm(request.POST or None)
    if ratelimit.hit("account-code", f"{tenant.client_key}:{account_id}", settings.DSR_RATE_CODE_PER_ACCOUNT):
        return render(request, "dsr_requests/account_proof.html", {**context, "limited": True}, status=429)
    if form.is_valid():
        try:
            rights_request = services.redeem_account_code(
                code=form.cleaned_data["code"],
                client_key=tenant.client_key,
                site_url=tenant.base_url,
                account_id=account_id,
                actor=services.REQUESTER,
            )
        except services.ActionRefused as exc:
            form.add_error("code", str(exc))
        else:
            context["reference"] = rights_request.reference
            return render(request, "dsr_requests/account_proof_done.html", context)
    return render(request, "dsr_requests/account_proof.html", {**context, "form": form}, status=400)


@sensitive_page
@sensitive_post_parameters("email")
def lost_link(request):
    """Send fresh status links to an address; the same answer whether or not it has requests."""
    form = LostLinkForm(request.POST or None)
    if request.method == "POST":
        if ratelimit.hit("submit-ip", ratelimit.client_ip(request), settings.DSR_RATE_SUBMIT_PER_IP):
            return rate_limited(request, settings.DSR_RATE_SUBMIT_PER_IP)
        if form.is_valid():
            email = form.cleaned_data["email"]
            # Shares the submission's per-address budget: one address cannot be flooded with mail.
            if ratelimit.hit(
                "submit-email", tokens.email_blind_index(email), settings.DSR_RATE_SUBMIT_PER_EMAIL
            ):
                return rate_limited(request, settings.DSR_RATE_SUBMIT_PER_EMAIL)
            services.request_links(email=email, actor=services.REQUESTER)
            return render(request, "dsr_requests/lost_link.html", {"sent": True})
    return render(request, "dsr_requests/lost_link.html", {"form": form})


@sensitive_page
def renew_status(request):
    """The link a lost-link email carries: GET shows a button (mail scanners must not use it up), POST
    replaces the status token and opens the new status page. Until then the current link still works."""
    token = request.GET.get("token", "")
    try:
        services.read_renewal_token(token)
        if request.method != "POST":
            return render(request, "dsr_requests/renew_status.html")
        new_token = services.renew_status_link(token=token, actor=services.REQUESTER)
    except services.RenewalRefused as exc:
        return error_page(request, str(exc))
    return redirect("dsr_requests:status", token=new_token)


# --- Fulfilment: downloads ------------------------------------------------------------------------------


def _export_response(request, export, stream, *, filename, content_type):
    """Stream an export (an opened ``exports.PlainStream``), decrypting frame by frame; never the whole
    file in memory. The response closes the stream, read to the end or not."""
    response = StreamingHttpResponse(stream, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Content-Length"] = str(export.size)
    return response


def _export_unavailable(request, exc):
    """The file could not be opened; the code or link was not used up, so the requester can retry."""
    if not exc.temporary:
        return error_page(
            request,
            _("This file is no longer available. Reply to our email and we will prepare it again."),
            status=404,
        )
    # The site's "briefly unavailable" page, not the "this link cannot be used" one: it can, soon.
    reason = _(
        "Your file cannot be reached just now. Your code or link still works: try again in a few minutes."
    )
    response = render(request, "503.html", {"reason": reason}, status=503)
    response["Retry-After"] = "120"
    return response


@sensitive_page
@limit_status_lookups
@require_POST
def download_code(request, token):
    """Email the requester a one-time code for their copy."""
    rights_request = _status_request_or_404(request, token)
    try:
        services.send_download_code(rights_request=rights_request, actor=services.REQUESTER)
    except services.ActionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("We emailed you a download code. Enter it below."))
    return redirect(reverse("dsr_requests:status", kwargs={"token": token}) + "#download")


@sensitive_page
@limit_status_lookups
@sensitive_post_parameters("code")
@require_POST
def download(request, token):
    """Check the emailed code and stream the copy (ZIP)."""
    rights_request = _status_request_or_404(request, token)
    form = DownloadCodeForm(request.POST)
    if not form.is_valid():
        return _render_status(request, rights_request, token, download_form=form, status=400)
    if ratelimit.hit("download-code", rights_request.reference, settings.DSR_RATE_CODE_PER_ACCOUNT):
        return rate_limited(request, settings.DSR_RATE_CODE_PER_ACCOUNT)
    try:
        export, stream = services.redeem_download_code(
            rights_request=rights_request, code=form.cleaned_data["code"], actor=services.REQUESTER
        )
    except services.ActionRefused as exc:
        form.add_error("code", str(exc))
        return _render_status(request, rights_request, token, download_form=form, status=400)
    except services.ExportUnavailable as exc:
        return _export_unavailable(request, exc)
    return _export_response(
        request,
        export,
        stream,
        filename=f"{rights_request.reference}-personal-data.zip",
        content_type="application/zip",
    )


@sensitive_page
@limit_status_lookups
def transfer(request, token):
    """A transfer's one-time link: GET explains (link scanners must not use it up), POST downloads."""
    try:
        export = services.transfer_export_for_link(token)
    except services.ActionRefused as exc:
        return error_page(request, str(exc), status=404)
    if request.method != "POST":
        return render(request, "dsr_requests/transfer.html", {"export": export})
    try:
        export, stream = services.redeem_transfer_link(token=token, actor=services.REQUESTER)
    except services.ActionRefused as exc:
        return error_page(request, str(exc), status=404)
    except services.ExportUnavailable as exc:
        return _export_unavailable(request, exc)
    return _export_response(
        request,
        export,
        stream,
        filename=f"{export.request.reference}-personal-data.json",
        content_type="application/json",
    )
