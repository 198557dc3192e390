"""ISO 4217 currency codes and ISO 3166-1 alpha-2 country codes accepted on the hub's wire.

Both sets are kept in code, not fetched: the hub must validate without network access, and a code
changes rarely enough that a reviewed edit here is the right way to follow an ISO amendment.

Currencies are the alphabetic codes of ISO 4217 List One (maintained by SIX Financial
Information) that denote a tender currency, as of 2026. Deliberately left out:

- fund and index codes, which price nothing a customer pays in: BOV, CHE, CHW, CLF, COU, MXV,
  USN, UYI, UYW;
- supranational units, precious metals and the testing and "no currency" codes: XBA, XBB, XBC,
  XBD, XDR, XSU, XUA, XAG, XAU, XPD, XPT, XTS, XXX;
- withdrawn codes: ANG (replaced by XCG, the Caribbean guilder, in 2025), BGN (Bulgaria adopted
  the euro on 2026-01-01), CUC, HRK, SLL (replaced by SLE), ZWL (replaced by ZWG), VEF, MRO, STD.

Countries are the 249 officially assigned ISO 3166-1 alpha-2 codes. User-assigned codes such as
XK (used by some systems for Kosovo) are not officially assigned and are refused.
"""

from __future__ import annotations

_CURRENCY_TABLE = """
    AED AFN ALL AMD AOA ARS AUD AWG AZN
    BAM BBD BDT BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
    CAD CDF CHF CLP CNY COP CRC CUP CVE CZK
    DJF DKK DOP DZD
    EGP ERN ETB EUR
    FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD
    HKD HNL HTG HUF
    IDR ILS INR IQD IRR ISK
    JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT
    LAK LBP LKR LRD LSL LYD
    MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN
    NAD NGN NIO NOK NPR NZD
    OMR
    PAB PEN PGK PHP PKR PLN PYG
    QAR
    RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL
    THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD UYU UZS
    VED VES VND VUV
    WST
    XAF XCD XCG XOF XPF
    YER
    ZAR ZMW ZWG
"""

_COUNTRY_TABLE = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
    BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
    CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
    DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET
    FI FJ FK FM FO FR
    GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY
    HK HM HN HR HT HU
    ID IE IL IM IN IO IQ IR IS IT
    JE JM JO JP
    KE KG KH KI KM KN KP KR KW KY KZ
    LA LB LC LI LK LR LS LT LU LV LY
    MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
    NA NC NE NF NG NI NL NO NP NR NU NZ
    OM
    PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA
    RE RO RS RU RW
    SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
    TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ
    UA UG UM US UY UZ
    VA VC VE VG VI VN VU
    WF WS
    YE YT
    ZA ZM ZW
"""

CURRENCY_CODES: frozenset[str] = frozenset(_CURRENCY_TABLE.split())
COUNTRY_CODES: frozenset[str] = frozenset(_COUNTRY_TABLE.split())


def is_currency(code: str) -> bool:
    """True for an accepted ISO 4217 tender currency code (upper case, exactly as listed)."""
    return code in CURRENCY_CODES


def is_country(code: str) -> bool:
    """True for an officially assigned ISO 3166-1 alpha-2 code (upper case)."""
    return code in COUNTRY_CODES
