"""Second-factor pages, mounted under the admin (``/admin/2fa/``) so the admin's rules apply to them."""

from django.urls import path

from security import views

app_name = "security"

urlpatterns = [
    path("verify/", views.verify, name="otp_verify"),
    path("enrol/", views.enrol, name="otp_enrol"),
]
