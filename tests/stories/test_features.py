from datetime import UTC, datetime

from pipelines.stories.features import article_features, cosine, jaccard, minhash, rarity, term_vector, tokens
from tests.conftest import FIXTURES

T = datetime(2025, 6, 13, tzinfo=UTC)


def test_tokens_keep_figures_and_drop_stopwords():
    toks = tokens("Meta's $14.3 billion deal buys a 49% stake in Scale AI, the company said.")
    assert "14.3" in toks and "49%" in toks and "meta" in toks and "scale" in toks
    assert "the" not in toks and "said" not in toks and "a" not in toks


def test_rare_terms_weigh_more_than_common_ones():
    assert rarity("alexandr") > rarity("company") > 0
    vec = term_vector("Meta invests in Scale AI", "Alexandr Wang joins Meta. The company said the deal is big.")
    assert vec["alexandr"] > vec["company"]
    assert abs(sum(w * w for w in vec.values()) - 1.0) < 1e-9


def test_seed_versions_are_closer_to_each_other_than_to_a_hard_negative():
    seeds = [(FIXTURES / "seeds" / f"version-{i}.txt").read_text() for i in range(5)]
    vecs = [term_vector(None, s) for s in seeds]
    surge = term_vector(None, "Surge AI, a data-labeling company and rival of Scale AI, seeks $1 billion from "
                              "investors at a $15 billion valuation; founder Edwin Chen keeps control.")
    same = min(cosine(vecs[i], vecs[j]) for i in range(5) for j in range(i + 1, 5))
    assert same > max(cosine(v, surge) for v in vecs)


def test_minhash_tracks_shingle_overlap():
    text = " ".join(f"word{i}" for i in range(300))
    edited = text.replace("word150", "changed")
    assert jaccard(minhash(text), minhash(text)) == 1.0
    assert jaccard(minhash(text), minhash(edited)) > 0.8
    assert jaccard(minhash(text), minhash(" ".join(f"other{i}" for i in range(300)))) < 0.1


def test_features_are_deterministic():
    a = article_features("id1", "src", "Title", "Some text about Scale AI and Meta.", "en", T, "h")
    b = article_features("id1", "src", "Title", "Some text about Scale AI and Meta.", "en", T, "h")
    assert a == b and a.vector()[0][1] >= a.vector()[-1][1]


def test_features_survive_pickling_with_their_terms_interned():
    import pickle
    from datetime import UTC, datetime

    text = "The harbour bridge reopened on Tuesday after repairs costing 14.3 million. " * 4
    features = article_features("a", "s", "Bridge reopens", text, "en", datetime(2025, 6, 13, tzinfo=UTC), "h")
    back, again = pickle.loads(pickle.dumps(features)), pickle.loads(pickle.dumps(features))
    assert back == features and len(back.minhash) == 256
    # two articles' copies of a term are one string object
    assert all(a is b for a, b in zip(back.terms, again.terms, strict=True))
