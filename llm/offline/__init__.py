"""The offline engine: questions and evaluations by stated rules, with no language model.

A package by concern; each module states the rules it applies:

- `vocabulary` — the known tools and fields (`TECH_TERMS`, `CONCEPTS`, `skill_label`);
- `grammar` — wording helpers (Korean particles by `josa`, English counts, durations);
- `words` — cutting text into words and keywords, finding the skills it names;
- `intro` — reading the self-introduction: projects, skills, results (`read_intro`);
- `questions` — the three questions from the intro;
- `rating` — the windows and rules each criterion of an answer is rated by;
- `reasons` — the plain-words reason for each rating;
- `tips` — the tips and the STAR model answer;
- `engine` — `OfflineEngine`, which puts them together.

This module exports the names the rest of the project uses.
"""

from llm.offline.engine import OfflineEngine
from llm.offline.grammar import count_noun, duration_en, duration_ko, final_consonant, josa
from llm.offline.intro import find_projects, find_results, read_intro
from llm.offline.rating import GOOD_DURATION_S, PACE_SPS_KO, PACE_WPM_EN
from llm.offline.vocabulary import TECH_TERMS, skill_label
from llm.offline.words import find_skills

__all__ = [
    "GOOD_DURATION_S",
    "PACE_SPS_KO",
    "PACE_WPM_EN",
    "TECH_TERMS",
    "OfflineEngine",
    "count_noun",
    "duration_en",
    "duration_ko",
    "final_consonant",
    "find_projects",
    "find_results",
    "find_skills",
    "josa",
    "read_intro",
    "skill_label",
]
