"""Public rights-request URLs, and the Connect page of the Atlassian-account proof."""

from django.urls import include, path

from dsr_requests import forge_views, views

app_name = "dsr_requests"

# The requester's pages under one prefix: a path outside it (a Connect or Forge page, the busiest) is
# told apart by one check instead of thirteen (issue 19, item 1; Django tries patterns in order).
requester_pages = [
    path("new/", views.new_request, name="new"),
    path("sent/", views.submitted, name="submitted"),
    path("confirm/", views.confirm, name="confirm"),
    path("status/", views.lost_link, name="lost-link"),
    path("renew/", views.renew_status, name="renew-status"),
    path("status/<str:token>/", views.status, name="status"),
    path("status/<str:token>/code/", views.new_account_code, name="account-code"),
    path("status/<str:token>/document/", views.upload_document, name="document"),
    path("status/<str:token>/answer/", views.answer, name="answer"),
    path("status/<str:token>/withdraw/", views.withdraw, name="withdraw"),
    path("status/<str:token>/download-code/", views.download_code, name="download-code"),
    path("status/<str:token>/download/", views.download, name="download"),
    path("transfer/<str:token>/", views.transfer, name="transfer"),
]

urlpatterns = [
    # The Atlassian-account proof: a Connect page (generalPages module "identity-proof" in the descriptor).
    path("connect/identity-proof/", views.account_proof, name="identity-proof"),
    path("forge/identity-proof/", forge_views.identity_proof, name="forge-identity-proof"),
    path("requests/", include(requester_pages)),
]
