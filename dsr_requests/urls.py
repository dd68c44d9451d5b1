"""Public rights-request URLs."""

from django.urls import path

from dsr_requests import views

app_name = "dsr_requests"

urlpatterns = [
    path("requests/new/", views.RequestFormPlaceholderView.as_view(), name="new"),
]
