"""A trie of topic binding patterns, matched word by word.

Theory of operation: a binding key such as ``a.*.#`` is a path of words from the
root; each node maps literal words to children and may have a ``*`` child (one
word) and a ``#`` child (zero or more words).  Matching walks (node, word index)
states; each state is visited at most once, so the work is bounded by
``nodes x (words + 1)`` however many ``#`` a pattern has.  Results for recent
routing keys are cached; any bind or unbind clears the cache.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["TopicTrie", "split_topic"]

_CACHE_LIMIT = 4096


def split_topic(key: str) -> list[str]:
    """Split a topic into words as RabbitMQ does: ``""`` has no words, ``"a."`` has two."""
    return key.split(".") if key else []


class _Node:
    __slots__ = ("children", "destinations", "hash", "star")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.hash: _Node | None = None
        # destination -> number of bindings with this pattern (bindings differ by arguments)
        self.destinations: dict[Hashable, int] = {}

    def child(self, word: str) -> _Node | None:
        if word == "*":
            return self.star
        if word == "#":
            return self.hash
        return self.children.get(word)

    def add_child(self, word: str) -> _Node:
        node = self.child(word)
        if node is None:
            node = _Node()
            if word == "*":
                self.star = node
            elif word == "#":
                self.hash = node
            else:
                self.children[word] = node
        return node

    def empty(self) -> bool:
        return not (self.children or self.star or self.hash or self.destinations)

    def drop_child(self, word: str) -> None:
        if word == "*":
            self.star = None
        elif word == "#":
            self.hash = None
        else:
            del self.children[word]


class TopicTrie:
    """Topic patterns mapped to destinations (queues or exchanges)."""

    __slots__ = ("_cache", "_root", "_size")

    def __init__(self) -> None:
        self._root = _Node()
        self._cache: dict[str, tuple[Hashable, ...]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, pattern: str, destination: Hashable) -> None:
        """Add one binding of ``destination`` with ``pattern``."""
        node = self._root
        for word in split_topic(pattern):
            node = node.add_child(word)
        node.destinations[destination] = node.destinations.get(destination, 0) + 1
        self._size += 1
        self._cache.clear()

    def remove(self, pattern: str, destination: Hashable) -> None:
        """Remove one binding added by :meth:`add`; unknown ones are ignored."""
        path: list[tuple[_Node, str]] = []
        node: _Node | None = self._root
        for word in split_topic(pattern):
            assert node is not None
            nxt = node.child(word)
            if nxt is None:
                return
            path.append((node, word))
            node = nxt
        assert node is not None
        count = node.destinations.get(destination)
        if count is None:
            return
        if count > 1:
            node.destinations[destination] = count - 1
        else:
            del node.destinations[destination]
        self._size -= 1
        self._cache.clear()
        for parent, word in reversed(path):
            if not node.empty():
                break
            parent.drop_child(word)
            node = parent

    def match(self, key: str) -> tuple[Hashable, ...]:
        """Destinations whose patterns match routing key ``key``, each once."""
        found = self._cache.get(key)
        if found is None:
            found = self._match(split_topic(key))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return found

    def _match(self, words: list[str]) -> tuple[Hashable, ...]:
        result: dict[Hashable, None] = {}
        count = len(words)
        seen: set[tuple[int, int]] = set()
        stack: list[tuple[_Node, int]] = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            state = (id(node), i)
            if state in seen:
                continue
            seen.add(state)
            hash_node = node.hash
            if hash_node is not None:
                # '#' swallows zero or more words: try every remaining suffix once.
                for j in range(i, count + 1):
                    stack.append((hash_node, j))
            if i == count:
                for destination in node.destinations:
                    result[destination] = None
                continue
            word = words[i]
            child = node.children.get(word)
            if child is not None:
                stack.append((child, i + 1))
            if node.star is not None:
                stack.append((node.star, i + 1))
        return tuple(result)
