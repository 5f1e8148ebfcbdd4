"""``data=text_synth``: a generated, long-tailed topic corpus, so text runs work on a fresh clone.

Every class owns ``topic_words`` pseudo-words; a document of class ``c`` has
``Poisson(mean_length)`` (at least 3) tokens, each drawn from class ``c``'s
topic words with probability ``signal`` and otherwise from a shared vocabulary
of ``noise_words`` pseudo-words with Zipf frequencies (exponent ``zipf``) — the
way real text mixes a few telling words into many common ones.  Class sizes
follow the long-tail profile of docs/design.md (``n_i = n_max * ratio^(-i/(C-1))``);
validation and test are balanced (``val_per_class``, ``test_per_class``).
The corpus then goes through exactly the same pipeline as ``data=text``
(tokenizer trained on the training split, per-batch padding, samplers).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from imbal.data.profile import longtail_counts
from imbal.data.text.module import TextDataModule
from imbal.errors import ImbalError

_ONSETS = ["b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr", "pl", "gr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]


def pseudo_words(n: int, rng: np.random.Generator, *, exclude: set[str] = frozenset()) -> list[str]:
    """``n`` distinct pronounceable pseudo-words of 2-3 syllables."""
    out: list[str] = []
    seen = set(exclude)
    while len(out) < n:
        k = int(rng.integers(2, 4))
        w = "".join(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] for _ in range(k))
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def generate_corpus(
    counts: list[int],
    *,
    topic_words: int,
    noise_words: int,
    signal: float,
    mean_length: float,
    zipf: float,
    seed: int,
    vocab_seed: int = 0,
) -> pd.DataFrame:
    """A ``text``/``label`` frame with ``counts[c]`` documents of class ``c`` (labels ``topic_c``)."""
    vrng = np.random.default_rng(vocab_seed)  # the vocabulary is the same for every split and run seed
    noise = pseudo_words(noise_words, vrng)
    topics = pseudo_words(topic_words * len(counts), vrng, exclude=set(noise))
    topics = [topics[c * topic_words : (c + 1) * topic_words] for c in range(len(counts))]
    zipf_p = 1.0 / np.arange(1, noise_words + 1) ** zipf
    zipf_p /= zipf_p.sum()
    rng = np.random.default_rng(seed)
    noise_arr = np.asarray(noise)
    topic_arrs = [np.asarray(t) for t in topics]
    # rng.choice(p=...) rebuilds this CDF on every call; drawing through it directly gives
    # the same samples (numpy's own method: uniform draws, searchsorted side="right").
    zipf_cdf = zipf_p.cumsum()
    zipf_cdf /= zipf_cdf[-1]
    texts, labels = [], []
    for c, n in enumerate(counts):
        for _ in range(n):
            length = max(3, int(rng.poisson(mean_length)))
            from_topic = rng.random(length) < signal
            topic_idx = rng.integers(topic_words, size=length)
            noise_idx = zipf_cdf.searchsorted(rng.random(length), side="right")
            words = np.where(from_topic, topic_arrs[c][topic_idx], noise_arr[noise_idx])
            texts.append(" ".join(words))
            labels.append(f"topic_{c}")
    order = rng.permutation(len(texts))
    return pd.DataFrame({"text": np.asarray(texts)[order], "label": np.asarray(labels)[order]})


class TextSynthDataModule(TextDataModule):
    """Generated imbalanced topic corpus (see the module docstring).

    Args:
        num_classes: topics (classes), >= 2.
        ratio: imbalance ratio n_max / n_min of the training split.
        n_max: head-class training documents.
        val_per_class, test_per_class: balanced evaluation splits.
        topic_words, noise_words, signal, mean_length, zipf: the generator.
        Every other argument as :class:`TextDataModule` (tokenizer, batch size, ...).
    """

    name = "text_synth"

    def __init__(
        self,
        *,
        num_classes: int = 4,
        ratio: float = 10.0,
        n_max: int = 400,
        val_per_class: int = 50,
        test_per_class: int = 100,
        topic_words: int = 20,
        noise_words: int = 2000,
        signal: float = 0.2,
        mean_length: float = 12.0,
        zipf: float = 1.0,
        **kwargs,
    ):
        kwargs.setdefault("text_column", "text")
        kwargs.setdefault("label_column", "label")
        super().__init__(**kwargs)
        if int(num_classes) < 2:
            raise ImbalError(f"data.num_classes must be >= 2, got {num_classes}")
        if isinstance(n_max, bool) or int(n_max) < 1:
            raise ImbalError(f"data.n_max must be >= 1 (training documents of the head class), got {n_max}")
        if not 0.0 <= float(signal) <= 1.0:
            raise ImbalError(f"data.signal must be in [0, 1], got {signal}")
        self.num_classes = int(num_classes)
        self.counts = longtail_counts(int(n_max), self.num_classes, ratio, "exp")  # validates ratio
        self.gen = dict(
            topic_words=int(topic_words),
            noise_words=int(noise_words),
            signal=float(signal),
            mean_length=float(mean_length),
            zipf=float(zipf),
        )
        self.ratio, self.n_max = ratio, int(n_max)
        self.val_per_class, self.test_per_class = int(val_per_class), int(test_per_class)
        # fixed class order topic_0 (head) .. topic_{C-1} (tail), not sorted strings (topic_10 < topic_2)
        self.classes = [f"topic_{c}" for c in range(self.num_classes)]

    def read_frames(self):
        c = self.num_classes
        sizes = {"train": self.counts, "val": [self.val_per_class] * c, "test": [self.test_per_class] * c}
        return {
            split: (generate_corpus(n, seed=self.seed * 3 + k, **self.gen), f"<text_synth {split}>", 0)
            for k, (split, n) in enumerate(sizes.items())
        }

    def setup(self, stage: str | None = None) -> None:
        first = not self.splits
        super().setup(stage)
        if first:
            self.manifest.update(ratio=self.ratio, n_max=self.n_max, generator=self.gen)
