"""Prompt sets for ``unibind kb generate``: which questions an LLM is asked about each category, and how.

A :class:`PromptSet` holds templates plus the sampling settings they were designed with, so that a builtin set
reproduces the method it comes from (CuPL's five questions at temperature 0.99, DCLIP's greedy few-shot bullet
list) and a user's file of templates gets CuPL's settings. Templates use two placeholders, replaced by plain
string replacement (so any other braces in a user's file stay as written): ``{}`` is the category, ``{a}`` its
indefinite article.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from unibind.indexer.readers.jsonio import decode_utf8, read_bytes
from unibind.schema.errors import InvalidInput

log = logging.getLogger(__name__)

FORMS = ("sentences", "bullets")
VOWELS = frozenset("aeiouAEIOU")


@dataclass(frozen=True)
class PromptSet:
    """Templates and the sampling settings every request built from them uses.

    ``form`` says how a response is read back: ``"sentences"`` (free prose, split into sentences) or
    ``"bullets"`` (one descriptor per line, DCLIP style). Each template is asked ``samples`` times.
    """

    name: str
    templates: tuple[str, ...]
    form: str = "sentences"
    samples: int = 10
    temperature: float = 0.99
    max_tokens: int = 50
    stop: tuple[str, ...] = (".",)
    system: str | None = None

    def __post_init__(self) -> None:
        if not self.templates:
            raise InvalidInput(f"prompt set {self.name!r}: templates: at least one template is needed")
        for t in self.templates:
            if "{}" not in t:
                raise InvalidInput(f"prompt set {self.name!r}: template {t!r} has no '{{}}' for the category")
        if self.form not in FORMS:
            raise InvalidInput(f"prompt set {self.name!r}: form must be one of {', '.join(FORMS)}, not {self.form!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
            raise InvalidInput(f"prompt set {self.name!r}: samples must be an integer >= 1, not {self.samples!r}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise InvalidInput(f"prompt set {self.name!r}: max_tokens must be an integer >= 1, not {self.max_tokens!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or not 0.0 <= float(self.temperature) <= 2.0:
            raise InvalidInput(f"prompt set {self.name!r}: temperature must be in [0, 2], not {self.temperature!r}")

    def render(self, category: str) -> list[str]:
        """Every template of this set rendered for ``category``, in order."""
        return [render(t, category) for t in self.templates]


def article(category: str) -> str:
    """``"an"`` before a vowel letter (a, e, i, o, u; any case), else ``"a"`` -- CuPL's rule."""
    return "an" if category[:1] in VOWELS else "a"


def render(template: str, category: str) -> str:
    """``template`` with ``{a}`` replaced by the article, then ``{}`` by the category (plain replacement, not
    ``str.format``, so other braces in a user's template are left alone)."""
    return template.replace("{a}", article(category)).replace("{}", category)


def request_seed(seed: int, category: str, template: str, sample: int) -> int:
    """The seed of one request: a stable 31-bit integer from sha256 of the run's seed, the category, the template
    and the sample number, so a rerun asks the same questions with the same seeds and no two requests share one."""
    key = "\x1f".join((str(int(seed)), category, template, str(int(sample))))
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF


# CuPL (Pratt et al., "What does a platypus look like?", ICCV 2023): the five ImageNet questions of
# sarahpratt/CuPL generate_image_prompts.py, asked of text-davinci-002 with n=10, temperature=.99, max_tokens=50,
# stop="."; each answer is then closed with ".".
CUPL = PromptSet(
    name="cupl",
    templates=(
        "Describe what {a} {} looks like",
        "How can you identify {a} {}?",
        "What does {a} {} look like?",
        "Describe an image from the internet of {a} {}",
        "A caption of an image of {a} {}:",
    ),
    form="sentences", samples=10, temperature=0.99, max_tokens=50, stop=(".",),
)

# DCLIP (Menon & Vondrick, "Visual Classification via Description from Large Language Models", ICLR 2023):
# the few-shot prompt of sachit-menon/classify_by_description_release generate_descriptors.py (two worked
# examples, then the question for the category, the answer opened with "-"), asked once, greedily, with
# max_tokens=100. The two examples' lists are written afresh here; the structure and wording of the questions
# follow the original.
DCLIP_TEMPLATE = (
    "Q: What are useful visual features for distinguishing a lemur in a photo?\n"
    "A: There are several useful visual features to tell there is a lemur in a photo:\n"
    "- small primate with four limbs\n"
    "- fur in shades of grey, brown, black or white\n"
    "- pointed, fox-like snout\n"
    "- big round eyes facing forward\n"
    "- long, often ringed tail\n"
    "- hands and feet that grip branches\n"
    "\n"
    "Q: What are useful visual features for distinguishing a television in a photo?\n"
    "A: There are several useful visual features to tell there is a television in a photo:\n"
    "- flat rectangular screen in a thin frame\n"
    "- black or dark grey casing\n"
    "- a stand underneath or a bracket on the wall\n"
    "- a remote control nearby\n"
    "- cables running from the back\n"
    "- a bright picture on the screen when it is on\n"
    "\n"
    "Q: What are useful features for distinguishing {a} {} in a photo?\n"
    "A: There are several useful visual features to tell there is {a} {} in a photo:\n"
    "-"
)
DCLIP = PromptSet(
    name="dclip", templates=(DCLIP_TEMPLATE,), form="bullets", samples=1, temperature=0.0, max_tokens=100, stop=(),
)


def _modality(name: str, *templates: str) -> PromptSet:
    """CuPL's recipe (settings and the closing caption prompt) with questions worded for another sensor."""
    return PromptSet(name=f"modality:{name}", templates=templates, form="sentences", samples=10,
                     temperature=0.99, max_tokens=50, stop=(".",))


MODALITY_SETS = (
    _modality(
        "audio",
        "Describe what {a} {} sounds like",
        "How can you recognise {a} {} in an audio recording?",
        "What sounds does {a} {} make?",
        "Describe a sound clip of {a} {}",
        "A caption of an audio recording of {a} {}:",
    ),
    _modality(
        "point",
        "Describe the 3-D shape of {a} {}",
        "What does {a} {} look like as a 3-D point cloud?",
        "How can you identify {a} {} in a LiDAR scan?",
        "Describe the geometry of {a} {} as captured by a 3-D scanner",
        "A caption of a point cloud of {a} {}:",
    ),
    _modality(
        "depth",
        "Describe what a depth map of {a} {} shows",
        "How can you identify {a} {} in a depth image?",
        "What shape and distance cues does a depth map of {a} {} show?",
        "Describe the surfaces and outline of {a} {} as seen by a depth camera",
        "A caption of a depth map of {a} {}:",
    ),
    _modality(
        "event",
        "Describe what an event camera records of {a} {}",
        "How can you identify {a} {} from the moving edges an event camera captures?",
        "What motion and brightness changes does {a} {} cause in front of an event camera?",
        "Describe the outline of {a} {} as seen by a neuromorphic event sensor",
        "A caption of an event-camera recording of {a} {}:",
    ),
    _modality(
        "thermal",
        "Describe how {a} {} looks in a thermal infrared image",
        "Which parts of {a} {} appear warm and which appear cold in a thermal image?",
        "How can you identify {a} {} in a thermal camera image?",
        "Describe a thermal infrared photo of {a} {}",
        "A caption of a thermal image of {a} {}:",
    ),
    _modality(
        "video",
        "Describe how {a} {} moves over time in a video",
        "How can you identify {a} {} in a video clip?",
        "What does {a} {} do over the course of a video clip?",
        "Describe a short video of {a} {}",
        "A caption of a video of {a} {}:",
    ),
)

PROMPT_SETS: dict[str, PromptSet] = {s.name: s for s in (CUPL, DCLIP, *MODALITY_SETS)}


def load_prompts(name_or_file: str) -> PromptSet:
    """A builtin prompt set by name, or a UTF-8 file of templates, one per line.

    In a file, blank lines and lines starting with ``#`` are skipped and every other line must contain ``{}``;
    the set takes the file's name and CuPL's settings (sentences, 10 samples, temperature 0.99, 50 tokens, stop
    at "."). A missing file is ``FileNotFoundError``; an empty file, invalid UTF-8 (its line named) or a template
    without ``{}`` (``file:line`` named) is ``InvalidInput``.
    """
    if name_or_file in PROMPT_SETS:
        return PROMPT_SETS[name_or_file]
    label = os.fspath(name_or_file)
    if not os.path.isfile(label):
        raise FileNotFoundError(f"prompt set {label!r} is neither a builtin ({', '.join(PROMPT_SETS)}) "
                                f"nor an existing template file")
    text = decode_utf8(read_bytes(label, what="prompt template", error=InvalidInput), label, InvalidInput)
    templates: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        template = line.strip()
        if not template or template.startswith("#"):
            continue
        if "{}" not in template:
            raise InvalidInput(f"{label}:{number}: a template must contain '{{}}' where the category goes: {template!r}")
        if template in templates:  # the same question twice would only ask the same requests twice
            log.warning("%s:%d: the same template as an earlier line; asked once", label, number)
            continue
        templates.append(template)
    if not templates:
        raise InvalidInput(f"{label}: no templates (one per line, each with '{{}}' for the category; "
                           f"blank lines and '#' comments are skipped)")
    log.debug("read %d prompt templates from %s", len(templates), label)
    return PromptSet(name=Path(label).name, templates=tuple(templates), form="sentences", samples=10,
                     temperature=0.99, max_tokens=50, stop=(".",))
