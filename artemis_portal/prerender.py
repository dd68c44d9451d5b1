"""A page rendered once per language, with only its per-request values filled in on each request.

Rendering the Connect identity page through the template engine (base template, includes, a form
widget rendered through its own templates) cost several times what verifying the request's token
costs (docs/benchmarks.md), yet the page differs between requests only in two values. So the template
is rendered once per language with a random marker in place of each such value (a *slot*), the output
is split at the markers, and each request joins the pieces with its values escaped exactly as the
template's autoescaping does (``conditional_escape``).

That is only correct while the template prints those values plainly (``{{ site_url }}``) and nothing
else in the output depends on the request. Rather than trust it, each build checks it: the page is
rendered once more, in full, with awkward probe values (markup characters, quotes, non-ASCII) and must
equal what the pieces give for those values. Anything request-specific (a CSRF token, a nonce) or
computed from a slot value (a filter, its length) makes the two differ; the page is then always
rendered in full (and a warning logged), so such a template change makes the page slower, not wrong.
A branch on one exact value (``{% if site_url == "..." %}``) the probe cannot see: a page's own test
compares its pieces with the full render for arbitrary values (hypothesis), as the identity page's does.
"""

import logging
import re
import secrets

from django.template.loader import render_to_string
from django.utils.html import conditional_escape
from django.utils.translation import get_language

logger = logging.getLogger("artemis.templates")

PROBE = '<a href="x">&amp;\'\u00e9\u4e2d'
_FULL = object()  # this language's page must be rendered in full every time


class PrerenderedPage:
    """``template_name`` with ``slots`` (context names whose values vary per request) filled in fast.

    ``context`` returns the rest of the context (the same for every request, e.g. an unbound form).
    The pieces are kept per language (bounded by ``LANGUAGES``) for the life of the process.
    """

    def __init__(self, template_name, *, slots, context=dict):
        self.template_name = template_name
        self.slots = tuple(slots)
        self.context = context
        self._pieces = {}

    def render(self, request, **values):
        """The page for ``values`` (one ``str`` per slot), as ``render_to_string`` would return it."""
        language = get_language()
        pieces = self._pieces.get(language)
        if pieces is None:
            pieces = self._pieces[language] = self._build(request)
        if pieces is _FULL:
            return render_to_string(self.template_name, {**self.context(), **values}, request)
        escaped = {name: conditional_escape(values[name]) for name in self.slots}
        return "".join(escaped[piece[1]] if isinstance(piece, tuple) else piece for piece in pieces)

    def _build(self, request):
        markers = {name: f"slot{secrets.token_hex(12)}" for name in self.slots}
        rendered = render_to_string(self.template_name, {**self.context(), **markers}, request)
        by_marker = {marker: name for name, marker in markers.items()}
        pieces = []
        for index, part in enumerate(re.split(f"({'|'.join(markers.values())})", rendered)):
            if index % 2:
                pieces.append(("slot", by_marker[part]))
            elif part:
                pieces.append(part)
        probe = dict.fromkeys(self.slots, PROBE)
        full = render_to_string(self.template_name, {**self.context(), **probe}, request)
        assembled = "".join(conditional_escape(PROBE) if isinstance(p, tuple) else p for p in pieces)
        if full != assembled:
            logger.warning("template %s cannot be prerendered; rendering it in full", self.template_name)
            return _FULL
        return tuple(pieces)
