"""Countries of the demo world: streets, cities, postcode and phone formats, locale data.

Pattern placeholders (see ``vec.fill_patterns``): ``#`` a digit, ``@`` an upper-case
letter. Phone patterns use fictional ranges where a country has them (555-01xx in North
America, 07700 900xxx in the UK).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Country:
    code: str
    weight: float
    streets: tuple[str, ...]
    cities: tuple[str, ...]
    postcodes: tuple[str, ...]
    phones: tuple[str, ...]
    number_first: bool
    currency: str
    language: str
    timezone: str
    ip_first_octets: tuple[int, ...]


def _t(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split("|") if s.strip())


COUNTRIES: tuple[Country, ...] = (
    Country(
        "DE",
        0.19,
        _t(
            "Königstraße|Hauptstraße|Lindenallee|Friedrichstraße|Am Ölberg|"
            "Schloßgasse|Bahnhofstraße|Müllerweg|Straße des 17. Juni|Gänsemarkt"
        ),
        _t("Berlin|München|Köln|Düsseldorf|Hamburg|Leipzig|Würzburg|Lübeck"),
        ("#####",),
        ("+49 30 #######", "030 ########", "+49 (0)151 ########", "0171/#######", "+49-89-#######"),
        False,
        "eur",
        "de-DE",
        "Europe/Berlin",
        (31, 46, 77, 84, 91),
    ),
    Country(
        "GB",
        0.12,
        _t(
            "High Street|Station Road|Church Lane|Victoria Road|Mill Lane|"
            "Kingsway|Queen's Walk|St John's Close"
        ),
        _t("London|Manchester|Bristol|Leeds|Edinburgh|Cardiff|York|Belfast"),
        ("@# #@@", "@@# #@@", "@@#@ #@@"),
        ("+44 7700 900###", "07700 900###", "+44 (0)20 7946 0###", "020 7946 0###"),
        True,
        "gbp",
        "en-GB",
        "Europe/London",
        (2, 51, 81, 86, 109),
    ),
    Country(
        "FR",
        0.10,
        _t(
            "Rue de l'Église|Avenue des Champs-Élysées|Boulevard Saint-Michel|"
            "Rue du Faubourg Saint-Honoré|Place de la République|Rue Lafayette"
        ),
        _t("Paris|Lyon|Marseille|Toulouse|Nice|Nantes|Besançon|Orléans"),
        ("#####",),
        ("+33 1 ## ## ## ##", "06 ## ## ## ##", "+33 (0)6########", "01.##.##.##.##"),
        True,
        "eur",
        "fr-FR",
        "Europe/Paris",
        (37, 78, 82, 90, 92),
    ),
    Country(
        "US",
        0.12,
        _t(
            "Main Street|Oak Avenue|Maple Drive|Sunset Boulevard|Elm Street|"
            "Park Place|Lakeview Terrace|Washington Ave"
        ),
        _t("Springfield|Portland|Austin|Denver|Boston|Seattle|San José|Albuquerque"),
        ("#####", "#####-####"),
        ("+1 (###) 555-01##", "(###) 555-01##", "###.555.01##", "+1-###-555-01##"),
        True,
        "usd",
        "en-US",
        "America/Chicago",
        (23, 24, 50, 66, 73, 98),
    ),
    Country(
        "SE",
        0.06,
        _t("Drottninggatan|Storgatan|Kungsgatan|Östra Hamngatan|Sveavägen|Götgatan|Åsögatan"),
        _t("Stockholm|Göteborg|Malmö|Uppsala|Västerås|Örebro|Linköping"),
        ("### ##",),
        ("+46 8 ### ### ##", "070-### ## ##", "+46 (0)70 ### ## ##"),
        False,
        "sek",
        "sv-SE",
        "Europe/Stockholm",
        (78, 83, 85, 94),
    ),
    Country(
        "NL",
        0.06,
        _t("Keizersgracht|Prinsengracht|Dorpsstraat|Kerkstraat|Molenweg|Stationsplein|Oudegracht"),
        _t("Amsterdam|Rotterdam|Utrecht|Den Haag|Eindhoven|Groningen|'s-Hertogenbosch"),
        ("#### @@",),
        ("+31 20 ### ####", "06-########", "+31 (0)6 ## ## ## ##"),
        False,
        "eur",
        "nl-NL",
        "Europe/Amsterdam",
        (77, 80, 145, 213),
    ),
    Country(
        "ES",
        0.07,
        _t(
            "Calle de Alcalá|Gran Vía|Calle Mayor|Paseo de la Castellana|"
            "Avinguda Diagonal|Calle de Núñez de Balboa|Rúa do Franco"
        ),
        _t("Madrid|Barcelona|Valencia|Sevilla|Málaga|A Coruña|Logroño|Cádiz"),
        ("#####",),
        ("+34 91 ### ## ##", "6## ### ###", "+34 6########"),
        False,
        "eur",
        "es-ES",
        "Europe/Madrid",
        (79, 88, 95, 212),
    ),
    Country(
        "IT",
        0.05,
        _t(
            "Via Roma|Via Garibaldi|Corso Vittorio Emanuele II|Via dei Mille|"
            "Piazza Navona|Via Sant'Agostino"
        ),
        _t("Roma|Milano|Napoli|Torino|Firenze|Bologna|Forlì|Cantù"),
        ("#####",),
        ("+39 06 ########", "+39 3## ### ####", "02 ########"),
        False,
        "eur",
        "it-IT",
        "Europe/Rome",
        (79, 87, 93, 151),
    ),
    Country(
        "PL",
        0.05,
        _t(
            "ulica Marszałkowska|ulica Piotrkowska|aleja Jerozolimskie|"
            "ulica Długa|ulica Świętojańska|ulica Żeromskiego"
        ),
        _t("Warszawa|Kraków|Łódź|Wrocław|Gdańsk|Poznań|Bielsko-Biała"),
        ("##-###",),
        ("+48 22 ### ## ##", "+48 5## ### ###", "(22) ###-##-##"),
        False,
        "pln",
        "pl-PL",
        "Europe/Warsaw",
        (31, 83, 89, 178),
    ),
    Country(
        "IE",
        0.04,
        _t("O'Connell Street|Grafton Street|Main Street|Sráid na Siopaí|Harbour Road|Shop Street"),
        _t("Dublin|Cork|Galway|Limerick|Dún Laoghaire|Kilkenny"),
        ("@## @#@#", "@##"),
        ("+353 1 ### ####", "087 ### ####", "+353 (0)87 #######"),
        True,
        "eur",
        "en-IE",
        "Europe/Dublin",
        (37, 86, 89, 109),
    ),
    Country(
        "VN",
        0.06,
        _t(
            "Đường Lê Lợi|Đường Nguyễn Huệ|Phố Hàng Bạc|Đường Trần Hưng Đạo|"
            "Phố Huế|Đường Hai Bà Trưng"
        ),
        _t("Hà Nội|Thành phố Hồ Chí Minh|Đà Nẵng|Hải Phòng|Huế|Cần Thơ"),
        ("######",),
        ("+84 28 #### ####", "09## ### ###", "+84 9# ### ## ##"),
        True,
        "usd",
        "vi-VN",
        "Asia/Ho_Chi_Minh",
        (14, 27, 113, 171),
    ),
    Country(
        "CA",
        0.03,
        _t(
            "Rue Sainte-Catherine|Yonge Street|Robson Street|Rue Saint-Denis|"
            "Bay Street|Jasper Avenue"
        ),
        _t("Toronto|Montréal|Vancouver|Québec|Calgary|Ottawa"),
        ("@#@ #@#",),
        ("+1 (###) 555-01##", "###-555-01##"),
        True,
        "cad",
        "fr-CA",
        "America/Toronto",
        (24, 64, 99, 142),
    ),
)

# Monthly list prices in euro cents, converted per currency (all with two decimals; the
# Vietnamese customers are billed in US dollars).
PLAN_NAMES: tuple[str, ...] = ("free", "starter", "pro", "business", "team")
PLAN_PRICE_EUR_CENTS: tuple[int, ...] = (0, 900, 2900, 9900, 24900)
CURRENCY_RATE: dict[str, float] = {
    "eur": 1.0,
    "gbp": 0.85,
    "usd": 1.1,
    "sek": 11.5,
    "pln": 4.3,
    "cad": 1.5,
}
