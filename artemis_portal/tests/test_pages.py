"""Landing page, health check, admin login and the friendly error pages."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings
from django.urls import path


def test_landing_page_says_what_the_portal_is_for_and_links_to_the_form(client):
    response = client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Your privacy rights" in body
    assert 'href="/requests/new/"' in body


def test_request_form_url_answers(client):
    assert client.get("/requests/new/").status_code == 200


@pytest.mark.django_db
def test_healthz_reports_database_state_as_json_and_nothing_else(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db
def test_healthz_refuses_writes(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_admin_login_page_is_titled_for_the_product(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert "Artemis privacy portal" in response.content.decode()


@pytest.mark.django_db
def test_admin_requires_login(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_unknown_page_gets_the_friendly_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


def _boom(request):
    raise RuntimeError("secret detail that must not leak")


urlpatterns = [path("boom/", _boom)]


@override_settings(ROOT_URLCONF=__name__)
def test_server_error_shows_friendly_page_without_details(client):
    client.raise_request_exception = False
    response = client.get("/boom/")
    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong" in body
    assert "secret detail" not in body and "Traceback" not in body


@pytest.mark.django_db
def test_ensure_local_admin_creates_one_superuser_with_a_random_password(capsys):
    call_command("ensure_local_admin")
    first = capsys.readouterr().out
    call_command("ensure_local_admin")
    second = capsys.readouterr().out
    users = get_user_model().objects.filter(is_superuser=True)
    assert users.count() == 1
    password = first.split("password ")[1].split()[0]
    assert users.get().check_password(password)
    assert "A superuser exists" in second and password not in second


@pytest.mark.django_db
def test_the_promised_answer_time_follows_the_working_days_setting(client, settings):
    settings.DSR_WORKING_DAYS = 20
    for url in ("/", "/requests/new/"):
        body = client.get(url).content.decode()
        assert "within 20 working days" in body and "30 working days" not in body
