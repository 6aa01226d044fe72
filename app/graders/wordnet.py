"""WordNet for METEOR's synonym stage, loaded from installed data only (never downloaded).

Looked for, in order: NLTK's own `corpora/wordnet` on nltk.data.path, then Debian's
`wordnet-base` package (/usr/share/wordnet). Debian ships the WordNet 3.0 database without
the `lexnames` index NLTK's reader insists on, and NLTK refuses files reached through links,
so a copy of it plus that fixed 45-line list is assembled once in a private cache folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

logger = logging.getLogger("openrft.graders")

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")
# lexnames(5WN): the lexicographer files, numbered, with their syntactic category.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


def _lexnames_text() -> str:
    return "".join(
        f"{number:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n"
        for number, name in enumerate(_LEXNAMES)
    )


def _assemble_from_debian() -> Path | None:
    if not (DEBIAN_WORDNET_DIR / "data.noun").is_file():
        return None
    root = Path(tempfile.gettempdir()) / f"openrft-nltk-data-{os.getuid()}"
    corpus = root / "corpora" / "wordnet"
    corpus.mkdir(parents=True, exist_ok=True)
    lexnames = corpus / "lexnames"
    if lexnames.exists():
        return root
    for source in DEBIAN_WORDNET_DIR.iterdir():
        if source.is_file():
            shutil.copyfile(source, corpus / source.name)
    # written last and atomically: its presence marks a complete copy
    partial = corpus / "lexnames.partial"
    partial.write_text(_lexnames_text())
    partial.replace(lexnames)
    return root


def _reader(root: str) -> Any:
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class WordNet30Reader(WordNetCorpusReader):
        def map_wn(self, version: str = "wordnet") -> None:
            # Only the multilingual (OMW) functions need this map, and it wants index.sense,
            # which Debian's copy lacks.
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available"
        return WordNet30Reader(root, None)


@lru_cache(maxsize=1)
def load_wordnet() -> Any | None:
    """NLTK's WordNet reader, or None when no WordNet data is installed."""
    import nltk

    try:
        return _reader(nltk.data.find("corpora/wordnet"))
    except LookupError:
        pass
    root = _assemble_from_debian()
    if root is None:
        logger.warning(
            "no WordNet data installed (apt-get install wordnet-base); "
            "METEOR runs without its synonym stage"
        )
        return None
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    return _reader(str(root / "corpora" / "wordnet"))


class NoSynonyms:
    """Stands in for WordNet when none is installed: METEOR then matches exact words and stems."""

    def synsets(self, *args: object, **kwargs: object) -> list:
        return []
