"""The README's output contract must name every column of every schema, and every reject reason."""

from pipelines.records import REJECT_REASONS
from schemas import DATASETS
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_documents_every_column():
    for name, schema in DATASETS.items():
        section = README.split(f"### `{name}/`", 1)[1].split("###", 1)[0]
        for field in schema.names:
            assert f"`{field}`" in section, f"{name}.{field} missing from README"


def test_readme_lists_every_reject_reason():
    for reason in REJECT_REASONS:
        assert f"`{reason}`" in README, reason


def test_the_stored_field_docs_name_every_stage():
    from pipelines.records import STAGES
    from schemas import REJECTS

    doc = REJECTS.field("stage").metadata[b"doc"].decode()
    section = README.split("### `rejects/`", 1)[1].split("###", 1)[0]
    for stage in STAGES:
        assert stage in doc and f"`{stage}`" in section, stage
