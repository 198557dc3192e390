"""Master data: territories with goals, HVAC products and prices, plants, sales reps, accounts.

Everything here is small (at most a few hundred territories and products) and built eagerly,
except accounts and contacts, which grow with the scale and are generated per chunk.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from sandbox.datagen._core import CHUNK, chunk_bounds, rng_for

CENT = Decimal("0.01")

# --- geography ----------------------------------------------------------------------------------
# (name, states, UTC offset used for Quoting Tool timestamps, ZIP first digits)
REGION_POOL: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("Northeast", ("NY", "PA", "MA", "NJ", "CT"), "-05:00", "01"),
    ("Southeast", ("GA", "FL", "NC", "SC", "TN"), "-05:00", "23"),
    ("Midwest", ("IL", "OH", "MI", "MN", "WI"), "-06:00", "456"),
    ("South Central", ("TX", "OK", "LA", "AR"), "-06:00", "7"),
    ("Mountain", ("CO", "AZ", "UT", "NM"), "-07:00", "8"),
    ("Pacific", ("CA", "WA", "OR", "NV"), "-08:00", "9"),
)
_COUNTY_NAMES = (
    "Adams", "Allen", "Benton", "Boone", "Brown", "Carroll", "Cedar", "Clark", "Clay", "Clinton",
    "Crawford", "Dallas", "Douglas", "Fayette", "Franklin", "Fulton", "Grant", "Greene",
    "Hamilton", "Hancock", "Harrison", "Henry", "Howard", "Jackson", "Jasper", "Jefferson",
    "Johnson", "Knox", "Lake", "Lawrence", "Lee", "Lincoln", "Logan", "Madison", "Marion",
    "Marshall", "Monroe", "Montgomery", "Morgan", "Perry", "Pike", "Polk", "Putnam", "Randolph",
    "Scott", "Shelby", "Union", "Warren", "Washington", "Wayne",
)  # fmt: skip
_CITY_STEMS = (
    "Ash", "Bay", "Bell", "Brook", "Cedar", "Clear", "Crest", "Deer", "Elm", "Fair", "Glen",
    "Green", "Hazel", "High", "Lake", "Maple", "Mill", "Oak", "Pine", "Red", "River", "Rock",
    "Silver", "Spring", "Stone", "Sun", "West", "Willow", "Wood", "North",
)  # fmt: skip
_CITY_ENDS = (
    "ville", "ton", "field", "port", "wood", "dale", " Falls", " Heights", "burg", " Springs",
    "view", "ford",
)  # fmt: skip
_STREETS = (
    "Main", "Oak", "Industrial", "Commerce", "Market", "Park", "Lakeview", "Ridge", "Mill",
    "Station", "Harbor", "Airport", "Center", "Enterprise", "Factory",
)  # fmt: skip
_STREET_KINDS = ("St", "Ave", "Blvd", "Rd", "Dr", "Pkwy", "Way")


@dataclass(frozen=True)
class City:
    """A City/ZIP territory (level 3) and its ZIP codes."""

    code: str
    name: str
    county: County
    zips: tuple[str, ...]


@dataclass(frozen=True)
class County:
    """A county territory (level 2)."""

    code: str
    name: str
    state: str
    region: Region


@dataclass(frozen=True)
class Region:
    """A region territory (level 1)."""

    code: str
    name: str
    utc_offset: str


@dataclass(frozen=True)
class Goal:
    """A monthly revenue goal of one territory."""

    territory_code: str
    level: int
    month: str  # YYYY-MM
    start: dt.date
    end: dt.date
    target: Decimal


@dataclass(frozen=True)
class Geography:
    """The territory hierarchy Region > County > City/ZIP."""

    regions: tuple[Region, ...]
    counties: tuple[County, ...]
    cities: tuple[City, ...]

    def zip_to_city(self) -> dict[str, City]:
        """ZIP code to its City/ZIP territory."""
        return {z: c for c in self.cities for z in c.zips}


def build_geography(seed: int) -> Geography:
    """4-6 regions, 3-5 counties each, 2-5 cities per county with 1-3 ZIP codes each."""
    rng = rng_for(seed, "geography")
    pool = sorted(rng.sample(range(len(REGION_POOL)), rng.randint(4, 6)))
    county_names = rng.sample(_COUNTY_NAMES, len(_COUNTY_NAMES))
    city_names = rng.sample(
        [stem + end for stem in _CITY_STEMS for end in _CITY_ENDS], len(_CITY_STEMS) * 12
    )
    used_zips: set[str] = set()
    regions: list[Region] = []
    counties: list[County] = []
    cities: list[City] = []
    for r_no, pool_index in enumerate(pool, start=1):
        name, states, offset, zip_digits = REGION_POOL[pool_index]
        region = Region(f"R{r_no:02d}", name, offset)
        regions.append(region)
        for c_no in range(1, rng.randint(3, 5) + 1):
            county = County(
                f"{region.code}-C{c_no:02d}",
                f"{county_names.pop()} County",
                rng.choice(states),
                region,
            )
            counties.append(county)
            for t_no in range(1, rng.randint(2, 5) + 1):
                zips: list[str] = []
                wanted = rng.randint(1, 3)
                while len(zips) < wanted:
                    candidate = f"{rng.choice(zip_digits)}{rng.randrange(10000):04d}"
                    if candidate not in used_zips:
                        used_zips.add(candidate)
                        zips.append(candidate)
                cities.append(
                    City(f"{county.code}-T{t_no:02d}", city_names.pop(), county, tuple(zips))
                )
    return Geography(tuple(regions), tuple(counties), tuple(cities))


def build_goals(seed: int, geography: Geography, year: int, scale: int) -> list[Goal]:
    """Monthly goals for every territory of ``year``; a county's goal is the sum of its cities',
    a region's the sum of its counties', so the hierarchy adds up."""
    rng = rng_for(seed, "goals")
    # Roughly the revenue the legacy book implies per city and month, so goals look plausible.
    base = max(10_000, scale * 120 // max(1, len(geography.cities)))
    goals: list[Goal] = []
    by_county: dict[tuple[str, int], Decimal] = {}
    by_region: dict[tuple[str, int], Decimal] = {}
    months = [
        (m, dt.date(year, m, 1), dt.date(year, m, calendar.monthrange(year, m)[1]))
        for m in range(1, 13)
    ]
    for city in geography.cities:
        for m, start, end in months:
            target = Decimal(round(base * rng.uniform(0.6, 1.4), -2)).quantize(CENT)
            goals.append(Goal(city.code, 3, f"{year}-{m:02d}", start, end, target))
            key = (city.county.code, m)
            by_county[key] = by_county.get(key, Decimal(0)) + target
    for county in geography.counties:
        for m, start, end in months:
            target = by_county.get((county.code, m), Decimal(0)).quantize(CENT)
            goals.append(Goal(county.code, 2, f"{year}-{m:02d}", start, end, target))
            key = (county.region.code, m)
            by_region[key] = by_region.get(key, Decimal(0)) + target
    for region in geography.regions:
        for m, start, end in months:
            target = by_region.get((region.code, m), Decimal(0)).quantize(CENT)
            goals.append(Goal(region.code, 1, f"{year}-{m:02d}", start, end, target))
    return goals


def street_address(rng_value: float, number: int) -> str:
    """A plausible street line from a uniform draw and a house number."""
    street = _STREETS[int(rng_value * len(_STREETS))]
    kind = _STREET_KINDS[number % len(_STREET_KINDS)]
    return f"{number} {street} {kind}"


# --- products -----------------------------------------------------------------------------------
FAMILIES = {"RTU": "RTU", "CHL": "Chiller", "AHU": "AHU"}
_SIZES = {
    "RTU": (3, 4, 5, 6, 7, 8, 10, 12, 15, 17, 20, 25, 30, 40, 50),  # tons
    "CHL": (20, 30, 40, 60, 80, 100, 125, 150, 200, 250, 300, 400, 500),  # tons
    "AHU": (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60),  # thousand CFM
}
_VARIANTS = {
    "RTU": {"GE": "gas/electric", "EE": "electric/electric", "HP": "heat pump",
            "VS": "variable speed", "DF": "dual fuel", "HE": "high efficiency"},
    "CHL": {"AC": "air-cooled", "WC": "water-cooled", "MB": "magnetic bearing",
            "SC": "scroll", "HR": "heat recovery", "LT": "low temperature"},
    "AHU": {"IN": "indoor", "OD": "outdoor", "CU": "custom", "DO": "dedicated outdoor air",
            "HY": "hygienic", "RT": "rooftop"},
}  # fmt: skip
_VOLTAGES = {"2": "208-230V/3Ph/60Hz", "4": "460V/3Ph/60Hz", "5": "575V/3Ph/60Hz"}
_FAMILY_NAMES = {"RTU": "Rooftop Unit", "CHL": "Chiller", "AHU": "Air Handler"}
_OPTIONS = {
    "RTU": ("economizer", "hail guards", "smoke detector", "low ambient kit", "BACnet card",
            "hot gas reheat", "powered exhaust", "roof curb"),
    "CHL": ("VFD", "BACnet card", "low sound package", "heat recovery", "glycol kit",
            "isolation valves", "flow switch"),
    "AHU": ("UV lights", "MERV 14 filters", "energy recovery wheel", "humidifier",
            "VFD", "BACnet card", "hot water coil"),
}  # fmt: skip
REFRIGERANTS = ("R-454B", "R-32", "R-410A", "R-513A", "R-1234ze")
_FAMILY_SHARE = (("RTU", 0.45), ("CHL", 0.25), ("AHU", 0.30))
CAD_RATE = Decimal("1.37")


@dataclass(frozen=True)
class Product:
    """One HVAC product (SKU) with its SAP-mastered list prices."""

    sku: str
    family: str  # RTU | CHL | AHU
    name: str
    size: int
    variant: str
    voltage: str
    tonnage: int  # cooling capacity in tons (AHU: coil capacity at 400 CFM/ton)
    price_usd: Decimal
    price_cad: Decimal
    options: tuple[str, ...]

    def price(self, currency: str) -> Decimal:
        """List price in USD or CAD."""
        return self.price_cad if currency == "CAD" else self.price_usd


def product_count(scale: int) -> int:
    """30 products at 100 legacy orders growing to 300 at a million (log scale)."""
    if scale <= 100:
        return 30
    return min(300, round(30 + 270 * math.log10(scale / 100) / 4))


def build_products(seed: int, count: int) -> list[Product]:
    """``count`` distinct SKUs across the three families, sorted by SKU."""
    rng = rng_for(seed, "products")
    products: list[Product] = []
    remaining = count
    for position, (family, share) in enumerate(_FAMILY_SHARE):
        n = remaining if position == len(_FAMILY_SHARE) - 1 else round(count * share)
        remaining -= n
        combos = [
            (size, variant, volt)
            for size in _SIZES[family]
            for variant in _VARIANTS[family]
            for volt in _VOLTAGES
            # Large chillers are not built for 208-230 V service.
            if not (family == "CHL" and size >= 100 and volt == "2")
        ]
        for size, variant, volt in sorted(rng.sample(combos, n)):
            tonnage = size if family != "AHU" else max(1, round(size * 1000 / 400))
            if family == "RTU":
                usd = 2500 + size * rng.uniform(1300, 1700)
            elif family == "CHL":
                usd = 15000 + size * rng.uniform(800, 1100)
            else:
                usd = 4000 + size * rng.uniform(2400, 3200)
            # List prices end in .00 mostly, sometimes .50 or .95, as price books do.
            cents = rng.choice((0, 0, 0, 50, 95))
            price_usd = Decimal(int(usd)) + Decimal(cents) / 100
            price_cad = (price_usd * CAD_RATE).quantize(CENT)
            name = (
                f"{_FAMILY_NAMES[family]} {size}{'k CFM' if family == 'AHU' else ' ton'} "
                f"{_VARIANTS[family][variant]}, {_VOLTAGES[volt].split('/')[0]}"
            )
            products.append(
                Product(
                    sku=f"{family}-{size:03d}-{variant}{volt}",
                    family=family,
                    name=name,
                    size=size,
                    variant=variant,
                    voltage=_VOLTAGES[volt],
                    tonnage=tonnage,
                    price_usd=price_usd,
                    price_cad=price_cad,
                    options=_OPTIONS[family],
                )
            )
    products.sort(key=lambda p: p.sku)
    return products


def plant_codes(seed: int) -> tuple[str, ...]:
    """3-5 shipping plants, ``P100`` upwards (the same codes in the mainframe and SAP)."""
    n = rng_for(seed, "plants").randint(3, 5)
    return tuple(f"P{100 * (i + 1)}" for i in range(n))


# --- people ---------------------------------------------------------------------------------------
FIRST_NAMES = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Carlos", "Karen", "Daniel", "Lisa", "Matthew", "Nancy", "Anthony", "Sandra", "Mark",
    "Ashley", "Priya", "Wei", "Fatima", "Diego", "Aisha", "Kenji", "Olga", "Mateo",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Nguyen", "Hill", "Flores", "Green", "Patel", "Kowalski", "O'Brien", "Novak",
)  # fmt: skip


@dataclass(frozen=True)
class Rep:
    """A Contoso sales rep: mainframe user id (at most 8 characters) and e-mail."""

    user_id: str
    email: str
    first: str
    last: str


def build_reps(seed: int, accounts: int) -> list[Rep]:
    """8-60 reps with unique user ids such as ``JSMITH``."""
    rng = rng_for(seed, "reps")
    n = min(60, max(8, accounts // 40))
    reps: list[Rep] = []
    seen: set[str] = set()
    while len(reps) < n:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        stem = (first[0] + "".join(ch for ch in last if ch.isalpha())).upper()[:7]
        user_id, suffix = stem, 1
        while user_id in seen:
            suffix += 1
            user_id = f"{stem[: 8 - len(str(suffix))]}{suffix}"
        seen.add(user_id)
        reps.append(Rep(user_id, f"{user_id.lower()}@contoso.com", first, last))
    return reps


# --- accounts -------------------------------------------------------------------------------------
_NAME_STEMS = (
    "Acme", "Summit", "Blue Ridge", "Keystone", "Pioneer", "Lakeside", "Metro", "Granite",
    "Riverside", "Evergreen", "Northstar", "Liberty", "Heritage", "Cascade", "Frontier",
    "Harbor", "Sterling", "Prairie", "Atlas", "Beacon", "Cornerstone", "Falcon", "Horizon",
    "Ironwood", "Juniper", "Landmark", "Meridian", "Oakmont", "Paragon", "Redwood", "Sequoia",
    "Tristate", "Valley", "Westfield", "Apex", "Bayview", "Capital", "Delta", "Eagle", "Fulton",
)  # fmt: skip
_NAME_KINDS = (
    "Mechanical", "Facilities", "Property Management", "Medical Center", "School District",
    "Data Centers", "Hospitality", "Logistics", "Manufacturing", "Realty", "Builders",
    "Air Systems", "Energy Services", "Contractors", "Health System", "University",
)  # fmt: skip
_NAME_SUFFIXES = ("Inc", "LLC", "Corp", "Co", "Group", "Partners", "")
_ABBREVIATIONS = {
    "Mechanical": "Mech",
    "Facilities": "Fac",
    "Property Management": "Prop Mgmt",
    "Medical Center": "Med Ctr",
    "School District": "Sch Dist",
    "Manufacturing": "Mfg",
    "Contractors": "Contr",
    "University": "Univ",
}


@dataclass(frozen=True)
class Account:
    """A customer account; ``number`` is shared by SAP, Dataverse and the mainframe."""

    index: int
    number: str
    name: str
    city: City
    zip: str
    street: str
    status: str  # A active, I inactive, H credit hold (mainframe codes)
    last_update: dt.datetime
    contacts: tuple[Contact, ...]


@dataclass(frozen=True)
class Contact:
    """A person at a customer account."""

    number: str
    first: str
    last: str
    email: str


def account_number(index: int) -> str:
    """``C0000001`` for index 0: 8 characters, within SAP's 10-character customer number."""
    return f"C{index + 1:07d}"


def missing_account_number(index: int) -> str:
    """An account number that no generated account has (``C9`` prefix)."""
    return f"C9{index % 1_000_000:06d}"


def duplicate_account_number(index: int) -> str:
    """A second customer number for the account with this index (``C8`` prefix): what a
    duplicate looks like in a system that keeps its customer numbers unique (SAP)."""
    return f"C8{index % 1_000_000:06d}"


def duplicate_name(name: str, index: int) -> str:
    """The same customer keyed in again by someone else: abbreviated, re-suffixed or cased."""
    variant = index % 3
    if variant == 0:
        for long, short in _ABBREVIATIONS.items():
            if long in name:
                return name.replace(long, short)
        return f"{name} (dup)"
    if variant == 1:
        base = name.rsplit(" ", 1)[0] if name.endswith(_NAME_SUFFIXES[:-1]) else name
        return f"{base} Incorporated"
    return name.upper() + " - DO NOT USE"


class Accounts:
    """Accounts generated per chunk; a chunk is the same whenever it is regenerated."""

    def __init__(self, seed: int, count: int, geography: Geography, as_of: dt.datetime) -> None:
        self.seed = seed
        self.count = count
        self._cities = geography.cities
        self._as_of = as_of
        self.chunk = lru_cache(maxsize=8)(self._chunk)

    def _chunk(self, chunk: int) -> tuple[Account, ...]:
        rng = rng_for(self.seed, "accounts", chunk)
        out: list[Account] = []
        for i in chunk_bounds(chunk, self.count):
            kind = rng.choice(_NAME_KINDS)
            suffix = rng.choice(_NAME_SUFFIXES)
            name = f"{rng.choice(_NAME_STEMS)} {kind}" + (f" {suffix}" if suffix else "")
            city = self._cities[rng.randrange(len(self._cities))]
            roll = rng.random()
            status = "A" if roll < 0.88 else ("I" if roll < 0.95 else "H")
            seconds = rng.randrange(730 * 86400)
            contacts = []
            for k in range(rng.choice((1, 1, 2, 2, 3))):
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                domain = "".join(
                    ch for ch in name.split(" ", maxsplit=1)[0].lower() if ch.isalnum()
                )
                local = f"{first}.{last}".lower().replace("'", "")
                contacts.append(
                    Contact(f"CT{i + 1:07d}{k + 1}", first, last, f"{local}@{domain}.example")
                )
            out.append(
                Account(
                    index=i,
                    number=account_number(i),
                    name=name,
                    city=city,
                    zip=rng.choice(city.zips),
                    street=street_address(rng.random(), rng.randint(10, 9999)),
                    status=status,
                    last_update=self._as_of - dt.timedelta(seconds=seconds),
                    contacts=tuple(contacts),
                )
            )
        return tuple(out)

    def get(self, index: int) -> Account:
        """One account by index (regenerates and caches its chunk)."""
        return self.chunk(index // CHUNK)[index % CHUNK]

    def __iter__(self) -> Iterator[Account]:
        for chunk in range((self.count + CHUNK - 1) // CHUNK):
            yield from self.chunk(chunk)
