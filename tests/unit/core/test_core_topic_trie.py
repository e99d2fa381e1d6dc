from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rapidmq.core.topic_trie import TopicTrie, split_topic


def reference_match(pattern: list[str], words: list[str]) -> bool:
    """Straightforward recursive matcher: '*' one word, '#' zero or more."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(reference_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    if head == "*" or head == words[0]:
        return reference_match(rest, words[1:])
    return False


def test_split_topic_follows_rabbitmq_word_rules() -> None:
    assert [split_topic(k) for k in ["", "a", "a.b", "a.", ".", "a..b"]] == [
        [],
        ["a"],
        ["a", "b"],
        ["a", ""],
        ["", ""],
        ["a", "", "b"],
    ]


def test_star_matches_exactly_one_word_and_hash_zero_or_more() -> None:
    trie = TopicTrie()
    for pattern in ["a.*", "a.#", "#", "*.b", "a.*.c", "#.c", ""]:
        trie.add(pattern, pattern)
    assert {k: sorted(map(str, trie.match(k))) for k in ["a", "a.b", "a.b.c", "", "x.c"]} == {
        "a": ["#", "a.#"],
        "a.b": ["#", "*.b", "a.#", "a.*"],
        "a.b.c": ["#", "#.c", "a.#", "a.*.c"],
        "": ["", "#"],
        "x.c": ["#", "#.c"],
    }


def test_remove_drops_only_one_of_duplicate_bindings_and_prunes_nodes() -> None:
    trie = TopicTrie()
    trie.add("a.#", "q")
    trie.add("a.#", "q")
    trie.remove("a.#", "q")
    assert trie.match("a.b") == ("q",)
    trie.remove("a.#", "q")
    trie.remove("never.added", "q")
    assert (trie.match("a.b"), len(trie)) == ((), 0)


def test_cache_is_invalidated_by_bind_and_unbind() -> None:
    trie = TopicTrie()
    assert trie.match("a.b") == ()
    trie.add("a.*", "q1")
    assert trie.match("a.b") == ("q1",)
    trie.remove("a.*", "q1")
    assert trie.match("a.b") == ()


def test_many_hashes_do_not_explode() -> None:
    trie = TopicTrie()
    trie.add(".".join(["#"] * 30) + ".z", "q")
    key = ".".join(["w"] * 200)
    assert trie.match(key) == ()
    assert trie.match(key + ".z") == ("q",)


words = st.sampled_from(["a", "b", "c", ""])
pattern_words = st.sampled_from(["a", "b", "c", "", "*", "#"])


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(st.lists(pattern_words, max_size=5), max_size=8),
    keys=st.lists(st.lists(words, max_size=6), min_size=1, max_size=8),
)
def test_trie_agrees_with_reference_matcher(
    patterns: list[list[str]], keys: list[list[str]]
) -> None:
    trie = TopicTrie()
    texts = [".".join(p) for p in patterns]
    for text in texts:
        trie.add(text, text)
    for key_words in keys:
        key = ".".join(key_words)
        expected = {t for t in texts if reference_match(split_topic(t), split_topic(key))}
        assert set(trie.match(key)) == expected
