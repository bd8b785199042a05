"""MinHash signatures, LSH banding and connected components without Beam, checked against datasketch
and against the theory."""

import collections
import itertools
import math
import random

import numpy as np
import pytest
from datasketch import MinHash, MinHashLSH

from pipeline import dedup
from pipeline.common import synthetic
from pipeline.common.words import words as normalised_words
from pipeline.dedup import minhash

VOCAB = synthetic.vocabulary()


def corpus(seed: int, bases: int, copies: int, words: int = 150) -> list[str]:
    """`bases` unrelated documents, each with `copies` near copies of varied similarity."""
    rng = random.Random(seed)
    texts = []
    for _ in range(bases):
        base = synthetic.word_document(rng, words, VOCAB)
        texts.append(base)
        texts.extend(synthetic.edit_words(rng, base, rng.uniform(0.0, 0.03), VOCAB) for _ in range(copies))
    return texts


MULTILINGUAL = [
    "The harbour town woke slowly — as the fishing boats returned, with the morning tide!",
    "Die Straßenbahn fährt ab 6 Uhr; Ärzte empfehlen Bewegung.",
    "L'été dernier, « la mairie » a publié son rapport…",
    "東京は日本の首都です。人口は多い。",
    "ＦＵＬＬＷＩＤＴＨ letters and ligatures: ﬁne ﬂour",
    "snake_case and 3.14 and e-mail",
    "",
    "...!!!",
    "three short words",
]


@pytest.mark.parametrize("text", MULTILINGUAL)
def test_words_are_those_of_the_normalised_text(text):
    assert normalised_words(text) == (dedup.normalise(text).encode("utf-8").split() or [b""])


def test_signatures_are_datasketchs_affine64_minhash_with_the_fast_base_hash():
    texts = MULTILINGUAL + corpus(seed=1, bases=3, copies=2)
    signer = minhash.Signer(num_perm=64, ngram=5, seed=7)
    signatures = signer.signatures(texts)
    assert signatures.shape == (len(texts), 64) and signatures.dtype == np.uint64
    for text, signature in zip(texts, signatures):
        reference = MinHash(num_perm=64, seed=7, scheme="affine64", hashfunc=minhash.shingle_hash)
        reference.update_batch(minhash.shingles(text, 5))
        assert np.array_equal(reference.hashvalues, signature), text


def test_huge_documents_are_signed_in_slices_with_the_same_result(monkeypatch):
    texts = corpus(seed=2, bases=2, copies=0, words=400)
    whole = minhash.Signer().signatures(texts)
    monkeypatch.setattr(minhash, "_BATCH_SHINGLES", 37)
    assert np.array_equal(minhash.Signer().signatures(texts), whole)


def test_bands_and_rows_are_chosen_the_way_datasketch_chooses_them():
    for threshold, num_perm in ((0.8, 112), (0.7, 128), (0.9, 256), (0.5, 64)):
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        config = minhash.MinHashConfig.create(threshold, num_perm)
        assert (config.bands, config.rows) == (lsh.b, lsh.r)
    assert minhash.MinHashConfig.create(0.8, 112, bands=14, rows=8).bands == 14
    for bad in ({"bands": 14}, {"bands": 15, "rows": 8}, {"bands": 0, "rows": 8}):
        with pytest.raises(ValueError):
            minhash.MinHashConfig.create(0.8, 112, **bad)
    with pytest.raises(ValueError):
        minhash.MinHashConfig.create(1.5, 112)


def candidate_pairs_from_band_keys(signatures, bands, rows) -> set:
    buckets = collections.defaultdict(list)
    for index, signature in enumerate(signatures):
        for key in minhash.band_keys(signature, bands, rows):
            buckets[key].append(index)
    return {pair for members in buckets.values() for pair in itertools.combinations(sorted(members), 2)}


def datasketch_candidate_pairs(signatures, num_perm, bands, rows, seed) -> set:
    lsh = MinHashLSH(num_perm=num_perm, params=(bands, rows))
    sketches = [MinHash(num_perm=num_perm, seed=seed, hashvalues=s, scheme="affine64") for s in signatures]
    for index, sketch in enumerate(sketches):
        lsh.insert(index, sketch)
    return {
        tuple(sorted((index, other)))
        for index, sketch in enumerate(sketches)
        for other in lsh.query(sketch)
        if other != index
    }


def test_candidate_pairs_are_identical_to_datasketchs_minhash_lsh():
    config = minhash.MinHashConfig.create(0.8, 112)
    texts = corpus(seed=3, bases=60, copies=3)
    signatures = minhash.Signer(config.num_perm, config.ngram, config.seed).signatures(texts)
    ours = candidate_pairs_from_band_keys(signatures, config.bands, config.rows)
    theirs = datasketch_candidate_pairs(signatures, config.num_perm, config.bands, config.rows, config.seed)
    assert len(ours) > 150
    assert ours == theirs


def pair_with_similarity(rng: np.random.Generator, similarity: float, size: int = 300):
    """Two shingle-hash sets of `size` each whose Jaccard similarity is as close to `similarity` as
    integers allow: shared / (2·size − shared)."""
    shared = round(2 * size * similarity / (1 + similarity))
    pool = rng.integers(0, 2**64, size=2 * size - shared, dtype=np.uint64)
    first, second = pool[:size], np.concatenate((pool[:shared], pool[size:]))
    return first, second, shared / (2 * size - shared)


def test_detection_probability_follows_the_theory(summary):
    config = minhash.MinHashConfig.create(0.8, 112)
    signer = minhash.Signer(config.num_perm, config.ngram, config.seed)
    rng = np.random.default_rng(11)
    pairs = 400
    lines = [f"bands × rows = {config.bands} × {config.rows}, {pairs} pairs per level"]
    for level in (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0):
        detected, similarity = 0, level
        for _ in range(pairs):
            first, second, similarity = pair_with_similarity(rng, level)
            keys_first = set(minhash.band_keys(signer.signature_of(first), config.bands, config.rows))
            keys_second = set(minhash.band_keys(signer.signature_of(second), config.bands, config.rows))
            detected += bool(keys_first & keys_second)
        expected = config.detection_probability(similarity)
        sigma = math.sqrt(max(expected * (1 - expected), 1e-4) / pairs)
        observed = detected / pairs
        lines.append(f"J = {similarity:.3f}: detected {observed:.3f}, theory {expected:.3f}")
        assert abs(observed - expected) <= 4 * sigma + 0.01, (similarity, observed, expected)
    summary["MinHash LSH: detection probability vs 1 − (1 − sʳ)ᵇ"] = lines


def union_find_components(nodes, edges) -> dict:
    parent = {node: node for node in nodes}

    def find(node):
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {node: min(n for n in nodes if find(n) == find(node)) for node in nodes}


def run_star_rounds(edges, max_rounds=50):
    """The Beam transform's algorithm in memory: alternate the two steps until nothing changes."""
    edges = set(edges)
    for rounds in range(1, max_rounds + 1):
        previous = edges
        for step in (minhash.large_star, minhash.small_star):
            neighbours = collections.defaultdict(set)
            for a, b in edges:
                neighbours[a].add(b)
                neighbours[b].add(a)
            edges = {edge for node, adjacent in neighbours.items() for edge in step(node, adjacent)}
        if edges == previous:
            return edges, rounds
    raise AssertionError("did not converge")


@pytest.mark.parametrize("seed", range(5))
def test_large_star_small_star_ends_in_stars_around_each_components_smallest_node(seed):
    rng = random.Random(seed)
    nodes = list(range(300))
    rng.shuffle(nodes)
    # long chains (the worst case for label propagation) plus random extra edges
    edges = [(nodes[i], nodes[i + 1]) for i in range(0, 299) if i % 60 != 59]
    edges += [tuple(rng.sample(nodes, 2)) for _ in range(40)]
    final, rounds = run_star_rounds(edges)
    expected = union_find_components(nodes, edges)
    assert all(child > root for child, root in final)
    assert {child: root for child, root in final} == {n: r for n, r in expected.items() if n != r}
    assert rounds <= 12


def test_bucket_stars_are_linear_and_verification_splits_dissimilar_members():
    signer = minhash.Signer()
    texts = corpus(seed=4, bases=2, copies=2)  # two groups of three
    signatures = signer.signatures(texts)
    nodes = [(0, 0, f"doc-{i}") for i in range(len(texts))]
    members = list(zip(nodes, signatures))
    unverified = list(minhash.bucket_edges(members))
    assert sorted(unverified) == sorted((node, nodes[0]) for node in nodes[1:])
    verified = list(minhash.bucket_edges(members, threshold=0.5))
    assert sorted(verified) == sorted(
        [(nodes[1], nodes[0]), (nodes[2], nodes[0]), (nodes[4], nodes[3]), (nodes[5], nodes[3])]
    )


def test_band_members_are_each_documents_survivor_key_in_every_band():
    from pipeline.common.schema import Document

    docs = [Document(id=f"d{i}", text=text, source=source) for i, (text, source) in enumerate(
        [("the river runs past the old mill and on to the sea", "commoncrawl"),
         ("the river runs past the old mill and on to the sea", "wikipedia")])]  # fmt: skip
    config = minhash.MinHashConfig.create(bands=14, rows=8)
    signer = minhash.Signer(config.num_perm, config.ngram, config.seed)
    members = list(minhash.band_members(signer, docs, config, ("wikipedia",)))
    assert len(members) == 2 * 14
    keys = [key for key, (node, _) in members if node[2] == "d0"]
    assert keys == [key for key, (node, _) in members if node[2] == "d1"]  # the same text: the same buckets
    assert {node for _, (node, _) in members} == {dedup.survivor_key(d, ("wikipedia",)) for d in docs}
    assert min(node for _, (node, _) in members)[2] == "d1"  # the preferred source's copy is the smallest node
    assert all(signature is None for _, (_, signature) in members)
    verified = list(minhash.band_members(signer, docs, minhash.MinHashConfig.create(bands=14, rows=8, verify=True)))
    assert all(len(signature) == config.num_perm for _, (_, signature) in verified)


def test_a_source_shingled_otherwise_is_signed_with_its_own_n_and_bucketed_apart():
    from pipeline import recipe as recipes
    from pipeline.common.schema import Document

    text = "def parse(value): return int(value) if value.isdigit() else None"
    docs = [Document(id="web", text=text, source="commoncrawl"), Document(id="file", text=text, source="code")]
    table = {"output": {"dir": "o"}, "sources": {"code": {"repos": ["r.zip"]}}, "dedup": {"source_ngrams": {"code": 3}}}
    config = recipes.from_table(table).minhash_config()
    assert config.source_ngrams == (("code", 3),) and config.ngram_of("code") == 3 and config.ngram_of("web") == 5
    signer = minhash.Signer(config.num_perm, config.ngram, config.seed)
    members = list(minhash.band_members(signer, docs, config))
    web = [key for key, (node, _) in members if node[2] == "web"]
    code = [key for key, (node, _) in members if node[2] == "file"]
    assert web == minhash.band_keys(signer.signatures([text])[0], config.bands, config.rows)  # as before
    three = minhash.Signer(config.num_perm, 3, config.seed).signatures([text])[0]
    assert code == [b"ngram3:" + key for key in minhash.band_keys(three, config.bands, config.rows)]
    assert not set(web) & set(code)  # never in one bucket: their signatures are not comparable
    table["dedup"]["source_ngrams"] = {"code": 0}
    with pytest.raises(recipes.UsageError, match="source_ngrams.code must be between 1 and"):
        recipes.from_table(table).minhash_config()
