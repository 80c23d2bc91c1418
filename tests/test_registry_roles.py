"""Classification reads each registry's own fields: ISRCTN interventions and drug names, EU CTR
products (D.3), EU CTIS products, ICTRP intervention text.

No real MSC trial of these registries is among the recorded responses (the 107 real records of
the registries' evaluation set are all outside MSC therapy), so each case below is derived from
a real record of the registry (tests/fixtures/*/, see their README): only the text of the
fields named is replaced, with wording taken from real MSC registrations, and the record then
goes through the registry's own parser and the classifier. Named ``crafted_*``.
"""

from __future__ import annotations

from functools import cache

import pytest
from conftest import FIXTURES

from sources import ctis, euctr, isrctn
from tracker.classify import classify_study, load_rules

ISRCTN_REAL = (FIXTURES / "isrctn" / "isrctn_trial_ISRCTN38597726_trimmed.xml").read_bytes()
EUCTR_REAL = (FIXTURES / "euctr" / "euctr_full_trial_details_download.txt").read_bytes()
# The download's first trial, 2022-002568-62 (its protocols of three member states), up to the
# next trial's first protocol.
EUCTR_ONE = EUCTR_REAL[:EUCTR_REAL.index(b"\nSummary\nEudraCT Number: 2021-002179-21")]


@cache
def rules():
    return load_rules()


def _isrctn(title: str, description: str, drugs: str, hypothesis: str | None = None) -> bytes:
    raw = ISRCTN_REAL
    raw = raw.replace(b"<title>Gefapixant and breathing control in long COVID</title>",
                      f"<title>{title}</title>".encode())
    raw = raw.replace(b"<drugNames>Gefapixant</drugNames>", f"<drugNames>{drugs}</drugNames>".encode())
    start = raw.index(b"<description>A single dose of oral gefapixant")
    end = raw.index(b"</description>", start)
    raw = raw[:start] + f"<description>{description}".encode() + raw[end:]
    if hypothesis is not None:
        start = raw.index(b"<studyHypothesis>")
        end = raw.index(b"</studyHypothesis>", start)
        raw = raw[:start] + f"<studyHypothesis>{hypothesis}".encode() + raw[end:]
    assert raw != ISRCTN_REAL
    return raw


def test_isrctn_interventions_and_drug_names_say_what_is_given() -> None:
    crafted_isrctn_msc = _isrctn(
        "Umbilical cord stem cells for breathing difficulties after COVID",
        "A single intravenous infusion of allogeneic umbilical cord-derived mesenchymal "
        "stromal cells (1 x 10^6 cells/kg) or placebo",
        "UC-MSC")
    rec = isrctn.parse_trial(crafted_isrctn_msc)
    labels = classify_study(rec, rules())
    assert labels.role == "therapy", labels.reason
    assert "umbilical_cord" in labels.cell_sources and "allogeneic" in labels.origins


def test_isrctn_msc_named_only_in_the_hypothesis_is_not_an_msc_trial() -> None:
    crafted_isrctn_mention = _isrctn(
        "Gefapixant and breathing control in long COVID",
        "A single dose of oral gefapixant (45 mg) tablet", "Gefapixant",
        hypothesis="Unlike mesenchymal stem cell therapy, which has been proposed for lung "
                   "repair, gefapixant acts on P2X3 receptors")
    labels = classify_study(isrctn.parse_trial(crafted_isrctn_mention), rules())
    assert not labels.msc_relevant
    assert labels.role in ("mention", "none"), labels.reason


def test_euctr_product_names_say_what_is_given() -> None:
    crafted_euctr_msc = (EUCTR_ONE
                         .replace(b"Recombinant AAV-9 vector expressing the human progranulin "
                                  b"protein", b"Alofisel")
                         .replace(b"D.3.8 INN - Proposed INN: AVB-101",
                                  b"D.3.8 INN - Proposed INN: darvadstrocel"))
    assert crafted_euctr_msc != EUCTR_ONE
    records = euctr.parse_download(crafted_euctr_msc)
    assert records
    labels = classify_study(records[0], rules())
    assert labels.role == "therapy", labels.reason
    assert "product dictionary" in labels.reason
    assert "adipose" in labels.cell_sources and "allogeneic" in labels.origins


@pytest.mark.parametrize("name, source", [
    ("crafted_retrieve_2023-509876-14-00.json", "umbilical_cord"),
    ("crafted_retrieve_2024-512345-27-00.json", "adipose"),
])
def test_ctis_products_say_what_is_given(name: str, source: str) -> None:
    rec = ctis.parse_trial((FIXTURES / "ctis" / name).read_bytes())
    labels = classify_study(rec, rules())
    assert labels.role == "therapy", labels.reason
    assert labels.reason.endswith("in intervention") or "intervention" in labels.reason
    assert source in labels.cell_sources


def test_ctis_trial_without_cells_is_not_an_msc_trial() -> None:
    rec = ctis.parse_trial((FIXTURES / "ctis" / "crafted_retrieve_2025-520111-40-00.json")
                           .read_bytes())
    labels = classify_study(rec, rules())
    assert labels.role == "none" and not labels.msc_relevant
