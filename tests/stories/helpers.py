from datetime import UTC, datetime, timedelta

import apache_beam as beam

from pipelines import state
from pipelines.records import Run
from pipelines.staging import StageArticles
from pipelines.stories.assign import StoryFeatures
from pipelines.stories.features import ArticleFeatures, article_features
from pipelines.stories.index import StoryIndex, write_index
from pipelines.text import content_hash

T0 = datetime(2025, 6, 12, tzinfo=UTC)

# Three events; the first two share companies and vocabulary, the third shares nothing.
TEXTS = {
    "deal": "Meta invests $14.3 billion in Scale AI for a 49% stake and hires chief executive Alexandr Wang "
            "to lead a superintelligence lab; Scale is now valued at $29 billion after the deal.",
    "deal2": "Scale AI gets $14.3 billion from Meta, which takes 49% of the data-labeling start-up; Alexandr "
             "Wang leaves to join Meta's superintelligence effort as Scale is valued at $29 billion.",
    "llama": "Meta releases Llama 4.1 with a one-million-token context window and a small Scout Mini model "
             "for phones, trained on 48,000 GPUs in Prineville, Oregon.",
    "weather": "Heavy rain flooded the river valley overnight and the regional council closed three bridges "
               "while forecasters warned of more storms across the northern hills this weekend.",
}


def feat(article_id: str, text: str, hours: float = 0, source: str = "src", title=None) -> ArticleFeatures:
    return article_features(article_id, source, title, text, "en", T0 + timedelta(hours=hours), content_hash(text))




class StagedRefs(beam.PTransform):
    """Articles -> their refs, staged with their features as in a run: what AssignStories takes."""

    def __init__(self, run: Run, directory):
        super().__init__()
        self._run, self._directory = run, str(directory)

    def expand(self, articles):
        featured = articles | "Features" >> StoryFeatures(self._run)
        return (featured["main"] | "Stage" >> StageArticles(self._directory))["main"]


def save_index(state_dir: str, run_id: str, index: StoryIndex) -> None:
    """Saves ``index`` as the run ``run_id`` does: its snapshot written, then committed."""
    index.saved_by = run_id
    state.commit(state_dir, write_index(state_dir, index))
