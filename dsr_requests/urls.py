"""Public rights-request URLs, and the Connect page of the Atlassian-account proof."""

from django.urls import path

from dsr_requests import forge_views, views

app_name = "dsr_requests"

urlpatterns = [
    path("requests/new/", views.new_request, name="new"),
    path("requests/sent/", views.submitted, name="submitted"),
    path("requests/confirm/", views.confirm, name="confirm"),
    path("requests/status/", views.lost_link, name="lost-link"),
    path("requests/renew/", views.renew_status, name="renew-status"),
    path("requests/status/<str:token>/", views.status, name="status"),
    path("requests/status/<str:token>/code/", views.new_account_code, name="account-code"),
    path("requests/status/<str:token>/document/", views.upload_document, name="document"),
    path("requests/status/<str:token>/answer/", views.answer, name="answer"),
    path("requests/status/<str:token>/withdraw/", views.withdraw, name="withdraw"),
    path("requests/status/<str:token>/download-code/", views.download_code, name="download-code"),
    path("requests/status/<str:token>/download/", views.download, name="download"),
    path("requests/transfer/<str:token>/", views.transfer, name="transfer"),
    # The Atlassian-account proof: a Connect page (generalPages module "identity-proof" in the descriptor).
    path("connect/identity-proof/", views.account_proof, name="identity-proof"),
    path("forge/identity-proof/", forge_views.identity_proof, name="forge-identity-proof"),
]
