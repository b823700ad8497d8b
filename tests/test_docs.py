"""The README's output contract must name every column of every schema, and every reject reason."""

from pipelines.records import REJECT_REASONS
from schemas import ALL_DATASETS
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_documents_every_column():
    for name, schema in ALL_DATASETS.items():
        section = README.split(f"### `{name}/`", 1)[1].split("###", 1)[0]
        if name == "stories_current":  # the same columns: their fields are documented once, under stories/
            section += README.split("### `stories/`", 1)[1].split("###", 1)[0]
        for field in schema:
            assert f"`{field.name}`" in section, f"{name}.{field.name} missing from README"
            nested = field.type.value_type if hasattr(field.type, "value_type") else field.type
            for sub in getattr(nested, "fields", ()):  # a list of structs: each field in the section's table
                assert f"`{sub.name}`" in section and sub.metadata[b"doc"], f"{name}.{field.name}.{sub.name}"


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
