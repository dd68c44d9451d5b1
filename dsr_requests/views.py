"""Public pages of the rights-request workflow."""

from django.views.generic import TemplateView


class RequestFormPlaceholderView(TemplateView):
    """Until the intake form lands, say how to make a request meanwhile."""

    template_name = "dsr_requests/placeholder.html"
