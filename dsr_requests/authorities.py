"""Where a refused requester may complain, and what a refusal must tell them.

A refusal states its reasons, the right to complain to a supervisory authority and the right to a judicial
remedy (GDPR / UK GDPR Art. 12(4), Art. 77, Art. 79; CCPA regulations §7022(f) and §7024(e)). The authority
depends on the regime and, in the EEA, on the requester's country: the list of authorities is data
(``data/supervisory_authorities.json``), reviewed as a whole, with a test that every EEA country has one.
"""

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dsr_requests.deadlines import GDPR_COUNTRIES, Regime

DATA_FILE = Path(__file__).resolve().parent / "data" / "supervisory_authorities.json"


@dataclass(frozen=True)
class Authority:
    """A body a requester may complain to: its name and website."""

    name: str
    website: str


@lru_cache(maxsize=1)
def _data():
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


def eea_authorities() -> dict[str, Authority]:
    """Every EEA state's supervisory authority, by ISO country code."""
    return {code: Authority(**entry) for code, entry in _data()["eea"].items()}


def complaint_authorities(*, regime, country) -> list[Authority]:
    """The authorities a requester under ``regime`` living in ``country`` may complain to.

    UK GDPR: the ICO. GDPR: the authority of the requester's EEA country (Art. 77 lets them choose where
    they live, work or the infringement happened, so a requester outside the EEA gets the EDPB's list of
    every authority). CCPA: the California Privacy Protection Agency and the Attorney General.
    """
    regime = Regime(regime)
    country = (country or "").strip().upper()
    if regime == Regime.CCPA:
        return [Authority(**entry) for entry in _data()["ccpa"]]
    if regime == Regime.GDPR:
        if country in GDPR_COUNTRIES:
            return [eea_authorities()[country]]
        return [Authority(**_data()["eea_directory"])]
    return [Authority(**_data()["uk"])]


def refusal_context(*, regime, country, ground=""):
    """What the refusal email needs besides the reason: the authorities and which law's wording to use."""
    regime = Regime(regime)
    return {
        "authorities": complaint_authorities(regime=regime, country=country),
        "regime": regime.value,
        "regime_label": regime.label,
        "eea": regime == Regime.GDPR,
        "ccpa": regime == Regime.CCPA,
        # CCPA §7022(f)(3): data kept under an exception is used for nothing else.
        "exemption": ground == "exemption",
    }
