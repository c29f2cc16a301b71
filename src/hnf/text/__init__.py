"""The language branch's text side: prompt templates, LLM providers, the shipped description corpus,
the description cache, and masked-language-model domain adaptation (DESIGN.md 2.2).

Heavy dependencies (``openai``, ``transformers``) are imported only when a provider or the MLM step is used.
"""

from hnf.text.corpus import corpus_datasets, match_class, offline_descriptions
from hnf.text.describe import classes_from_data, describe, load_or_offline, parse_classes
from hnf.text.descriptions import Description, DescriptionSet, normalize_class
from hnf.text.prompts import load_prompts, select_prompts

__all__ = [
    "Description",
    "DescriptionSet",
    "classes_from_data",
    "corpus_datasets",
    "describe",
    "load_or_offline",
    "load_prompts",
    "match_class",
    "normalize_class",
    "offline_descriptions",
    "parse_classes",
    "select_prompts",
]
