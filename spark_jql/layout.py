"""The names of everything a run writes under ``io.output``, in one place (the job, the report, the stages)."""

from __future__ import annotations

from dataclasses import dataclass

from spark_jql.paths import join

SCORED = "scored"  # parquet: every input column + score_<head>, jql_score, jql_tokens, jql_truncated
STATS = "stats"  # parquet: scored/ without the text column (what the report reads)
THRESHOLDS = "thresholds.json"  # per-language quantile thresholds
FILTERED = "filtered"  # kept documents (+ jql_threshold)
DROPPED = "dropped"  # dropped documents (+ jql_threshold, jql_drop_reason)
SUMMARY = "summary.json"  # counts, timings and retention of the last run of each stage
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
EMBEDDINGS = "embeddings"  # the embed stage's default output
JUDGED = "judged"  # the judge stage's default output
WITH_LANGUAGE = "with_language"  # langid's default output

# Folders a stage replaces: an input inside one of them would be deleted by the next run.
REPLACED_FOLDERS = (SCORED, STATS, FILTERED, DROPPED, EMBEDDINGS, JUDGED, WITH_LANGUAGE)
# Those the job (annotate -> thresholds -> filter) replaces, checked with the config; embed, judge and langid check
# their own output (the default above or --output) against the input when they start (spark/preflight.py:output_path),
# so a judged run's root can be io.output of a retry that reads <root>/judged and writes elsewhere.
JOB_FOLDERS = (SCORED, STATS, FILTERED, DROPPED)


@dataclass(frozen=True)
class OutputLayout:
    """Paths of a run's outputs under ``root`` (any filesystem)."""

    root: str

    def path(self, name: str) -> str:
        return join(self.root, name)

    @property
    def replaced_folders(self) -> list[str]:
        return [self.path(name) for name in REPLACED_FOLDERS]

    @property
    def job_folders(self) -> list[str]:
        return [self.path(name) for name in JOB_FOLDERS]

    def job_paths(self) -> dict[str, str]:
        """What the job's stages read and write, by the name the job uses."""
        names = {"scored": SCORED, "stats": STATS, "thresholds": THRESHOLDS, "filtered": FILTERED,
                 "dropped": DROPPED, "summary": SUMMARY}
        return {key: self.path(name) for key, name in names.items()}
