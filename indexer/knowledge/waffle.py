"""The WaffleCLIP control: random-word "descriptions" written without any LLM.

WaffleCLIP (Roth et al., 2023) showed that much of the gain from LLM descriptors comes from averaging many
prompts, not from their meaning; this backend writes such meaningless descriptors so a knowledge base built
with an LLM can be compared against it. Each text depends only on the request's seed and category, so it is
reproducible and needs no cache.
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Callable, Sequence

from unibind.indexer.knowledge.prompts import article
from unibind.indexer.knowledge.request import LLM, Request
from unibind.schema.errors import InvalidInput

__all__ = ["WORDS", "WaffleBackend", "waffle_text"]

# ~500 common English words; fixed in the module so the texts do not change with a system word list.
WORDS: tuple[str, ...] = tuple("""
able about above across act add after again age ago agree air all allow almost alone along already also always
among amount angle animal answer any appear apple area arm arrive art ask baby back bad ball bank bar base basic
bear beat beauty bed bell belt best better big bird bit black block blood blow blue board boat body bone book
born both bottom box boy branch bread break bright bring broad brother brown build burn busy buy call calm camp
can capital car card care carry case cat catch cause cell center chair chance change charge check chief child
choose circle city class clean clear climb clock close cloth cloud coast coat cold color column come common
copy corn corner cost cotton count country course cover cow crowd cry current cut dance dark day dead deal dear
deep degree desert design dog door double down draw dream dress drink drive drop dry duck dust early earth east
easy edge egg end enemy energy enough even event ever every eye face fact fair fall family far farm fast father
fear feed feel field fight figure fill final find fine finger fire first fish fit flat floor flower fly follow
food foot force forest form forward free fresh friend front fruit full game garden gas gather gentle gift girl
glad glass gold good grass gray great green ground group grow guess hair half hand happy hard hat heart heat
heavy help high hill hold hole home hope horse hot house huge hunt ice idea inch iron island jump just keep key
kind king lake land large last late laugh lead leaf learn least left leg letter level light line lion list
little live long look loud love low machine main map mark market match metal middle milk mind mine minute
modern moon morning mother mountain mouth move music name narrow nation nature near neck need night noise
north nose note ocean offer office oil old open orange order paint paper party path pattern peace pencil
people pick piece place plain plant play point pool poor power press pretty print proud pull push quick quiet
rain raise reach ready real red rest rich ride right ring river road rock roll room root rope rough round row
rule run safe sail salt sand save school sea season seat seed sharp sheep shell shine ship shoe shore short
show side sign silver simple sing sister size skin sky sleep slow small smell smile snow soft soil song sound
south space speak special speed spring square stand star station steam steel step stick stone storm story
straight strange street strong sugar summer sun sweet table tail tall teeth thick thin tiny tool top touch
town track train tree true turn under valley village visit voice wait walk wall warm wash watch water wave
weather west wet wheel white wide wild wind window winter wire wise wood word work world yard yellow young
""".split())


def _characters(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 10)))


def waffle_text(category: str, seed: int) -> str:
    """One random-word description of ``category`` for ``seed``: two random words or two random character
    strings (which of the two is a coin of the seeded generator), the same text for the same seed."""
    digest = hashlib.sha256(f"waffle\0{seed}\0{category}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    if rng.random() < 0.5:
        return f"A photo of {article(category)} {category}, which has {rng.choice(WORDS)} {rng.choice(WORDS)}."
    return f"A photo of {article(category)} {category}, which is {_characters(rng)} {_characters(rng)}."


class WaffleBackend(LLM):
    """Spec ``waffle``: random words in place of an LLM's descriptions (the WaffleCLIP control)."""

    uses_prompts = False

    def __init__(self) -> None:
        self.spec = "waffle"

    def run(self, requests: Sequence[Request], on_result: Callable[[int, str], None]) -> None:
        """Answer each request in order; a request without a category is refused before any is answered."""
        for i, request in enumerate(requests):
            if not (request.category or "").strip():
                raise InvalidInput(f"waffle: request {i} has no category (the waffle control writes about a "
                                   "category: images need --labels-from-folders; prompts without a category need "
                                   "an LLM spec)")
        for i, request in enumerate(requests):
            on_result(i, waffle_text(request.category.strip(), request.seed))  # type: ignore[union-attr]
