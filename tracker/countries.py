"""Country names: one spelling per country, as ClinicalTrials.gov writes them in locations.

``normalize_country`` gives a stored location country its canonical name (the registry's own
spelling, with older or other spellings folded in: "Czech Republic" -> "Czechia", "Türkiye" ->
"Turkey"); a name no table here knows is kept as given (stripped), so a later registry's
countries are stored all the same. ``resolve_country`` reads what a user types for
``--country`` ("usa", "south korea", "reunion"), or says which names come close.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable

COUNTRIES = (
    "Afghanistan", "Albania", "Algeria", "American Samoa", "Andorra", "Angola", "Anguilla",
    "Antigua and Barbuda", "Argentina", "Armenia", "Aruba", "Australia", "Austria",
    "Azerbaijan", "Bahamas", "Bahrain", "Bangladesh", "Barbados", "Belarus", "Belgium",
    "Belize", "Benin", "Bermuda", "Bhutan", "Bolivia", "Bosnia and Herzegovina", "Botswana",
    "Brazil", "Brunei Darussalam", "Bulgaria", "Burkina Faso", "Burundi", "Cambodia",
    "Cameroon", "Canada", "Cape Verde", "Cayman Islands", "Central African Republic", "Chad",
    "Chile", "China", "Colombia", "Comoros", "Congo", "Congo, The Democratic Republic of the",
    "Cook Islands", "Costa Rica", "Côte D'Ivoire", "Croatia", "Cuba", "Curaçao", "Cyprus",
    "Czechia", "Denmark", "Djibouti", "Dominica", "Dominican Republic", "Ecuador", "Egypt",
    "El Salvador", "Equatorial Guinea", "Eritrea", "Estonia", "Eswatini", "Ethiopia",
    "Faroe Islands", "Fiji", "Finland", "France", "French Guiana", "French Polynesia", "Gabon",
    "Gambia", "Georgia", "Germany", "Ghana", "Gibraltar", "Greece", "Greenland", "Grenada",
    "Guadeloupe", "Guam", "Guatemala", "Guernsey", "Guinea", "Guinea-Bissau", "Guyana",
    "Haiti", "Holy See (Vatican City State)", "Honduras", "Hong Kong", "Hungary", "Iceland",
    "India", "Indonesia", "Iran, Islamic Republic of", "Iraq", "Ireland", "Isle of Man",
    "Israel", "Italy", "Jamaica", "Japan", "Jersey", "Jordan", "Kazakhstan", "Kenya",
    "Kiribati", "Korea, Democratic People's Republic of", "Korea, Republic of", "Kosovo",
    "Kuwait", "Kyrgyzstan", "Lao People's Democratic Republic", "Latvia", "Lebanon", "Lesotho",
    "Liberia", "Libya", "Liechtenstein", "Lithuania", "Luxembourg", "Macao", "Madagascar",
    "Malawi", "Malaysia", "Maldives", "Mali", "Malta", "Marshall Islands", "Martinique",
    "Mauritania", "Mauritius", "Mayotte", "Mexico", "Micronesia, Federated States of",
    "Moldova, Republic of", "Monaco", "Mongolia", "Montenegro", "Montserrat", "Morocco",
    "Mozambique", "Myanmar", "Namibia", "Nauru", "Nepal", "Netherlands", "New Caledonia",
    "New Zealand", "Nicaragua", "Niger", "Nigeria", "North Macedonia",
    "Northern Mariana Islands", "Norway", "Oman", "Pakistan", "Palau",
    "Palestinian Territory, occupied", "Panama", "Papua New Guinea", "Paraguay", "Peru",
    "Philippines", "Poland", "Portugal", "Puerto Rico", "Qatar", "Réunion", "Romania",
    "Russian Federation", "Rwanda", "Saint Kitts and Nevis", "Saint Lucia",
    "Saint Vincent and the Grenadines", "Samoa", "San Marino", "Sao Tome and Principe",
    "Saudi Arabia", "Senegal", "Serbia", "Seychelles", "Sierra Leone", "Singapore", "Slovakia",
    "Slovenia", "Solomon Islands", "Somalia", "South Africa", "South Sudan", "Spain",
    "Sri Lanka", "Sudan", "Suriname", "Sweden", "Switzerland", "Syrian Arab Republic", "Taiwan",
    "Tajikistan", "Tanzania", "Thailand", "Timor-Leste", "Togo", "Tonga",
    "Trinidad and Tobago", "Tunisia", "Turkey", "Turkmenistan", "Uganda", "Ukraine",
    "United Arab Emirates", "United Kingdom", "United States", "Uruguay", "Uzbekistan",
    "Vanuatu", "Venezuela", "Vietnam", "Virgin Islands (U.S.)", "Yemen", "Zambia", "Zimbabwe",
)

ALIASES = {
    "USA": "United States", "US": "United States", "U.S.": "United States",
    "U.S.A.": "United States", "United States of America": "United States",
    "America": "United States", "UK": "United Kingdom", "U.K.": "United Kingdom",
    "Great Britain": "United Kingdom", "Britain": "United Kingdom",
    "England": "United Kingdom", "Scotland": "United Kingdom", "Wales": "United Kingdom",
    "Northern Ireland": "United Kingdom", "South Korea": "Korea, Republic of",
    "Korea": "Korea, Republic of", "Republic of Korea": "Korea, Republic of",
    "North Korea": "Korea, Democratic People's Republic of", "Iran": "Iran, Islamic Republic of",
    "Russia": "Russian Federation", "Czech Republic": "Czechia", "Türkiye": "Turkey",
    "Viet Nam": "Vietnam", "Holland": "Netherlands", "The Netherlands": "Netherlands",
    "Syria": "Syrian Arab Republic", "Laos": "Lao People's Democratic Republic",
    "Moldova": "Moldova, Republic of", "Macedonia": "North Macedonia",
    "Macedonia, The Former Yugoslav Republic of": "North Macedonia",
    "Ivory Coast": "Côte D'Ivoire", "Democratic Republic of the Congo":
    "Congo, The Democratic Republic of the", "DR Congo": "Congo, The Democratic Republic of the",
    "Swaziland": "Eswatini", "Burma": "Myanmar", "Palestine": "Palestinian Territory, occupied",
    "Vatican": "Holy See (Vatican City State)", "Tanzania, United Republic of": "Tanzania",
    "Bolivia, Plurinational State of": "Bolivia", "Venezuela, Bolivarian Republic of":
    "Venezuela", "Macau": "Macao", "Cabo Verde": "Cape Verde", "Brunei": "Brunei Darussalam",
    "Taiwan, Province of China": "Taiwan", "Hong Kong SAR": "Hong Kong",
    "UAE": "United Arab Emirates", "East Timor": "Timor-Leste",
    "Micronesia": "Micronesia, Federated States of", "Former Serbia and Montenegro": "Serbia",
    "Libyan Arab Jamahiriya": "Libya", "Reunion": "Réunion",
}

_NON_ALNUM = re.compile(r"[\W_]+")
_MARKS = re.compile("[\u0300-\u036f]")


def _key(name: str) -> str:
    """A name as compared: accents, case, spaces and punctuation dropped ("coted ivoire")."""
    text = _MARKS.sub("", unicodedata.normalize("NFKD", name))
    return _NON_ALNUM.sub("", text.casefold())


_CANONICAL = {_key(c): c for c in COUNTRIES}
_CANONICAL.update({_key(alias): target for alias, target in ALIASES.items()})


def normalize_country(name: str) -> str | None:
    """The canonical name of a stored location's country; an unknown name as given, stripped
    of surrounding and repeated space; None for an empty one."""
    text = " ".join(name.split())
    if not text:
        return None
    return _CANONICAL.get(_key(text), text)


def resolve_country(value: str, stored: Iterable[str] = ()) -> str | None:
    """The canonical country a user means by ``value`` (any listed spelling, alias, or a name
    stored in the database), or None; ``close_matches`` says what comes close."""
    key = _key(value)
    if not key:
        return None
    if key in _CANONICAL:
        return _CANONICAL[key]
    for name in stored:
        if _key(name) == key:
            return name
    return None


def close_matches(value: str, stored: Iterable[str] = (), n: int = 3) -> list[str]:
    """Up to ``n`` country names close to ``value`` (by spelling), canonical names first."""
    names = {**{_key(c): c for c in stored}, **{k: v for k, v in _CANONICAL.items()}}
    keys = difflib.get_close_matches(_key(value), list(names), n=n * 3, cutoff=0.6)
    out: list[str] = []
    for k in keys:
        if names[k] not in out:
            out.append(names[k])
    if not out:  # a prefix ("united") matches nothing closely, but says what is meant
        start = _key(value)[:4]
        out = sorted({v for k, v in names.items() if start and k.startswith(start)})
    return out[:n]
