"""tracker.trial_ids: registry ids found in free text and in PubMed DataBankList entries."""

from __future__ import annotations

import pytest

from tracker.trial_ids import REGISTRIES, TrialId, extract_trial_ids, normalize_accession


def ids(text: str) -> list[tuple[str, str]]:
    return [(t.registry, t.registry_id) for t in extract_trial_ids(text)]


@pytest.mark.parametrize(
    ("text", "registry", "canonical"),
    [
        ("registered at ClinicalTrials.gov (NCT01234567).", "ctgov", "NCT01234567"),
        ("NCT 01234567", "ctgov", "NCT01234567"),
        ("nct-01234567", "ctgov", "NCT01234567"),
        ("https://clinicaltrials.gov/show/NCT04523987", "ctgov", "NCT04523987"),
        ("ISRCTN54285094", "isrctn", "ISRCTN54285094"),
        ("ISRCTN: 62918594", "isrctn", "ISRCTN62918594"),
        ("EudraCT 2015-000590-12", "euctr", "2015-000590-12"),
        ("EudraCT number: 2020-005891-36.", "euctr", "2020-005891-36"),
        ("EUCTR2021-000037-14-ES", "euctr", "2021-000037-14"),
        ("EU CT number 2023-507385-11-00", "ctis", "2023-507385-11-00"),
        ("CTIS2023-507385-11-00", "ctis", "2023-507385-11-00"),
        ("ChiCTR-TRC-12002345", "chictr", "ChiCTR-TRC-12002345"),
        ("chictr-ior-17013456", "chictr", "ChiCTR-IOR-17013456"),
        ("ChiCTR2000029400", "chictr", "ChiCTR2000029400"),
        ("ACTRN12610000123456", "anzctr", "ACTRN12610000123456"),
        ("jRCTs031180001", "jprn", "jRCTs031180001"),
        ("JPRN-jRCT2043200002", "jprn", "jRCT2043200002"),
        ("UMIN000012345", "jprn", "UMIN000012345"),
        ("JPRN-UMIN000012345", "jprn", "UMIN000012345"),
        ("JapicCTI-121234", "jprn", "JapicCTI-121234"),
        ("DRKS00012345", "drks", "DRKS00012345"),
        ("CTRI/2018/03/012345", "ctri", "CTRI/2018/03/012345"),
        ("CTRI / 2009 / 091 / 000025", "ctri", "CTRI/2009/091/000025"),
        ("IRCT20100101001234N1", "irct", "IRCT20100101001234N1"),
        ("IRCT2015110524890N1", "irct", "IRCT2015110524890N1"),
        ("KCT0001234", "cris", "KCT0001234"),
        ("NTR1234", "ntr", "NTR1234"),
        ("NL-OMON12345", "ntr", "NL-OMON12345"),
        ("PACTR201509001234567", "pactr", "PACTR201509001234567"),
        ("SLCTR/2019/012", "slctr", "SLCTR/2019/012"),
        ("TCTR20200404004", "tctr", "TCTR20200404004"),
        ("RPCEC00000312", "rpcec", "RPCEC00000312"),
        ("LBCTR2019050210", "lbctr", "LBCTR2019050210"),
        ("RBR-7vqd5k", "rebec", "RBR-7vqd5k"),
        ("RBR-10v2mhwm", "rebec", "RBR-10v2mhwm"),
        ("ITMCTR2024000123", "itmctr", "ITMCTR2024000123"),
        ("PER-012-19", "repec", "PER-012-19"),
    ],
)
def test_each_registry_format(text: str, registry: str, canonical: str) -> None:
    (found,) = extract_trial_ids(text)
    assert (found.registry, found.registry_id) == (registry, canonical)
    assert found.matched in text
    assert registry in REGISTRIES


@pytest.mark.parametrize(
    "text",
    [
        "NCT0123456 has seven digits",
        "NCT012345678 has nine digits",
        "XNCT01234567 is glued to a word",
        "ISRCTN1234567",
        "EudraCT 2003-000001-01 predates EudraCT",
        "EudraCT 2025-000001-01 postdates EudraCT",
        "phone 2015-000590-123",
        "a date range 2015-2016 and ISBN 978-3-16-148410-0",
        "NTR1 (neurotensin receptor 1) signalling",
        "KCT000123 is six digits",
        "the per-012-19 lower-case form is prose",
        "CTIS 2019-512345-11-00 predates CTIS",
        "DRKS0001234",
        "",
    ],
)
def test_false_positives_are_rejected(text: str) -> None:
    assert extract_trial_ids(text) == []


def test_order_of_first_appearance_and_dedup() -> None:
    text = ("Trial registration: ISRCTN12345678 (also NCT 01234567). The ISRCTN12345678 record "
            "and nct01234567 link to EudraCT 2016-001234-22; see NCT01234567.")
    found = extract_trial_ids(text)
    assert [(t.registry, t.registry_id) for t in found] == [
        ("isrctn", "ISRCTN12345678"),
        ("ctgov", "NCT01234567"),
        ("euctr", "2016-001234-22"),
    ]
    assert found[1].matched == "NCT 01234567"  # the first spelling seen is kept


def test_ctis_number_is_not_also_read_as_eudract() -> None:
    assert ids("2023-507385-11-00") == [("ctis", "2023-507385-11-00")]
    assert ids("EudraCT 2021-000037-14 / CTIS 2023-507385-11-00") == [
        ("euctr", "2021-000037-14"), ("ctis", "2023-507385-11-00")]


def test_ictrp_secondary_id_list() -> None:
    # a real ICTRP Secondary_ID cell (tests/fixtures is not shared, so quoted here)
    assert ids("NEOD001301;NCT04973137;146070;2021-000037-14-DK") == [
        ("ctgov", "NCT04973137"), ("euctr", "2021-000037-14")]
    assert ids("U1111-1296-5487;2022-003405-30;NCT05697861") == [
        ("euctr", "2022-003405-30"), ("ctgov", "NCT05697861")]


def test_none_and_blank_text() -> None:
    assert extract_trial_ids(None) == []  # type: ignore[arg-type]
    assert extract_trial_ids("   ") == []


@pytest.mark.parametrize(
    ("bank", "accession", "expected"),
    [
        ("ClinicalTrials.gov", "NCT00000001", TrialId("ctgov", "NCT00000001", "NCT00000001")),
        ("ClinicalTrials.gov", " NCT 04523987 ",
         TrialId("ctgov", "NCT04523987", "NCT 04523987")),
        ("ISRCTN", "ISRCTN 12345678", TrialId("isrctn", "ISRCTN12345678", "ISRCTN 12345678")),
        ("EudraCT", "2015-000590-12", TrialId("euctr", "2015-000590-12", "2015-000590-12")),
        ("EudraCT", "2023-507385-11-00", TrialId("ctis", "2023-507385-11-00",
                                                 "2023-507385-11-00")),
        ("ChiCTR", "ChiCTR2000029400", TrialId("chictr", "ChiCTR2000029400",
                                               "ChiCTR2000029400")),
        ("ANZCTR", "ACTRN12610000123456", TrialId("anzctr", "ACTRN12610000123456",
                                                  "ACTRN12610000123456")),
        ("CTRI", "CTRI/2018/03/012345", TrialId("ctri", "CTRI/2018/03/012345",
                                                "CTRI/2018/03/012345")),
        ("DRKS", "DRKS00012345", TrialId("drks", "DRKS00012345", "DRKS00012345")),
        ("JPRN", "jRCTs031180001", TrialId("jprn", "jRCTs031180001", "jRCTs031180001")),
        ("UMIN-CTR", "UMIN000012345", TrialId("jprn", "UMIN000012345", "UMIN000012345")),
        ("NTR", "NL1234", TrialId("ntr", "NL1234", "NL1234")),
        ("NTR", "NTR12", TrialId("ntr", "NTR12", "NTR12")),
        ("ReBec", "RBR-7vqd5k", TrialId("rebec", "RBR-7vqd5k", "RBR-7vqd5k")),
        ("GENBANK", "AB000001", None),
        ("GEO", "GSE12345", None),
        ("PDB", "1ABC", None),
        ("Dryad", "10.5061/dryad.abc", None),
        ("ClinicalTrials.gov", "", None),
        ("EudraCT", "not-a-number", None),
    ],
)
def test_normalize_accession(bank: str, accession: str, expected: TrialId | None) -> None:
    assert normalize_accession(bank, accession) == expected
