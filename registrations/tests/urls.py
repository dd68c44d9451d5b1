"""Test-only URLs: the app's URLs, the identity-proof page, and views that exercise each form of the JWT
decorator and mixin."""

from django.http import JsonResponse
from django.urls import include, path
from django.views import View

from registrations.jwt import ConnectJWTRequiredMixin, connect_jwt_required


@connect_jwt_required
def bare(request):
    return JsonResponse(
        {"client_key": request.connect.tenant.client_key, "account": request.connect.account_id}
    )


@connect_jwt_required(module="api-echo")
def api_echo(request):
    return JsonResponse({"method": request.method, "body": request.body.decode()})


class MixinView(ConnectJWTRequiredMixin, View):
    allow_context_qsh = True
    connect_module = "mixin-page"

    def get(self, request):
        return JsonResponse({"account": request.connect.account_id})


urlpatterns = [
    path("", include("registrations.urls")),
    # The Connect page these tests load (/connect/identity-proof/) is the rights-request app's.
    path("", include("dsr_requests.urls")),
    path("api/bare", bare, name="bare"),
    path("api/echo", api_echo, name="echo"),
    path("mixin/page/", MixinView.as_view(), name="mixin"),
]
