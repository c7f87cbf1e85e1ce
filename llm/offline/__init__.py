"""The offline engine: questions and evaluations by stated rules, with no language model.

The engine and its rules live in `llm.offline.engine`; this package exports the names
the rest of the project uses.
"""

from llm.offline.engine import (
    GOOD_DURATION_S,
    PACE_SPS_KO,
    PACE_WPM_EN,
    TECH_TERMS,
    OfflineEngine,
    count_noun,
    duration_en,
    duration_ko,
    final_consonant,
    find_projects,
    find_results,
    find_skills,
    josa,
    read_intro,
    skill_label,
)

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
