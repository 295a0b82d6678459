"""Name lists for the demo world: given names, family names, organisation words, domains.

The lists are filtered at import so that no full name ``First Last`` can occur inside
another one: no given name is a (case-insensitive) suffix of another given name, and no
family name is a prefix of another family name. Each name also has an ASCII slug for
e-mail addresses; slugs are unique and contain only ``a-z`` and ``-``.
"""

from __future__ import annotations

import re
import unicodedata

_FIRST_RAW = """
Zoë Björn Søren Åsa Ingrid Józef Łukasz Małgorzata François Hélène Chloé José María Ángel
Íñigo Niamh Siobhán Aoife Tadhg Oisín Thảo Hương Dũng Phúc Quỳnh Ngọc Tuấn Khánh Giang
Mehmet Ayşe Çağla Gülşen Yiğit Şule Dimitris Eleni Giorgos Sofía Lucía Matteo Giulia
Francesca Lorenzo Niccolò Jürgen Günther Jörg Käthe Malte Sönke Anneliese Wiebke Friederike
Oliver Amelia Harry Isla Jack Ava George Mia Noah Ivy Charlie Freya Jacob Florence Alfie
Thomas Emily Oscar Grace William Poppy Joshua Daisy Samuel Evie Theo Sophie Arthur Ella
Leo Isabelle Finley Matilda Henry Rosie Alexander Willow Edward Phoebe Frederick Imogen
Sebastian Lucy Maximilian Leonie Felix Hannah Paul Lena Jonas Marie Elias Johanna Lukas
Clara Ben Emilia Finn Lina Luca Mila Emil Ida Anton Frieda Karl Greta Moritz Pia Niklas
Elin Astrid Lars Sigrid Gustav Linnea Axel Maja Erik Ebba Nils Signe Olle Tove Hugo Agnes
Mathis Léa Gabriel Manon Raphaël Camille Louis Inès Jules Océane Adam Juliette Antoine
Margaux Étienne Zoé Baptiste Mathilde Théo Amélie Mateo Valentina Santiago Ximena Diego
Alejandro Carmen Pablo Lola Javier Elena Rocío Andrés Pilar Álvaro Nerea Sergio Alba
Mateusz Zofia Jakub Wiktoria Kacper Natalia Szymon Aleksandra Bartosz Oliwia Wojciech
Agnieszka Piotr Katarzyna Sven Annika Daan Fenna Sem Tess Bram Noor Ruben Sanne Stijn Lotte
Jesse Femke Aleksander Nora Mikkel Freja Rasmus Karoline Valtteri Aino Eero Kaisa Janne
Hilkka Arjun Priya Rohan Ananya Vikram Divya Kiran Meera Sanjay Lakshmi Hiroshi Yuki Kenji
Sakura Takeshi Haruka Daichi Aiko Minjun Seoyeon Jiho Haeun Chinedu Amara Kwame Abena Tunde
Folake Omar Layla Karim Yasmin Tariq Rania Samir Leila Mateus Beatriz Thiago Larissa Rafael
Gabriela Bruno Marta Tomasz Ewa Dorota Csaba Zsófia Bence Réka Levente Dóra Ondřej Tereza
Jiří Kateřina Matěj Barbora Vojtěch Dragan Milica Luka Petra Nikola Ivana Goran Siddharth
Aurélie Benoît Cécile Gaëlle Jérôme Maëlle Noémie Solène Thibault Yannick Ruairí Caoimhe
Ciarán Saoirse Pádraig Eimear Cillian Gráinne Fiadh Darragh Róisín Enda Bláithín
"""

_LAST_RAW = """
Müller Schröder Weiß Groß Köhler Nguyễn Trần Phạm Hoàng Huỳnh Phan Vũ Võ Đặng Bùi Đỗ Hồ Ngô
Dương Andersson Johansson Karlsson Nilsson Eriksson Larsson Öberg Åkesson Lindqvist Sjöberg
Bergström Lundgren Dubois Lefèvre Moreau Girard Rousseau Bonnet Fontaine Mercier Chevalier
Lemaître García Fernández González Rodríguez López Martínez Sánchez Pérez Gómez Jiménez Muñoz
Núñez Ibáñez O'Brien O'Connor Murphy Kelly Byrne Ryan Doyle McCarthy Gallagher Smith Johnson
Williams Brown Jones Miller Davis Wilson Taylor Thomas Moore Jackson Martin Thompson White
Harris Clark Lewis Robinson Walker Young Allen Wright Scott Green Baker Adams Nelson Hill
Campbell Mitchell Roberts Carter Phillips Evans Turner Torres Parker Collins Edwards Stewart
Kowalski Nowak Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański Woźniak
Dąbrowski Kozłowski Jankowski Mazur Krawczyk Piotrowski Grabowski van_Dijk de_Vries
van_den_Berg Bakker Janssen Visser Smit Meijer de_Boer Mulder de_Groot Bos Vos Peeters
Hendriks van_Leeuwen Dekker Brouwer de_Wit Dijkstra Rossi Russo Ferrari Esposito Bianchi
Romano Colombo Ricci Marino Greco Gallo Conti De_Luca Costa Giordano Mancini Rizzo Lombardi
Moretti Yılmaz Kaya Demir Şahin Çelik Yıldız Yıldırım Öztürk Aydın Özdemir Arslan Doğan
Kılıç Papadopoulos Georgiou Nikolaidis Tanaka Suzuki Takahashi Watanabe Itō Yamamoto
Nakamura Kobayashi Katō Park Choi Jung Kang Cho Yoon Jang Lim Okafor Adeyemi Mensah Boateng
Abubakar Okonkwo Haddad Khoury Nassar Mansour Singh Patel Sharma Gupta Iyer Reddy Nair
Chatterjee Silva Santos Oliveira Souza Pereira Carvalho Almeida Ribeiro Kovačević Horvat
Novák Dvořák Svoboda Černý Procházka Kučera Veselý Horváth Nagy Szabó Tóth Varga Kiss
Molnár Németh Farkas Balogh Virtanen Korhonen Mäkinen Nieminen Mäkelä Hämäläinen Laine
Heikkinen Koskinen Järvinen Hansen Jensen Nielsen Pedersen Christensen Sørensen Rasmussen
Jørgensen Halvorsen Fischer Schneider Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer
Richter Klein Wolf Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange Schmitt
Werner Schmitz Krause Lehmann Schulze Maier Herrmann König Walter Huber Kaiser Fuchs
Ní_Bhriain Mac_Giolla_Phádraig Ó_Súilleabháin Fitzgerald Quinlan Brennan Ó_Briain Kavanagh
Ahmed Hussain Rahman Chowdhury Begum Wang Zhang Chen Zhou Huang Zhao Sun Gao Xu Guo He Luo
Lindgren Holmberg Forsberg Sandberg Ekström Nordin Wikström Hedlund Blomqvist Sundqvist
Marchetti Barbieri Fontana Caruso Ferraro Galli Leone Longo Martinelli Santoro Vitale
Cortés Delgado Castillo Ortega Rubio Molina Navarro Morales Romero Vázquez Serrano Blanco
"""

ORG_SUFFIXES: tuple[str, ...] = (
    "GmbH",
    "AG",
    "Ltd",
    "Labs",
    "& Partner",
    "Logistics",
    "Studio",
    "Consulting",
    "SARL",
    "AB",
    "B.V.",
    "S.L.",
    "S.r.l.",
    "Sp. z o.o.",
    "Analytics",
    "Robotics",
    "Media",
    "Software",
    "Systems",
    "Design",
    "Cloud Services",
    "Foods",
    "Kollektiv",
    "Partners",
)

# Reserved example domains only (RFC 2606 / RFC 6761 spirit).
EMAIL_DOMAINS: tuple[str, ...] = (
    "example.com",
    "example.net",
    "example.org",
    "mail.example",
    "post.example",
    "inbox.example",
    "web.example",
    "posteo.example",
)
NOBODY_DOMAIN = "nowhere.example"


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def slug(name: str) -> str:
    """ASCII-fold a name for an e-mail local part: ``Nguyễn`` -> ``nguyen``."""
    folded = unicodedata.normalize("NFKD", name.replace("ø", "o").replace("Ø", "O"))
    folded = folded.replace("ł", "l").replace("Ł", "L").replace("đ", "d").replace("Đ", "D")
    folded = folded.replace("ı", "i").replace("ß", "ss")
    ascii_ = folded.encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z-]", "", ascii_)


def _filtered(raw: str, *, drop_suffixes: bool) -> tuple[str, ...]:
    names = [_nfc(n.replace("_", " ")) for n in raw.split()]
    names = list(dict.fromkeys(names))
    folded = [n.casefold() for n in names]
    keep: list[str] = []
    seen_slugs: set[str] = set()
    for name, low in zip(names, folded, strict=True):
        if drop_suffixes:
            clash = any(o != low and o.endswith(low) for o in folded)
        else:
            clash = any(o != low and o.startswith(low) for o in folded)
        s = slug(name)
        if clash or not s or s in seen_slugs:
            continue
        seen_slugs.add(s)
        keep.append(name)
    return tuple(keep)


FIRST_NAMES: tuple[str, ...] = _filtered(_FIRST_RAW, drop_suffixes=True)
LAST_NAMES: tuple[str, ...] = _filtered(_LAST_RAW, drop_suffixes=False)
FIRST_SLUGS: tuple[str, ...] = tuple(slug(n) for n in FIRST_NAMES)
LAST_SLUGS: tuple[str, ...] = tuple(slug(n) for n in LAST_NAMES)
MIDDLE_INITIALS: tuple[str, ...] = tuple("ABCDEFGHIJKLMNOPRSTVW")
